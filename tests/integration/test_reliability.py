"""Reliability of runs: one writer at a time (a lock), a run killed with kill -9 mid-write put back by the next
run, and a failed refresh resumed at the stage that failed. (Idempotent re-runs: test_refresh; bad extracts:
test_ingest and test_fuzzed_extracts.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest

from phm import cli, tables
from phm.config import load_config
from phm.runtime.catalog import Catalog
from phm.runtime.jobs import RESUMED, Job, JobSpec, run_job, run_pipeline
from phm.runtime.ledger import Ledger, RunRecord
from phm.runtime.lock import LOCK_FILE
from phm.runtime.recovery import INTERRUPTED, resumable_stages
from phm.runtime.tracking import run_for
from phm.tables import JOB_RUNS, TableSpec, register

from ..conftest import REPO, TEST_CONFIG, cli_arguments, test_overrides
from .test_catalog import WIDGETS, content, widgets
from .test_jobs import GADGETS, ledger_rows, make_job, noop, register_widget_model, registry_state

WAIT_FOR_CHILD_SECONDS = 240


def start_python(code: str, *args: str) -> subprocess.Popen:
    """A child Python process running `code` (from the repository root, so `tests` imports)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def wait_for(path: Path, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_FOR_CHILD_SECONDS
    while not path.exists():
        if child.poll() is not None:
            pytest.fail(f"the child process ended early:\n{child.stdout.read()}")
        assert time.monotonic() < deadline, "the child process did not get there in time"
        time.sleep(0.2)


HOLD_THE_LOCK = """
    import sys, time
    from pathlib import Path
    from phm.runtime.lock import warehouse_lock
    with warehouse_lock(sys.argv[1], "20261130T000000Z-refresh-holder"):
        Path(sys.argv[2]).write_text("held")
        time.sleep(float(sys.argv[3]))
        Path(sys.argv[2] + ".released").write_text(str(time.time()))
"""


def test_a_second_writer_fails_cleanly_naming_the_first_and_writes_nothing(spark, fresh_config, tmp_path, capsys):
    warehouse = fresh_config.resolve(fresh_config.paths.warehouse)
    holder = start_python(HOLD_THE_LOCK, warehouse, str(tmp_path / "held"), "120")
    try:
        wait_for(tmp_path / "held", holder)
        assert cli.main(["run", "load_reference", *cli_arguments(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert "is being written by another run (20261130T000000Z-refresh-holder, pid" in error
        assert "Traceback" not in error and "nothing was written by this one" in error
        assert not Catalog(spark, warehouse).exists(JOB_RUNS.name)  # not even a ledger row
    finally:
        holder.kill()
        holder.wait()
    # The holder died (kill -9): the operating system released its lock, so the next run goes ahead.
    assert cli.main(["run", "load_reference", *cli_arguments(tmp_path)]) == 0


def test_a_second_writer_told_to_wait_runs_once_the_first_finishes(spark, fresh_config, tmp_path):
    warehouse = fresh_config.resolve(fresh_config.paths.warehouse)
    holder = start_python(HOLD_THE_LOCK, warehouse, str(tmp_path / "held"), "4")
    try:
        wait_for(tmp_path / "held", holder)
        waiting = load_config(str(TEST_CONFIG), [*test_overrides(tmp_path), "refresh.lock_wait_seconds=120"])
        result = run_job(make_job("seed", lambda ctx: ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "a")]))),
                         waiting, spark)  # fmt: skip
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
    released = datetime.fromtimestamp(float((tmp_path / "held.released").read_text()), UTC).replace(tzinfo=None)
    assert ledger_rows(spark, fresh_config)[result.run_id]["started_at"] >= released  # it waited, then ran
    assert (Path(warehouse) / LOCK_FILE).is_file()


KILLED_MID_WRITE = """
    import sys, time
    from pathlib import Path
    from phm.config import load_config
    from phm.runtime.jobs import run_job
    from phm.runtime.spark import get_spark
    from phm.runtime.tracking import tracked_run
    from tests.conftest import TEST_CONFIG, test_overrides
    from tests.integration.test_jobs import GADGETS, WIDGETS, make_job, register_widget_model, widgets

    config = load_config(str(TEST_CONFIG), test_overrides(Path(sys.argv[1])))
    spark = get_spark(config)

    def two_tables(ctx):
        register_widget_model(config, ctx.run_id, "champion")  # a model version, and the champion moved to it
        with tracked_run(config, "reliability", ctx.run_id):
            ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(9, "new")]))
            Path(sys.argv[2]).write_text("first table written")
            time.sleep(600)  # killed here: one output written, the other not
            ctx.catalog.overwrite(GADGETS.name, widgets(spark, [(9, "new")]))

    run_job(make_job("two_tables", two_tables, registers_models=True), config, spark)
"""


