"""Job running: the ledger row of each run, roll-back on failure, pipeline order (CLI refresh: test_refresh)."""

from __future__ import annotations

import sys

import mlflow
import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from phm.errors import UnknownJobError
from phm.runtime.catalog import Catalog
from phm.runtime.jobs import Job, JobSpec, discover_jobs, pipeline_order, run_job, run_pipeline
from phm.runtime.tracking import move_alias, tracked_run
from phm.tables import JOB_RUNS, QOF_PREVALENCE, RUN_ID_COLUMN, TableSpec, register

from .test_catalog import WIDGETS, content, widgets

GADGETS = register(
    TableSpec(
        name="silver.test_gadgets",
        grain="one row per gadget (test table)",
        description="A second table for job tests.",
        keys=("widget_id",),
        schema=WIDGETS.schema,
    )
)


def ledger_rows(spark, config):
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    return {r["run_id"]: r.asDict() for r in catalog.read(JOB_RUNS.name).collect()}


def make_job(name, run, outputs=(WIDGETS.name, GADGETS.name), depends_on=(), registers_models=False):
    spec = JobSpec(name=name, description=f"test job {name}", outputs=outputs, depends_on=depends_on,
                   registers_models=registers_models)  # fmt: skip
    return Job(spec, run)


WIDGET_MODEL = "phm_test_widget_model"


def register_widget_model(config, run_id: str, *aliases: str) -> str:
    """Register a version of the test model from an MLflow run tagged with `run_id` (as the training jobs do)
    and move `aliases` to it; its version."""
    with tracked_run(config, "reliability", run_id) as run:
        client = mlflow.MlflowClient()
        if not client.search_registered_models(f"name = '{WIDGET_MODEL}'"):
            client.create_registered_model(WIDGET_MODEL)
        version = client.create_model_version(WIDGET_MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id).version
        for alias in aliases:
            move_alias(client, WIDGET_MODEL, alias, version)
    return str(version)


def registry_state(config) -> dict[str, object]:
    """The test model's live versions and where its aliases point."""
    client = mlflow.MlflowClient(config.tracking_uri)
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{WIDGET_MODEL}'"))
    aliases = client.get_registered_model(WIDGET_MODEL).aliases
    return {"versions": versions, "aliases": {alias: str(version) for alias, version in sorted(aliases.items())}}


def test_successful_run_records_inputs_outputs_and_rows(spark, fresh_config):
    seed = make_job("seed", lambda ctx: ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue")])))
    run_job(seed, fresh_config, spark)

    def copy(ctx):
        ctx.rows_in = ctx.catalog.read(WIDGETS.name).count()
        ctx.catalog.overwrite(GADGETS.name, ctx.catalog.read(WIDGETS.name).where(F.col("colour") == "red"))

    result = run_job(make_job("copy", copy), fresh_config, spark, parent_run_id="parent-1")
    row = ledger_rows(spark, fresh_config)[result.run_id]
    assert row["status"] == "succeeded"
    assert row["job"] == "copy" and row["parent_run_id"] == "parent-1"
    assert row["environment"] == "test" and row["config_digest"] == fresh_config.digest()
    assert row["input_versions"] == {WIDGETS.name: 0}
    assert row["output_versions"] == {GADGETS.name: 0}
    assert (row["rows_in"], row["rows_out"], row["error"]) == (2, 1, None)
    assert row["ended_at"] >= row["started_at"]
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    gadgets = catalog.read(GADGETS.name)
    assert content(gadgets) == [(1, "red")]
    assert {r[RUN_ID_COLUMN] for r in gadgets.collect()} == {result.run_id}


def test_a_stage_that_exits_with_status_0_fails_and_is_put_back(spark, fresh_config):
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))

    def exits(ctx):
        ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(7, "half-written")]))
        sys.exit(0)

    with pytest.raises(RuntimeError, match=r"exits called sys.exit\(0\) before it finished"):
        run_job(make_job("exits", exits), fresh_config, spark)
    assert not catalog.exists(WIDGETS.name)
    [failed] = [r for r in ledger_rows(spark, fresh_config).values() if r["job"] == "exits"]
    assert (failed["status"], failed["error"]) == ("failed", "SystemExit: 0")


def test_failed_run_leaves_outputs_as_before_and_a_failed_ledger_row(spark, fresh_config):
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    run_job(
        make_job("seed", lambda ctx: ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]))),
        fresh_config,
        spark,
    )
    before = content(catalog.read(WIDGETS.name))

    def half_done(ctx):
        ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(7, "half-written")]))
        ctx.catalog.overwrite(GADGETS.name, widgets(spark, [(8, "new table")]))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        run_job(make_job("half_done", half_done), fresh_config, spark)

    assert content(catalog.read(WIDGETS.name)) == before
    assert not catalog.exists(GADGETS.name)  # created by the failed run, so removed
    [failed] = [r for r in ledger_rows(spark, fresh_config).values() if r["job"] == "half_done"]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: disk on fire"
    assert failed["output_versions"] == {WIDGETS.name: 0}
    assert failed["ended_at"] is not None


