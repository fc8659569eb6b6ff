"""Recorded vs true prevalence: `phm run evaluate_person_model`.

Evaluation only (it reads the synthetic truth store; on real data leave it
out with refresh.exclude): for each condition the truth store knows, the
recorded prevalence in gold.conditions over the living persons of
gold.person, beside the true prevalence over the truth's living, registered
people, overall and by IMD quintile, into mart.condition_ascertainment. The
gap is what case finding is for: undiagnosed conditions, and the deprivation
gradient in how much is recorded.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from phm.errors import UserError
from phm.person.definitions import load_codelists
from phm.person.evaluation import ascertainment
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.synthetic.truth import truth_store
from phm.tables import CONDITION_ASCERTAINMENT, CONDITIONS, PERSON

log = logging.getLogger("phm.jobs.evaluate_person_model")

SPEC = JobSpec(
    name="evaluate_person_model",
    description="recorded (gold.conditions) vs true prevalence by IMD quintile, from the synthetic truth store",
    outputs=(CONDITION_ASCERTAINMENT.name,),
    depends_on=("build_person_model",),
)


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    truth = truth_store(config, SPEC.name, "person_condition")
    if not catalog.exists(CONDITIONS.name):
        raise UserError("evaluate_person_model: gold.conditions does not exist; run `phm run build_person_model`")
    if ctx.unchanged_since_last_success((CONDITIONS.name, PERSON.name), SPEC.outputs):
        log.info("evaluate_person_model: gold.conditions is unchanged since its last evaluation; nothing to do")
        ctx.rows_out = 0
        return
    codelists = f"{config.resolve(config.person_model.codelists)}/conditions"
    conditions = catalog.read(CONDITIONS.name)
    reference_date = str(conditions.agg(F.max("reference_date")).first()[0])
    result = ascertainment(
        catalog.read(PERSON.name),
        conditions,
        spark.read.parquet(str(truth / "person")),
        spark.read.parquet(str(truth / "person_condition")),
        reference_date,
        {name: c.min_age for name, c in load_codelists(codelists).items() if c.min_age},
    )
    catalog.overwrite(CONDITION_ASCERTAINMENT.name, result, replace_where=f"reference_date = '{reference_date}'")
    overall = (
        catalog.read(CONDITION_ASCERTAINMENT.name)
        .where((F.col("reference_date") == reference_date) & (F.col("imd_quintile") == "all"))
        .orderBy("condition")
        .collect()
    )
    log.info(
        "evaluate_person_model: recorded / true prevalence at %s: %s",
        reference_date,
        "; ".join(
            f"{r.condition} {100 * (r.recorded_prevalence or 0):.1f}% / {100 * (r.true_prevalence or 0):.1f}%"
            for r in overall
        ),
    )


if __name__ == "__main__":
    main_for(SPEC.name)
