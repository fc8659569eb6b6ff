"""Rates, proportions and directly age-standardised rates with their confidence intervals.

Sources:
- European Standard Population 2013 (Eurostat, "Revision of the European Standard Population", 2013): 19
  five-year bands to 90+, 100,000 people; 0 and 1-4 merged into 0-4 (5,000).
- Directly standardised rates and their intervals: the Dobson method (Dobson et al., Stat Med
  1991;10:457), as in the Office for Health Improvement and Disparities' Fingertips technical guidance:
  DSR = sum(w_i O_i / n_i) / sum(w_i); var = sum(w_i^2 O_i / n_i^2) / sum(w_i)^2;
  limits = DSR + sqrt(var / O) x (O_limit - O), with O_limit the exact Poisson limits of O = sum(O_i).
- Proportions: Wilson score interval (Wilson, JASA 1927;22:209); counts: exact Poisson (Garwood 1936).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

ESP2013 = (
    5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
    7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000,
)  # fmt: skip
ESP_BANDS = len(ESP2013)  # band b covers ages 5b to 5b + 4; the last is 90+


def esp_band(age: int) -> int:
    """The ESP 2013 band (0-18) of an age in years."""
    return min(max(int(age), 0) // 5, ESP_BANDS - 1)


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def poisson_limits(observed, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) limits of a Poisson count, via the chi-squared distribution."""
    o = np.asarray(observed, dtype=float)
    alpha = 1 - confidence
    low = np.where(o > 0, stats.chi2.ppf(alpha / 2, 2 * o) / 2, 0.0)
    high = stats.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2
    return low, high


def wilson_interval(successes, trials, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion; NaN where there are no trials."""
    x, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    z = _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # clipped: at 0 or n successes the bound is the proportion itself, up to rounding
    return np.clip(centre - half, 0.0, p), np.clip(centre + half, p, 1.0)


def rate_interval(events, people, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Interval of a crude rate events / people (exact Poisson on the events)."""
    low, high = poisson_limits(events, confidence)
    n = np.asarray(people, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return low / n, high / n


def directly_standardised(observed, people, weights, confidence: float = 0.95):
    """(DSR, low, high, standard error) per person (multiply for per 100 or per 1,000) of a group from its age bands'
    observed events and people (the last axis), standardised to `weights` (e.g. ESP2013 by esp_band): floats for
    one group's bands, arrays of one value per group for rows of groups. Bands without people contribute no
    events and their weight is kept (the standard's total), as Fingertips does; a group with no events has DSR 0
    and an upper limit from the Poisson limit of zero over its people."""
    o, n, w = (np.asarray(v, dtype=float) for v in (observed, people, weights))
    with np.errstate(invalid="ignore", divide="ignore"):
        band_rates = np.where(n > 0, o / n, 0.0)
        band_var = np.where(n > 0, o / (n * n), 0.0)
    total = w.sum()
    dsr = (w * band_rates).sum(axis=-1) / total
    variance = (w * w * band_var).sum(axis=-1) / total**2
    observed_total, people_total = o.sum(axis=-1), n.sum(axis=-1)
    low_o, high_o = poisson_limits(observed_total, confidence)
    some = observed_total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(variance / observed_total)
        # With no events the Dobson form has no variance to scale: the exact limit over the group's people.
        zero_high = np.where(people_total > 0, high_o / people_total, np.nan)
    low = np.where(some, dsr + scale * (low_o - observed_total), 0.0)
    high = np.where(some, dsr + scale * (high_o - observed_total), zero_high)
    figures = (np.where(some, dsr, 0.0), low, high, np.where(some, np.sqrt(variance), 0.0))
    return tuple(float(f) for f in figures) if o.ndim == 1 else figures
