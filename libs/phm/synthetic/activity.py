"""Activity of the synthetic population, driven by latent health: every contact with every service.

Definitions (calibration.yaml `activity`, `observations`; sources in FACTS.md):
- Emergency admissions: person rate = Devon rate for the age group x IMD
  quintile cell (quintiles 2-4 interpolated) x h / d(cell), with
  h = exp(b * true condition count + s * e), e ~ N(0, 1) unobserved, and
  each person's rate at most `emergency_max_per_year`. The divisor d is
  solved over the whole population first (a histogram of h per cell) so that
  every cell's capped rate per person-year in the window is its published
  rate. Admissions are Poisson over each person's time alive in the window;
  the true 12-month admission probability after an index date is
  1 - exp(-rate) (the truth models are scored against).
- A&E: Poisson with a gamma-distributed person rate (shape k), plus a
  small high-intensity group (a few attendances a month), both raised with
  sqrt(h): most attenders come once, a few very often. High-intensity users
  are chosen with the person factors (more often the sicker) and their h is
  multiplied by `ae_high_intensity_emergency_rr` before the cell divisors
  are solved, so they have many emergency admissions too (British Red Cross 2021:
  under 1% of people, 16% of attendances, 26% of admissions) while every
  cell keeps its published admission rate.
- GP consultations by age band, more with diagnosed conditions; readings
  (BP, HbA1c, BMI, smoking) more often when diagnosed; undiagnosed
  hypertension and diabetes read high (case finding's signal).
- Elective admissions and day cases, outpatient attendances by age.
- Community health contacts by age (more for the sicker); mental health
  contacts for serious mental illness and depression.
- Adult social care: home care packages and care home placements starting
  at age-specific yearly rates (raised with dementia; learning disability
  brings long-running packages), with weekly costs from the unit costs.
- Frailty deficits (calibration `frailty`): coded falls, mobility, memory,
  hearing, incontinence ... problems in older people, more in the sicker, so
  the electronic frailty index has something to count beyond conditions.
- Prevention (prevention.py): true 10-year CVD risk, recorded QRISK3 scores,
  statin issues and learning disability annual health checks.
- The historical programme (programme.py): enrolled people's emergency
  admissions after referral are thinned by their true relative effect.
- Housing (calibration `housing`; MHCLG statutory homelessness statistics,
  approx.): people 16+ approach the council as homeless or threatened with
  homelessness at yearly rates by age band, more in deprived areas (a rate
  ratio between IMD deciles 1 and 10) and with serious mental illness or
  depression; each case is a prevention duty, a relief duty or a placement
  in temporary accommodation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from phm.synthetic.calibration import Calibration
from phm.synthetic.dates import days
from phm.synthetic.frames import condition_flags, event_frame
from phm.synthetic.population import DAY, PopulationPlan
from phm.synthetic.prevention import prevention_events, prevention_factors

ACTIVITY_STREAM = 2
# Sub-streams of ACTIVITY_STREAM: 0 factors, 1 events, 2 frailty, 3 and 4 prevention, 5 high-intensity A&E use.
HOUSING_SUBSTREAM = 6

# Event kinds (the `kind` column of the events frame) and the source extract each lands in.
KIND_SOURCE = {
    "registration": "gp_registrations",
    "address_change": "gp_registrations",
    "name_change": "gp_registrations",
    "deregistration": "gp_registrations",
    "diagnosis": "gp_events",
    "consultation": "gp_events",
    "bp": "gp_events",
    "hba1c": "gp_events",
    "bmi": "gp_events",
    "smoking": "gp_events",
    "frailty_deficit": "gp_events",
    "qrisk": "gp_events",
    "medication": "gp_events",
    "health_check": "gp_events",
    "emergency": "inpatient",
    "elective": "inpatient",
    "ae": "ae",
    "outpatient": "outpatient",
    "community": "community",
    "mental_health": "mental_health",
    "care_start": "social_care",
    "care_end": "social_care",
    "referral": "programme",
    "death": "deaths",
    "housing_case": "housing",
}

# SNOMED CT concepts for GP events (illustrative; the code lists the pipeline uses live in configs).
SNOMED = {
    "consultation": "185316007",  # indirect encounter / consultation
    "bp": "163020007",  # O/E - blood pressure reading
    "hba1c": "1003671000000109",  # haemoglobin A1c level
    "bmi": "60621009",  # body mass index
    "smoker": "77176002",
    "non_smoker": "8392000",
}

# Case mix of emergency admissions without a person-specific cause (approx.; ICD-10, 4 characters).
EMERGENCY_GENERAL = np.array(["R074", "R104", "J189", "N390", "L039", "K529", "R55X", "E86X"])
FALL_DIAGNOSES = np.array(["S720", "S721", "S722", "W19X"])  # hip fracture, fall
ELECTIVE_PROCEDURES = np.array(["W371", "H229", "C751", "M459", "T201", "W401"])  # OPCS-4
OUTPATIENT_SPECIALTIES = np.array(["100", "101", "110", "120", "130", "300", "320", "330", "340", "430"])
COMMUNITY_SERVICES = np.array(
    ["district_nursing", "physiotherapy", "podiatry", "community_matron", "occupational_therapy"]
)
MENTAL_HEALTH_TEAMS = np.array(["community_mental_health", "talking_therapies", "crisis", "early_intervention"])


FACTOR_BUCKET_WIDTH = 0.01  # log h: the histogram emergency_divisors solves each cell's divisor from


def emergency_age_group(age_years: np.ndarray, lower_bounds: list[int]) -> np.ndarray:
    return np.searchsorted(np.asarray(lower_bounds), age_years, side="right") - 1


def imd_quintile(decile: np.ndarray) -> np.ndarray:
    return (np.asarray(decile) + 1) // 2


def emergency_cell_rate(calibration: Calibration, group: np.ndarray, quintile: np.ndarray) -> np.ndarray:
    """Published admissions per person-year for each age group x IMD quintile (quintile 1 most deprived)."""
    rates = calibration.activity.emergency_admissions_per_1000
    most = np.asarray(rates.most_deprived)[group]
    least = np.asarray(rates.least_deprived)[group]
    weight = (quintile - 1) / 4  # 0 at quintile 1 (most deprived) .. 1 at quintile 5
    return (most + (least - most) * weight) / 1000


def emergency_divisors(histogram: pd.DataFrame, plan: PopulationPlan) -> pd.DataFrame:
    """Per emergency age group x IMD quintile, the divisor d of h that makes the cell's capped rate per
    person-year, sum(min(rate x h / d, emergency_max_per_year) x years) / sum(years), its published rate.

    `histogram` has a row per cell and bucket of log h (FACTOR_BUCKET_WIDTH wide) with the bucket's person-years
    in the window, `years`, and `weighted_factor_sum`, the sum of h x years. Per person-year, not per person:
    the sicker die sooner and contribute fewer years (dividing by the mean h put the 67+ cells ~20% low at
    200k people). With the cap, the capped people's excess goes to the rest of their cell instead of being
    lost (dividing by the mean lost 38% of the oldest group's admissions at 200k, nearly all high-intensity
    users'). A bucket is capped or not as a whole, so d is exact to about FACTOR_BUCKET_WIDTH.
    """
    cap = plan.calibration.activity.emergency_max_per_year
    rows = []
    for (group, quintile), cell in histogram.groupby(["emergency_age_group", "imd_quintile"]):
        rate = float(emergency_cell_rate(plan.calibration, np.array([group]), np.array([quintile]))[0])
        if rate >= cap:
            raise ValueError(f"calibration: emergency_max_per_year {cap} is not above cell {group, quintile}'s rate")
        years, sums = cell["years"].to_numpy(float), cell["weighted_factor_sum"].to_numpy(float)
        if years.sum() <= 0:  # nobody alive in the window: any divisor will do
            rows.append((group, quintile, 1.0))
            continue
        low, high = np.log(sums.sum() / years.sum()) - 20, np.log(sums.sum() / years.sum())
        for _ in range(80):  # the capped rate falls as the divisor grows: bisect on log d
            middle = (low + high) / 2
            mean_rate = np.minimum(rate * sums / np.exp(middle), cap * years).sum() / years.sum()
            low, high = (middle, high) if mean_rate > rate else (low, middle)
        rows.append((group, quintile, float(np.exp(high))))
    return pd.DataFrame(rows, columns=["emergency_age_group", "imd_quintile", "cell_rate_divisor"])


def person_factors(people: pd.DataFrame, plan: PopulationPlan) -> pd.DataFrame:
    """Per person: emergency age group, IMD quintile, the unnormalised emergency factor h, high-intensity A&E use,
    and smoking,
    cardiovascular risk and statins (prevention_factors)."""
    act = plan.calibration.activity
    stream = [plan.seed, int(people["block"].iloc[0]), ACTIVITY_STREAM]
    rng = np.random.default_rng([*stream, 0])
    # A person's rate is constant over the window (ageing ignored), so it takes the age group of the last 12
    # months, the year the latest outcomes and the calibration report measure (by age at the window's start,
    # people who turned 67 in it kept the 53-66 rate in the year an analyst sees them at 67+).
    age = _age_at(people, np.datetime64(plan.reference_date, "D") - 365 * DAY)
    h = np.exp(
        act.emergency_conditions_log_rr_per_condition * people["condition_count"].to_numpy()
        + act.emergency_unobserved_sd * rng.standard_normal(len(people))
    )
    # High-intensity A&E users, more often the sicker (sqrt(h) relative to the block's mean), on a stream of
    # their own; their emergency factor is raised before the cell means normalise it.
    sicker = np.sqrt(h) / np.sqrt(h).mean()
    high = np.random.default_rng([*stream, 5]).random(len(people)) < np.clip(act.ae_high_intensity_share * sicker, 0, 1)
    h = np.where(high, h * act.ae_high_intensity_emergency_rr, h)
    return pd.DataFrame(
        {
            "true_person_id": people["true_person_id"].to_numpy(),
            "emergency_age_group": emergency_age_group(age, act.emergency_admissions_per_1000.age_group_lower_bounds),
            "imd_quintile": imd_quintile(people["imd_decile"].to_numpy()),
            "emergency_factor": h,
            "exposure_years": years_in_window(people, plan),
            "ae_high_intensity_flag": high,
            **prevention_factors(people, plan, np.random.default_rng([*stream, 3])),
        }
    )


def generate_events(
    people: pd.DataFrame, factors: pd.DataFrame, plan: PopulationPlan, programme: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every event of a block's people (one row each), before any source's identifier quality is applied.

    `factors` has person_factors' columns plus `cell_mean_factor` (the cell's mean h) in people's order;
    `programme` (assign_programme's columns, same order) thins the emergency admissions of enrolled people.
    """
    cal = plan.calibration
    act = cal.activity
    rng = np.random.default_rng([plan.seed, int(people["block"].iloc[0]), ACTIVITY_STREAM, 1])
    n = len(people)
    start = np.datetime64(plan.history_start, "D")
    ref = np.datetime64(plan.reference_date, "D")
    death = days(people["death_date"])
    registered = days(people["registered_on"])
    first_day, last_day, alive_days = _days_in_window(people, plan)
    years_alive = alive_days / 365.25
    band = people["age_band"].to_numpy()
    age = _age_at(people, start)

    rate = emergency_rate(factors, plan)
    diagnosed_count = sum(people[f"diagnosed_{c}"].notna().to_numpy().astype(int) for c in plan.condition_names)
    # Health relative to the cell, for the other services: without the high-intensity users' raised admissions.
    high_intensity = factors["ae_high_intensity_flag"].to_numpy()
    health_h = factors["emergency_factor"].to_numpy() / np.where(high_intensity, act.ae_high_intensity_emergency_rr, 1)
    relative_h = health_h / factors["cell_mean_factor"].to_numpy()

    frames = []

    def add(kind: str, person_rows: np.ndarray, dates: np.ndarray, **columns: object) -> None:
        frames.append(event_frame(kind, person_rows, dates, **columns))

    def spread(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows repeated per event, with event dates uniform over each person's time alive in the window."""
        rows = np.repeat(np.arange(n), counts)
        offsets = (rng.random(len(rows)) * np.maximum(alive_days[rows], 1)).astype(np.int64)
        return rows, first_day[rows] + offsets * DAY

    # Emergency admissions, with length of stay and primary diagnosis.
    rows, dates = spread(rng.poisson(rate * years_alive))
    los = np.minimum(rng.geometric(1 / (2 + 0.15 * np.maximum(age[rows] - 40, 0))), 120) - 1  # approx.
    diagnosis = _emergency_diagnoses(people, rows, age, plan, rng)
    if programme is not None:  # enrolled people: each later admission avoided with the person's true effect
        referred_on = days(programme["referred_on"])
        referred = referred_on[rows]
        enrolled = programme["enrolled_flag"].to_numpy()[rows] & ~np.isnat(referred) & (dates >= referred)
        avoided = enrolled & (rng.random(len(rows)) < programme["true_relative_effect"].to_numpy()[rows])
        rows, dates, los, diagnosis = rows[~avoided], dates[~avoided], los[~avoided], diagnosis[~avoided]
        referral_rows = np.flatnonzero(~np.isnat(referred_on))
        outcome = np.where(programme["enrolled_flag"].to_numpy()[referral_rows], "enrolled", "declined")
        add("referral", referral_rows, referred_on[referral_rows], code=outcome)
    add("emergency", rows, dates, los_days=los, code=diagnosis, method=np.full(len(rows), "21"))

    # Elective admissions (a share as day cases) and outpatient attendances, rising with age and
    # concentrated in the sicker (sqrt of relative h, normalised to keep the configured means).
    sicker = np.sqrt(relative_h) / np.sqrt(relative_h).mean()
    age_factor = np.clip(0.3 + age / 50, 0.3, 2.2) * sicker
    rows, dates = spread(rng.poisson(act.elective_admissions_per_1000 / 1000 * age_factor * years_alive))
    day_case = rng.random(len(rows)) < act.day_cases_share_of_elective
    add(
        "elective", rows, dates,
        los_days=np.where(day_case, 0, rng.integers(1, 6, len(rows))),
        code=rng.choice(ELECTIVE_PROCEDURES, len(rows)),
        method=np.where(rng.random(len(rows)) < 0.8, "11", "12"),
    )  # fmt: skip
    rows, dates = spread(rng.poisson(act.outpatient_attendances_per_person * age_factor * years_alive))
    add("outpatient", rows, dates, code=rng.choice(OUTPATIENT_SPECIALTIES, len(rows)))

    # A&E: gamma-mixed Poisson for most; a small high-intensity group; both more often for the sicker.
    shape = act.ae_dispersion_shape
    high_share, high_rate = act.ae_high_intensity_share, act.ae_high_intensity_rate
    base = (act.ae_attendances_per_person - high_share * high_rate) / (1 - high_share)
    ae_rate = np.where(
        high_intensity, high_rate * rng.gamma(4, 1 / 4, n), base * rng.gamma(shape, 1 / shape, n) * sicker
    )
    rows, dates = spread(rng.poisson(ae_rate * years_alive))
    add("ae", rows, dates)

    # GP consultations, more with each diagnosed condition.
    gp_rate = np.asarray(act.gp_consultations_per_year_by_age)[band] * np.exp(0.12 * (diagnosed_count - 0.5))
    rows, dates = spread(rng.poisson(gp_rate * years_alive))
    add("consultation", rows, dates, code=np.full(len(rows), SNOMED["consultation"]))

    # Community health contacts (age, sicker) and mental health services (SMI, depression).
    community_rate = np.asarray(act.community_contacts_per_year_by_age)[band] * sicker
    rows, dates = spread(rng.poisson(community_rate * years_alive))
    add("community", rows, dates, code=rng.choice(COMMUNITY_SERVICES, len(rows)))
    smi, _ = condition_flags(people, "serious_mental_illness")
    depression, _ = condition_flags(people, "depression")
    mh_rate = np.where(
        smi, act.mental_health_contacts_smi, np.where(depression, act.mental_health_contacts_depression, 0)
    )
    rows, dates = spread(rng.poisson(mh_rate * years_alive))
    add("mental_health", rows, dates, code=rng.choice(MENTAL_HEALTH_TEAMS, len(rows)))

    frames.extend(_social_care(people, plan, rng, first_day, alive_days, last_day))
    frames.extend(_observations(people, plan, rng, spread, diagnosed_count, factors["smoker"].to_numpy()))
    stream = [plan.seed, int(people["block"].iloc[0]), ACTIVITY_STREAM, 4]
    frames.extend(prevention_events(people, factors, plan, np.random.default_rng(stream)))
    frames.extend(_diagnoses(people, plan))
    frames.extend(_frailty_deficits(people, plan, first_day, alive_days, relative_h))
    frames.extend(_housing_cases(people, plan, first_day, alive_days))

    # Registration (its first record) and death: one each.
    add("registration", np.arange(n), registered)
    died = np.flatnonzero(~np.isnat(death))
    add("death", died, death[died])

    events = pd.concat(frames, ignore_index=True)
    events = events[(events["event_date"] <= ref) | (events["kind"] == "registration")]
    return events.sort_values(["row", "event_date", "kind"], kind="stable").reset_index(drop=True)


def emergency_rate(factors: pd.DataFrame, plan: PopulationPlan) -> np.ndarray:
    """Each person's emergency admissions per year: the cell's published rate x h / the cell's divisor, at most
    `emergency_max_per_year` (the log-normal tail, raised for high-intensity users, would otherwise reach
    hundreds a year); the divisor (emergency_divisors) keeps the cell's mean at its published rate."""
    rate = (
        emergency_cell_rate(
            plan.calibration, factors["emergency_age_group"].to_numpy(), factors["imd_quintile"].to_numpy()
        )
        * factors["emergency_factor"].to_numpy()
        / factors["cell_rate_divisor"].to_numpy()
    )
    return np.minimum(rate, plan.calibration.activity.emergency_max_per_year)


def true_admission_probability(factors: pd.DataFrame, plan: PopulationPlan) -> np.ndarray:
    """P(at least one emergency admission in the next 12 months) for each person."""
    return 1 - np.exp(-emergency_rate(factors, plan))


def _observations(people, plan, rng, spread, diagnosed_count, smoker):
    obs = plan.calibration.observations
    band = people["age_band"].to_numpy()
    has_htn, dx_htn = condition_flags(people, "hypertension")
    has_dm, dx_dm = condition_flags(people, "diabetes")
    has_ob, _ = condition_flags(people, "obesity")
    adult = band >= 1
    monitored = diagnosed_count > 0
    reading_rate = np.where(monitored, obs.readings_per_year_with_condition, obs.readings_per_year_without) * adult
    frames = []

    rows, dates = spread(rng.poisson(reading_rate * plan.history_years))
    # Treated hypertension reads lower than untreated (half the uplift).
    uplift = obs.systolic_uplift_hypertension * np.where(dx_htn, 0.5, 1.0) * has_htn
    systolic = (
        np.asarray(obs.systolic_mean_by_age)[band[rows]] + uplift[rows] + rng.normal(0, obs.systolic_sd, len(rows))
    )
    diastolic = 0.55 * systolic + rng.normal(8, 6, len(rows))
    frames.append(event_frame("bp", rows, dates, code=SNOMED["bp"], value=systolic.round(), value2=diastolic.round()))

    hba1c_rate = np.where(dx_dm, 2.0, obs.readings_per_year_without * 0.5) * adult
    rows, dates = spread(rng.poisson(hba1c_rate * plan.history_years))
    mean = np.where(has_dm[rows], np.where(dx_dm[rows], obs.hba1c_diabetes_mean, 52.0), obs.hba1c_mean)
    sd = np.where(has_dm[rows], obs.hba1c_diabetes_sd, obs.hba1c_sd)
    frames.append(event_frame("hba1c", rows, dates, code=SNOMED["hba1c"], value=rng.normal(mean, sd).round()))

    rows, dates = spread(rng.poisson(reading_rate * 0.6 * plan.history_years))
    bmi = np.where(
        has_ob[rows], rng.normal(obs.bmi_obesity_mean, 3.5, len(rows)), rng.normal(obs.bmi_mean, obs.bmi_sd, len(rows))
    )
    frames.append(event_frame("bmi", rows, dates, code=SNOMED["bmi"], value=np.clip(bmi, 14, 70).round(1)))

    rows, dates = spread(rng.poisson(reading_rate * 0.5 * plan.history_years))
    codes = np.where(smoker[rows], SNOMED["smoker"], SNOMED["non_smoker"])
    frames.append(event_frame("smoking", rows, dates, code=codes))
    return frames


def _social_care(people, plan, rng, first_day, alive_days, last_day):
    """Home care packages and care home placements: a start record, and an end record when it ends."""
    act = plan.calibration.activity
    costs = plan.calibration.unit_costs_gbp
    n = len(people)
    band = people["age_band"].to_numpy()
    dementia, _ = condition_flags(people, "dementia")
    learning_disability, _ = condition_flags(people, "learning_disability")
    boost = np.where(dementia, act.social_care_dementia_multiplier, 1.0)
    years = alive_days / 365.25
    frames = []
    for service, rates, mean_weeks in (
        ("home_care", act.home_care_start_per_year_by_age, act.home_care_mean_weeks),
        ("care_home", act.care_home_start_per_year_by_age, act.care_home_mean_weeks),
    ):
        starts = rng.random(n) < 1 - np.exp(-np.asarray(rates)[band] * boost * years)
        if service == "home_care":  # adults with a learning disability: long-running packages
            starts |= learning_disability & (band >= 1) & (rng.random(n) < act.social_care_learning_disability_rate)
        rows = np.flatnonzero(starts)
        start = first_day[rows] + (rng.random(len(rows)) * np.maximum(alive_days[rows], 1)).astype(np.int64) * DAY
        end = start + (rng.exponential(mean_weeks * 7, len(rows)).astype(np.int64) + 7) * DAY
        end = np.minimum(end, last_day[rows])
        if service == "home_care":
            hours = np.full(len(rows), float(act.home_care_hours_per_week))
            weekly = hours * costs["home_care_hour"]
            kind = np.full(len(rows), "home_care")
        else:
            nursing = rng.random(len(rows)) < act.nursing_share_of_care_home
            hours = np.full(len(rows), np.nan)
            weekly = np.where(nursing, costs["care_home_nursing_week"], costs["care_home_residential_week"])
            kind = np.where(nursing, "nursing_home", "residential_home")
        frames.append(event_frame("care_start", rows, start, code=kind, value=hours, value2=weekly, end_date=end))
        ended = end < np.datetime64(plan.reference_date, "D")
        frames.append(event_frame("care_end", rows[ended], end[ended], code=kind[ended], value=hours[ended],
                             value2=weekly[ended], end_date=end[ended]))  # fmt: skip
    return frames


def _housing_cases(people, plan, first_day, alive_days) -> list[pd.DataFrame]:
    """Approaches to the council's housing service (homelessness duties, temporary accommodation), on a stream
    of their own: Poisson over each person's time in the window at their band's rate x deprivation x mental
    illness."""
    housing = plan.calibration.housing
    rng = np.random.default_rng([plan.seed, int(people["block"].iloc[0]), ACTIVITY_STREAM, HOUSING_SUBSTREAM])
    rate = np.asarray(housing.cases_per_year_by_age)[people["age_band"].to_numpy()] * housing_deprivation_factor(
        people["imd_decile"].to_numpy(), housing.rate_ratio_most_vs_least_deprived
    )
    smi, _ = condition_flags(people, "serious_mental_illness")
    depression, _ = condition_flags(people, "depression")
    rate = rate * np.where(smi | depression, housing.mental_illness_rate_ratio, 1.0)
    counts = rng.poisson(rate * alive_days / 365.25)
    rows = np.repeat(np.arange(len(people)), counts)
    dates = first_day[rows] + (rng.random(len(rows)) * np.maximum(alive_days[rows], 1)).astype(np.int64) * DAY
    needs = list(housing.need_shares)
    shares = np.array([housing.need_shares[need] for need in needs])
    need = np.asarray(needs)[rng.choice(len(needs), len(rows), p=shares)]
    adult = dates >= days(people["date_of_birth"])[rows] + np.round(16 * 365.25).astype(np.int64) * DAY
    return [event_frame("housing_case", rows[adult], dates[adult], code=need[adult])]


def housing_deprivation_factor(decile: np.ndarray, ratio: float) -> np.ndarray:
    """exp(log(ratio) x position), position from +1/2 at decile 1 to -1/2 at decile 10: decile 1 / decile 10 =
    ratio, and about 1 on average over equal deciles."""
    return np.exp(np.log(ratio) * ((10 - np.asarray(decile)) / 9 - 0.5))


def _frailty_deficits(people, plan, first_day, alive_days, relative_h) -> list[pd.DataFrame]:
    """Coded frailty deficits (falls, mobility, memory, hearing ... beyond the conditions): a Poisson number of
    distinct deficits per person by age band, more for the sicker (relative emergency factor ** exponent,
    normalised to keep each band's mean), each coded once at a date in the person's time in the window."""
    frailty = plan.calibration.frailty
    rng = np.random.default_rng([plan.seed, int(people["block"].iloc[0]), ACTIVITY_STREAM, 2])
    codes = np.asarray(frailty.deficit_snomed)
    band = people["age_band"].to_numpy()
    weight = relative_h**frailty.health_exponent
    weight = weight / np.mean(weight)
    counts = np.minimum(rng.poisson(np.asarray(frailty.deficits_per_person_by_age)[band] * weight), len(codes))
    rows = np.repeat(np.arange(len(people)), counts)
    if not len(rows):
        return []
    # distinct deficits per person: the first `count` of a random permutation of the codes
    order = np.argsort(rng.random((len(people), len(codes))), axis=1)
    position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    chosen = codes[order[rows, position]]
    dates = first_day[rows] + (rng.random(len(rows)) * np.maximum(alive_days[rows], 1)).astype(np.int64) * DAY
    return [event_frame("frailty_deficit", rows, dates, code=chosen)]


def _diagnoses(people: pd.DataFrame, plan: PopulationPlan) -> list[pd.DataFrame]:
    """One coded diagnosis per diagnosed condition, at its diagnosis date (also before the window)."""
    frames = []
    for name in plan.condition_names:
        dates = days(people[f"diagnosed_{name}"])
        rows = np.flatnonzero(~np.isnat(dates))
        snomed = plan.calibration.health.conditions[name].snomed
        frames.append(event_frame("diagnosis", rows, dates[rows], code=snomed, condition=name))
    return frames


def _emergency_diagnoses(people, rows, age, plan, rng):
    """Half of admissions are for one of the person's true conditions; falls rise after 65; the rest general."""
    codes = rng.choice(EMERGENCY_GENERAL, len(rows))
    for name in plan.condition_names:
        has = people[f"onset_{name}"].notna().to_numpy()[rows]
        pick = has & (rng.random(len(rows)) < 0.5 / np.maximum(people["condition_count"].to_numpy()[rows], 1))
        codes = np.where(pick, plan.calibration.health.conditions[name].icd10, codes)
    fall = (age[rows] >= 65) & (rng.random(len(rows)) < np.clip((age[rows] - 60) / 100, 0, 0.3))
    return np.where(fall, rng.choice(FALL_DIAGNOSES, len(rows)), codes)


def years_in_window(people: pd.DataFrame, plan: PopulationPlan) -> np.ndarray:
    """Each person's years registered and alive in the history window (their exposure to activity)."""
    return _days_in_window(people, plan)[2] / 365.25


def _days_in_window(people: pd.DataFrame, plan: PopulationPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first day, last day, days alive): each person's stretch of the window, registered and alive."""
    death = days(people["death_date"])
    first_day = np.maximum(days(people["registered_on"]), np.datetime64(plan.history_start, "D"))
    last_day = np.where(np.isnat(death), np.datetime64(plan.reference_date, "D"), death)
    return first_day, last_day, np.maximum((last_day - first_day) / DAY, 0).astype(np.int64)


def _age_at(people: pd.DataFrame, when: np.datetime64) -> np.ndarray:
    return np.maximum((when - days(people["date_of_birth"])) / DAY / 365.25, 0)
