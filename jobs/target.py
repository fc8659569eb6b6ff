"""Capacity-constrained targeting per PCN: `phm run target`.

Scores everyone at the scoring date with an uplift champion (through mlflow.pyfunc.spark_udf): the
preferred (prespecified) model's unless another's held-out Qini beats it beyond noise
(impactability.preferred_uplift_model, challenger_min_z; phm.impactability.uplift.select_uplift_model),
applies the configured eligibility, amenability and exclusion rules, and chooses per PCN, up to its
capacity, the people with the most expected emergency admissions avoided (risk champion's probability x
relative benefit; phm.impactability.targeting), into mart.intervention_targets; per PCN totals with 95%
intervals, and what targeting on risk alone would have avoided by the same models, into
mart.intervention_summary.

While no uplift model has a champion (none has passed its gate: at a few hundred treated people the learners'
benefits are noise), the lists are chosen on risk alone and each place is valued at risk x
impactability.assumed_relative_benefit, an assumption that the outputs name in their uplift_model column and
the log warns about; the refresh goes on rather than leaving PCNs without a list.
"""

from __future__ import annotations

import logging

from dateutil.relativedelta import relativedelta
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm.errors import ConfigError, UserError
from phm.features.index_dates import SCORE
from phm.impactability.cohort import referrals, trial_with_features
from phm.impactability.targeting import NO_PCN, apply_rules, choose, pcn_summary, targeting_frame, with_expected_avoided
from phm.impactability.uplift import OUTPUT_COLUMNS, load_uplift_specs, select_uplift_model, trial_outcomes
from phm.models.registry import CHAMPION, champion_predictions, champions_of
from phm.models.scoring import serve
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import use_experiment
from phm.tables import (
    EVENTS,
    FEATURES,
    INTERVENTION_SUMMARY,
    INTERVENTION_TARGETS,
    PROGRAMME_TRIAL,
    RISK_SCORES,
    SEGMENTS,
)

log = logging.getLogger("phm.jobs.target")

SPEC = JobSpec(
    name="target",
    description="risk x uplift champions -> whom each PCN should take on, up to its capacity",
    outputs=(INTERVENTION_TARGETS.name, INTERVENTION_SUMMARY.name),
    depends_on=("score", "train_impactability"),
)