def test_a_run_killed_mid_write_is_put_back_by_the_next_run(spark, fresh_config, tmp_path):
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))

    def seed(ctx):
        ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "old")]))
        register_widget_model(ctx.config, ctx.run_id, "champion")

    run_job(make_job("seed", seed, registers_models=True), fresh_config, spark)
    child = start_python(KILLED_MID_WRITE, str(tmp_path), str(tmp_path / "half"))
    try:
        wait_for(tmp_path / "half", child)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    # What a dead run leaves: its marker, with its outputs' versions from before it started, and no ledger row.
    [marker] = Ledger(spark, catalog.warehouse).left_running()
    assert (marker.job, marker.status, marker.output_versions) == ("two_tables", "running", {WIDGETS.name: 0})
    assert marker.run_id not in ledger_rows(spark, fresh_config)
    assert content(catalog.read(WIDGETS.name)) == [(9, "new")] and not catalog.exists(GADGETS.name)
    assert registry_state(fresh_config) == {"versions": ["1", "2"], "aliases": {"champion": "2"}}

    nothing = run_job(make_job("next", noop, outputs=()), fresh_config, spark)  # any run takes the lock first

    assert content(catalog.read(WIDGETS.name)) == [(1, "old")] and not catalog.exists(GADGETS.name)
    killed = ledger_rows(spark, fresh_config)[marker.run_id]
    assert killed["status"] == "failed" and killed["error"].startswith(INTERRUPTED)
    assert killed["started_at"] == marker.as_row().started_at and Ledger(spark, catalog.warehouse).left_running() == []
    assert nothing.run_id in killed["error"]
    tracked = run_for(fresh_config, "reliability", killed["run_id"])
    # not left running for ever in the MLflow UI
    assert mlflow.MlflowClient(fresh_config.tracking_uri).get_run(tracked).info.status == "KILLED"
    # Its model version taken back and the champion back on the version before (else scored with, and the
    # rerun measured against, a model whose run was rolled back).
    assert registry_state(fresh_config) == {"versions": ["1"], "aliases": {"champion": "1"}}

    def two_tables(ctx):
        ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(9, "new")]))
        ctx.catalog.overwrite(GADGETS.name, widgets(spark, [(9, "new")]))

    run_job(make_job("two_tables", two_tables), fresh_config, spark)  # run again: as if never interrupted
    assert content(catalog.read(WIDGETS.name)) == content(catalog.read(GADGETS.name)) == [(9, "new")]


def test_a_refresh_resumes_after_a_stage_whose_tables_its_config_declares(spark, fresh_config, monkeypatch):
    """As case_finding's cohorts: a table declared by `outputs_for` when the runner asks, which a new process
    (the one resuming) has not declared yet when it checks what the failed refresh completed."""
    declared = TableSpec(name="mart.drill_cohort", grain="one row per widget", description="a cohort",
                         keys=WIDGETS.keys, schema=WIDGETS.schema)  # fmt: skip
    failing = {"second"}

    def first(ctx):
        ctx.catalog.overwrite(declared.name, widgets(spark, [(1, "member")]))

    def second(ctx):
        if failing:
            raise RuntimeError("second failed")

    jobs = {
        "first": Job(
            JobSpec("first", "declares its table from config", (), outputs_for=lambda c: (register(declared).name,)),
            first,
        ),
        "second": make_job("second", second, outputs=(), depends_on=("first",)),
    }
    with pytest.raises(RuntimeError):
        run_pipeline(fresh_config, spark, jobs)
    monkeypatch.delitem(tables._REGISTRY, declared.name)  # a fresh process: not declared until asked
    failing.clear()
    results = run_pipeline(fresh_config, spark, jobs)
    assert [(r.job, r.status) for r in results] == [("first", RESUMED), ("second", "succeeded")]


