"""The run ledger, `ops.job_runs`: one row per job run, written when the run ends.

A run in progress is recorded in a marker file, `<warehouse>/_phm/runs/<run_id>.json`
(beside the writer lock), written before the run writes anything and removed once
its ledger row is appended. A marker left behind after its process died is what a
crash looks like (`phm.runtime.recovery` puts such a run's outputs back). So each
run costs one blind Delta append, which never conflicts with another writer's,
instead of an append and a MERGE; and finding crashed runs is a directory listing,
not a ledger query.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from phm.runtime.catalog import Catalog
from phm.tables import JOB_RUNS

log = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
MARKER_DIR = "_phm/runs"
MARKER_SUFFIX = ".json"


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

    def to_json(self) -> str:
        values = asdict(self)
        for key in ("started_at", "ended_at"):
            if values[key] is not None:
                values[key] = values[key].astimezone(UTC).isoformat()
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        values = json.loads(text)
        for key in ("started_at", "ended_at"):
            if values.get(key) is not None:
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


class Ledger:
    """Run records: markers for runs in progress, rows of ops.job_runs (through the ledger's own catalogue, so
    ledger writes are not job outputs) for runs that ended."""

    def __init__(self, spark: SparkSession, warehouse: str) -> None:
        self.spark = spark
        self.warehouse = warehouse
        self.markers = RunMarkers(spark, warehouse)

    def start(self, record: RunRecord) -> None:
        self.markers.write(record)

    def finish(self, record: RunRecord) -> None:
        """Append the run's row (its final state), then remove its marker."""
        record.ended_at = datetime.now(UTC)
        Catalog(self.spark, self.warehouse, run_id=record.run_id).append(JOB_RUNS.name, self._frame(record))
        self.markers.remove(record.run_id)

    def left_running(self) -> list[RunRecord]:
        """Runs with a marker (in progress, or dead if nobody else holds the writer lock), newest first."""
        return sorted(self.markers.records(), key=lambda r: r.started_at, reverse=True)

    def recorded(self, run_ids: list[str]) -> set[str]:
        """Those of these runs that have a ledger row."""
        runs = self._runs()
        if runs is None or not run_ids:
            return set()
        return {r.run_id for r in runs.where(F.col("run_id").isin(run_ids)).select("run_id").collect()}

    def last_succeeded(self, job: str, wrote: str | None = None) -> Row | None:
        """The latest succeeded run of `job` (that wrote the table `wrote`, if given: a later run may have had
        nothing to do), or None."""
        runs = self._runs()
        if runs is None:
            return None
        succeeded = (runs.job == job) & (runs.status == SUCCEEDED)
        if wrote is not None:
            succeeded &= runs.output_versions.getItem(wrote).isNotNull()
        return runs.where(succeeded).orderBy(runs.started_at.desc()).first()

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

    def _frame(self, record: RunRecord) -> DataFrame:
        return self.spark.createDataFrame([record.as_row()], schema=JOB_RUNS.schema)


class RunMarkers:
    """One JSON file per run in progress under `<warehouse>/_phm/runs/`, through Hadoop's file system API (so
    the same code serves a local warehouse and any Hadoop URI). A marker is written to a temporary name and
    renamed, so it is never seen half-written."""

    def __init__(self, spark: SparkSession, warehouse: str) -> None:
        self._jvm = spark.sparkContext._jvm
        self._folder = self._jvm.org.apache.hadoop.fs.Path(f"{warehouse.rstrip('/')}/{MARKER_DIR}")
        self._fs = self._folder.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def write(self, record: RunRecord) -> None:
        final = self._path(record.run_id)
        partial = self._jvm.org.apache.hadoop.fs.Path(self._folder, f".{record.run_id}.partial")
        stream = self._fs.create(partial, True)
        try:
            stream.write(record.to_json().encode("utf-8"))
        finally:
            stream.close()
        self._fs.delete(final, False)
        if not self._fs.rename(partial, final):
            raise OSError(f"could not write the run marker {final.toString()}")

    def records(self) -> list[RunRecord]:
        if not self._fs.exists(self._folder):
            return []
        found = []
        for status in self._fs.listStatus(self._folder):
            name = status.getPath().getName()
            if not name.endswith(MARKER_SUFFIX) or name.startswith("."):
                continue
            stream = self._fs.open(status.getPath())
            try:
                text = self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
            found.append(RunRecord.from_json(text))
        return found

    def remove(self, run_id: str) -> None:
        self._fs.delete(self._path(run_id), False)

    def _path(self, run_id: str):
        return self._jvm.org.apache.hadoop.fs.Path(self._folder, f"{run_id}{MARKER_SUFFIX}")
