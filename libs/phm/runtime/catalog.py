"""The table catalogue: `layer.name` -> a Delta table under the warehouse root.

Jobs read and write tables only through here, by name. Every write checks
the DataFrame against the table's declared schema, stamps the audit column
`_run_id`, records the run id as the Delta commit's user metadata, and is
remembered (with every read) so the run ledger can record the versions a run
read and wrote, and roll outputs back when the run fails.
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from phm.errors import MissingTableError, SchemaMismatchError
from phm.runtime.spark import job_described, session_settings
from phm.tables import RUN_ID_COLUMN, TableSpec, all_specs, get_spec

log = logging.getLogger(__name__)

COMMIT_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
# Commits that rewrite or delete files, or set table properties, without changing a row: a table whose later
# commits are all of these holds the same data (readers that compare versions to know whether to recompute ask
# `data_unchanged`; Catalog.changes nets only over the others). SET TBLPROPERTIES: a table given the properties
# its declaration gained (_keep_properties: the change data feed, deletion vectors) before a write.
MAINTENANCE_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "REORG", "SET TBLPROPERTIES"})
# Catalog.changes' `_change_type` values, and the change data feed's own columns it drops.
INSERT, DELETE = "insert", "delete"
CHANGE_FEED_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
# Delta keeps this many leading characters of a string in a file's statistics (delta.dataSkippingStringPrefixLength).
STRING_STATS_PREFIX = 32


@dataclass(frozen=True)
class TableInfo:
    """What `phm status` shows of one table."""

    name: str
    path: str
    version: int
    rows: int
    run_id: str | None
    updated_at: datetime | None
    grain: str


class Catalog:
    """Reads and writes declared Delta tables by name under one warehouse root."""

    def __init__(self, spark: SparkSession, warehouse: str, run_id: str | None = None) -> None:
        self.spark = spark
        self.warehouse = warehouse.rstrip("/")
        self.run_id = run_id
        self.versions_read: dict[str, int] = {}
        self.versions_written: dict[str, int] = {}
        self.rows_written: dict[str, int] = {}

    # -- locations and state -------------------------------------------------
    def path(self, name: str) -> str:
        spec = get_spec(name)
        layer, _, entity = spec.name.partition(".")
        return f"{self.warehouse}/{layer}/{entity}"

    def from_pandas(self, name: str, frame) -> DataFrame:
        """A small pandas frame (an aggregate, an evaluation) as a DataFrame with the table's columns and
        schema; missing values (NaN, NA, None) become nulls."""
        schema = get_spec(name).schema
        rows = frame[schema.names]
        return self.spark.createDataFrame(rows.astype(object).where(rows.notna(), None), schema)

    def exists(self, name: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path(name))

    def version(self, name: str) -> int | None:
        """The table's current Delta version, or None if it has never been written."""
        if not self.exists(name):
            return None
        return self._latest_version(name)

    def data_unchanged(self, name: str, since_version: int | None) -> bool:
        """True if the table holds the rows it held at `since_version`: it is still at that version, or every
        commit after it is maintenance (MAINTENANCE_OPERATIONS: compaction, vacuum, table properties set; no row
        changed). A commit whose log entry is gone (Delta's log retention) counts as a change."""
        current = self.version(name)
        if current is None or since_version is None or current < since_version:
            return current == since_version
        return all(
            self._commit_info(name, version).get("operation") in MAINTENANCE_OPERATIONS
            for version in range(current, since_version, -1)
        )

    def partition_columns(self, name: str) -> tuple[str, ...]:
        """The columns the table's files are partitioned by, from its Delta log (those it was created or last
        overwritten with, which may be an earlier declaration's)."""
        return tuple(self._delta(name).detail().select("partitionColumns").first()[0])

    def history(self, name: str, limit: int | None = None) -> DataFrame:
        table = self._delta(name)
        return table.history(limit) if limit else table.history()

    # -- reads ----------------------------------------------------------------
    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table at its current version (or at `version`: Delta time travel), recorded as a run input."""
        if not self.exists(name):
            raise MissingTableError(
                f"table {name} has not been written yet (no Delta table at {self.path(name)}); "
                "run the job that produces it first (see `phm jobs`)"
            )
        resolved = version if version is not None else self.version(name)
        self.versions_read[name] = int(resolved)
        return self.spark.read.format("delta").option("versionAsOf", resolved).load(self.path(name))

    def columns(self, name: str) -> list[str]:
        """The table's columns now (none if it does not exist), without recording a read (as `read` does)."""
        return self.spark.read.format("delta").load(self.path(name)).columns if self.exists(name) else []

    def changes(self, name: str, since_version: int) -> DataFrame | None:
        """The rows inserted and deleted after `since_version` up to the current version (Delta's change data
        feed: the table's columns and `_change_type`, "insert" or "delete"), recorded as a run input at the
        current version; None when Delta did not record changes for all of those versions (the feed was off for
        some of them). An updated row is its old row deleted and its new one inserted. Over several commits the
        changes are netted: a row inserted and deleted again in between (a period delivered twice, a record
        relinked twice) is in neither."""
        current = self.version(name)
        if current is None or not get_spec(name).change_feed:
            return None
        self.versions_read[name] = int(current)
        if current == since_version:
            return self.read(name).limit(0).withColumn("_change_type", F.lit(INSERT))
        reader = self.spark.read.format("delta").option("readChangeFeed", "true")
        try:
            changed = reader.option("startingVersion", since_version + 1).option("endingVersion", current)
            changed = changed.load(self.path(name))
            changed.select(F.lit(1)).limit(1).collect()  # Delta finds a version without change data when it runs
        except (AnalysisException, Py4JJavaError) as missing:  # off for some version, or its files vacuumed
            log.info("%s has no change data after version %d (%s); reading it whole", name, since_version,
                     str(missing).splitlines()[0][:300])  # fmt: skip
            return None
        kind = F.col("_change_type")
        changed = changed.select(
            *[c for c in changed.columns if c not in CHANGE_FEED_COLUMNS],
            F.when(kind.isin(INSERT, "update_postimage"), F.lit(INSERT)).otherwise(F.lit(DELETE)).alias("_change_type"),
        )
        data_commits = [
            v for v in range(since_version + 1, current + 1)
            if self._commit_info(name, v).get("operation") not in MAINTENANCE_OPERATIONS
        ]  # fmt: skip
        if len(data_commits) <= 1:  # one commit's change data holds no row twice
            return changed
        rows = [c for c in changed.columns if c != "_change_type"]
        inserted, deleted = (changed.where(kind == k).select(*rows) for k in (INSERT, DELETE))
        return (
            inserted.exceptAll(deleted)
            .withColumn("_change_type", F.lit(INSERT))
            .unionByName(deleted.exceptAll(inserted).withColumn("_change_type", F.lit(DELETE)))
        )

    # -- writes ---------------------------------------------------------------
    def overwrite(self, name: str, df: DataFrame, replace_where: str | None = None) -> int:
        """Replace the table (or only the rows matching `replace_where`) atomically; returns the new version."""
        spec = get_spec(name)
        writer = self._writer(spec, df, "overwrite")
        if replace_where:
            writer = writer.option("replaceWhere", replace_where)
        else:
            writer = writer.option("overwriteSchema", "true")
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        self._keep_properties(spec)
        before = self.version(name)
        with job_described(self.spark, f"write {name}"):
            writer.save(self.path(name))
        return self._written(name, before)

    def append(self, name: str, df: DataFrame) -> int:
        """Add rows; returns the new version."""
        spec = get_spec(name)
        writer = self._writer(spec, df, "append")
        self._keep_properties(spec)
        before = self.version(name)
        if spec.partition_by and before is None:
            writer = writer.partitionBy(*spec.partition_by)
        with job_described(self.spark, f"append to {name}"):
            writer.save(self.path(name))
        return self._written(name, before)

    def merge(
        self,
        name: str,
        df: DataFrame,
        keys: tuple[str, ...] | None = None,
        update_matched: bool = True,
    ) -> int:
        """Upsert on the table's keys: insert new keys, update matched rows (unless told not to)."""
        spec = get_spec(name)
        keys = keys or spec.keys
        if not keys:
            raise ValueError(f"table {name} declares no keys to merge on")
        if not self.exists(name):
            return self.overwrite(name, df)
        self._keep_properties(spec)
        source = self._conform(spec, df)
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        builder = self._delta(name).alias("t").merge(source.alias("s"), condition)
        if update_matched:
            builder = builder.whenMatchedUpdateAll()
        return self._merged(spec, builder.whenNotMatchedInsertAll())

    def update_matching(self, name: str, df: DataFrame, on: str, broadcast: bool = False) -> int:
        """Set df's other columns on every row whose `on` value is one of df's (many rows may share one; df has
        one row per value); returns the new version. The rows' audit column names this run. `broadcast`: df is
        small (a fraction of the table): each of the merge's passes joins it to the table without shuffling the
        table (at 1m people, 210k profiles against 36.2m records: three sort-merge joins took 40 s)."""
        spec = get_spec(name)
        declared = {f.name for f in spec.schema.fields}
        undeclared = sorted(set(df.columns) - declared)
        if undeclared or on not in df.columns:
            raise SchemaMismatchError(f"cannot update {name}: undeclared columns {undeclared} or no column {on}")
        values = {f"`{c}`": F.col(f"s.`{c}`") for c in df.columns if c != on}
        values[RUN_ID_COLUMN] = F.lit(self.run_id or "unknown")
        self._keep_properties(spec)
        source = F.broadcast(df) if broadcast else df
        builder = self._delta(name).alias("t").merge(source.alias("s"), f"t.`{on}` = s.`{on}`")
        return self._merged(spec, builder.whenMatchedUpdate(set=values))

    def delete_matching(self, name: str, keys: DataFrame) -> int:
        """Delete the rows whose keys (the table's declared keys) are among `keys`' rows; returns the new
        version."""
        spec = get_spec(name)
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
        self._keep_properties(spec)
        builder = self._delta(name).alias("t").merge(keys.select(*spec.keys).distinct().alias("s"), condition)
        return self._merged(spec, builder.whenMatchedDelete())

    def apply_changes(
        self,
        name: str,
        upserts: DataFrame,
        deleted: DataFrame,
        updated: DataFrame,
        broadcast: bool = False,
        insert: bool = True,
    ) -> int:
        """Change the table in one commit (a merge on its keys), as a table derived row by row from others follows
        their changes: each row of `upserts` (the table's columns) replaces the row with its keys or is added (with
        `insert`); the rows whose keys are in `deleted` (key columns) are removed; the rows whose keys are in
        `updated` (key columns and some others) take its other columns' values where they differ. A key in
        `upserts` is taken from there only, then one in `deleted`; `updated` may hold keys the table does not (they
        change nothing).
        `broadcast`: the three are small (every task gets them whole, the table is not shuffled). `insert=False`
        when every row of `upserts` replaces one of the table (the caller appends new rows apart): a merge of
        matched rows only. With an insert clause Delta joins the source to the table with a left outer join, whose
        left side Spark will not broadcast (it logs "build left for left outer join"), so the whole table is
        shuffled however small the source (build_person_model at 1m: 60 s of its monthly merge). Returns the new
        version."""
        spec = get_spec(name)
        keys = list(spec.keys)
        rows = self._conform(spec, upserts)
        taken = rows.select(*keys)
        removed = deleted.select(*keys).distinct().join(taken, keys, "left_anti")
        changed = updated.join(taken.unionByName(removed), keys, "left_anti")
        columns = [c for c in changed.columns if c not in keys]
        action = "_action"
        source = (
            rows.withColumn(action, F.lit("upsert"))
            .unionByName(removed.withColumn(action, F.lit("delete")), allowMissingColumns=True)
            .unionByName(changed.withColumn(action, F.lit("update")), allowMissingColumns=True)
        )
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        every = {f"`{c}`": F.col(f"s.`{c}`") for c in rows.columns}
        differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns) or "false"
        self._keep_properties(spec)
        builder = (
            self._delta(name).alias("t").merge((F.broadcast(source) if broadcast else source).alias("s"), condition)
            .whenMatchedUpdate(condition=f"s.{action} = 'upsert'", set=every)
            .whenMatchedDelete(condition=f"s.{action} = 'delete'")
            .whenMatchedUpdate(condition=f"s.{action} = 'update' AND ({differs})",
                               set={**{f"`{c}`": F.col(f"s.`{c}`") for c in columns},
                                    RUN_ID_COLUMN: F.lit(self.run_id or "unknown")})
        )  # fmt: skip
        if insert:
            builder = builder.whenNotMatchedInsert(condition=f"s.{action} = 'upsert'", values=every)
        return self._merged(spec, builder)

    def _merged(self, spec: TableSpec, builder) -> int:
        """Run a merge on an existing table (its properties kept before the merge was built) with the run id
        on its commit."""
        before = self._latest_version(spec.name)
        # A merge takes its commit metadata from the session only (so merges are not run concurrently).
        with self._commit_metadata(), job_described(self.spark, f"merge into {spec.name}"):
            builder.execute()
        return self._written(spec.name, before)

    # -- maintenance ------------------------------------------------------------
    def files(self, name: str) -> list[tuple[str, int]]:
        """(partition values as JSON, size in bytes) of every file of the table's current version: from the
        version's checksum file while it lists them (small tables), else from Delta's log state (a Spark job)."""
        text = self._log_file(name, f"{self._latest_version(name):020d}.crc")
        listed = json.loads(text).get("allFiles") if text else None
        if listed is not None:
            return [(json.dumps(f.get("partitionValues") or {}, sort_keys=True), int(f["size"])) for f in listed]
        state = DataFrame(self._snapshot(name).allFiles().toDF(), self.spark)
        rows = state.select(F.to_json(F.col("partitionValues")).alias("partition"), "size").collect()
        return [(json.dumps(json.loads(r.partition or "{}"), sort_keys=True), int(r.size)) for r in rows]

    def least_value(self, name: str, column: str) -> str | None:
        """The least non-null value of a string column in the table's current version, from its files'
        statistics in Delta's log (no row is read; a scan of gold.events' periods took 5-6 s at 1m people). None
        when the statistics cannot say for sure, and the caller scans: a file without them, a value as long as
        the prefix Delta keeps of a string, or rows deleted (a deletion vector) from every file whose least value
        is the least, as its rows of that value may be among them. A file of nulls only has no least value."""
        field = get_spec(name).schema[column]
        if not isinstance(field.dataType, T.StringType):
            raise TypeError(f"least_value compares strings; {name}.{column} is {field.dataType.simpleString()}")
        stats = F.col("stats")
        files = DataFrame(self._snapshot(name).allFiles().toDF(), self.spark).select(
            F.get_json_object(stats, f"$.minValues.{column}").alias("least"),
            F.get_json_object(stats, "$.numRecords").cast("long").alias("records"),
            F.get_json_object(stats, f"$.nullCount.{column}").cast("long").alias("nulls"),
            F.col("deletionVector").isNotNull().alias("deleted"),
        ).collect()  # fmt: skip
        if any(f.records is None or (f.least is None and f.nulls != f.records) for f in files):
            return None
        values = [f.least for f in files if f.least is not None]
        if not values:
            return None
        least = min(values)
        # A file whose least value is the least and that has no deleted rows holds a row of that value.
        if len(least) >= STRING_STATS_PREFIX or all(f.deleted for f in files if f.least == least):
            return None
        return least

    def last_data_operation(self, name: str) -> dict:
        """The commit info of the table's latest commit that was not maintenance."""
        for version in range(self._latest_version(name), -1, -1):
            commit = self._commit_info(name, version)
            if commit.get("operation") not in MAINTENANCE_OPERATIONS:
                return commit
        return {}

    def created_at(self, name: str) -> datetime | None:
        """When the table's first version was committed (UTC), or None once its log entry is gone."""
        return _committed_at(self._commit_info(name, 0))

    def compact(self, name: str, small_file_bytes: int, target_file_bytes: int) -> dict:
        """Rewrite the table's files smaller than `small_file_bytes` into files of about `target_file_bytes`
        (Delta OPTIMIZE; larger files are left as they are; a partition with one small file has nothing to
        join it with). No row changes. Returns the commit's operation metrics ({} if Delta had nothing to do)."""
        before = self._latest_version(name)
        settings = {
            "spark.databricks.delta.optimize.minFileSize": str(small_file_bytes),
            "spark.databricks.delta.optimize.maxFileSize": str(target_file_bytes),
        }
        with self._commit_metadata(), session_settings(self.spark, settings):
            with job_described(self.spark, f"compact {name}"):
                self._delta(name).optimize().executeCompaction()
        after = self._latest_version(name)
        return (self._commit_info(name, after).get("operationMetrics") or {}) if after != before else {}

    def vacuum(self, name: str, retention_hours: float, listing_parallelism: int) -> int:
        """Delete the files of the table that no version of the last `retention_hours` needs (Delta VACUUM);
        returns how many data files (Parquet files and deletion vectors) were deleted. A dry run first, so a
        table with none to delete gets no VACUUM commits. `listing_parallelism`: tasks to list the table's
        folders with (Spark's default for parallel listing, 10,000 tasks, took 25 s a table on 2 cores)."""
        statement = f"VACUUM delta.`{self.path(name)}` RETAIN {float(retention_hours)} HOURS"
        settings = {"spark.sql.sources.parallelPartitionDiscovery.parallelism": str(listing_parallelism)}
        with session_settings(self.spark, settings), job_described(self.spark, f"vacuum {name}"):
            listed = self.spark.sql(f"{statement} DRY RUN").collect()
            deletable = sum(1 for row in listed if row.path.endswith((".parquet", ".bin")))
            if deletable:
                with self._commit_metadata():
                    self.spark.sql(statement).collect()
        return deletable

    def restore(self, name: str, version: int | None) -> None:
        """Put a table back as it was at `version`; None means it did not exist, so remove it."""
        if version is None:
            self._delete_path(self.path(name))
            log.warning("removed %s: it did not exist before the failed run", name)
            return
        self._delta(name).restoreToVersion(version)
        log.warning("restored %s to version %d", name, version)

    # -- status ---------------------------------------------------------------
    def last_writer(self, name: str) -> str | None:
        """The run id stamped on the table's latest commit (None for a table that does not exist)."""
        if not self.exists(name):
            return None
        return self._commit_info(name, self._latest_version(name)).get("userMetadata")

    def describe(self, name: str) -> TableInfo | None:
        if not self.exists(name):
            return None
        spec = get_spec(name)
        version = self._latest_version(name)
        commit = self._commit_info(name, version)
        updated_at = _committed_at(commit)
        rows = self._rows_from_checksum(name, version)
        if rows is None:
            rows = self.spark.read.format("delta").load(self.path(name)).count()
        return TableInfo(spec.name, self.path(name), version, rows, commit.get("userMetadata"), updated_at, spec.grain)

    def existing_tables(self) -> list[str]:
        """The names of every declared table that exists."""
        return [spec.name for spec in all_specs() if self.exists(spec.name)]

    def list_tables(self) -> list[TableInfo]:
        """Every declared table that exists, with version, rows and the run that last wrote it."""
        return [info for info in map(self.describe, self.existing_tables()) if info is not None]

    # -- internals ------------------------------------------------------------
    def _delta(self, name: str) -> DeltaTable:
        return DeltaTable.forPath(self.spark, self.path(name))

    def _writer(self, spec: TableSpec, df: DataFrame, mode: str):
        """A Delta writer of the conformed frame whose commit carries the run id (as a write option, not a
        session setting, so that writes from concurrent threads each carry their own), its rows clustered as
        the table declares (TableSpec.cluster_by)."""
        conformed = self._conform(spec, df)
        if spec.cluster_by:
            conformed = conformed.repartition(*spec.cluster_by).sortWithinPartitions(
                *spec.partition_by, *spec.cluster_by
            )
        writer = conformed.write.format("delta").mode(mode)
        for key, value in table_properties(spec).items():  # set when the write creates the table
            writer = writer.option(key, value)
        return writer.option("userMetadata", self.run_id) if self.run_id else writer

    def _keep_properties(self, spec: TableSpec) -> None:
        """Give an existing table the properties its declaration asks for (a table created before the
        declaration changed), once: Delta applies a writer's table properties only when it creates the table."""
        wanted = table_properties(spec)
        if not wanted or not self.exists(spec.name):
            return
        current = self._delta(spec.name).detail().select("properties").first()["properties"] or {}
        if all(current.get(key) == value for key, value in wanted.items()):
            return
        pairs = ", ".join(f"'{key}' = '{value}'" for key, value in sorted(wanted.items()))
        self.spark.sql(f"ALTER TABLE delta.`{self.path(spec.name)}` SET TBLPROPERTIES ({pairs})")
        log.info("set %s's table properties %s", spec.name, pairs)

    def _conform(self, spec: TableSpec, df: DataFrame) -> DataFrame:
        """Check columns and types against the declared schema; order them; add the audit column."""
        expected = {f.name: f.dataType for f in spec.schema.fields}
        actual = {f.name: f.dataType for f in df.schema.fields if f.name != RUN_ID_COLUMN}
        missing = sorted(set(expected) - set(actual))
        further = [c for c in actual if c not in expected] if spec.further_columns_type is not None else []
        extra = sorted(set(actual) - set(expected) - set(further))
        wrong_type = sorted(
            f"{c} (expected {expected[c].simpleString()}, got {actual[c].simpleString()})"
            for c in set(expected) & set(actual)
            if _ignoring_nulls(expected[c]) != _ignoring_nulls(actual[c])
        ) + sorted(
            f"{c} (further columns are {spec.further_columns_type.simpleString()}, got {actual[c].simpleString()})"
            for c in further
            if not isinstance(actual[c], T.NumericType | T.BooleanType)
        )
        if missing or extra or wrong_type:
            parts = []
            if missing:
                parts.append(f"missing columns {missing}")
            if extra:
                parts.append(f"undeclared columns {extra}")
            if wrong_type:
                parts.append(f"wrong types {wrong_type}")
            raise SchemaMismatchError(
                f"cannot write {spec.name}: {'; '.join(parts)}; present columns {sorted(actual)}. "
                "Fix the job's output or the declaration in phm.tables"
            )
        # Types equal but for the nullability of nested elements (collect_set makes array<string not null>).
        columns = [F.col(c) if expected[c] == actual[c] else F.col(c).cast(expected[c]).alias(c) for c in expected]
        columns += [F.col(c).cast(spec.further_columns_type).alias(c) for c in further]
        return df.select(*columns, F.lit(self.run_id or "unknown").alias(RUN_ID_COLUMN))

    def _latest_version(self, name: str) -> int:
        """The latest version from Delta's own (cached, incrementally updated) log state: a listing of the
        log's new files, where `history(1)` plans and runs a Spark job (about 25 ms against 200 ms)."""
        return int(self._snapshot(name).version())

    def _snapshot(self, name: str):
        """Delta's latest snapshot of the table (its JVM object), brought up to date with the log."""
        jvm = self.spark.sparkContext._jvm
        log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, self.path(name))
        none = jvm.scala.Option.empty()
        return log.update(False, none, none)

    def _commit_info(self, name: str, version: int) -> dict:
        """The commitInfo action of one commit (user metadata, operation metrics), read from its log file: the
        Delta protocol's first line of `_delta_log/<version>.json`."""
        for line in (self._log_file(name, f"{version:020d}.json") or "").splitlines():
            action = json.loads(line) if line.strip() else {}
            if "commitInfo" in action:
                return action["commitInfo"]
        return {}

    def _rows_from_checksum(self, name: str, version: int) -> int | None:
        """The table's rows at `version` from its version checksum file (`<version>.crc`, which lists every
        file with its statistics while the table is small), without a Spark job; None when that file, its file
        list or a file's record count is missing, or a file has deleted rows (a deletion vector)."""
        text = self._log_file(name, f"{version:020d}.crc")
        files = json.loads(text).get("allFiles") if text else None
        if files is None:
            return None
        counts = [json.loads(f.get("stats") or "{}").get("numRecords") for f in files if not f.get("deletionVector")]
        if len(counts) != len(files) or None in counts:
            return None
        return sum(counts)

    def _log_file(self, name: str, file_name: str) -> str | None:
        """A file of the table's Delta log, as text (None if there is no such file)."""
        jvm = self.spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(f"{self.path(name)}/_delta_log/{file_name}")
        fs = path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def _written(self, name: str, before: int | None) -> int:
        """Record the write's version and rows. Delta makes no commit for a write that changes nothing (an empty
        overwrite whose replaceWhere matches no row): then the latest commit is an earlier one, not this
        write's, and the write added no rows."""
        version = self._latest_version(name)
        self.versions_written[name] = version
        if version == before:
            self.rows_written.setdefault(name, 0)
            return version
        metrics = self._commit_info(name, version).get("operationMetrics") or {}
        rows = metrics.get("numOutputRows") or metrics.get("numTargetRowsInserted")
        if rows is not None:
            # An overwrite whose replaceWhere names data columns, and a merge, rewrite the files they touch and
            # count the unchanged rows they copy from them (not this run's) in numOutputRows too.
            copied = metrics.get("numCopiedRows") or metrics.get("numTargetRowsCopied") or 0
            self.rows_written[name] = self.rows_written.get(name, 0) + int(rows) - int(copied)
        log.info("wrote %s version %d", name, version)
        return version

    def _commit_metadata(self) -> AbstractContextManager[None]:
        """Stamp Delta commits made inside the block (merges, maintenance: no writer option) with the run id."""
        return session_settings(self.spark, {COMMIT_METADATA_CONF: self.run_id} if self.run_id else {})

    def _delete_path(self, path: str) -> None:
        jvm = self.spark.sparkContext._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        fs = hadoop_path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        fs.delete(hadoop_path, True)