def chosen_uplift_champion(ctx: JobContext) -> tuple[str, str, float] | None:
    """(registered model, champion version, its held-out Qini) that target uses, chosen among every spec's
    champion on the programme trial's held-out people (phm.impactability.uplift.select_uplift_model: the
    preferred model unless a challenger beats it beyond noise); None if no uplift model has a champion."""
    config, catalog, settings = ctx.config, ctx.catalog, ctx.config.impactability
    specs = load_uplift_specs(config.resolve(settings.models))
    preferred = settings.preferred_uplift_model
    if preferred is not None and preferred not in specs:
        raise ConfigError(
            f"config error: impactability.preferred_uplift_model: {preferred!r} is not a spec in {settings.models} "
            f"({', '.join(sorted(specs))}); name one of them, or null to take the best held-out Qini"
        )
    registered = {name: spec.registered_model for name, (spec, _) in specs.items()}
    champions = champions_of(MlflowClient(), registered)
    if not champions:
        return None
    if not catalog.exists(PROGRAMME_TRIAL.name):
        raise UserError("target: gold.programme_trial does not exist; run `phm run evaluate_programme`")
    held_out = (
        trial_with_features(catalog.read(PROGRAMME_TRIAL.name), catalog.read(FEATURES.name))
        .where(F.col("held_out"))
        .toPandas()
    )
    predicted = champion_predictions(champions, registered, held_out)
    chosen, qinis, why = select_uplift_model(
        {name: p["benefit"].to_numpy() for name, p in predicted.items()},
        *trial_outcomes(held_out),
        preferred,
        settings.challenger_min_z,
        settings.bootstrap,
        settings.seed,
    )
    version = str(champions[chosen].version)
    log.info("target: uplift model %s v%s: %s", registered[chosen], version, why)
    return registered[chosen], version, qinis[chosen]


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    settings = config.impactability
    for needed, stage in ((RISK_SCORES.name, "score"), (SEGMENTS.name, "segment"), (FEATURES.name, "features")):
        if not catalog.exists(needed):
            raise UserError(f"target: {needed} does not exist; run `phm run {stage}` first")
    use_experiment(config, "impactability")
    best = chosen_uplift_champion(ctx)
    risk = catalog.read(RISK_SCORES.name).where(F.col("model_name") == settings.risk_model)
    risk_version = risk.select("model_version").first()
    if risk_version is None:
        raise UserError(f"target: gold.risk_scores has no scores of impactability.risk_model {settings.risk_model!r}")
    assumed = settings.assumed_relative_benefit
    uplift_used = f"{best[0]} v{best[1]}" if best else f"none: risk alone, assumed relative benefit {assumed:g}"
    models_used = f"{settings.risk_model} v{risk_version[0]}", uplift_used
    if best is None:
        log.warning(
            "target: no uplift model has a %s (none passed its gate; see the phm.promotion_reason tag of the "
            "train_impactability runs in MLflow): choosing on risk alone, each place valued at risk x %g (an "
            "assumption: impactability.assumed_relative_benefit)", CHAMPION, assumed,
        )  # fmt: skip
    inputs = (RISK_SCORES.name, SEGMENTS.name, FEATURES.name, EVENTS.name)
    if ctx.unchanged_since_last_success(inputs, SPEC.outputs) and _targeted_with(catalog) == models_used:
        log.info("target: scores, segments, features and models %s are unchanged; nothing to do", models_used)
        ctx.rows_out = 0
        return
    events = catalog.read(EVENTS.name)
    scoring_features = catalog.read(FEATURES.name).where(F.col("split") == SCORE)
    scoring_date = scoring_features.select("index_date").first()[0]
    frame = targeting_frame(
        catalog.read(SEGMENTS.name), risk, referrals(events, settings.programme_source), scoring_date
    )
    ruled = apply_rules(frame, settings.eligible, settings.amenable, settings.exclusions).cache()
    candidates = (
        ruled.where(F.col("excluded_by").isNull())
        .select("person_id", "pcn_code", "practice_code", "risk")
        .join(scoring_features.drop("pcn_code", "practice_code"), "person_id")
    )
    if best is not None:
        uplift = serve(candidates, f"models:/{best[0]}/{best[1]}", ", ".join(f"{c} double" for c in OUTPUT_COLUMNS))
    else:  # benefit / untreated risk = the assumed share; no model spread
        uplift = F.struct(
            (F.col("risk") * F.lit(assumed)).alias("benefit"), F.lit(0.0).alias("benefit_sd"),
            F.col("risk").alias("untreated_risk"),
        )  # fmt: skip
    valued = with_expected_avoided(
        candidates.withColumn("_uplift", uplift).select(
            "person_id",
            "pcn_code",
            "practice_code",
            "index_date",
            "risk",
            *[F.col(f"_uplift.{c}").alias(c) for c in OUTPUT_COLUMNS],
        )
    ).cache()
    chosen = choose(valued, "expected_admissions_avoided", settings.capacity)
    by_risk = choose(valued, "risk", settings.capacity)
    year_ago = scoring_date - relativedelta(months=12)
    cost = (
        events.where(F.col("emergency") & (F.col("event_date") >= F.lit(year_ago))).agg(F.avg("cost")).first()[0] or 0.0
    )
    targets = chosen.withColumn("expected_cost_avoided", F.round(F.col("expected_admissions_avoided") * F.lit(cost), 2))
    targets = targets.withColumn("risk_model", F.lit(models_used[0])).withColumn("uplift_model", F.lit(models_used[1]))
    catalog.overwrite(INTERVENTION_TARGETS.name, targets.select(*INTERVENTION_TARGETS.schema.fieldNames()))
    summary = pcn_summary(ruled, catalog.read(INTERVENTION_TARGETS.name), by_risk, settings.capacity, cost)
    catalog.overwrite(INTERVENTION_SUMMARY.name, summary)
    totals = catalog.read(INTERVENTION_SUMMARY.name).agg(
        F.sum("chosen"), F.sum("expected_admissions_avoided"), F.sum("expected_admissions_avoided_by_risk_only"),
        F.sum("expected_cost_avoided"),
    ).first()  # fmt: skip
    qini = f"held-out Qini {best[2]:.4f}" if best else "no uplift champion"
    log.info("target: %s (%s) and %s: %d people chosen; expected admissions avoided %.1f (risk alone: "
             "%.1f), cost avoided %.0f at %.0f per emergency admission", models_used[1], qini, models_used[0],
             totals[0] or 0, totals[1] or 0, totals[2] or 0, totals[3] or 0, cost)  # fmt: skip
    no_pcn = ruled.where(F.col("excluded_by") == NO_PCN).count()
    if no_pcn:
        log.info("target: %d people scored have no PCN (not registered at a practice) and were not considered", no_pcn)
    valued.unpersist()
    ruled.unpersist()


def _targeted_with(catalog) -> tuple[str, str] | None:
    if not catalog.exists(INTERVENTION_TARGETS.name):
        return None
    row = catalog.read(INTERVENTION_TARGETS.name).select("risk_model", "uplift_model").first()
    return (row.risk_model, row.uplift_model) if row else None


if __name__ == "__main__":
    main_for(SPEC.name)
