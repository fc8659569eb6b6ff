"""A risk model against the synthetic truth store (evaluation only: the pipeline never reads the truth).

The generator knows each person's true 12-month probability of an emergency
admission (constant over the history). For a follow-up of h months the true
probability is 1 - (1 - p12)^(h/12) (a constant rate). The oracle AUC is the
AUC of the true probabilities against the observed outcomes on the same
people: the best any model could do, given the outcome's randomness.
Calibration against the true risk: the slope and intercept of the true
log-odds regressed on the predicted (1 and 0 when the model's probabilities
are the true ones), and the mean absolute difference between mean predicted
and mean true risk over deciles of predicted risk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from phm.models.metrics import logit


def true_person_of(links: DataFrame, record_truth: DataFrame) -> DataFrame:
    """person_id -> true_person_id: the true person most of the person's records belong to (ties: the lowest id)."""
    counts = (
        links.select("source", "record_id", "person_id")
        .join(record_truth.select("source", "record_id", "true_person_id"), ["source", "record_id"])
        .groupBy("person_id", "true_person_id")
        .agg(F.count(F.lit(1)).alias("records"))
    )
    return counts.groupBy("person_id").agg(
        F.min_by("true_person_id", F.struct(-F.col("records"), F.col("true_person_id"))).alias("true_person_id")
    )


def true_probability(p_12_months: pd.Series | np.ndarray, follow_up_months: int) -> np.ndarray:
    return 1 - np.power(1 - np.asarray(p_12_months, dtype=float), follow_up_months / 12)


def oracle_measures(y: np.ndarray, predicted: np.ndarray, true_risk: np.ndarray) -> dict[str, float | None]:
    """Model and oracle AUC on the same people, and calibration of the predictions against the true risk."""
    y, predicted, true_risk = (np.asarray(a, dtype=float) for a in (y, predicted, true_risk))
    both = 0 < y.sum() < len(y)
    model_auc = float(roc_auc_score(y, predicted)) if both else None
    oracle_auc = float(roc_auc_score(y, true_risk)) if both else None
    out: dict[str, float | None] = {
        "model_auc": model_auc,
        "oracle_auc": oracle_auc,
        "auc_gap": oracle_auc - model_auc if both else None,
        "mean_predicted": float(predicted.mean()) if len(y) else None,
        "mean_true_risk": float(true_risk.mean()) if len(y) else None,
    }
    if len(y) >= 10:
        slope, intercept = np.polyfit(logit(predicted), logit(true_risk), 1)
        out["slope_vs_true_risk"], out["intercept_vs_true_risk"] = float(slope), float(intercept)
        deciles = pd.qcut(pd.Series(predicted).rank(method="first"), 10, labels=False)
        by_decile = pd.DataFrame({"d": deciles, "p": predicted, "t": true_risk}).groupby("d").mean()
        out["decile_mean_abs_error"] = float((by_decile["p"] - by_decile["t"]).abs().mean())
    else:
        out["slope_vs_true_risk"] = out["intercept_vs_true_risk"] = out["decile_mean_abs_error"] = None
    return out