def table_properties(spec: TableSpec) -> dict[str, str]:
    """The Delta table properties a declaration implies: which columns get file statistics, whether Delta
    records its changes and whether row-level changes use deletion vectors."""
    properties = {"delta.enableChangeDataFeed": "true"} if spec.change_feed else {}
    if spec.deletion_vectors:
        properties["delta.enableDeletionVectors"] = "true"
    if spec.stats_columns is None:
        return properties
    if not spec.stats_columns:
        return properties | {"delta.dataSkippingNumIndexedCols": "0"}
    return properties | {"delta.dataSkippingStatsColumns": ",".join(spec.stats_columns)}


def _committed_at(commit: dict) -> datetime | None:
    """A commit's time (UTC, naive) from its commit info."""
    stamp = commit.get("inCommitTimestamp") or commit.get("timestamp")
    return datetime.fromtimestamp(stamp / 1000, UTC).replace(tzinfo=None) if stamp else None


def _ignoring_nulls(data_type: T.DataType) -> T.DataType:
    """The type with every nested element, value and field nullable (so only the shape is compared)."""
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(_ignoring_nulls(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(_ignoring_nulls(data_type.keyType), _ignoring_nulls(data_type.valueType), True)
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, _ignoring_nulls(f.dataType), True) for f in data_type.fields])
    return data_type
