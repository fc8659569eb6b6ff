"""The run ledger, `ops.job_runs`: one row per job run.

A run's row is appended as `running` when it starts (a blind append, which
never conflicts with another run's) and updated by key when it ends. A row
left `running` after its process died is what a crash looks like.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from delta.exceptions import DeltaConcurrentModificationException
from pyspark.sql import DataFrame, Row, SparkSession

from phm.runtime.catalog import Catalog
from phm.tables import JOB_RUNS

log = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
MERGE_ATTEMPTS = 5


@dataclass
class RunRecord:
    """The ledger row of one run, filled in as the run goes."""

    run_id: str
    job: str
    environment: str
    config_digest: str
    phm_version: str
    spark_master: str | None
    parent_run_id: str | None = None
    status: str = RUNNING
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    rows_in: int | None = None
    rows_out: int | None = None
    rows_quarantined: int | None = None
    error: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> RunRecord:
        """The record of a ledger row (timestamps back as UTC instants)."""
        values = {f.name: row[f.name] for f in JOB_RUNS.schema.fields}  # not the audit column
        for key in ("started_at", "ended_at"):
            if values[key] is not None:
                values[key] = values[key].replace(tzinfo=UTC)
        values["input_versions"] = dict(values["input_versions"] or {})
        values["output_versions"] = dict(values["output_versions"] or {})
        return cls(**values)

    def as_row(self) -> Row:
        values = {f.name: getattr(self, f.name) for f in JOB_RUNS.schema.fields}
        # Spark stores timestamps as UTC instants; hand it naive UTC values.
        for key in ("started_at", "ended_at"):
            if values[key] is not None:
                values[key] = values[key].astimezone(UTC).replace(tzinfo=None)
        return Row(**values)


class Ledger:
    """Writes run records to ops.job_runs through its own catalogue (so ledger writes are not job outputs)."""

    def __init__(self, spark: SparkSession, warehouse: str) -> None:
        self.spark = spark
        self.warehouse = warehouse

    def start(self, record: RunRecord) -> None:
        self._catalog(record.run_id).append(JOB_RUNS.name, self._frame(record))

    def finish(self, record: RunRecord) -> None:
        record.ended_at = datetime.now(UTC)
        catalog = self._catalog(record.run_id)
        for attempt in range(1, MERGE_ATTEMPTS + 1):
            try:
                catalog.merge(JOB_RUNS.name, self._frame(record))
                return
            except DeltaConcurrentModificationException:
                if attempt == MERGE_ATTEMPTS:
                    raise
                log.info("ledger update for %s met a concurrent write; retrying", record.run_id)
                time.sleep(0.5 * attempt)

    def last_succeeded(self, job: str) -> Row | None:
        """The latest succeeded run of `job`, or None."""
        runs = self._runs()
        if runs is None:
            return None
        return runs.where((runs.job == job) & (runs.status == SUCCEEDED)).orderBy(runs.started_at.desc()).first()

    def left_running(self) -> list[Row]:
        """Runs whose rows still say running, newest first."""
        runs = self._runs()
        return [] if runs is None else runs.where(runs.status == RUNNING).orderBy(runs.started_at.desc()).collect()

    def runs_of(self, job: str) -> list[Row]:
        """Every run of `job`, newest first."""
        runs = self._runs()
        return [] if runs is None else runs.where(runs.job == job).orderBy(runs.started_at.desc()).collect()

    def children(self, parent_run_ids: list[str]) -> list[Row]:
        """The stage runs of these parent runs (refreshes), newest first."""
        runs = self._runs()
        if runs is None:
            return []
        return runs.where(runs.parent_run_id.isin(parent_run_ids)).orderBy(runs.started_at.desc()).collect()

    def _runs(self) -> DataFrame | None:
        catalog = Catalog(self.spark, self.warehouse)
        if not catalog.exists(JOB_RUNS.name):
            return None
        return self.spark.read.format("delta").load(catalog.path(JOB_RUNS.name))  # not a run input

    def _catalog(self, run_id: str) -> Catalog:
        return Catalog(self.spark, self.warehouse, run_id=run_id)

    def _frame(self, record: RunRecord) -> DataFrame:
        return self.spark.createDataFrame([record.as_row()], schema=JOB_RUNS.schema)
