"""The best AUC any risk model can reach on the synthetic ICS's emergency admissions (evaluation only).

The oracle AUC (phm.models.oracle) ranks people by their true probability, which the generator draws with an
unobserved person factor e ~ N(0, 1): rate = min(c x exp(s x e), cap) (phm.synthetic.activity, `emergency_rate`;
s = `emergency_unobserved_sd`). No data shows e itself; a person's history reveals it only through the contacts
whose rates the generator raises with it. The best any model can do is therefore the Bayes predictor
E[1 - exp(-rate x follow-up) | what the history shows]; this module measures its AUC by simulation, for an
observer who knows more than any model can:
- exactly, each person's true condition count, age, IMD cell and high-intensity A&E flag (so c);
- the counts, over the last `history_months` before the index date, of every contact the generator raises with
  e: emergency admissions (Poisson, rate as above), A&E attendances (gamma-mixed Poisson, i.e. negative binomial,
  with mean raised with sqrt(relative h); high-intensity users' rate does not depend on e), elective admissions,
  outpatient attendances and community contacts (Poisson, mean raised with sqrt(relative h)) and coded frailty
  deficits (Poisson, raised with relative h ** `frailty.health_exponent`, each coded on a uniform date in the
  window). Nothing else the generator draws depends on e.
The counts and the outcome are drawn afresh from each person's true rates (not read from the extracts), e's
posterior is computed on a grid, and the AUC of the posterior mean is an upper bound for a model trained on the
same history; the oracle AUC of the same draws is reported beside it (it matches the oracle AUC of the real
outcomes within sampling error). Every formula mirrors phm.synthetic.activity: a change there must be made
here too, which `check_reconstruction` catches for the emergency rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from phm.synthetic.activity import emergency_cell_rate

TRUTH_COLUMNS = (
    "block", "age_band", "age_at_start", "death_date", "condition_count", "emergency_age_group", "imd_quintile",
    "emergency_factor", "ae_high_intensity_flag", "cell_rate_divisor", "cell_mean_factor", "exposure_years",
    "p_emergency_12m",
)  # fmt: skip
GRID = np.linspace(-6.0, 6.0, 241)  # e's values: N(0, 1) has no mass to speak of beyond
CHUNK = 50_000  # people per grid evaluation (CHUNK x len(GRID) doubles per array)


@dataclass(frozen=True)
class Observer:
    """Per living person, what the observer knows: rate(e) = min(scale x exp(s x e), cap); the A&E, other
    contacts' and frailty deficits' means per year (per window for deficits) at e = 0."""

    scale: np.ndarray
    e_true: np.ndarray
    ae_mean: np.ndarray
    other_mean: np.ndarray
    deficit_mean: np.ndarray
    years_in_window: np.ndarray
    years_after_index: np.ndarray


class ReconstructionError(ValueError):
    """The truth store cannot be read as the configured calibration's (generated with another calibration or
    an earlier generator)."""


def truth_columns(person: DataFrame, history_start) -> DataFrame:
    """truth/person's TRUTH_COLUMNS for every person: the age at the window's start (as the generator takes it
    for elective and outpatient rates) computed here, so that no date of birth leaves Spark."""
    missing = sorted({*TRUTH_COLUMNS, "date_of_birth"} - {"age_at_start"} - set(person.columns))
    if missing:
        raise ReconstructionError(
            f"the truth store's person table lacks {', '.join(missing)}: it was written by an earlier generator; "
            "generate the population again"
        )
    start = F.lit(history_start).cast("date")
    age = F.greatest(F.months_between(start, F.col("date_of_birth")) / 12, F.lit(0.0)).alias("age_at_start")
    return person.select(*(age if c == "age_at_start" else F.col(c) for c in TRUTH_COLUMNS))


def observer(truth: pd.DataFrame, calibration, index_date, reference_date) -> Observer:
    """From truth_columns' rows (every person: block means are taken over the block, as the generator takes
    them) the persons at risk at `index_date`: living, with some of their time in the window before it."""
    act, frailty = calibration.activity, calibration.frailty
    s, b = act.emergency_unobserved_sd, act.emergency_conditions_log_rr_per_condition
    high = truth["ae_high_intensity_flag"].to_numpy(dtype=bool)
    h = truth["emergency_factor"].to_numpy(dtype=float)
    health = np.log(h / np.where(high, act.ae_high_intensity_emergency_rr, 1.0))  # log of h before the A&E raise
    conditions = b * truth["condition_count"].to_numpy(dtype=float)
    e_true = (health - conditions) / s if s > 0 else np.zeros(len(truth))
    cell = emergency_cell_rate(calibration, truth["emergency_age_group"].to_numpy(), truth["imd_quintile"].to_numpy())
    scale = cell * (h / np.exp(s * e_true)) / truth["cell_rate_divisor"].to_numpy(dtype=float)
    check_reconstruction(scale, e_true, s, act.emergency_max_per_year, truth["p_emergency_12m"].to_numpy(dtype=float))
    # relative h for the other services (phm.synthetic.activity.generate_events), its block means at e's true values
    relative = np.exp(health) / truth["cell_mean_factor"].to_numpy(dtype=float)
    blocks = truth["block"].to_numpy()
    sqrt_mean = pd.Series(np.sqrt(relative)).groupby(blocks).transform("mean").to_numpy()
    deficit_mean_weight = pd.Series(relative**frailty.health_exponent).groupby(blocks).transform("mean").to_numpy()
    at_zero = np.exp(conditions) / truth["cell_mean_factor"].to_numpy(dtype=float)  # relative h at e = 0
    band = truth["age_band"].to_numpy()
    age_factor = np.clip(0.3 + truth["age_at_start"].to_numpy(dtype=float) / 50, 0.3, 2.2)
    share, rate = act.ae_high_intensity_share, act.ae_high_intensity_rate
    ae_base = (act.ae_attendances_per_person - share * rate) / (1 - share)
    other = (act.elective_admissions_per_1000 / 1000 + act.outpatient_attendances_per_person) * age_factor
    sqrt_at_zero = np.sqrt(at_zero) / sqrt_mean
    deaths = pd.to_datetime(truth["death_date"])
    index, end = pd.Timestamp(index_date), pd.Timestamp(reference_date)
    # a person's time in the window runs to the reference date or death: the part after the index date is not seen
    years_after = ((deaths.fillna(end).clip(upper=end) - index).dt.days / 365.25).clip(lower=0).to_numpy()
    years_in_window = truth["exposure_years"].to_numpy(dtype=float)
    at_risk = ((deaths.isna() | (deaths > index)).to_numpy()) & (years_in_window - years_after > 0)
    pick = lambda a: np.asarray(a)[at_risk]  # noqa: E731
    return Observer(
        scale=pick(scale),
        e_true=pick(e_true),
        ae_mean=pick(np.where(high, 0.0, ae_base * sqrt_at_zero)),
        other_mean=pick((other + np.asarray(act.community_contacts_per_year_by_age)[band]) * sqrt_at_zero),
        deficit_mean=pick(
            np.asarray(frailty.deficits_per_person_by_age)[band]
            * at_zero**frailty.health_exponent
            / deficit_mean_weight
        ),
        years_in_window=pick(years_in_window),
        years_after_index=pick(years_after),
    )


def check_reconstruction(scale, e_true, s, cap, p_12_months) -> None:
    rebuilt = 1 - np.exp(-np.minimum(scale * np.exp(s * e_true), cap))
    worst = float(np.max(np.abs(rebuilt - p_12_months))) if len(rebuilt) else 0.0
    if worst > 1e-6:
        raise ReconstructionError(
            f"the truth store's true probabilities differ from the calibration's by up to {worst:.3g}: the "
            "population was generated with another calibration (or generator); generate it again"
        )


def achievable_auc(
    seen: Observer, calibration, history_months: list[int], follow_up_months: int, seed: int
) -> pd.DataFrame:
    """One row per history length: people, outcome rate, the oracle AUC of the simulated outcomes, the AUC of the
    Bayes predictor knowing no history (conditions, age, cell and flag only), admissions only, and every channel
    (`achievable_auc`)."""
    act = calibration.activity
    s, cap, shape = act.emergency_unobserved_sd, act.emergency_max_per_year, act.ae_dispersion_shape
    exponent = calibration.frailty.health_exponent
    # e's grid: its N(0, 1) prior (log, up to a constant), and what it raises: the sqrt(relative h) services' means
    # and the frailty deficits' weight
    prior, raised, deficit_weight = (-(GRID**2) / 2)[None, :], np.exp(s * GRID / 2), np.exp(s * GRID * exponent)
    rng = np.random.default_rng(seed)
    n, follow_up = len(seen.e_true), follow_up_months / 12
    rate = np.minimum(seen.scale * np.exp(s * seen.e_true), cap)
    outcome = rng.random(n) < 1 - np.exp(-rate * follow_up)
    truth_oracle = _auc(outcome, 1 - np.exp(-rate * follow_up))
    raise_sqrt = np.exp(s * seen.e_true / 2)
    rows = []
    for months in history_months:
        years = np.clip(seen.years_in_window - seen.years_after_index, 0, months / 12)
        seen_share = np.divide(years, seen.years_in_window, out=np.zeros(n), where=seen.years_in_window > 0)
        counts = {
            "admissions": rng.poisson(rate * years),
            "ae": rng.poisson(seen.ae_mean * rng.gamma(shape, 1 / shape, n) * raise_sqrt * years),
            "other": rng.poisson(seen.other_mean * raise_sqrt * years),
            "deficits": rng.poisson(seen.deficit_mean * np.exp(s * seen.e_true * exponent) * seen_share),
        }  # fmt: skip
        predicted = {name: np.empty(n) for name in ("no_history", "admissions_only", "achievable")}
        for lo in range(0, n, CHUNK):
            part = slice(lo, lo + CHUNK)
            grid_rate = np.minimum(seen.scale[part, None] * np.exp(s * GRID), cap)
            admissions = _poisson(counts["admissions"][part], grid_rate * years[part, None])
            ae = _negative_binomial(counts["ae"][part], seen.ae_mean[part, None] * raised * years[part, None], shape)
            other = _poisson(counts["other"][part], seen.other_mean[part, None] * raised * years[part, None])
            deficit_mean = seen.deficit_mean[part, None] * deficit_weight * seen_share[part, None]
            deficits = _poisson(counts["deficits"][part], deficit_mean)
            probability = 1 - np.exp(-grid_rate * follow_up)
            for name, likelihood in (
                ("no_history", 0.0),
                ("admissions_only", admissions),
                ("achievable", admissions + ae + other + deficits),
            ):
                log_posterior = prior + likelihood
                weight = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
                predicted[name][part] = (weight * probability).sum(axis=1) / weight.sum(axis=1)
        rows.append(
            {
                "history_months": months,
                "persons": n,
                "outcome_rate": float(outcome.mean()),
                "oracle_auc": truth_oracle,
                "no_history_auc": _auc(outcome, predicted["no_history"]),
                "admissions_only_auc": _auc(outcome, predicted["admissions_only"]),
                "achievable_auc": _auc(outcome, predicted["achievable"]),
            }
        )
    aucs = ["oracle_auc", "no_history_auc", "admissions_only_auc", "achievable_auc"]
    return pd.DataFrame(rows).astype({column: float for column in aucs})  # an AUC without both outcomes: NaN


def _poisson(k: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """log P(k | mean) up to terms in k alone (they cancel in e's posterior)."""
    return k[:, None] * np.log(np.maximum(mean, 1e-300)) - mean


def _negative_binomial(k: np.ndarray, mean: np.ndarray, shape: float) -> np.ndarray:
    """log P(k | mean, shape) of a gamma(shape)-mixed Poisson, up to terms in k alone."""
    return k[:, None] * np.log(np.maximum(mean, 1e-300) / (mean + shape)) + shape * np.log(shape / (mean + shape))


def _auc(outcome: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(outcome, score)) if 0 < outcome.sum() < len(outcome) else None
