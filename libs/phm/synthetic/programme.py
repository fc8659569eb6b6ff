"""A historical intervention: proactive care coordination, with confounded referral and heterogeneous effects.

Definitions (calibration.yaml `programme`; a synthetic device for impactability, shaped on how such
programmes run in England):
- A share of practices adopted it (rounded, at least one) from a start date a share of the way into the history.
- Eligible: registered and alive at the start, aged 65+ or with 2+ true conditions, in an adopting practice.
- Referral: a yearly hazard whose odds rise with the person's true risk (confounding: clinicians refer the
  sicker), so a naive treated-versus-untreated comparison is biased; a share decline.
- Effect: once enrolled, the emergency admission rate falls by a relative amount that depends on the
  person: most for 3+ conditions, less for the frail elderly, little with dementia, none at the end of
  life (death within 12 months of referral). The truth records each person's effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from phm.synthetic.dates import days, for_spark
from phm.synthetic.population import DAY, PopulationPlan

PROGRAMME_STREAM = 4


def adopting_practices(practice_codes: np.ndarray, share: float, seed: int) -> frozenset[str]:
    """A seeded choice of round(share x practices) practices, at least one when the share is positive.

    A fixed count, not a coin per practice: a small ICS (the 20k sample has two practices) must still run it.
    """
    codes = np.asarray(practice_codes)
    count = 0 if share == 0 else min(len(codes), max(1, round(share * len(codes))))
    rng = np.random.default_rng([seed, PROGRAMME_STREAM, 0])
    return frozenset(rng.choice(codes, count, replace=False).tolist())


def programme_start(plan: PopulationPlan) -> np.datetime64:
    """The first day of the month a configured share of the way into the history (so short test histories run it)."""
    history_months = (plan.reference_date.year - plan.history_start.year) * 12 + (
        plan.reference_date.month - plan.history_start.month + 1
    )
    months = round(plan.calibration.programme.start_share_of_history * history_months)
    return np.datetime64(plan.history_start, "M") + np.timedelta64(months, "M")


def relative_effect(
    age: np.ndarray, condition_count: np.ndarray, dementia: np.ndarray, end_of_life: np.ndarray, cal
) -> np.ndarray:
    """The true relative reduction of a person's emergency admission rate once enrolled, by group.

    Later rules win: 80+ then 3+ conditions, dementia, and nothing at the end of life. Shared with the
    oracle of targeting, which asks what the programme would do for anyone, enrolled or not.
    """
    effect = np.full(len(age), cal.effect_default)
    effect = np.where(age >= 80, cal.effect_frail_elderly_80_plus, effect)
    effect = np.where(condition_count >= 3, cal.effect_multimorbid_3_plus, effect)
    effect = np.where(dementia, cal.effect_dementia, effect)
    return np.where(end_of_life, cal.effect_end_of_life, effect)


def assign_programme(people: pd.DataFrame, factors: pd.DataFrame, plan: PopulationPlan) -> pd.DataFrame:
    """Per person of a block: adoption, eligibility, referral, enrolment and the true relative effect."""
    cal = plan.calibration.programme
    rng = np.random.default_rng([plan.seed, int(people["block"].iloc[0]), PROGRAMME_STREAM, 1])
    n = len(people)
    start = programme_start(plan).astype("datetime64[D]")
    ref = np.datetime64(plan.reference_date, "D")
    dob = days(people["date_of_birth"])
    death = days(people["death_date"])
    registered = days(people["registered_on"])
    age_at_start = (start - dob) / DAY / 365.25
    count = people["condition_count"].to_numpy()
    adopted = people["practice_code"].isin(plan.adopting_practices).to_numpy()
    present = (registered <= start) & (np.isnat(death) | (death > start))
    eligible = adopted & present & ((age_at_start >= cal.eligible_min_age) | (count >= cal.eligible_min_conditions))

    # Referral hazard: odds scale with true risk (per SD of its log within the eligible of this block).
    p = factors["p_emergency_12m"].to_numpy()
    log_risk = np.log(np.clip(p, 1e-6, 1))
    spread = log_risk[eligible].std() if eligible.sum() > 1 else 1.0
    z = (log_risk - (log_risk[eligible].mean() if eligible.any() else 0)) / (spread or 1.0)
    hazard = cal.referrals_per_year_of_eligible * np.exp(np.log(cal.referral_risk_odds_ratio_per_sd) * z)
    waited_days = (rng.exponential(1, n) / np.maximum(hazard, 1e-9) * 365.25).astype(np.int64)
    referred_on = start + np.minimum(waited_days, 10**6) * DAY
    referred = eligible & (referred_on <= ref) & (np.isnat(death) | (referred_on < death))
    declined = referred & (rng.random(n) < cal.declined_share)
    enrolled = referred & ~declined

    # True relative effect on the emergency admission rate, by group (applies once enrolled).
    dementia = people["onset_dementia"].notna().to_numpy() if "onset_dementia" in people else np.zeros(n, bool)
    end_of_life = ~np.isnat(death) & (death - referred_on <= 365 * DAY)
    effect = np.where(eligible, relative_effect(age_at_start, count, dementia, end_of_life, cal), 0.0)

    untreated = p
    treated = 1 - (1 - p) ** (1 - effect)  # rate x (1 - effect) on the 1 - exp(-rate) scale
    return pd.DataFrame(
        {
            "true_person_id": people["true_person_id"].to_numpy(),
            "practice_adopted_flag": adopted,
            "eligible_flag": eligible,
            "referred_on": for_spark(np.where(referred, referred_on, np.datetime64("NaT"))),
            "enrolled_flag": enrolled,
            "declined_flag": declined,
            "true_relative_effect": effect,
            "p_emergency_12m_untreated": untreated,
            "p_emergency_12m_treated": treated,
            "true_effect": untreated - treated,
        }
    )
