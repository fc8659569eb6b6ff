"""Fitting a risk model from its spec: LightGBM or a logistic-regression baseline, with an optional optuna search,
or Spark ML's gradient-boosted trees for data that outgrows one node.

LightGBM and the baseline are scikit-learn estimators (LightGBM through its
scikit-learn API), fitted on the driver, so MLflow logs, registers and
serves them the same way (predict_proba). The search tunes on a seeded,
stratified 20% of the training rows held out; the validation index date is
never seen until the model is measured on it.

`spark_gbt` is a Spark ML pipeline (the features cast to double, a missing
value as a value below every other, assembled, GBTClassifier) fitted on the
training rows where they are, logged with MLflow's spark flavor and served by
Spark (`spark_probability`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from phm.models.specs import ModelSpec

log = logging.getLogger(__name__)
SEARCH_HOLDOUT = 0.2
# spark_gbt: a missing feature value. Below every value a feature takes (counts, costs, scores, flags), so a
# tree splits the missing off on one side, as LightGBM sends them one way.
MISSING = -1.0e9


def make_estimator(spec: ModelSpec, params: dict[str, Any], seed: int):
    if spec.algorithm == "lightgbm":
        from lightgbm import LGBMClassifier

        fixed = {"objective": "binary", "random_state": seed, "deterministic": True, "force_row_wise": True,
                 "verbose": -1}  # fmt: skip
        return LGBMClassifier(**(fixed | params))
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(**({"random_state": seed} | params))),
        ]
    )


def search_params(spec: ModelSpec, x: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[dict[str, Any], float]:
    """The best params from the spec's search space (its fixed params underneath) and their held-out AUC."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fit_x, tune_x, fit_y, tune_y = train_test_split(x, y, test_size=SEARCH_HOLDOUT, stratify=y, random_state=seed)

    def objective(trial: optuna.Trial) -> float:
        tried = {
            name: (trial.suggest_int if d.type == "int" else trial.suggest_float)(
                name, int(d.low) if d.type == "int" else d.low, int(d.high) if d.type == "int" else d.high, log=d.log
            )
            for name, d in spec.search.space.items()
        }
        model = make_estimator(spec, spec.params | tried, seed).fit(fit_x, fit_y)
        return float(roc_auc_score(tune_y, model.predict_proba(tune_x)[:, 1]))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=spec.search.trials)
    return spec.params | study.best_params, float(study.best_value)


def fit(spec: ModelSpec, x: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[Any, dict[str, Any], float | None]:
    """(fitted estimator, the params it used, the search's held-out AUC or None)."""
    if len(np.unique(y)) < 2:
        raise ValueError(f"{spec.name}: the training rows have only one outcome; no model can be trained")
    params, searched = dict(spec.params), None
    if spec.search is not None:
        params, searched = search_params(spec, x, y, seed)
        log.info(
            "%s: search over %d trials: held-out AUC %.4f with %s", spec.name, spec.search.trials, searched, params
        )
    return make_estimator(spec, params, seed).fit(x, y), params, searched


def predict(model, x: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(x)[:, 1]


def importance(model, features: list[str]) -> pd.Series:
    """Gain importance (LightGBM) or the absolute standardised coefficient (logistic regression), descending."""
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    else:
        values = np.abs(model.named_steps["model"].coef_[0])
    return pd.Series(values, index=features, dtype=float).sort_values(ascending=False)


def fit_on_spark(spec: ModelSpec, rows, columns: list[str], seed: int):
    """A Spark ML PipelineModel fitted on `rows` (a Spark DataFrame with `columns` and `label`) where they are:
    nothing is collected to the driver."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import SQLTransformer, VectorAssembler
    from pyspark.sql import functions as F

    if rows.select("label").distinct().limit(2).count() < 2:
        raise ValueError(f"{spec.name}: the training rows have only one outcome; no model can be trained")
    numeric = [f"_feature_{i}" for i in range(len(columns))]
    cast = ", ".join(
        f"COALESCE(CAST(`{c}` AS DOUBLE), {MISSING}) AS {n}" for c, n in zip(columns, numeric, strict=True)
    )
    trees = GBTClassifier(
        featuresCol="_features", labelCol="_label", predictionCol="_prediction", seed=seed, **spec.params
    )
    pipeline = Pipeline(
        stages=[
            SQLTransformer(statement=f"SELECT *, {cast} FROM __THIS__"),
            VectorAssembler(inputCols=numeric, outputCol="_features"),
            trees.setProbabilityCol("_probability").setRawPredictionCol("_raw"),
        ]
    )
    return pipeline.fit(rows.select(*columns, F.col("label").cast("double").alias("_label")))


def spark_probability(model, frame):
    """`frame` with `probability`, the positive class's, from a Spark ML model (fit_on_spark's): Spark scores
    it where the rows are."""
    from pyspark.ml.functions import vector_to_array

    return model.transform(frame).select(*frame.columns, vector_to_array("_probability")[1].alias("probability"))


def spark_importance(model, features: list[str]) -> pd.Series:
    """The trees' feature importances (Spark ML's: gain-based, normalised), descending."""
    values = model.stages[-1].featureImportances.toArray()
    return pd.Series(values, index=features, dtype=float).sort_values(ascending=False)