def test_a_failed_run_takes_back_its_model_registrations(spark, fresh_config):
    run_job(make_job("train", lambda ctx: register_widget_model(ctx.config, ctx.run_id, "candidate", "champion"),
                     outputs=(), registers_models=True), fresh_config, spark)  # fmt: skip
    first = registry_state(fresh_config)
    assert first == {"versions": ["1"], "aliases": {"candidate": "1", "champion": "1"}}

    def registers_then_fails(ctx):
        register_widget_model(ctx.config, ctx.run_id, "candidate", "champion", "challenger")
        raise RuntimeError("validation table missing")

    with pytest.raises(RuntimeError, match="validation table missing"):
        run_job(make_job("train", registers_then_fails, outputs=(), registers_models=True), fresh_config, spark)
    # Its version deleted; the aliases it moved back where they were, the one it made gone.
    assert registry_state(fresh_config) == first
    version_3 = register_widget_model(fresh_config, "20261202T000000Z-train-later", "candidate")
    assert version_3 == "3"  # the registry never gives a number twice (2 was the failed run's)


def test_writing_an_undeclared_output_fails_the_run(spark, fresh_config):
    job = make_job(
        "sneaky", lambda ctx: ctx.catalog.overwrite(GADGETS.name, widgets(spark, [(1, "x")])), outputs=(WIDGETS.name,)
    )
    with pytest.raises(RuntimeError, match=r"undeclared outputs \['silver.test_gadgets'\]"):
        run_job(job, fresh_config, spark)
    assert not Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse)).exists(GADGETS.name)


def noop(ctx):
    return None


def test_pipeline_order_follows_dependencies_then_names():
    jobs = {
        "c": make_job("c", noop, depends_on=("a",)),
        "b": make_job("b", noop),
        "a": make_job("a", noop),
        "d": make_job("d", noop, depends_on=("c", "b")),
    }
    assert pipeline_order(jobs) == ["a", "b", "c", "d"]
    assert pipeline_order(jobs, only=["d", "a"]) == ["a", "d"]
    assert pipeline_order(jobs, exclude=["b"]) == ["a", "c", "d"]
    with pytest.raises(UnknownJobError, match="unknown job 'zz'"):
        pipeline_order(jobs, only=["zz"])
    with pytest.raises(UnknownJobError, match=r"job x depends on unknown job\(s\) \['nope'\]"):
        pipeline_order({"x": make_job("x", noop, depends_on=("nope",))})


def test_what_a_stage_cached_is_released_before_the_next_stage_of_a_refresh(spark, fresh_config):
    left_cached, seen = [], {}

    def caches(ctx):
        frame = spark.range(100).withColumnRenamed("id", "left_cached_by_first").cache()
        frame.count()
        left_cached.append(frame)

    def looks(ctx):
        seen["storage_level"] = left_cached[0].storageLevel

    jobs = {
        "first": make_job("first", caches, outputs=()),
        "second": make_job("second", looks, outputs=(), depends_on=("first",)),
    }
    run_pipeline(fresh_config, spark, jobs)
    assert left_cached[0].storageLevel == seen["storage_level"] == StorageLevel(False, False, False, False, 1)


def test_failed_stage_stops_the_refresh_and_fails_its_parent_run(spark, fresh_config):
    ran = []

    def boom(ctx):
        raise ValueError("bad extract")

    jobs = {
        "first": make_job("first", lambda ctx: ran.append("first"), outputs=()),
        "second": make_job("second", boom, outputs=(), depends_on=("first",)),
        "third": make_job("third", lambda ctx: ran.append("third"), outputs=(), depends_on=("second",)),
    }
    with pytest.raises(ValueError):
        run_pipeline(fresh_config, spark, jobs)
    assert ran == ["first"]
    rows = ledger_rows(spark, fresh_config).values()
    [parent] = [r for r in rows if r["job"] == "refresh"]
    assert parent["status"] == "failed" and parent["error"] == "stage second: ValueError: bad extract"
    children = {r["job"]: r["status"] for r in rows if r["parent_run_id"] == parent["run_id"]}
    assert children == {"first": "succeeded", "second": "failed"}


def test_registered_jobs_are_discovered_from_the_jobs_package():
    jobs = discover_jobs()
    assert "load_reference" in jobs
    assert jobs["load_reference"].spec.outputs == (QOF_PREVALENCE.name,)


@pytest.mark.slow
def test_rerunning_a_job_gives_the_same_table(spark, fresh_config):
    job = discover_jobs()["load_reference"]
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    run_job(job, fresh_config, spark)
    first = content(catalog.read(QOF_PREVALENCE.name))
    run_job(job, fresh_config, spark)
    assert catalog.version(QOF_PREVALENCE.name) == 1
    assert content(catalog.read(QOF_PREVALENCE.name)) == first
    england_diabetes = (
        catalog.read(QOF_PREVALENCE.name)
        .where("register = 'diabetes'")
        .agg(F.sum("register_count") / F.sum("list_size"))
        .first()[0]
    )
    assert england_diabetes == pytest.approx(0.071, abs=0.002)  # QOF 2019/20 headline, FACTS.md
