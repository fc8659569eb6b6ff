"""Slope and relative index of inequality across deprivation deciles.

Source: the Office for Health Improvement and Disparities' method (Public Health England, "Slope index of
inequality (SII) and relative index of inequality (RII)", Fingertips technical guidance; Low & Low, J
Public Health 2004;26:229 for the simulated intervals). Deciles are ordered from least to most deprived
(IMD decile 10 to 1) and each is placed at the midpoint of its cumulative population share (its ridit);
the value of each decile is regressed on that position by least squares weighted by the decile's
population. Here the SII is the fitted value at the most deprived end minus that at the least deprived
end (positive: higher in the more deprived), the RII the SII over the population-weighted mean. The 95%
interval comes from `simulations` draws of every decile's value from a normal with its standard error,
refitted each time (percentiles), seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Inequality:
    sii: float
    sii_low: float
    sii_high: float
    rii: float
    rii_low: float
    rii_high: float
    mean: float
    deciles: int


def ridits(people: np.ndarray) -> np.ndarray:
    """Midpoints of each group's cumulative population share, in the order given."""
    share = np.asarray(people, dtype=float) / np.sum(people)
    return np.cumsum(share) - share / 2


def _fit(position: np.ndarray, values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SII, mean) of each row of `values` (draws x deciles): weighted least-squares slope on position."""
    w = weights / weights.sum()
    mean_x = (w * position).sum()
    mean_y = values @ w
    slope = ((values - mean_y[:, None]) * (position - mean_x)) @ w / ((w * (position - mean_x) ** 2).sum())
    return slope, mean_y


def slope_index(
    decile: np.ndarray, people: np.ndarray, value: np.ndarray, standard_error: np.ndarray,
    simulations: int = 1000, seed: int = 0, confidence: float = 0.95,
) -> Inequality:  # fmt: skip
    """SII and RII of `value` across IMD deciles (1 most deprived .. 10 least), with simulated intervals.
    Deciles without people are left out; fewer than 3 deciles give NaN (no gradient to fit)."""
    decile, people, value, se = (np.asarray(a, dtype=float) for a in (decile, people, value, standard_error))
    keep = (people > 0) & np.isfinite(value)
    order = np.argsort(-decile[keep])  # least deprived (10) first: position 1 is the most deprived end
    people, value, se = people[keep][order], value[keep][order], np.nan_to_num(se[keep][order])
    if len(people) < 3:
        nan = float("nan")
        return Inequality(nan, nan, nan, nan, nan, nan, nan, len(people))
    position = ridits(people)
    (sii,), (mean,) = _fit(position, value[None, :], people)
    draws = np.random.default_rng(seed).normal(value, se, size=(simulations, len(value)))
    sii_draws, mean_draws = _fit(position, draws, people)
    with np.errstate(invalid="ignore", divide="ignore"):
        rii_draws = sii_draws / mean_draws
    tail = 100 * (1 - confidence) / 2
    sii_low, sii_high = np.percentile(sii_draws, [tail, 100 - tail])
    finite = rii_draws[np.isfinite(rii_draws)]  # a draw with a zero mean has no relative index
    rii_low, rii_high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
    return Inequality(
        float(sii), float(sii_low), float(sii_high), float(sii / mean) if mean else float("nan"),
        float(rii_low), float(rii_high), float(mean), len(people),
    )  # fmt: skip
