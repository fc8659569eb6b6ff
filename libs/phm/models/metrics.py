"""How well a risk model does on a set of people: discrimination, calibration and the top of the list.

- AUC (ROC) and AUPRC (average precision); Brier score.
- Calibration slope: the slope of the logistic recalibration of the outcome
  on the predicted log-odds (1 is ideal; below 1, predictions too extreme);
  calibration intercept: calibration-in-the-large, the intercept with the
  predicted log-odds as an offset (0 is ideal; above 0, risk under-predicted).
  Van Calster B et al. Calibration: the Achilles heel of predictive analytics.
  BMC Med 2019;17:230.
- PPV and sensitivity in the top 1 / 5 / 10% by predicted risk: what a case
  finder working down the list would see.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

TOP_PERCENTS = (1, 5, 10)
EPSILON = 1e-6
GROUPINGS = ("imd_quintile", "ethnicity", "sex", "age_group")
ALL = "all"


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def calibration_in_the_large(y: np.ndarray, log_odds: np.ndarray) -> float:
    """The intercept a with logit P(y) = a + log_odds (Newton's method on the one-parameter likelihood)."""
    a = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-(a + log_odds)))
        step = (y - p).sum() / max((p * (1 - p)).sum(), EPSILON)
        a += step
        if abs(step) < 1e-10:
            break
    return float(a)


def calibration_slope(y: np.ndarray, log_odds: np.ndarray) -> float:
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(log_odds.reshape(-1, 1), y)
    return float(model.coef_[0][0])


def performance(y: np.ndarray, p: np.ndarray) -> dict[str, float | int | None]:
    """Every measure for outcomes `y` (0/1) and predicted probabilities `p`; None where undefined."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    n, events = len(y), int(y.sum())
    out: dict[str, float | int | None] = {"persons": n, "events": events}
    both = 0 < events < n
    out["auc"] = float(roc_auc_score(y, p)) if both else None
    out["auprc"] = float(average_precision_score(y, p)) if both else None
    out["brier"] = float(brier_score_loss(y, p)) if n else None
    log_odds = logit(p)
    out["calibration_slope"] = calibration_slope(y, log_odds) if both else None
    out["calibration_intercept"] = calibration_in_the_large(y, log_odds) if both else None
    out["mean_predicted"] = float(p.mean()) if n else None
    out["observed_rate"] = events / n if n else None
    order = np.argsort(-p, kind="stable")
    for percent in TOP_PERCENTS:
        top = order[: max(1, math.ceil(n * percent / 100))] if n else order
        hits = int(y[top].sum())
        out[f"ppv_top{percent}"] = hits / len(top) if len(top) else None
        out[f"sensitivity_top{percent}"] = hits / events if events else None
    return out


def performance_by_group(frame: pd.DataFrame, groupings=GROUPINGS, margin: float = 0.03) -> pd.DataFrame:
    """One row per grouping x group value (and `all`) from columns y, p and the groupings; `flagged` marks a
    group whose AUC is more than `margin` below the overall AUC."""
    rows = [{"grouping": ALL, "group_value": ALL, **performance(frame["y"].to_numpy(), frame["p"].to_numpy())}]
    for grouping in groupings:
        values = frame[grouping].astype("string").fillna("unknown")
        for value, part in frame.groupby(values, sort=True):
            rows.append({"grouping": grouping, "group_value": str(value), **performance(part["y"], part["p"])})
    table = pd.DataFrame(rows)
    overall = rows[0]["auc"]
    below = table["auc"].astype(float) < overall - margin if overall is not None else False
    table["flagged"] = table["auc"].notna() & below
    return table
