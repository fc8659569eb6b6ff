"""Measure the latest linkage against the synthetic truth store: `phm run evaluate_linkage`.

Evaluation only: this is the one job that reads the truth store (the
generator's record -> true person map), which a real ICS does not have; on
real data leave it out (`refresh.exclude: [evaluate_linkage]`). Writes
mart.linkage_evaluation for the latest linkage run (the model
and the NHS-number-only baseline on the same records, overall and by source,
ethnicity, age band and IMD quintile) and adds the overall figures to that
linkage run's MLflow run.
"""

from __future__ import annotations

import logging

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.linkage.evaluation import evaluate, nhs_number_baseline
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import run_for, tracked_run
from phm.synthetic.calibration import load_calibration
from phm.synthetic.truth import truth_store
from phm.tables import IDENTITY, LINKAGE_EVALUATION, LINKAGE_QUALITY, PERSON_LINK

log = logging.getLogger("phm.jobs.evaluate_linkage")

SPEC = JobSpec(
    name="evaluate_linkage",
    description="linkage vs the synthetic truth store (precision, recall, F1, false merges; by group; baseline)",
    outputs=(LINKAGE_EVALUATION.name,),
    depends_on=("link",),
)
MODEL, BASELINE = "splink", "nhs_number_only"


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    truth = truth_store(config, SPEC.name, "record_person")
    if not all(catalog.exists(name) for name in (PERSON_LINK.name, LINKAGE_QUALITY.name)):
        raise UserError("evaluate_linkage: silver.person_link or mart.linkage_quality does not exist; run "
                        "`phm run link` first")  # fmt: skip
    links = catalog.read(PERSON_LINK.name)
    # A record carries the run that gave its profile its link, so person_link holds several runs' ids; what is
    # evaluated is the person index after the latest run that linked (the last with quality figures: run ids
    # start with their UTC start time).
    linkage_run_id = catalog.read(LINKAGE_QUALITY.name).agg(F.max("linkage_run_id")).first()[0]
    if (
        catalog.exists(LINKAGE_EVALUATION.name)
        and catalog.read(LINKAGE_EVALUATION.name).where(F.col("linkage_run_id") == linkage_run_id).limit(1).count()
    ):
        log.info("evaluate_linkage: linkage run %s is already evaluated; nothing to do", linkage_run_id)
        ctx.rows_out = 0
        return
    record_truth = spark.read.parquet(str(truth / "record_person"))
    person_truth = _with_band_labels(spark.read.parquet(str(truth / "person")), config)
    identity = catalog.read(IDENTITY.name).join(links.select("source", "record_id"), ["source", "record_id"], "semi")
    results = (
        evaluate(links, record_truth, person_truth, MODEL)
        .unionByName(evaluate(nhs_number_baseline(identity), record_truth, person_truth, BASELINE))
        .select(F.lit(linkage_run_id).alias("linkage_run_id"), "*")
    )
    catalog.overwrite(LINKAGE_EVALUATION.name, results, replace_where=f"linkage_run_id = '{linkage_run_id}'")
    written = catalog.read(LINKAGE_EVALUATION.name).where(F.col("linkage_run_id") == linkage_run_id).collect()
    ctx.rows_out = len(written)
    overall = {r.method: r for r in written if r.scope == "overall"}
    model, baseline = overall[MODEL], overall[BASELINE]
    worst = min((r for r in written if r.method == MODEL and r.scope in ("ethnicity", "age_band", "imd_quintile")
                 and r.recall is not None), key=lambda r: r.recall)  # fmt: skip
    log.info(
        "evaluate_linkage: F1 %.4f (precision %.4f, recall %.4f); false merges %.3f%% of persons; missed links "
        "%.3f%% of records; NHS-number-only recall %.4f; lowest group recall %.4f (%s %s)",
        model.f1, model.precision, model.recall, 100 * model.false_merge_rate, 100 * model.missed_link_rate,
        baseline.recall, worst.recall, worst.scope, worst.group_value,
    )  # fmt: skip
    _add_to_linkage_run(config, ctx.run_id, linkage_run_id, model, baseline, worst)


def _with_band_labels(person_truth: DataFrame, config) -> DataFrame:
    """The truth's age band is an index into the calibration's bands: label it "low-high"."""
    bands = load_calibration(config.resolve(config.synthetic.calibration)).population.age_bands
    labels = F.array(*[F.lit(f"{b.low}-{b.high}") for b in bands])
    return person_truth.withColumn("age_band", F.element_at(labels, F.col("age_band") + 1))


def _add_to_linkage_run(config, run_id: str, linkage_run_id: str, model, baseline, worst) -> None:
    """The truth figures beside the linkage run's own metrics (a run of their own if it is not found)."""
    metrics = {f"truth.{name}": float(getattr(model, name)) for name in
               ("precision", "recall", "f1", "false_merge_rate", "missed_link_rate")}  # fmt: skip
    metrics["truth.baseline_recall"] = float(baseline.recall)
    metrics["truth.recall_gain_over_baseline"] = float(model.recall - baseline.recall)
    metrics["truth.lowest_group_recall"] = float(worst.recall)
    tracked = run_for(config, "linkage", linkage_run_id)
    if tracked is None:
        log.warning("evaluate_linkage: no MLflow run for linkage run %s; figures logged to this run", linkage_run_id)
    with mlflow.start_run(run_id=tracked) if tracked else tracked_run(config, "linkage", run_id):
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    main_for(SPEC.name)
