"""Risk model training: `phm run train_risk`.

For every spec in models/risk/: fit on the training index dates of
gold.features, measure on the validation date (overall and by IMD quintile,
ethnicity, sex and age group), log to MLflow (params, measures, figures, the
Delta version of the features, signature), register the version with alias
`candidate`, and promote it to `champion` only if it passes the spec's gate
and beats the champion on the same validation rows (phm.models.registry).
Validation performance goes to mart.risk_model_performance.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.features.build import feature_columns
from phm.features.index_dates import TRAIN, VALIDATION, validation_date
from phm.models import plots
from phm.models.metrics import GROUPINGS, performance_by_group
from phm.models.registry import (
    CANDIDATE,
    CHAMPION,
    Decision,
    champion_auc,
    champion_of,
    champions_kept,
    decide,
    tag_validation_date,
)
from phm.models.specs import ModelSpec, load_model_specs
from phm.models.training import fit, fit_on_spark, importance, predict, spark_importance, spark_probability
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import move_alias, pinned_requirements, use_experiment
from phm.tables import FEATURES, PERFORMANCE_MEASURES, RISK_MODEL_PERFORMANCE

log = logging.getLogger("phm.jobs.train_risk")

SPEC = JobSpec(
    name="train_risk",
    description="gold.features -> risk models in MLflow (candidate, champion if it passes the gate and wins)",
    outputs=(RISK_MODEL_PERFORMANCE.name,),
    depends_on=("features",),
    registers_models=True,
)
EXPERIMENT = "risk"
# Models are saved with skops (MLflow's safe default, not pickle); it loads only the types named here.
SKOPS_TRUSTED_TYPES = {
    "lightgbm": ("collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"),
    "logistic_regression": ("numpy.dtype",),
}


@dataclass(frozen=True)
class Splits:
    """The training and validation rows of gold.features: as Spark DataFrames, and collected (pandas) when a spec
    is fitted on the driver."""

    train_rows: DataFrame
    validation_rows: DataFrame
    train: pd.DataFrame | None
    validation: pd.DataFrame | None

    def empty(self) -> bool:
        if self.train is not None:
            return self.train.empty or self.validation.empty
        return not (self.train_rows.limit(1).count() and self.validation_rows.limit(1).count())


@dataclass(frozen=True)
class Fitted:
    """A fitted model, the params it used, the search's held-out AUC, and the validation rows (label, index date,
    the groupings) with its probability `p`; what it was trained on."""

    model: Any
    params: dict[str, Any]
    searched: float | None
    validation: pd.DataFrame
    train_rows: int
    train_events: int
    train_index_dates: str


@dataclass(frozen=True)
class Trained:
    """One spec's trained version, the gate's decision (applied once every spec has trained), its measures."""

    spec: ModelSpec
    version: str
    decision: Decision
    performance: pd.DataFrame


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    specs = load_model_specs(config.resolve(config.risk.models))
    if not catalog.exists(FEATURES.name):
        raise UserError("train_risk: gold.features does not exist; run `phm run features` first")
    use_experiment(config, EXPERIMENT)
    client = MlflowClient()
    champions_exist = all(champion_of(client, spec.registered_model) for spec, _ in specs.values())
    if ctx.unchanged_since_last_success((FEATURES.name,), SPEC.outputs) and champions_exist:
        log.info("train_risk: gold.features and the model specs are unchanged since the last training; nothing to do")
        ctx.rows_out = 0
        return
    version = catalog.version(FEATURES.name)
    table = catalog.read(FEATURES.name, version=version)
    models = [spec.registered_model for spec, _ in specs.values()]
    if champions_kept(ctx, client, models, validation_date(table), "risk.retrain_every_months",
                      config.risk.retrain_every_months):  # fmt: skip
        return
    available = feature_columns(table.columns)
    # Every feature (a champion measured on the same rows may use some no spec now names), the label and what the
    # measures group by; each split collected by itself, as a mask over both would copy them (1m people: 1.86m
    # rows), and only when a spec is fitted on the driver: spark_gbt's rows stay where they are.
    kept = [c for c in table.columns if c in {"index_date", "label", *GROUPINGS, *available}]
    rows = {split: table.where(table.split == split).select(*kept) for split in (TRAIN, VALIDATION)}
    on_driver = any(not spec.trains_on_spark for spec, _ in specs.values())
    splits = Splits(*rows.values(), *((rows[s].toPandas() for s in (TRAIN, VALIDATION)) if on_driver else (None, None)))
    if splits.empty():
        raise UserError("train_risk: gold.features has no training or no validation rows; rerun `phm run features`")
    trained = [
        _train(ctx, client, spec, spec.select_features(available, path), splits, version)
        for spec, path in specs.values()
    ]
    # Promotions only once every model trained: a failed run moves no champion.
    for model in trained:
        if model.decision.promote:
            move_alias(client, model.spec.registered_model, CHAMPION, model.version)
    performance = ctx.spark.createDataFrame(pd.concat([m.performance for m in trained], ignore_index=True)).select(
        *RISK_MODEL_PERFORMANCE.schema.fieldNames()
    )
    catalog.merge(RISK_MODEL_PERFORMANCE.name, performance)


def _fit(spec: ModelSpec, columns: list[str], splits: Splits, seed: int) -> Fitted:
    """Fit one spec and predict its validation rows: on the driver (LightGBM, the baseline), or by Spark ML where
    the rows are (spark_gbt: only the label, index date, groupings and probability of the validation rows are
    collected, for the measures)."""
    measured = ["label", "index_date", *GROUPINGS]
    if spec.trains_on_spark:
        model = fit_on_spark(spec, splits.train_rows, columns, seed)
        validation = spark_probability(model, splits.validation_rows).select(*measured, F.col("probability").alias("p"))
        trained = splits.train_rows.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.col("label").cast("long")).alias("events"),
            F.array_sort(F.collect_set(F.col("index_date").cast("string"))).alias("dates"),
        ).first()
        return Fitted(model, dict(spec.params), None, validation.toPandas(), int(trained.rows),
                      int(trained.events or 0), ",".join(trained.dates))  # fmt: skip
    train, validation = splits.train, splits.validation
    y_train = train["label"].to_numpy(dtype=int)
    model, params, searched = fit(spec, train[columns], y_train, seed)
    return Fitted(model, params, searched, validation[measured].assign(p=predict(model, validation[columns])),
                  len(train), int(y_train.sum()), ",".join(sorted({str(d) for d in train["index_date"]})))  # fmt: skip


def _train(
    ctx: JobContext,
    client: MlflowClient,
    spec: ModelSpec,
    columns: list[str],
    splits: Splits,
    features_version: int,
) -> Trained:
    """Fit, measure, log and register one spec (alias candidate); the promotion decision is applied by run()."""
    config = ctx.config
    tags = {"phm.run_id": ctx.run_id, "phm.environment": config.environment, "phm.model": spec.name}
    with mlflow.start_run(run_name=f"{spec.name} {ctx.run_id}", tags=tags) as run:
        fitted = _fit(spec, columns, splits, config.risk.seed)
        model, params, searched, validation = fitted.model, fitted.params, fitted.searched, fitted.validation
        y_valid, p = validation["label"].to_numpy(dtype=int), validation["p"].to_numpy(dtype=float)
        table = performance_by_group(validation.assign(y=y_valid), GROUPINGS, spec.gate.subgroup_auc_margin)
        overall = {k: (None if pd.isna(v) else v) for k, v in table.iloc[0].to_dict().items()}  # undefined: None
        mlflow.log_params(
            {
                "algorithm": spec.algorithm,
                "features": len(columns),
                **{f"param.{k}": v for k, v in params.items()},
                "search_trials": spec.search.trials if spec.search else 0,
                "follow_up_months": config.risk.follow_up_months,
                "train_index_dates": fitted.train_index_dates,
                "validation_index_date": str(validation["index_date"].iloc[0]),
                "train_rows": fitted.train_rows,
                "train_events": fitted.train_events,
                "validation_rows": len(validation),
                "validation_events": int(y_valid.sum()),
                "data.gold.features.version": features_version,
                "data.gold.features.path": ctx.catalog.path(FEATURES.name),
            }
        )
        if searched is not None:
            mlflow.log_metric("search_holdout_auc", searched)
        mlflow.log_metrics({k: float(overall[k]) for k in PERFORMANCE_MEASURES if overall[k] is not None})
        mlflow.log_metrics(
            {
                f"{r.grouping}.{_metric_safe(r.group_value)}.{k}": float(getattr(r, k))
                for r in table.iloc[1:].itertuples()
                for k in ("auc", "calibration_slope", "calibration_intercept", "observed_rate", "mean_predicted")
                if getattr(r, k) is not None and not pd.isna(getattr(r, k))
            }
        )
        mlflow.log_text(table.to_csv(index=False), "subgroup_performance.csv")
        mlflow.log_text("\n".join(columns) + "\n", "features.txt")
        plots.log_figure(plots.roc_figure(y_valid, p, overall["auc"]), "roc.png")
        plots.log_figure(plots.calibration_figure(plots.calibration_table(y_valid, p)), "calibration.png")
        importances = spark_importance(model, columns) if spec.trains_on_spark else importance(model, columns)
        plots.log_figure(plots.importance_figure(importances), "feature_importance.png")
        flagged = table[table["flagged"]]
        flags = "; ".join(f"{r.grouping}={r.group_value} AUC {r.auc:.3f}" for r in flagged.itertuples()) or "none"
        mlflow.set_tag("phm.subgroup_flags", flags)
        if not flagged.empty:
            log.warning("train_risk: %s: subgroups more than %s AUC below the overall %.3f: %s", spec.name,
                        spec.gate.subgroup_auc_margin, overall["auc"], flags)  # fmt: skip
        info = _log_model(spec, model, columns, splits)
        version = str(info.registered_model_version)
        move_alias(client, spec.registered_model, CANDIDATE, version)
        tag_validation_date(client, spec.registered_model, version, validation["index_date"].iloc[0])
        champion = champion_of(client, spec.registered_model)
        measured = None
        if champion is not None:
            auc = champion_auc(spec.registered_model, champion.version, splits.validation_rows, splits.validation)
            measured = (champion.version, *auc)
            if measured[1] is not None:
                mlflow.log_metric("champion_auc_same_rows", measured[1])
        decision = decide(overall, spec.gate, measured)
        mlflow.set_tags({"phm.promoted": str(decision.promote).lower(), "phm.promotion_reason": decision.reason})
        client.set_model_version_tag(spec.registered_model, version, "promotion_reason", decision.reason)
        log.info(
            "train_risk: %s v%s: validation AUC %.4f, AUPRC %.4f, calibration slope %.3f, PPV top 5%% %.3f; %s: %s",
            spec.name, version, overall["auc"] or float("nan"), overall["auprc"] or float("nan"),
            overall["calibration_slope"] or float("nan"), overall["ppv_top5"] or float("nan"),
            CHAMPION if decision.promote else "stays candidate", decision.reason,
        )  # fmt: skip
    return Trained(
        spec,
        version,
        decision,
        table.assign(
            model_name=spec.name,
            model_version=version,
            mlflow_run_id=run.info.run_id,
            index_date=validation["index_date"].iloc[0],
            persons=table["persons"].astype("int64"),
            events=table["events"].astype("int64"),
        ).replace({np.nan: None}),
    )


def _metric_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]", "_", value)


def _log_model(spec: ModelSpec, model, columns: list[str], splits: Splits):
    """Log and register the model: a scikit-learn model with skops (its pyfunc is predict_proba), a Spark ML
    pipeline with MLflow's spark flavor; the signature from 200 validation rows."""
    if spec.trains_on_spark:
        sample = spark_probability(model, splits.validation_rows.select(*columns).limit(200)).toPandas()
        return mlflow.spark.log_model(
            model,
            artifact_path="model",
            signature=infer_signature(sample[columns], sample["probability"].to_numpy()),
            registered_model_name=spec.registered_model,
            pip_requirements=pinned_requirements("pyspark"),
        )
    sample = splits.validation[columns].head(200)
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(sample, model.predict_proba(sample)),
        pyfunc_predict_fn="predict_proba",
        registered_model_name=spec.registered_model,
        pip_requirements=_requirements(spec),
        skops_trusted_types=list(SKOPS_TRUSTED_TYPES[spec.algorithm]),
    )


def _requirements(spec: ModelSpec) -> list[str]:
    """The scikit-learn model's pip requirements (no inference at log time)."""
    libraries = ("scikit-learn", "numpy", "pandas", "skops")
    return pinned_requirements(*libraries, *(("lightgbm",) if spec.algorithm == "lightgbm" else ()))


if __name__ == "__main__":
    main_for(SPEC.name)