def test_a_failed_refresh_resumes_at_the_stage_that_failed(spark, fresh_config, tmp_path):
    ran: list[str] = []
    failing = {"second"}

    def step(name, output=None):
        def run(ctx):
            ran.append(name)
            if name in failing:
                raise RuntimeError(f"{name} failed")
            if output:
                ctx.catalog.overwrite(output, widgets(spark, [(len(ran), name)]))

        return run

    jobs = {
        "first": make_job("first", step("first", WIDGETS.name), outputs=(WIDGETS.name,)),
        "second": make_job("second", step("second", GADGETS.name), outputs=(GADGETS.name,), depends_on=("first",)),
        "third": make_job("third", step("third"), outputs=(), depends_on=("second",)),
    }
    with pytest.raises(RuntimeError):
        run_pipeline(fresh_config, spark, jobs)
    assert ran == ["first", "second"]
    failing.clear()

    results = run_pipeline(fresh_config, spark, jobs)

    assert ran == ["first", "second", "second", "third"]  # resumed at the stage that failed
    assert [(r.job, r.status) for r in results] == [("first", RESUMED), ("second", "succeeded"), ("third", "succeeded")]
    # After a successful refresh every stage runs; this one fails at its third.
    failing.add("third")
    with pytest.raises(RuntimeError):
        run_pipeline(fresh_config, spark, jobs)
    assert ran[4:] == ["first", "second", "third"]
    warehouse = fresh_config.resolve(fresh_config.paths.warehouse)
    assert set(resumable_stages(spark, warehouse, "refresh", fresh_config.digest())) == {"first", "second"}
    # More memory after a failure is a run setting, not a definition: the refresh still resumes.
    more_memory = load_config(str(TEST_CONFIG), [*test_overrides(tmp_path), "spark.driver_memory=12g"])
    assert set(resumable_stages(spark, warehouse, "refresh", more_memory.digest())) == {"first", "second"}
    other = load_config(str(TEST_CONFIG), [*test_overrides(tmp_path), "linkage.threshold=0.95"])
    assert resumable_stages(spark, warehouse, "refresh", other.digest()) == {}  # other definitions: none
    # A stage whose output changed since the failed refresh wrote it runs again.
    run_job(make_job("edit", lambda ctx: ctx.catalog.overwrite(GADGETS.name, widgets(spark, [(0, "edited")]))),
            fresh_config, spark)  # fmt: skip
    failing.clear()
    results = run_pipeline(fresh_config, spark, jobs)
    assert [(r.job, r.status) for r in results] == [
        ("first", RESUMED), ("second", "succeeded"), ("third", "succeeded")]  # fmt: skip


def test_recovery_never_puts_back_a_table_a_later_run_wrote(spark, fresh_config):
    """A run marker whose tables were since written by other runs (say, left by an older phm that did not
    recover) is recorded as interrupted, and the tables are left as the later runs wrote them."""
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    for colour in ("v0", "v1"):

        def write(ctx, colour=colour):
            ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, colour)]))

        run_job(make_job(f"write_{colour}", write), fresh_config, spark)
    ghost = RunRecord(run_id="20261101T000000Z-ghost-00000000", job="ghost", environment="test", config_digest="-",
                      phm_version="0", spark_master=None, output_versions={WIDGETS.name: 0})  # fmt: skip
    Ledger(spark, catalog.warehouse).start(ghost)

    run_job(make_job("next", noop, outputs=()), fresh_config, spark)

    assert content(catalog.read(WIDGETS.name)) == [(1, "v1")]
    assert ledger_rows(spark, fresh_config)[ghost.run_id]["status"] == "failed"


def test_a_run_that_died_after_its_ledger_row_is_not_recorded_twice(spark, fresh_config):
    """Killed between appending its row and removing its marker: the next run only tidies the marker away."""
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    done = run_job(make_job("write", lambda ctx: ctx.catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "a")]))),
                   fresh_config, spark)  # fmt: skip
    ledger = Ledger(spark, catalog.warehouse)
    ledger.start(RunRecord.from_row(catalog.read(JOB_RUNS.name).where(f"run_id = '{done.run_id}'").first()))
    assert [r.run_id for r in ledger.left_running()] == [done.run_id]

    run_job(make_job("next", noop, outputs=()), fresh_config, spark)

    assert ledger.left_running() == []
    runs = catalog.read(JOB_RUNS.name)
    assert sorted((r.job, r.status) for r in runs.collect()) == [("next", "succeeded"), ("write", "succeeded")]
    assert content(catalog.read(WIDGETS.name)) == [(1, "a")]
