"""Uplift model training: `phm run train_impactability`.

For every spec in models/impactability/: fit the bagged learner (phm.impactability.uplift) on the
programme trial's training people (gold.programme_trial, baseline features from gold.features), measure
its Qini on the held-out people (comparators weighted by the propensity's odds), log to MLflow (params,
Qini, the Qini curve, the Delta versions, signature), register it with alias `candidate`, and promote
it to `champion` if it passes the spec's gate and beats the champion's Qini on the same held-out people.
Results go to mart.uplift_model_performance.
"""

from __future__ import annotations

import logging
from datetime import date

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from phm.errors import UserError
from phm.features.build import feature_columns
from phm.features.index_dates import validation_date
from phm.impactability.cohort import trial_with_features
from phm.impactability.uplift import (
    BaggedUplift,
    UpliftModel,
    UpliftSpec,
    load_uplift_specs,
    qini_coefficient,
    qini_curve,
    qini_standard_error,
    trial_outcomes,
)
from phm.models import plots
from phm.models.registry import CANDIDATE, CHAMPION, champion_of, champions_kept, tag_validation_date
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import move_alias, pinned_requirements, use_experiment
from phm.tables import FEATURES, PROGRAMME_TRIAL, UPLIFT_MODEL_PERFORMANCE

log = logging.getLogger("phm.jobs.train_impactability")

SPEC = JobSpec(
    name="train_impactability",
    description="the programme trial -> uplift models in MLflow (candidate; champion if it passes and wins)",
    outputs=(UPLIFT_MODEL_PERFORMANCE.name,),
    depends_on=("evaluate_programme",),
    registers_models=True,
)
EXPERIMENT = "impactability"
# What the logged uplift model imports when it is loaded (phm for its classes; econml and lightgbm lazily).
UPLIFT_REQUIREMENTS = ("phm", "econml", "lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "cloudpickle")


def trial_frame(catalog) -> pd.DataFrame:
    return trial_with_features(catalog.read(PROGRAMME_TRIAL.name), catalog.read(FEATURES.name)).toPandas()


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    specs = load_uplift_specs(config.resolve(config.impactability.models))
    if not catalog.exists(PROGRAMME_TRIAL.name):
        raise UserError("train_impactability: gold.programme_trial does not exist; run `phm run evaluate_programme`")
    use_experiment(config, EXPERIMENT)
    client = MlflowClient()
    champions_exist = all(champion_of(client, spec.registered_model) for spec, _ in specs.values())
    if ctx.unchanged_since_last_success((PROGRAMME_TRIAL.name, FEATURES.name), SPEC.outputs) and champions_exist:
        log.info("train_impactability: the trial and the specs are unchanged since the last training; nothing to do")
        ctx.rows_out = 0
        return
    features = catalog.read(FEATURES.name)
    validation = validation_date(features)
    models = [spec.registered_model for spec, _ in specs.values()]
    if champions_kept(ctx, client, models, validation, "impactability.retrain_every_months",
                      config.impactability.retrain_every_months):  # fmt: skip
        return
    frame = trial_frame(catalog)
    available = feature_columns([c for c in features.columns if c != "pcn_code"])
    train, held_out = frame[~frame["held_out"]], frame[frame["held_out"]]
    for part, name in ((train, "training"), (held_out, "held-out")):
        if part["treated"].sum() < 2 or (part["treated"] == 0).sum() < 2:
            raise UserError(
                f"train_impactability: the programme trial's {name} people have {int(part['treated'].sum())} treated; "
                "uplift models need treated and comparators in both (more history, people or referrals)"
            )
    results = [_train(ctx, client, spec, spec.select_features(available, path), train, held_out, validation)
               for spec, path in specs.values()]  # fmt: skip
    for result in results:  # promotions only once every model trained: a failed run moves no champion
        if result["promoted"]:
            move_alias(client, f"phm_{result['model_name']}", CHAMPION, result["model_version"])
    catalog.merge(UPLIFT_MODEL_PERFORMANCE.name, ctx.spark.createDataFrame(pd.DataFrame(results)))


def _qini(predicted_benefit: np.ndarray, part: pd.DataFrame) -> float:
    return qini_coefficient(predicted_benefit, *trial_outcomes(part))


def _train(ctx: JobContext, client: MlflowClient, spec: UpliftSpec, columns: list[str], train: pd.DataFrame,
           held_out: pd.DataFrame, validation: date) -> dict:  # fmt: skip
    settings = ctx.config.impactability
    tags = {"phm.run_id": ctx.run_id, "phm.environment": ctx.config.environment, "phm.model": spec.name}
    with mlflow.start_run(run_name=f"{spec.name} {ctx.run_id}", tags=tags) as run:
        model = BaggedUplift(spec, columns).fit(
            train[columns], train["treated"].to_numpy(int), train["outcome"].to_numpy(float), settings.seed,
            prior=train["prior"].to_numpy(float), did_propensity=train["did_propensity"].to_numpy(float),
        )  # fmt: skip
        predicted = model.predict(held_out[columns])
        benefit, (t, y, w) = predicted["benefit"].to_numpy(), trial_outcomes(held_out)
        qini, qini_se = qini_coefficient(benefit, t, y, w), qini_standard_error(benefit, t, y, w, seed=settings.seed)
        share, gain = qini_curve(benefit, t, y, w)
        relative = model.relative_benefits()
        mlflow.log_params({
            "learner": spec.learner, "bags": spec.bags, "features": len(columns),
            **{f"param.{k}": v for k, v in spec.params.items()},
            "train_people": len(train), "train_treated": int(train["treated"].sum()),
            "held_out_people": len(held_out), "held_out_treated": int(t.sum()),
            "data.gold.programme_trial.version": ctx.catalog.version(PROGRAMME_TRIAL.name),
            "data.gold.features.version": ctx.catalog.version(FEATURES.name),
        })  # fmt: skip
        mlflow.log_metrics({
            "qini": qini, "qini_se": qini_se, "held_out_mean_benefit": float(benefit.mean()),
            **{f"relative_benefit.{group}": value for group, value in relative.items()},
        })  # fmt: skip
        plots.log_figure(plots.qini_figure(share, gain, qini), "qini.png")
        mlflow.log_text("\n".join(columns) + "\n", "features.txt")
        example = train[columns].head(5)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=UpliftModel(model),
            signature=infer_signature(example, model.predict(example)),
            pip_requirements=pinned_requirements(*UPLIFT_REQUIREMENTS),
            registered_model_name=spec.registered_model,
        )
        version = str(info.registered_model_version)
        move_alias(client, spec.registered_model, CANDIDATE, version)
        tag_validation_date(client, spec.registered_model, version, validation)
        promoted, reason = _decide(client, spec, qini, held_out)
        mlflow.set_tag("phm.promotion_reason", reason)
        client.set_model_version_tag(spec.registered_model, version, "promotion_reason", reason)
        client.set_model_version_tag(spec.registered_model, version, "qini", f"{qini:.6f}")
        client.set_model_version_tag(spec.registered_model, version, "qini_se", f"{qini_se:.6f}")
    groups = f"; relative benefit {', '.join(f'{g} {v:.3f}' for g, v in relative.items())}" if relative else ""
    log.info("train_impactability: %s v%s (%s-learner): held-out Qini %.4f (bootstrap SE %.4f)%s; %s", spec.name,
             version, spec.learner, qini, qini_se, groups, reason)  # fmt: skip
    return {
        "model_name": spec.name, "model_version": version, "mlflow_run_id": run.info.run_id,
        "learner": spec.learner, "held_out_people": len(held_out), "held_out_treated": int(t.sum()),
        "qini": qini, "promoted": promoted, "reason": reason,
    }  # fmt: skip


