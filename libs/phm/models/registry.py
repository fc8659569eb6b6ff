"""The MLflow model registry: each spec's registered model, its `candidate` and `champion` aliases, and the gate.

Every trained version gets the alias `candidate`. It becomes `champion` only
if it passes the spec's gate (AUC, calibration slope) and beats the current
champion's AUC, measured on the same validation rows, by at least
min_improvement. The reason is recorded either way (run tag and model
version tag), so a data scientist can see why a model was or was not promoted.

Retraining follows a cadence, as a scheduled platform retrains: a version is
tagged with the validation index date it was measured at, and a refresh whose
configuration is unchanged but whose data moved on keeps the champions until
the validation date is `retrain_every_months` past the oldest champion's
(`retraining_due`); a changed configuration or model spec, or a missing
champion, always trains.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from phm.features.index_dates import months_between
from phm.models.specs import Gate

log = logging.getLogger(__name__)

CANDIDATE, CHAMPION = "candidate", "champion"
# Model version tag: the validation index date of the data the version was trained and measured on.
VALIDATION_DATE_TAG = "validation_index_date"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    champion_auc: float | None = None


def champion_of(client: MlflowClient, registered_model: str):
    """The champion ModelVersion of a registered model, or None."""
    try:
        return client.get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException:
        return None


def tag_validation_date(client: MlflowClient, registered_model: str, version: str, validation: date) -> None:
    client.set_model_version_tag(registered_model, version, VALIDATION_DATE_TAG, str(validation)[:10])


def champions_kept(
    ctx, client: MlflowClient, registered_models: list[str], validation: date, setting: str, every_months: int
) -> bool:
    """True (logged, no rows out) when a job whose inputs changed may keep its champions: its configuration is the
    one it last succeeded with and no champion is due for retraining (`retraining_due`, every `setting`
    months); else False, having logged why it trains."""
    if not ctx.config_unchanged_since_last_success():
        return False
    due = retraining_due(client, registered_models, validation, every_months)
    if due is not None:
        log.info("%s: retraining: %s (%s %d)", ctx.job, due, setting, every_months)
        return False
    log.info("%s: only the data moved on (validation date %s): every champion was measured fewer than %d month(s) "
             "before it, so they are kept, not retrained (%s)", ctx.job, validation, every_months, setting)  # fmt: skip
    ctx.rows_out = 0
    return True


def retraining_due(
    client: MlflowClient, registered_models: list[str], validation: date, every_months: int
) -> str | None:
    """Why the champions of `registered_models` must be retrained on data whose validation index date is
    `validation`, or None when each was measured fewer than `every_months` months before it (0: always due)."""
    if every_months == 0:
        return "retrain_every_months is 0"
    for model in sorted(registered_models):
        champion = champion_of(client, model)
        if champion is None:
            return f"{model} has no champion"
        measured = (champion.tags or {}).get(VALIDATION_DATE_TAG)
        if measured is None:
            return f"{model}'s champion v{champion.version} records no validation date"
        age = months_between(date.fromisoformat(measured), validation)
        if age >= every_months:
            return (f"{model}'s champion v{champion.version} was measured at {measured}, {age} month(s) before "
                    f"{validation}")  # fmt: skip
    return None


def champions_of(client: MlflowClient, registered: dict[str, str]) -> dict:
    """{name: champion ModelVersion} for each of `registered` (name -> registered model) that has a champion."""
    found = {name: champion_of(client, model) for name, model in registered.items()}
    return {name: version for name, version in found.items() if version is not None}


def champion_predictions(champions: dict, registered: dict[str, str], frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{name: the champion's pyfunc predictions on `frame`} for `champions` (champions_of's answer). The models
    predict side by side, a thread each up to the cores (their LightGBM learners run single-threaded in native
    code, which releases the GIL): at 1m the four uplift models took 9.1 s on the held-out trial one after
    another, 5.8 s on two cores."""
    import mlflow

    models = {name: mlflow.pyfunc.load_model(f"models:/{registered[name]}/{version.version}")
              for name, version in champions.items()}  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, min(len(models), os.cpu_count() or 1))) as pool:
        predicted = {name: pool.submit(model.predict, frame) for name, model in models.items()}
    return {name: future.result() for name, future in predicted.items()}


def model_inputs(model_uri: str) -> list[str]:
    """The input column names of a logged model's signature."""
    from mlflow.models import get_model_info

    return get_model_info(model_uri).signature.inputs.input_names()


def is_spark_model(model_uri: str) -> bool:
    """The logged model is a Spark ML pipeline (MLflow's spark flavor: spark_gbt), which Spark serves."""
    from mlflow.models import get_model_info

    return "spark" in get_model_info(model_uri).flavors


def champion_auc(
    registered_model: str, champion_version: str, rows, local: pd.DataFrame | None = None
) -> tuple[float | None, str]:
    """The champion's AUC on the validation rows (`rows`, a Spark DataFrame with `label`; `local`: the same rows
    already collected, for a model the driver scores), or (None, why it cannot be measured)."""
    import mlflow
    from sklearn.metrics import roc_auc_score

    from phm.models.training import spark_probability

    uri = f"models:/{registered_model}/{champion_version}"
    inputs = model_inputs(uri)
    missing = [c for c in inputs if c not in rows.columns]
    if missing:
        return None, f"champion v{champion_version} needs features gold.features no longer has: {missing[:5]}"
    if is_spark_model(uri):
        scored = spark_probability(mlflow.spark.load_model(uri), rows.select(*inputs, "label"))
        scored = scored.select("label", "probability").toPandas()
        return float(roc_auc_score(scored["label"].astype(int), scored["probability"])), ""
    frame = local if local is not None else rows.select(*inputs, "label").toPandas()
    probabilities = mlflow.sklearn.load_model(uri).predict_proba(frame[inputs])[:, 1]
    return float(roc_auc_score(frame["label"].astype(int), probabilities)), ""


def decide(metrics: dict, gate: Gate, champion: tuple[str, float | None, str] | None) -> Decision:
    """Whether a candidate with validation `metrics` becomes champion; champion = (version, auc, why unmeasured)."""
    auc, slope = metrics.get("auc"), metrics.get("calibration_slope")
    low, high = gate.calibration_slope
    if auc is None or auc < gate.min_auc:
        return Decision(False, f"validation AUC {_fmt(auc)} is below the gate's min_auc {gate.min_auc}")
    if slope is None or not low <= slope <= high:
        return Decision(False, f"calibration slope {_fmt(slope)} is outside the gate's range [{low}, {high}]")
    if champion is None:
        return Decision(True, f"passes the gate (AUC {auc:.4f}, slope {slope:.3f}) and there is no champion yet")
    version, their_auc, unmeasured = champion
    if their_auc is None:
        return Decision(True, f"passes the gate (AUC {auc:.4f}, slope {slope:.3f}); {unmeasured}")
    if auc >= their_auc + gate.min_improvement and auc > their_auc:
        return Decision(
            True, f"AUC {auc:.4f} beats champion v{version}'s {their_auc:.4f} on the same validation rows", their_auc
        )
    return Decision(
        False,
        f"AUC {auc:.4f} does not beat champion v{version}'s {their_auc:.4f} by min_improvement "
        f"{gate.min_improvement} on the same validation rows",
        their_auc,
    )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"
