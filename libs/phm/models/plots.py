"""Figures logged with each model: ROC curve, calibration by decile, feature importance, Qini curve."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve


def log_figure(fig, artifact_file: str) -> None:
    """Log the figure to the active MLflow run and close it: pyplot keeps every figure it made open until
    closed (a training job logs three per model)."""
    import mlflow

    try:
        mlflow.log_figure(fig, artifact_file)
    finally:
        plt.close(fig)


def roc_figure(y: np.ndarray, p: np.ndarray, auc: float | None):
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC, validation index date")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted and observed rate per decile of predicted risk."""
    frame = pd.DataFrame({"y": y, "p": p})
    frame["decile"] = pd.qcut(frame["p"].rank(method="first"), bins, labels=False) + 1
    return frame.groupby("decile").agg(persons=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))


def calibration_figure(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(table["predicted"].max(), table["observed"].max()) * 1.05
    ax.plot([0, top], [0, top], linestyle=":", color="grey")
    ax.plot(table["predicted"], table["observed"], marker="o")
    ax.set(xlabel="Mean predicted risk", ylabel="Observed rate", title="Calibration by decile of predicted risk")
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 25):
    shown = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(shown))))
    ax.barh(shown.index, shown.to_numpy())
    ax.set(xlabel="Importance", title="Feature importance")
    fig.tight_layout()
    return fig


def qini_figure(share: np.ndarray, gain: np.ndarray, qini: float):
    """The Qini curve (admissions avoided among the treated of the top share) and random targeting."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(share, gain, label=f"model (Qini {qini:.4f})")
    ax.plot([0, 1], [0, gain[-1]], linestyle=":", color="grey", label="random")
    ax.set(xlabel="Share targeted (highest predicted benefit first)", ylabel="Admissions avoided among the treated",
           title="Qini curve, held-out people")  # fmt: skip
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
