"""The effect of the historical programme on the treated, estimated five ways, each with a 95% interval.

Estimand: the average effect on the treated (ATT) on the probability of an emergency admission in the
follow-up from time zero (phm.impactability.cohort), negative when the programme prevents admissions.
- naive_difference: treated minus comparator outcome rates (confounded: the sicker were referred).
- naive_before_after: the treated's outcome minus their own outcome in the same span before time zero
  (what programme reports often quote; biased by regression to the mean and secular change).
- ipw: treated mean minus the comparators' mean weighted by the odds of the propensity, e/(1-e)
  (Hajek-normalised; Austin & Stuart, Stat Med 2015;34:3661).
- matched: 1:1 nearest neighbour on the logit propensity within a caliper of `caliper_sd` SDs, with
  replacement (Austin, Pharm Stat 2011;10:150); treated without a match are counted and left out.
- did_ipw: difference-in-differences of after minus before, comparators weighted by the odds of a propensity
  fitted on the persons' characteristics only (conditional DiD: Abadie, Rev Econ Stud 2005;72:1): the
  features that measure use of services over a window before baseline are left out (`did_leaves_out`).
  Weighting on them balances the arms' recorded prior use, which is the outcome's own history: where the
  treated were chosen for a lasting risk the data do not show, the weights pick comparators whose prior use
  was high by chance, who then regress to the mean, and take most of the fixed difference DiD is there to
  remove (Daw & Hatfield, Health Serv Res 2018;53:4138). At 1m people (docs/impactability.md) weights on every
  feature gave -0.015 against a true -0.034, on the characteristics -0.030 (interval covering it).
Intervals: percentile bootstrap over people, stratified by arm (matched: over matched pairs), with the
propensity held at its fitted values (intervals are conditional on it).
Propensity (ipw and matched: every baseline feature; did_ipw: the characteristics): an L2 logistic
regression on the standardised features, with the heavy-tailed ones (non-negative counts and costs) on a
log1p scale: on their raw scale a handful of heavy users get propensities near 1 and weights that
over-correct (at 100k, max |SMD| 0.48 before weighting became 0.67 after; with log1p, 0.05). Overlap
diagnostics: the propensity's distribution per arm, the share of treated beyond the comparators' range, and
standardised mean differences of every feature before and after weighting (|SMD| < 0.1 is the usual
balance mark).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

METHODS = ("naive_difference", "naive_before_after", "ipw", "matched", "did_ipw")
CLIP = 1e-3  # propensities are clipped to [CLIP, 1 - CLIP] before they become weights


@dataclass(frozen=True)
class Trial:
    """The trial's arrays: baseline features x, treatment t, outcome y and prior (the same span before)."""

    x: pd.DataFrame
    t: np.ndarray
    y: np.ndarray
    prior: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, covariates: list[str], outcome: str = "outcome") -> Trial:
        return cls(
            frame[covariates].astype(float),
            frame["treated"].to_numpy(dtype=int),
            frame[outcome].to_numpy(dtype=float),
            frame["prior"].to_numpy(dtype=float),
        )


class LogHeavyTails(TransformerMixin, BaseEstimator):
    """log1p of the columns that were non-negative and reached beyond `above` at fit time (counts, costs)."""

    def __init__(self, above: float = 5.0):
        self.above = above

    def fit(self, x, y=None):
        values = np.asarray(x, dtype=float)
        with warnings.catch_warnings():  # an all-missing column is left as it is (the imputer fills it)
            warnings.simplefilter("ignore", RuntimeWarning)
            self.heavy_ = (np.nanmin(values, 0) >= 0) & (np.nanmax(values, 0) > self.above)
        return self

    def transform(self, x):
        values = np.array(x, dtype=float)
        values[:, self.heavy_] = np.log1p(np.clip(values[:, self.heavy_], 0, None))
        return values


def fit_propensity(x: pd.DataFrame, t: np.ndarray, seed: int):
    model = make_pipeline(
        LogHeavyTails(),
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000, random_state=seed),
    )
    return model.fit(x, t)


def characteristics(covariates: list[str], leave_out: list[str]) -> list[str]:
    """The covariates that name none of the `leave_out` patterns (shell-style, e.g. "*_12m"): what did_ipw's
    propensity balances."""
    return [c for c in covariates if not any(fnmatchcase(c, pattern) for pattern in leave_out)]


