"""Evaluation of the historical programme: `phm run evaluate_programme`.

Builds the emulated trial of the programme (phm.impactability.cohort) into gold.programme_trial, fits
the propensity of enrolment on the baseline features, checks overlap and balance (mart.programme_balance,
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
from phm.impactability.effects import Trial, att_weights, estimate_effects, fit_propensity, overlap, smd
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
    propensity = fit_propensity(trial_arrays.x, trial_arrays.t, settings.seed).predict_proba(trial_arrays.x)[:, 1]
    diagnostics = overlap(propensity, trial_arrays.t, trial_arrays.x)
    with tracked_run(config, EXPERIMENT, ctx.run_id) as run:
        estimates = estimate_effects(trial_arrays, propensity, settings.caliper_sd, settings.bootstrap, settings.seed)
        mlflow.log_params(
            {
                "baseline_date": str(plan.baseline),
                "recruitment_end": str(plan.window_end),
                "follow_up_months": plan.follow_up_months,
                "eligible": settings.eligible,
                "covariates": len(covariates),
                "bootstrap": settings.bootstrap,
                "caliper_sd": settings.caliper_sd,
                "data.gold.features.version": catalog.version(FEATURES.name),
                "data.gold.events.version": catalog.version(EVENTS.name),
            }
        )
        mlflow.log_metrics({"trial_people": len(frame), "trial_treated": treated, **diagnostics})
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
    catalog.overwrite(PROGRAMME_TRIAL.name, spark.createDataFrame(_trial_rows(frame, propensity, plan.baseline,
                                                                              settings)))  # fmt: skip
    weights_after = att_weights(trial_arrays.t, propensity)
    balance = pd.DataFrame({"smd_before": smd(trial_arrays.x, trial_arrays.t),
                            "smd_after": smd(trial_arrays.x, trial_arrays.t, weights_after)})  # fmt: skip
    catalog.overwrite(PROGRAMME_BALANCE.name, spark.createDataFrame(balance.rename_axis("feature").reset_index()))
    result = estimates.assign(
        baseline_date=plan.baseline, follow_up_months=plan.follow_up_months, mlflow_run_id=mlflow_run_id
    )
    catalog.overwrite(
        PROGRAMME_EVALUATION.name,
        spark.createDataFrame(result[list(PROGRAMME_EVALUATION.schema.fieldNames())], PROGRAMME_EVALUATION.schema),
    )


def _trial_rows(frame: pd.DataFrame, propensity: np.ndarray, baseline: date, settings) -> pd.DataFrame:
    """gold.programme_trial: the trial's people, outcomes and propensity; a seeded held-out share by person."""
    held_out = pd.util.hash_pandas_object(frame["person_id"] + str(settings.seed), index=False).to_numpy()
    kept = ["person_id", "role", "treated", "time_zero", "outcome", "outcome_count", "prior", "prior_count", "pcn_code"]
    return frame[kept].assign(
        baseline_date=baseline,
        propensity=propensity,
        held_out=(held_out % 1000) < settings.held_out_share * 1000,
    )


if __name__ == "__main__":
    main_for(SPEC.name)