def _decide(client: MlflowClient, spec: UpliftSpec, qini: float, held_out: pd.DataFrame) -> tuple[bool, str]:
    """Promote if the held-out Qini passes the gate and beats the champion's on the same held-out people."""
    if not qini >= spec.gate.min_qini:
        return False, f"held-out Qini {qini:.4f} is below the gate's min_qini {spec.gate.min_qini}"
    champion = champion_of(client, spec.registered_model)
    if champion is None:
        return True, f"passes the gate (Qini {qini:.4f}) and there is no champion yet"
    uri = f"models:/{spec.registered_model}/{champion.version}"
    try:
        theirs = _qini(mlflow.pyfunc.load_model(uri).predict(held_out)["benefit"].to_numpy(), held_out)
    except (KeyError, ValueError) as error:  # the champion needs features the table no longer has
        return True, f"passes the gate (Qini {qini:.4f}); champion v{champion.version} cannot be measured: {error}"
    if qini > theirs and qini >= theirs + spec.gate.min_improvement:
        return True, f"Qini {qini:.4f} beats champion v{champion.version}'s {theirs:.4f} on the same held-out people"
    return False, (f"Qini {qini:.4f} does not beat champion v{champion.version}'s {theirs:.4f} by min_improvement "
                   f"{spec.gate.min_improvement}")  # fmt: skip


if __name__ == "__main__":
    main_for(SPEC.name)