def att_weights(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """1 for the treated, e/(1-e) for comparators: the comparators reweighted to the treated's features."""
    e = np.clip(e, CLIP, 1 - CLIP)
    return np.where(t == 1, 1.0, e / (1 - e))


def smd(x: pd.DataFrame, t: np.ndarray, w: np.ndarray | None = None) -> pd.Series:
    """Standardised mean differences (treated minus comparators, pooled unweighted SD) per column."""
    w = np.ones(len(t)) if w is None else w
    values = x.to_numpy(dtype=float)
    treated, comparators = t == 1, t == 0

    def mean(rows):
        v, ww = values[rows], w[rows][:, None]
        ok = ~np.isnan(v)
        return (np.where(ok, v, 0) * ww).sum(0) / np.maximum((ok * ww).sum(0), 1e-12)

    sd = np.sqrt((np.nanvar(values[treated], 0) + np.nanvar(values[comparators], 0)) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (mean(treated) - mean(comparators)) / sd
    return pd.Series(np.where(sd > 0, out, 0.0), index=x.columns)


def overlap(e: np.ndarray, t: np.ndarray, x: pd.DataFrame) -> dict[str, float]:
    """Overlap and balance diagnostics of a fitted propensity."""
    treated, comparators = e[t == 1], e[t == 0]
    before, after = smd(x, t).abs(), smd(x, t, att_weights(t, e)).abs()
    out = {
        "treated_beyond_comparator_range": float(np.mean(treated > comparators.max())) if len(comparators) else 1.0,
        "effective_comparators": float(_effective_size(att_weights(t, e)[t == 0])),
        "max_abs_smd_before": float(before.max()),
        "max_abs_smd_after": float(after.max()),
        "features_smd_over_0.1_before": float((before > 0.1).sum()),
        "features_smd_over_0.1_after": float((after > 0.1).sum()),
    }
    for name, values in (("treated", treated), ("comparator", comparators)):
        for q in (5, 50, 95):
            out[f"propensity_{name}_p{q}"] = float(np.percentile(values, q)) if len(values) else float("nan")
    return out


def _effective_size(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / np.maximum((w**2).sum(), 1e-12))


def match(e: np.ndarray, t: np.ndarray, caliper_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """(treated rows, matched comparator rows): nearest comparator on logit(e), with replacement, within
    the caliper; treated rows without a comparator inside it are left out."""
    logit = np.log(np.clip(e, CLIP, 1 - CLIP) / (1 - np.clip(e, CLIP, 1 - CLIP)))
    treated, comparators = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    if not len(treated) or not len(comparators):
        return treated[:0], comparators[:0]
    nearest = NearestNeighbors(n_neighbors=1).fit(logit[comparators, None])
    distance, index = nearest.kneighbors(logit[treated, None])
    inside = distance[:, 0] <= caliper_sd * logit.std()
    return treated[inside], comparators[index[inside, 0]]


def did_ipw(t: np.ndarray, y: np.ndarray, prior: np.ndarray, w: np.ndarray) -> float:
    """Difference in differences on ATT weights: the treated's change from the prior span less the
    reweighted comparators' change (each person's fixed level drops out)."""
    change = y - prior
    return float(change[t == 1].mean() - np.average(change[t == 0], weights=w[t == 0]))


def _point(method: str, trial: Trial, w: np.ndarray, w_did: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> float:
    t, y, prior = trial.t, trial.y, trial.prior
    treated, comparators = t == 1, t == 0
    if method == "naive_difference":
        return float(y[treated].mean() - y[comparators].mean())
    if method == "naive_before_after":
        return float((y[treated] - prior[treated]).mean())
    if method == "ipw":
        return float(y[treated].mean() - np.average(y[comparators], weights=w[comparators]))
    if method == "did_ipw":
        return did_ipw(t, y, prior, w_did)
    if method == "matched":
        rows_t, rows_c = pairs
        return float((y[rows_t] - y[rows_c]).mean()) if len(rows_t) else float("nan")
    raise ValueError(method)


def estimate_effects(
    trial: Trial, e: np.ndarray, e_did: np.ndarray, caliper_sd: float, resamples: int, seed: int
) -> pd.DataFrame:
    """One row per method: estimate, ci_low, ci_high, treated and comparators used. e: the propensity on every
    baseline feature (ipw, matched); e_did: the propensity on the characteristics (did_ipw)."""
    if trial.t.sum() < 2 or (trial.t == 0).sum() < 2:
        raise ValueError("the trial needs at least two treated and two comparators")
    rng = np.random.default_rng(seed)
    w, w_did = att_weights(trial.t, e), att_weights(trial.t, e_did)
    pairs = match(e, trial.t, caliper_sd)
    treated, comparators = np.flatnonzero(trial.t == 1), np.flatnonzero(trial.t == 0)
    draws: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(treated, len(treated)), rng.choice(comparators, len(comparators))])
        sample = Trial(trial.x.iloc[:0], trial.t[rows], trial.y[rows], trial.prior[rows])
        pair_rows = rng.integers(0, len(pairs[0]), len(pairs[0])) if len(pairs[0]) else np.array([], int)
        resampled_pairs = (pairs[0][pair_rows], pairs[1][pair_rows])
        for method in METHODS:
            if method == "matched":
                draws[method].append(_point(method, trial, w, w_did, resampled_pairs))
            else:
                draws[method].append(_point(method, sample, w[rows], w_did[rows], pairs))
    rows_out = []
    for method in METHODS:
        low, high = np.nanpercentile(draws[method], [2.5, 97.5])
        used_t = len(pairs[0]) if method == "matched" else len(treated)
        used_c = (
            len(np.unique(pairs[1]))
            if method == "matched"
            else (0 if method == "naive_before_after" else len(comparators))
        )
        rows_out.append(
            {
                "method": method,
                "estimate": _point(method, trial, w, w_did, pairs),
                "ci_low": float(low),
                "ci_high": float(high),
                "treated": used_t,
                "comparators": used_c,
            }
        )
    return pd.DataFrame(rows_out)
