"""Evaluation of the historical programme: `phm run evaluate_programme`.

Builds the emulated trial of the programme (phm.impactability.cohort) into gold.programme_trial, fits
the propensity of enrolment on the baseline features (and, for the difference in differences, on the
characteristics alone: phm.impactability.effects), checks overlap and balance (mart.programme_balance,
MLflow), and estimates the average effect on the treated five ways with 95% bootstrap intervals
(phm.impactability.effects) into mart.programme_evaluation; every referral is accounted for by its role.
"""

from __future__ import annotations

import logging
from datetime import date

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.features.build import feature_columns
from phm.features.index_dates import SCORE
from phm.impactability.cohort import REFERRAL_ROLES, build_trial, plan_trial, referrals
from phm.impactability.effects import (
    Trial,
    att_weights,
    characteristics,
    estimate_effects,
    fit_propensity,
    overlap,
    smd,
)
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import tracked_run
from phm.tables import EVENTS, FEATURES, PROGRAMME_BALANCE, PROGRAMME_EVALUATION, PROGRAMME_TRIAL

log = logging.getLogger("phm.jobs.evaluate_programme")

SPEC = JobSpec(
    name="evaluate_programme",
    description="the historical programme as a trial -> its effect on the treated (naive, IPW, matched, DiD)",
    outputs=(PROGRAMME_TRIAL.name, PROGRAMME_EVALUATION.name, PROGRAMME_BALANCE.name),
    depends_on=("features",),
)
EXPERIMENT = "impactability"


