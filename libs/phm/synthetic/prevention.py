"""Prevention in the synthetic population: cardiovascular risk, QRISK3 scores, statins and learning disability
annual health checks, so the prevention cohorts have something true to find.

Definitions (calibration.yaml `prevention`, with their sources there):
- True 10-year CVD risk, for people 25-84 at the reference date without coronary heart disease or stroke:
  1 - (1 - r50) ** exp(lp), a QRISK3-like proportional-hazards form (approx.) with lp the log hazard ratios
  of age (per decade from 50), male sex, smoking, diabetes, hypertension (true, diagnosed or not),
  deprivation and latent health.
- A recorded QRISK3 score at a date in the history window for a share of them (NHS Health Check ages,
  diagnosed hypertension or diabetes, others): the true risk with log-normal error, in percent.
- Lipid-lowering therapy (statins, issued every `statin_issue_days`): most people with CHD or stroke, a share
  of those whose recorded score is 10% or more (started after it), a share of the unassessed high-risk and a
  few others (started before the window).
- Learning disability annual health checks: each year of the window, people 14+ with a diagnosed learning
  disability have one with the configured yearly probability.
The true risk, the recorded score and the statin start are in the truth store's person table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from phm.synthetic.dates import days, for_spark
from phm.synthetic.frames import condition_flags, diagnosed_on, event_frame, window_days
from phm.synthetic.population import DAY, PopulationPlan

# SNOMED CT concepts for the GP events (QRISK3 is the published concept; the statin dm+d products and the
# health check concept are illustrative: deployments use the published refsets in configs/codelists).
QRISK_SNOMED = "1085871000000105"  # QRISK3 cardiovascular disease 10 year risk calculator score
STATIN_SNOMED = np.array(["320000009", "320030001"])  # simvastatin 40 mg, atorvastatin 20 mg tablets (dm+d)
LD_HEALTH_CHECK_SNOMED = "401277000"  # learning disability annual health check completed (illustrative)
CVD_CONDITIONS = ("coronary_heart_disease", "stroke_tia")
YEAR = 365 * DAY


def prevention_factors(people: pd.DataFrame, plan: PopulationPlan, rng: np.random.Generator) -> pd.DataFrame:
    """Per person (people's order): smoker, cvd_risk_10y (NaN outside 25-84 or with CVD), qrisk_recorded_on
    and qrisk_score (NaT / NaN if none), statin_started_on (NaT if never by the reference date)."""
    cal = plan.calibration.prevention
    n = len(people)
    start, ref = np.datetime64(plan.history_start, "D"), np.datetime64(plan.reference_date, "D")
    age = (ref - days(people["date_of_birth"])) / DAY / 365.25
    first_day, last_day = window_days(people, plan)
    has = {name: condition_flags(people, name)[0] for name in (*CVD_CONDITIONS, "diabetes", "hypertension")}
    diagnosed = {name: condition_flags(people, name)[1] for name in ("diabetes", "hypertension")}
    cvd = has["coronary_heart_disease"] | has["stroke_tia"]

    smoker = rng.random(n) < plan.calibration.observations.smoking_prevalence
    log_hazard = (
        cal.cvd_log_hr_per_decade * (age - 50) / 10
        + cal.cvd_log_hr_male * (people["sex"].to_numpy() == "M")
        + cal.cvd_log_hr_smoker * smoker
        + cal.cvd_log_hr_diabetes * has["diabetes"]
        + cal.cvd_log_hr_hypertension * has["hypertension"]
        + cal.cvd_log_hr_per_deprivation_decile * (10 - people["imd_decile"].to_numpy())
        + cal.cvd_log_hr_latent * people["latent_health"].to_numpy()
    )
    eligible = (age >= 25) & (age < 85) & ~cvd
    risk = np.where(eligible, 1 - (1 - cal.cvd_risk_at_50) ** np.exp(log_hazard), np.nan)

    assessed_p = np.where(
        diagnosed["diabetes"] | diagnosed["hypertension"],
        cal.qrisk_recorded_with_condition,
        np.where((age >= 40) & (age < 75), cal.qrisk_recorded_health_check_ages, cal.qrisk_recorded_other),
    )
    span = np.maximum((last_day - first_day) / DAY, 0)
    recorded = eligible & (span > 0) & (rng.random(n) < assessed_p)
    recorded_on = first_day + (rng.random(n) * span).astype(np.int64) * DAY
    score = np.clip(np.round(100 * risk * np.exp(rng.normal(0, cal.qrisk_error_sd, n)), 1), 0.1, 99.0)

    raised = recorded & (score >= 10)
    statin_p = np.where(
        cvd,
        cal.statin_secondary,
        np.where(
            raised,
            cal.statin_after_raised_qrisk,
            np.where(eligible & ~recorded & (risk >= 0.10), cal.statin_unassessed_high_risk, cal.statin_other),
        ),
    )
    on_statin = (age >= 25) & (rng.random(n) < statin_p)
    cvd_diagnosed = np.min(
        np.stack([diagnosed_on(people, name) for name in CVD_CONDITIONS]).astype("datetime64[D]"), axis=0
    )
    before_window = start - rng.integers(1, 5 * 365, n) * DAY
    started = np.where(
        raised & ~cvd,
        recorded_on + rng.integers(7, 91, n) * DAY,
        np.where(~np.isnat(cvd_diagnosed), np.maximum(cvd_diagnosed, before_window), before_window),
    )
    started = np.where(on_statin & (started <= np.minimum(last_day, ref)), started, np.datetime64("NaT"))
    return pd.DataFrame(
        {
            "smoker": smoker,
            "cvd_risk_10y": risk,
            "qrisk_recorded_on": for_spark(np.where(recorded, recorded_on, np.datetime64("NaT"))),
            "qrisk_score": np.where(recorded, score, np.nan),
            "statin_started_on": for_spark(started),
        }
    )


def prevention_events(people: pd.DataFrame, factors: pd.DataFrame, plan: PopulationPlan, rng) -> list[pd.DataFrame]:
    """GP events: recorded QRISK3 scores, statin issues and learning disability health checks, as frames of
    (row, kind, event_date, code[, value])."""
    cal = plan.calibration.prevention
    ref = np.datetime64(plan.reference_date, "D")
    first_day, last_day = window_days(people, plan)
    frames = []

    recorded_on = days(factors["qrisk_recorded_on"])
    rows = np.flatnonzero(~np.isnat(recorded_on))
    frames.append(
        event_frame("qrisk", rows, recorded_on[rows], code=QRISK_SNOMED, value=factors["qrisk_score"].to_numpy()[rows])
    )

    started = days(factors["statin_started_on"])
    on = np.flatnonzero(~np.isnat(started))
    begin = np.maximum(started[on], first_day[on])
    counts = np.where(begin <= last_day[on], (last_day[on] - begin) / DAY // cal.statin_issue_days + 1, 0)
    counts = counts.astype(np.int64)
    rows = np.repeat(on, counts)
    nth = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    product = rng.choice(STATIN_SNOMED, len(people))
    frames.append(
        event_frame(
            "medication", rows, np.repeat(begin, counts) + nth * cal.statin_issue_days * DAY, code=product[rows]
        )
    )

    has_ld, _ = condition_flags(people, "learning_disability")
    ld_diagnosed = diagnosed_on(people, "learning_disability")
    turns_14 = days(people["date_of_birth"]) + 14 * 365 * DAY + 4 * DAY  # leap days, approx.
    checks = []
    for year in range(int(np.ceil(plan.history_years))):
        when = ref - (year + 1) * YEAR + (rng.random(len(people)) * 365).astype(np.int64) * DAY
        checked = (
            has_ld
            & (rng.random(len(people)) < cal.ld_health_check_yearly)
            & (when >= first_day)
            & (when <= last_day)
            & (when >= ld_diagnosed)
            & (when >= turns_14)
        )
        rows = np.flatnonzero(checked)
        checks.append(event_frame("health_check", rows, when[rows], code=LD_HEALTH_CHECK_SNOMED))
    return frames + checks
