"""Case-finding cohorts against the truth: `phm run evaluate_case_finding`.

Evaluation only (reads the synthetic truth store; on real data leave it out with refresh.exclude): for each
cohort that names a condition in `finds_undiagnosed`, its precision (members who truly have the condition at
the reference date) and recall (of the people in its population who truly have it, i.e. who are not on the
register although they have it, the share it finds), beside the undiagnosed prevalence of the population (the
precision of a random list), into mart.case_finding_evaluation. A cohort with a `truth` rule instead (e.g.
high CVD risk without a statin: true risk of 10% or more and no statin) is scored the same way against the
people of the truth store's person table the rule selects.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import functions as F

from phm.cohorts.case_finding import accuracy, cohort_table, load_cohort_specs
from phm.errors import UserError
from phm.models.oracle import true_person_of
from phm.rules import sql_condition
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.synthetic.truth import truth_store
from phm.tables import CASE_FINDING_EVALUATION, COHORT_SUMMARY, PERSON_LINK
from phm_jobs.case_finding import cohort_columns_at

log = logging.getLogger("phm.jobs.evaluate_case_finding")

SPEC = JobSpec(
    name="evaluate_case_finding",
    description="case-finding cohorts' precision and recall for what they should find, from the synthetic truth",
    outputs=(CASE_FINDING_EVALUATION.name,),
    depends_on=("case_finding", "link"),
)


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    truth = truth_store(config, SPEC.name, "person_condition")
    if not catalog.exists(COHORT_SUMMARY.name):
        raise UserError("evaluate_case_finding: mart.cohort_summary does not exist; run `phm run case_finding`")
    defined = load_cohort_specs(config.resolve(config.cohorts.definitions))
    specs = {name: spec for name, (spec, _) in defined.items() if spec.evaluated_for}
    paths = {name: path for name, (_, path) in defined.items()}
    if ctx.unchanged_since_last_success((COHORT_SUMMARY.name, PERSON_LINK.name), SPEC.outputs):
        log.info("evaluate_case_finding: cohorts and linkage are unchanged; nothing to do")
        ctx.rows_out = 0
        return
    reference_date = catalog.read(COHORT_SUMMARY.name).agg(F.max("reference_date")).first()[0]
    columns = cohort_columns_at(catalog, config, reference_date).cache()
    truth_of = true_person_of(catalog.read(PERSON_LINK.name), spark.read.parquet(str(truth / "record_person")))
    conditions = spark.read.parquet(str(truth / "person_condition")).where(F.col("onset_date") <= F.lit(reference_date))
    people = spark.read.parquet(str(truth / "person")).withColumn("reference_date", F.lit(reference_date).cast("date"))
    rows = []
    for name, spec in sorted(specs.items()):
        if spec.truth:
            rule = sql_condition(people, f"coalesce({spec.truth.rule}, false)", f"{paths[name]}: truth.rule",
                                 "the truth store's person table")  # fmt: skip
            truly = people.where(rule)
        else:
            truly = conditions.where(F.col("condition") == spec.finds_undiagnosed)
        truly_has = truth_of.join(truly.select("true_person_id"), "true_person_id")
        members = catalog.read(cohort_table(spec).name).where(F.col("reference_date") == reference_date)
        population = columns.where(F.expr(f"coalesce({spec.population}, false)"))
        measures = accuracy(population, members, truly_has)
        rows.append({"reference_date": reference_date, "cohort": name, "condition": spec.evaluated_for,
                     **measures})  # fmt: skip
        log.info(
            "evaluate_case_finding: %s: precision %s (%d of %d), recall %s (%d of %d undiagnosed), undiagnosed "
            "prevalence %s", name, _pct(measures["precision"]), measures["true_positives"], measures["members"],
            _pct(measures["recall"]), measures["found"], measures["undiagnosed"],
            _pct(measures["undiagnosed_prevalence"]),
        )  # fmt: skip
    columns.unpersist()
    frame = pd.DataFrame(rows, columns=CASE_FINDING_EVALUATION.schema.names)
    catalog.overwrite(
        CASE_FINDING_EVALUATION.name,
        catalog.from_pandas(CASE_FINDING_EVALUATION.name, frame),
        replace_where=f"reference_date = '{reference_date}'",
    )


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    main_for(SPEC.name)