def run(ctx: JobContext) -> None:
    config, catalog, spark = ctx.config, ctx.catalog, ctx.spark
    settings = config.impactability
    for needed, stage in ((FEATURES.name, "features"), (EVENTS.name, "build_person_model")):
        if not catalog.exists(needed):
            raise UserError(f"evaluate_programme: {needed} does not exist; run `phm run {stage}` first")
    if ctx.unchanged_since_last_success((FEATURES.name, EVENTS.name), SPEC.outputs):
        log.info("evaluate_programme: features and events are unchanged since the last evaluation; nothing to do")
        ctx.rows_out = 0
        return
    features, events = catalog.read(FEATURES.name), catalog.read(EVENTS.name)
    referred = referrals(events, settings.programme_source).cache()
    dates = sorted({r.index_date: r.split for r in features.select("index_date", "split").distinct().collect()}.items())
    scoring = next(d for d, split in dates if split == SCORE)
    first_referral = referred.agg(F.min("referral_date")).first()[0]
    plan = plan_trial([d for d, split in dates if split != SCORE], scoring, config.risk.follow_up_months,
                      first_referral)  # fmt: skip
    baseline = features.where(F.col("index_date") == F.lit(plan.baseline))
    trial, roles = build_trial(baseline, events, referred, plan, settings.eligible, settings.seed)
    accounting = {r.role: r["count"] for r in roles.groupBy("role").count().collect()}
    log.info("evaluate_programme: baseline %s, recruitment to %s; %d referrals: %s", plan.baseline, plan.window_end,
             sum(accounting.values()), ", ".join(f"{k} {accounting.get(k, 0)}" for k in REFERRAL_ROLES))  # fmt: skip
    frame = trial.toPandas()
    referred.unpersist()
    covariates = feature_columns(list(baseline.columns))
    treated = int(frame["treated"].sum())
    if treated < 2 or len(frame) - treated < 2:
        raise UserError(
            f"evaluate_programme: the trial at {plan.baseline} has {treated} treated and {len(frame) - treated} "
            f"comparators (referrals: {accounting}); it needs at least two of each"
        )
    trial_arrays = Trial.of(frame, covariates)
    x, t = trial_arrays.x, trial_arrays.t
    balanced_by_did = characteristics(covariates, settings.did_leaves_out)
    if not balanced_by_did:
        raise UserError(f"evaluate_programme: impactability.did_leaves_out {settings.did_leaves_out} leaves none "
                        "of gold.features' columns for the difference-in-differences' propensity")  # fmt: skip
    propensity = _propensity(x, t, settings.seed)
    did_propensity = _propensity(x[balanced_by_did], t, settings.seed)
    diagnostics = overlap(propensity, t, x)
    # The DiD's weights against every feature: how much prior use they leave to the DiD.
    did_diagnostics = overlap(did_propensity, t, x)
    with tracked_run(config, EXPERIMENT, ctx.run_id) as run:
        estimates = estimate_effects(
            trial_arrays, propensity, did_propensity, settings.caliper_sd, settings.bootstrap, settings.seed
        )
        mlflow.log_params(
            {
                "baseline_date": str(plan.baseline),
                "recruitment_end": str(plan.window_end),
                "follow_up_months": plan.follow_up_months,
                "eligible": settings.eligible,
                "covariates": len(covariates),
                "did_covariates": len(balanced_by_did),
                "did_leaves_out": " ".join(settings.did_leaves_out),
                "bootstrap": settings.bootstrap,
                "caliper_sd": settings.caliper_sd,
                "data.gold.features.version": catalog.version(FEATURES.name),
                "data.gold.events.version": catalog.version(EVENTS.name),
            }
        )
        mlflow.log_metrics({"trial_people": len(frame), "trial_treated": treated, **diagnostics})
        mlflow.log_metrics({f"did.{name}": value for name, value in did_diagnostics.items()})
        mlflow.log_metrics({f"referrals.{role}": float(accounting.get(role, 0)) for role in REFERRAL_ROLES})
        for row in estimates.itertuples():
            mlflow.log_metrics({f"{row.method}.estimate": row.estimate, f"{row.method}.ci_low": row.ci_low,
                                f"{row.method}.ci_high": row.ci_high})  # fmt: skip
        mlflow_run_id = run.info.run_id
    for row in estimates.itertuples():
        log.info("evaluate_programme: %s: %+.4f (95%% CI %+.4f to %+.4f; %d treated, %d comparators)",
                 row.method, row.estimate, row.ci_low, row.ci_high, row.treated, row.comparators)  # fmt: skip
    log.info("evaluate_programme: propensity overlap: %.1f%% of treated beyond the comparators' range; max |SMD| "
             "%.3f before weighting, %.3f after", 100 * diagnostics["treated_beyond_comparator_range"],
             diagnostics["max_abs_smd_before"], diagnostics["max_abs_smd_after"])  # fmt: skip
    balance = pd.DataFrame({"smd_before": smd(x, t), "smd_after": smd(x, t, att_weights(t, propensity)),
                            "smd_after_did": smd(x, t, att_weights(t, did_propensity))})  # fmt: skip
    log.info("evaluate_programme: the DiD's propensity on %d of the %d features (left out: %s): max |SMD| %.3f over "
             "them after its weights, %.3f over every feature", len(balanced_by_did), len(covariates),
             " ".join(settings.did_leaves_out), balance.loc[balanced_by_did, "smd_after_did"].abs().max(),
             did_diagnostics["max_abs_smd_after"])  # fmt: skip
    trial_rows = _trial_rows(frame, propensity, did_propensity, plan.baseline, settings)
    catalog.overwrite(PROGRAMME_TRIAL.name, spark.createDataFrame(trial_rows))
    catalog.overwrite(PROGRAMME_BALANCE.name, spark.createDataFrame(balance.rename_axis("feature").reset_index()))
    result = estimates.assign(
        baseline_date=plan.baseline, follow_up_months=plan.follow_up_months, mlflow_run_id=mlflow_run_id
    )
    catalog.overwrite(
        PROGRAMME_EVALUATION.name,
        spark.createDataFrame(result[list(PROGRAMME_EVALUATION.schema.fieldNames())], PROGRAMME_EVALUATION.schema),
    )


def _propensity(x: pd.DataFrame, t: np.ndarray, seed: int) -> np.ndarray:
    return fit_propensity(x, t, seed).predict_proba(x)[:, 1]


def _trial_rows(
    frame: pd.DataFrame, propensity: np.ndarray, did_propensity: np.ndarray, baseline: date, settings
) -> pd.DataFrame:
    """gold.programme_trial: the trial's people, outcomes and propensities; a seeded held-out share by person."""
    held_out = pd.util.hash_pandas_object(frame["person_id"] + str(settings.seed), index=False).to_numpy()
    kept = ["person_id", "role", "treated", "time_zero", "outcome", "outcome_count", "prior", "prior_count", "pcn_code"]
    return frame[kept].assign(
        baseline_date=baseline,
        propensity=propensity,
        did_propensity=did_propensity,
        held_out=(held_out % 1000) < settings.held_out_share * 1000,
    )


if __name__ == "__main__":
    main_for(SPEC.name)
