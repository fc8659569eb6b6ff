"""Whole-population risk scoring: `phm run score`.

For every model spec with `score: true`, loads `models:/<registered>@champion`
with mlflow.pyfunc.spark_udf and scores every person at the scoring index date
of gold.features into gold.risk_scores (probability, percentile, tier, model
version); then the segment x risk-tier matrix into mart.segment_matrix (disclosure-controlled: profiling.disclosure).
"""

from __future__ import annotations

import logging

from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.features.index_dates import SCORE
from phm.models.registry import CHAMPION, champion_of
from phm.models.scoring import published_segment_matrix, score_with_champion, segment_matrix, with_tiers
from phm.models.specs import load_model_specs
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import use_experiment
from phm.tables import FEATURES, RISK_SCORES, SEGMENT_MATRIX, SEGMENTS

log = logging.getLogger("phm.jobs.score")

SPEC = JobSpec(
    name="score",
    description="champion models -> gold.risk_scores (spark_udf over everyone) and mart.segment_matrix",
    outputs=(RISK_SCORES.name, SEGMENT_MATRIX.name),
    depends_on=("train_risk", "segment"),
)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    specs = [spec for spec, _ in load_model_specs(config.resolve(config.risk.models)).values() if spec.score]
    for needed, stage in ((FEATURES.name, "features"), (SEGMENTS.name, "segment")):
        if not catalog.exists(needed):
            raise UserError(f"score: {needed} does not exist; run `phm run {stage}` first")
    use_experiment(config, "risk")
    client = MlflowClient()
    champions = {spec.name: champion_of(client, spec.registered_model) for spec in specs}
    missing = [name for name, champion in champions.items() if champion is None]
    if missing:
        raise UserError(
            f"score: no {CHAMPION} for {missing}: no trained version has passed its gate yet; see the "
            "phm.promotion_reason tag of the train_risk runs in MLflow (experiment risk) and run `phm run train_risk`"
        )
    current = {name: str(champion.version) for name, champion in champions.items()}
    inputs_unchanged = ctx.unchanged_since_last_success((FEATURES.name, SEGMENTS.name), SPEC.outputs)
    if inputs_unchanged and _scored_versions(catalog) == current:
        log.info("score: features, segments and champions %s are unchanged since the last scoring; nothing to do",
                 current)  # fmt: skip
        ctx.rows_out = 0
        return
    population = catalog.read(FEATURES.name).where(F.col("split") == SCORE)
    scored = None
    for spec in specs:
        champion = champions[spec.name]
        part = score_with_champion(population, spec.registered_model).select(
            "person_id",
            F.lit(spec.name).alias("model_name"),
            F.lit(str(champion.version)).alias("model_version"),
            "index_date",
            "probability",
        )
        scored = part if scored is None else scored.unionByName(part)
        log.info("score: %s: champion v%s of %s", spec.name, champion.version, spec.registered_model)
    catalog.overwrite(RISK_SCORES.name, with_tiers(scored, config.risk.tiers))
    scores = catalog.read(RISK_SCORES.name)
    rules = config.profiling.disclosure
    matrix = published_segment_matrix(
        segment_matrix(catalog.read(SEGMENTS.name), scores).toPandas(), rules.max_suppressed, rules.rounding_base
    )
    catalog.overwrite(SEGMENT_MATRIX.name, catalog.from_pandas(SEGMENT_MATRIX.name, matrix))
    for row in (
        scores.groupBy("model_name", "tier")
        .agg(F.count(F.lit(1)).alias("people"), F.avg("probability").alias("mean"))
        .orderBy("model_name", "tier")
        .collect()
    ):
        log.info("score: %s %s: %d people, mean probability %.3f", row.model_name, row.tier, row.people, row.mean)


def _scored_versions(catalog) -> dict[str, str]:
    if not catalog.exists(RISK_SCORES.name):
        return {}
    rows = catalog.read(RISK_SCORES.name).select("model_name", "model_version").distinct().collect()
    return {r.model_name: r.model_version for r in rows}


if __name__ == "__main__":
    main_for(SPEC.name)
