"""Recovering from runs that died, and resuming a refresh that failed.

A run that is killed (kill -9, an out-of-memory kill, a lost node) cannot roll
its own outputs back: it leaves its run marker behind (`phm.runtime.ledger`)
and may have written some of its tables and not others. Every run records, in
its marker, the versions its outputs had before it started; whoever next takes
the warehouse's writer lock (so the dead run is certainly not still writing)
puts those tables back at those versions and records the run as failed. Delta
makes each table write atomic; this makes each job's writes all-or-nothing.

A refresh that failed (or was interrupted) at stage k resumes at stage k: the
stages it completed are skipped when the configuration is the same and their
inputs and outputs are still at the versions they read and wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import Row, SparkSession

from phm.runtime.catalog import Catalog
from phm.runtime.ledger import FAILED, SUCCEEDED, Ledger

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: its process ended without finishing (killed or crashed)"


def roll_back(catalog: Catalog, before: dict[str, int | None]) -> None:
    """Put each table back at its version in `before` (None: remove a table that did not exist)."""
    for name, version in before.items():
        if catalog.version(name) != version:
            catalog.restore(name, version)


def recover_interrupted_runs(
    spark: SparkSession,
    warehouse: str,
    outputs_of: Callable[[str], tuple[str, ...] | None],
    recovered_by: str,
    undo_elsewhere: Callable[[str, str], None] = lambda run_id, job: None,
) -> list[str]:
    """Roll back the outputs of every run that left its marker behind and record it as failed; the run ids.

    Call only while holding the warehouse's writer lock: then no such run can still be alive. A table is put
    back only if the dead run made its latest commit: never over a later run's work.
    `outputs_of(job)` gives a job's declared outputs (None for a job no longer registered, whose recorded
    outputs are rolled back instead); `undo_elsewhere(run_id, job)` takes back what the run did outside the
    warehouse (MLflow), before the run is recorded as failed: if it raises, the next lock holder tries again."""
    ledger = Ledger(spark, warehouse)
    left = ledger.left_running()
    if not left:
        return []
    finished = ledger.recorded([record.run_id for record in left])  # died after its row, before tidying up
    catalog = Catalog(spark, warehouse, run_id=recovered_by)
    recovered = []
    for record in left:
        if record.run_id in finished:
            ledger.markers.remove(record.run_id)
            continue
        before = dict(record.output_versions)
        declared = outputs_of(record.job)
        for name in declared if declared is not None else before:
            if catalog.version(name) == before.get(name):
                continue
            if catalog.last_writer(name) != record.run_id:  # a later run's table (or a marker from before this check)
                log.warning("%s was last written by another run than the interrupted %s: left as it is", name,
                            record.run_id)  # fmt: skip
                continue
            catalog.restore(name, before.get(name))
        undo_elsewhere(record.run_id, record.job)
        record.status = FAILED
        record.error = f"{INTERRUPTED}; its outputs were put back by {recovered_by}"
        ledger.finish(record)
        log.warning("run %s (%s) was %s; its outputs were put back as they were before it", record.run_id,
                    record.job, INTERRUPTED.split(":")[0])  # fmt: skip
        recovered.append(record.run_id)
    return recovered


def resumable_stages(spark: SparkSession, warehouse: str, refresh_job: str, config_digest: str) -> dict[str, Row]:
    """The stages that failed refreshes since the last successful one completed, by job, when the config is
    the same and each stage's inputs and outputs hold what they held at the versions it read and wrote (later
    maintenance commits change no row)."""
    ledger = Ledger(spark, warehouse)
    failed = []
    for run in ledger.runs_of(refresh_job):  # newest first
        if run.status != FAILED or run.config_digest != config_digest:
            break
        failed.append(run.run_id)
    if not failed:
        return {}
    catalog = Catalog(spark, warehouse)
    done: dict[str, Row] = {}
    for stage in ledger.children(failed):  # newest first: the latest completion of each stage counts
        if stage.status != SUCCEEDED or stage.job in done:
            continue
        recorded = {**(stage.input_versions or {}), **(stage.output_versions or {})}
        if all(catalog.data_unchanged(name, version) for name, version in recorded.items()):
            done[stage.job] = stage
    return done
