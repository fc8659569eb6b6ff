"""The Delta catalogue: write, read, append, merge, time travel, schema checks, restore."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from pyspark import TaskContext
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from phm.errors import MissingTableError, SchemaMismatchError, UnknownTableError
from phm.runtime.catalog import Catalog
from phm.runtime.spark import JOB_DESCRIPTION
from phm.runtime.staging import stage
from phm.tables import RUN_ID_COLUMN, TableSpec, register

WIDGETS = register(
    TableSpec(
        name="silver.test_widgets",
        grain="one row per widget (test table)",
        description="A table for catalogue tests.",
        keys=("widget_id",),
        schema=T.StructType([T.StructField("widget_id", T.LongType()), T.StructField("colour", T.StringType())]),
    )
)

# The same table, declaring which columns Delta keeps file statistics of.
GAUGES = register(replace(WIDGETS, name="silver.test_gauges", stats_columns=("widget_id",)))
# The same table, with Delta's change data feed.
DIALS = register(replace(WIDGETS, name="silver.test_dials", change_feed=True))
# A table whose rows are changed in place, with deletion vectors.
SWATCHES = register(
    replace(
        WIDGETS,
        name="silver.test_swatches",
        deletion_vectors=True,
        schema=T.StructType([*WIDGETS.schema.fields, T.StructField("shade", T.StringType())]),
    )
)

# The same, with Delta's change data feed: an update is its old row deleted and its new one inserted.
KNOBS = register(replace(SWATCHES, name="silver.test_knobs", change_feed=True))
# Partitioned by colour, each widget's rows written together.
CLUSTERED = register(replace(SWATCHES, name="silver.test_clustered", partition_by=("colour",),
                             cluster_by=("widget_id",)))  # fmt: skip


@pytest.fixture
def catalog(spark, tmp_path):
    return Catalog(spark, str(tmp_path / "warehouse"), run_id="run-1")


def widgets(spark, rows):
    return spark.createDataFrame(rows, WIDGETS.schema)


def content(df):
    return sorted(tuple(r) for r in df.drop(RUN_ID_COLUMN).collect())


def test_path_is_layer_and_name_under_the_warehouse(catalog, tmp_path):
    assert catalog.path("silver.test_widgets") == f"{tmp_path}/warehouse/silver/test_widgets"


def test_overwrite_then_read_stamps_the_run_id_and_records_versions(spark, catalog):
    assert catalog.version(WIDGETS.name) is None
    version = catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue")]))
    assert version == 0
    assert catalog.versions_written == {WIDGETS.name: 0}
    assert catalog.rows_written == {WIDGETS.name: 2}
    table = catalog.read(WIDGETS.name)
    assert catalog.versions_read == {WIDGETS.name: 0}
    assert content(table) == [(1, "red"), (2, "blue")]
    assert {r[RUN_ID_COLUMN] for r in table.collect()} == {"run-1"}
    assert catalog.history(WIDGETS.name, 1).first()["userMetadata"] == "run-1"


def test_columns_are_the_tables_own_and_not_a_recorded_read(spark, catalog):
    assert catalog.columns(WIDGETS.name) == []
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]))
    assert catalog.columns(WIDGETS.name) == ["widget_id", "colour", RUN_ID_COLUMN]
    assert catalog.versions_read == {}


def test_append_merge_and_time_travel(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue")]))
    assert catalog.append(WIDGETS.name, widgets(spark, [(3, "green")])) == 1
    assert catalog.merge(WIDGETS.name, widgets(spark, [(2, "navy"), (4, "pink")])) == 2
    assert content(catalog.read(WIDGETS.name)) == [(1, "red"), (2, "navy"), (3, "green"), (4, "pink")]
    assert content(catalog.read(WIDGETS.name, version=1)) == [(1, "red"), (2, "blue"), (3, "green")]
    assert content(catalog.read(WIDGETS.name, version=0)) == [(1, "red"), (2, "blue")]
    assert catalog.versions_read == {WIDGETS.name: 0}  # the last read


def test_merge_is_idempotent(spark, catalog):
    batch = widgets(spark, [(1, "red"), (2, "blue")])
    catalog.merge(WIDGETS.name, batch)
    catalog.merge(WIDGETS.name, batch)
    assert content(catalog.read(WIDGETS.name)) == [(1, "red"), (2, "blue")]


def test_merge_without_update_keeps_existing_rows(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]))
    catalog.merge(WIDGETS.name, widgets(spark, [(1, "blue"), (2, "grey")]), update_matched=False)
    assert content(catalog.read(WIDGETS.name)) == [(1, "red"), (2, "grey")]


def test_replace_where_overwrites_only_matching_rows(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue")]))
    catalog.overwrite(
        WIDGETS.name, widgets(spark, [(1, "crimson")]), replace_where="colour = 'red' OR colour = 'crimson'"
    )
    assert content(catalog.read(WIDGETS.name)) == [(1, "crimson"), (2, "blue")]


def test_rows_written_are_the_writes_own_not_rows_delta_copied_or_an_earlier_commits(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue"), (3, "blue")]).coalesce(1))
    run = Catalog(spark, catalog.warehouse, run_id="run-2")
    # the one file is rewritten: Delta copies the two blue rows into the new file and counts them as output
    run.overwrite(WIDGETS.name, widgets(spark, [(1, "crimson")]), replace_where="colour IN ('red', 'crimson')")
    assert run.rows_written == {WIDGETS.name: 1}
    # nothing to replace and nothing to add: Delta makes no commit, and the latest one is not this write's
    before = catalog.version(WIDGETS.name)
    again = Catalog(spark, catalog.warehouse, run_id="run-3")
    assert again.overwrite(WIDGETS.name, widgets(spark, []), replace_where="colour = 'green'") == before
    assert again.rows_written == {WIDGETS.name: 0}
    assert again.merge(WIDGETS.name, widgets(spark, [(2, "navy")])) == before + 1
    assert again.rows_written == {WIDGETS.name: 1}  # the merge's updated row, not the rows it copied


def test_restore_puts_back_contents_or_removes_a_new_table(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]))
    catalog.overwrite(WIDGETS.name, widgets(spark, [(9, "wrong")]))
    catalog.restore(WIDGETS.name, 0)
    assertDataFrameEqual(catalog.read(WIDGETS.name), catalog.read(WIDGETS.name, version=0))
    catalog.restore(WIDGETS.name, None)
    assert not catalog.exists(WIDGETS.name)


def test_schema_mismatch_names_missing_extra_wrong_and_present_columns(spark, catalog):
    bad = spark.createDataFrame([("1", 2)], "widget_id string, size int")
    with pytest.raises(SchemaMismatchError) as caught:
        catalog.overwrite(WIDGETS.name, bad)
    message = str(caught.value)
    assert "missing columns ['colour']" in message
    assert "undeclared columns ['size']" in message
    assert "widget_id (expected bigint, got string)" in message
    assert "present columns ['size', 'widget_id']" in message
    assert not catalog.exists(WIDGETS.name)


def test_unknown_table_and_unwritten_table_are_user_errors(spark, catalog):
    with pytest.raises(UnknownTableError, match="unknown table 'gold.nope'"):
        catalog.read("gold.nope")
    with pytest.raises(MissingTableError, match="silver.test_widgets has not been written yet"):
        catalog.read(WIDGETS.name)


def test_table_names_must_be_layer_dot_name():
    with pytest.raises(ValueError, match="must be <layer>.<name>"):
        register(TableSpec("scratch.x", T.StructType([]), grain="-", description="-"))


def test_list_tables_reports_version_rows_and_writer(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red"), (2, "blue")]))
    catalog.append(WIDGETS.name, widgets(spark, [(3, "green")]))
    [info] = [t for t in catalog.list_tables() if t.name == WIDGETS.name]
    assert (info.version, info.rows, info.run_id) == (1, 3, "run-1")
    # rows from the version's checksum file, when Delta wrote one, or else counted: the same either way
    catalog.merge(WIDGETS.name, widgets(spark, [(3, "teal"), (4, "grey")]))
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "pink")]), replace_where="widget_id = 1")
    [info] = [t for t in catalog.list_tables() if t.name == WIDGETS.name]
    assert (info.version, info.rows) == (3, catalog.read(WIDGETS.name).count()) == (3, 4)
    assert Path(catalog.path(WIDGETS.name), "_delta_log", f"{3:020d}.crc").is_file()
    assert catalog._rows_from_checksum(WIDGETS.name, 3) == 4


def _statistics_of_added_files(table_path: str, version: int) -> list[dict]:
    log_file = Path(table_path) / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    return [json.loads(a["add"]["stats"]) for a in actions if "add" in a]


def test_declared_statistics_columns_apply_to_new_and_existing_tables(spark, catalog, tmp_path):
    rows = spark.createDataFrame([(1, "red"), (2, "blue")], GAUGES.schema)
    catalog.overwrite(GAUGES.name, rows)
    path = catalog.path(GAUGES.name)
    assert catalog.history(GAUGES.name, 1).first()["userMetadata"] == "run-1"
    assert (
        spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").where("key = 'delta.dataSkippingStatsColumns'").first()[1]
        == "widget_id"
    )
    assert {tuple(s["minValues"]) for s in _statistics_of_added_files(path, 0)} == {("widget_id",)}
    # A table created before its declaration named them (statistics of every column) gets the property once.
    earlier = Catalog(spark, str(tmp_path / "earlier"), run_id="run-2")
    path = earlier.path(GAUGES.name)
    rows.withColumn(RUN_ID_COLUMN, F.lit("run-0")).write.format("delta").save(path)
    assert {tuple(sorted(s["minValues"])) for s in _statistics_of_added_files(path, 0)} == {
        (RUN_ID_COLUMN, "colour", "widget_id")
    }
    version = earlier.merge(GAUGES.name, spark.createDataFrame([(3, "green")], GAUGES.schema))
    assert version == 2  # the property's commit, then the rows'
    assert {tuple(s["minValues"]) for s in _statistics_of_added_files(path, version)} == {("widget_id",)}
    assert earlier.rows_written == {GAUGES.name: 1}
    earlier.append(GAUGES.name, spark.createDataFrame([(4, "pink")], GAUGES.schema))
    assert earlier.version(GAUGES.name) == 3  # set once


def test_changes_since_a_version_are_the_rows_inserted_and_deleted_or_none_without_the_feed(spark, catalog):
    catalog.overwrite(DIALS.name, widgets(spark, [(1, "red"), (2, "blue")]))  # v0
    catalog.append(DIALS.name, widgets(spark, [(3, "green")]))  # v1
    catalog.overwrite(DIALS.name, widgets(spark, [(1, "red"), (2, "navy")]), replace_where="widget_id <= 2")  # v2

    def rows(df):
        return sorted((r.widget_id, r.colour, r._change_type) for r in df.collect())

    # over two commits, netted: widget 1 was rewritten as it was (by the same run), so it did not change
    assert rows(catalog.changes(DIALS.name, 0)) == [
        (2, "blue", "delete"),
        (2, "navy", "insert"),
        (3, "green", "insert"),
    ]
    assert rows(catalog.changes(DIALS.name, 1)) == [
        (1, "red", "delete"), (1, "red", "insert"), (2, "blue", "delete"), (2, "navy", "insert")]  # fmt: skip
    assert rows(catalog.changes(DIALS.name, 2)) == []  # nothing since
    assert catalog.versions_read[DIALS.name] == 2
    # A table without the feed declared: None.
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]))
    catalog.append(WIDGETS.name, widgets(spark, [(2, "blue")]))
    assert catalog.changes(WIDGETS.name, 0) is None


def test_changes_over_versions_written_before_the_feed_was_on_are_none(spark, tmp_path):
    earlier = Catalog(spark, str(tmp_path / "earlier"), run_id="run-2")
    path = earlier.path(DIALS.name)
    for colour in ("red", "blue"):  # v0, v1: written before the table declared the feed
        widgets(spark, [(1, colour)]).withColumn(RUN_ID_COLUMN, F.lit("run-0")).write.format("delta").mode(
            "append"
        ).save(path)
    assert earlier.append(DIALS.name, widgets(spark, [(2, "green")])) == 3  # the feed turned on (v2), then rows
    assert earlier.changes(DIALS.name, 0) is None  # v1 has no change data
    # turning the feed on changed no row: a reader of v1 would recompute for v3 only
    assert earlier.history(DIALS.name).where("version = 2").first().operation == "SET TBLPROPERTIES"
    assert earlier.data_unchanged(DIALS.name, 1) is False and earlier.data_unchanged(DIALS.name, 3)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.dataSkippingNumIndexedCols' = '8')")  # v4
    assert earlier.version(DIALS.name) == 4 and earlier.data_unchanged(DIALS.name, 3)
    assert [(r.widget_id, r._change_type) for r in earlier.changes(DIALS.name, 1).collect()] == [(2, "insert")]


def test_changes_over_commits_are_netted_and_an_update_is_a_delete_and_an_insert(spark, catalog):
    def swatches(rows):
        return spark.createDataFrame(rows, KNOBS.schema)

    def rows(df):
        return sorted((r.widget_id, r.colour, r.shade, r._change_type) for r in df.collect())

    catalog.overwrite(KNOBS.name, swatches([(1, "red", "dark"), (2, "blue", "dark"), (3, "green", "dark")]))  # v0
    catalog.update_matching(KNOBS.name, spark.createDataFrame([("red", "pale")], "colour string, shade string"),
                            on="colour")  # v1  # fmt: skip
    assert rows(catalog.changes(KNOBS.name, 0)) == [(1, "red", "dark", "delete"), (1, "red", "pale", "insert")]
    catalog.append(KNOBS.name, swatches([(4, "grey", "dark")]))  # v2: added...
    catalog.delete_matching(KNOBS.name, swatches([(4, None, None), (3, None, None)]))  # v3: ...and removed again
    catalog.update_matching(KNOBS.name, spark.createDataFrame([("red", "dark")], "colour string, shade string"),
                            on="colour")  # v4: widget 1 back as it was at v0  # fmt: skip
    assert rows(catalog.changes(KNOBS.name, 0)) == [(3, "green", "dark", "delete")]
    assert rows(catalog.changes(KNOBS.name, 1)) == [
        (1, "red", "dark", "insert"), (1, "red", "pale", "delete"), (3, "green", "dark", "delete")]  # fmt: skip


def test_changes_applied_in_one_commit_upserts_first_then_deletes_then_updates_where_they_differ(spark, tmp_path):
    warehouse = str(tmp_path / "warehouse")
    first, second = (Catalog(spark, warehouse, run_id=run) for run in ("run-1", "run-2"))
    rows = [(1, "red", "dark"), (2, "red", "light"), (3, "blue", "dark"), (4, "green", "dark"), (5, "grey", "dark")]
    first.overwrite(SWATCHES.name, spark.createDataFrame(rows, SWATCHES.schema).repartition(1))
    upserts = spark.createDataFrame([(2, "red", "pale"), (6, "white", "pale")], SWATCHES.schema)
    deleted = spark.createDataFrame([(2,), (3,), (3,), (9,)], "widget_id long")  # 2 is upserted: it stays
    updated = spark.createDataFrame(
        [(1, "red"), (3, "black"), (4, "teal"), (6, "black"), (8, "absent")], "widget_id long, colour string"
    )  # 1 is as it was (no change), 3 is deleted, 6 upserted, 8 not in the table
    assert second.apply_changes(SWATCHES.name, upserts, deleted, updated) == 1
    table = second.read(SWATCHES.name)
    assert sorted((r.widget_id, r.colour, r.shade, r[RUN_ID_COLUMN]) for r in table.collect()) == [
        (1, "red", "dark", "run-1"), (2, "red", "pale", "run-2"), (4, "teal", "dark", "run-2"),
        (5, "grey", "dark", "run-1"), (6, "white", "pale", "run-2")]  # fmt: skip
    metrics = second.last_data_operation(SWATCHES.name)["operationMetrics"]
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"], metrics["numTargetRowsDeleted"]) == (
        "1", "2", "1")  # fmt: skip
    assert int(metrics["numTargetRowsCopied"]) == 0  # in place: deletion vectors, no file rewritten


def test_changes_applied_without_inserting_leave_out_upserts_the_table_does_not_hold(spark, tmp_path):
    warehouse = str(tmp_path / "warehouse")
    first, second = (Catalog(spark, warehouse, run_id=run) for run in ("run-1", "run-2"))
    rows = [(1, "red", "dark"), (2, "red", "light"), (3, "blue", "dark")]
    first.overwrite(SWATCHES.name, spark.createDataFrame(rows, SWATCHES.schema).repartition(1))
    upserts = spark.createDataFrame([(2, "red", "pale"), (6, "white", "pale")], SWATCHES.schema)
    deleted = spark.createDataFrame([(3,)], "widget_id long")
    updated = spark.createDataFrame([(1, "teal")], "widget_id long, colour string")
    # the caller appends widget 6 itself (build_person_model: the events whose key the table does not hold)
    assert second.apply_changes(SWATCHES.name, upserts, deleted, updated, broadcast=True, insert=False) == 1
    table = second.read(SWATCHES.name)
    assert sorted((r.widget_id, r.colour, r.shade, r[RUN_ID_COLUMN]) for r in table.collect()) == [
        (1, "teal", "dark", "run-2"), (2, "red", "pale", "run-2")]  # fmt: skip
    metrics = second.last_data_operation(SWATCHES.name)["operationMetrics"]
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"], metrics["numTargetRowsDeleted"]) == (
        "0", "2", "1")  # fmt: skip


def test_rows_updated_where_a_column_matches_and_deleted_by_key_in_place(spark, tmp_path):
    warehouse = str(tmp_path / "warehouse")
    first, second = (Catalog(spark, warehouse, run_id=run) for run in ("run-1", "run-2"))
    rows = [(1, "red", "dark"), (2, "red", "light"), (3, "blue", "dark"), (4, "green", "dark")]
    first.overwrite(SWATCHES.name, spark.createDataFrame(rows, SWATCHES.schema).repartition(1))
    # every red row gets the new shade, with this run's id; many rows match one of the source's
    pale = spark.createDataFrame([("red", "pale")], "colour string, shade string")
    assert second.update_matching(SWATCHES.name, pale, on="colour") == 1
    assert second.rows_written == {SWATCHES.name: 2}
    assert second.delete_matching(SWATCHES.name, widgets(spark, [(3, "ignored"), (3, "twice"), (9, "absent")])) == 2
    table = second.read(SWATCHES.name)
    assert sorted((r.widget_id, r.colour, r.shade, r[RUN_ID_COLUMN]) for r in table.collect()) == [
        (1, "red", "pale", "run-2"), (2, "red", "pale", "run-2"), (4, "green", "dark", "run-1")]  # fmt: skip
    # in place: the one file written first keeps its unchanged row, the changed rows marked in a deletion vector
    commits = {r.version: r for r in second.history(SWATCHES.name).collect()}
    assert [commits[v].operation for v in (1, 2)] == ["MERGE", "MERGE"]
    assert all(int(commits[v].operationMetrics["numTargetDeletionVectorsAdded"]) > 0 for v in (1, 2))
    assert all(int(commits[v].operationMetrics["numTargetRowsCopied"]) == 0 for v in (1, 2))
    with pytest.raises(SchemaMismatchError, match="shadow"):
        second.update_matching(SWATCHES.name, spark.createDataFrame([("red", "x")], "colour string, shadow string"),
                               on="colour")  # fmt: skip


def test_least_value_from_the_files_statistics_or_none_where_they_cannot_say_for_sure(spark, catalog):
    swatches = [(1, "red", "dark"), (2, "blue", "light")]
    catalog.overwrite(SWATCHES.name, spark.createDataFrame(swatches, SWATCHES.schema).repartition(1))
    catalog.append(SWATCHES.name, spark.createDataFrame([(3, "green", None)], SWATCHES.schema))  # a file of its own
    assert catalog.least_value(SWATCHES.name, "colour") == "blue"
    assert catalog.least_value(SWATCHES.name, "shade") == "dark"  # the second file holds nulls only
    # blue's row deleted in place: its file's statistics still say blue, and a deletion vector says a row is gone
    catalog.delete_matching(SWATCHES.name, widgets(spark, [(2, "any")]))
    assert catalog.least_value(SWATCHES.name, "colour") is None
    # another file with blue at its least and nothing deleted: a blue row is there
    catalog.append(SWATCHES.name, spark.createDataFrame([(5, "blue", "dark")], SWATCHES.schema))
    assert catalog.least_value(SWATCHES.name, "colour") == "blue"
    catalog.delete_matching(SWATCHES.name, widgets(spark, [(5, "any")]))
    catalog.overwrite(SWATCHES.name, catalog.read(SWATCHES.name).drop(RUN_ID_COLUMN))  # rewritten: exact again
    assert catalog.least_value(SWATCHES.name, "colour") == "green"
    # Delta keeps a string's first 32 characters: a least value that long may have been cut
    catalog.append(SWATCHES.name, spark.createDataFrame([(4, "a" * 40, None)], SWATCHES.schema))
    assert catalog.least_value(SWATCHES.name, "colour") is None
    assert catalog.read(SWATCHES.name).agg(F.min("colour")).first()[0] == "a" * 40
    with pytest.raises(TypeError, match="widget_id is bigint"):
        catalog.least_value(SWATCHES.name, "widget_id")


def test_compaction_joins_the_small_files_and_changes_no_row_a_reader_would_recompute_for(spark, catalog):
    catalog.overwrite(DIALS.name, widgets(spark, [(1, "red")]).repartition(1))  # v0
    for widget in range(2, 6):  # v1-v4: a file each
        catalog.append(DIALS.name, widgets(spark, [(widget, "blue")]).repartition(1))
    before, rows_before = catalog.version(DIALS.name), content(catalog.read(DIALS.name))
    assert len(catalog.files(DIALS.name)) == 5 and catalog.data_unchanged(DIALS.name, before)
    metrics = catalog.compact(DIALS.name, small_file_bytes=1024 * 1024, target_file_bytes=128 * 1024 * 1024)
    assert int(metrics["numRemovedFiles"]) == 5 and int(metrics["numAddedFiles"]) == 1
    assert catalog.version(DIALS.name) == before + 1 and len(catalog.files(DIALS.name)) == 1
    assert content(catalog.read(DIALS.name)) == rows_before
    assert catalog.last_writer(DIALS.name) == "run-1"  # the maintenance commit names its run too
    # no row changed: the same data as before, no change data, and the last data commit is still the append
    assert catalog.data_unchanged(DIALS.name, before) and not catalog.data_unchanged(DIALS.name, before - 1)
    assert catalog.changes(DIALS.name, before).count() == 0
    assert catalog.last_data_operation(DIALS.name)["operation"] == "WRITE"
    # nothing left to join: no commit
    assert catalog.compact(DIALS.name, 1024 * 1024, 128 * 1024 * 1024) == {}
    assert catalog.version(DIALS.name) == before + 1
    # a change after the compaction is a change
    catalog.append(DIALS.name, widgets(spark, [(6, "green")]))
    assert not catalog.data_unchanged(DIALS.name, before) and not catalog.data_unchanged(DIALS.name, None)


def test_vacuum_deletes_only_files_no_retained_version_needs_and_commits_nothing_when_there_are_none(spark, catalog):
    catalog.overwrite(WIDGETS.name, widgets(spark, [(1, "red")]).repartition(1))
    catalog.overwrite(WIDGETS.name, widgets(spark, [(2, "blue")]).repartition(1))  # v0's file no longer needed
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        assert catalog.vacuum(WIDGETS.name, retention_hours=1.0, listing_parallelism=2) == 0  # needed an hour ago
        assert catalog.version(WIDGETS.name) == 1  # nothing to delete: no VACUUM commits
        assert catalog.vacuum(WIDGETS.name, retention_hours=0.0, listing_parallelism=2) == 1
        assert catalog.vacuum(WIDGETS.name, retention_hours=0.0, listing_parallelism=2) == 0
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    assert content(catalog.read(WIDGETS.name)) == [(2, "blue")]
    assert catalog.data_unchanged(WIDGETS.name, 1)  # VACUUM START and END change no row
    assert catalog.spark.conf.get("spark.sql.sources.parallelPartitionDiscovery.parallelism", None) is None
    assert catalog.created_at(WIDGETS.name) is not None


def test_a_clustered_table_writes_each_keys_rows_to_one_file_sorted_within_it(spark, catalog):
    rows = [(w % 7, colour, f"shade {w}") for w in range(60) for colour in ("red", "blue")]
    shuffled = spark.createDataFrame(rows, CLUSTERED.schema).repartition(3)  # every task holds every widget
    catalog.overwrite(CLUSTERED.name, shuffled)
    catalog.append(CLUSTERED.name, shuffled)
    written = catalog.read(CLUSTERED.name).withColumn("file", F.input_file_name())
    assert written.count() == 240
    files_per_key = written.groupBy("widget_id", "colour").agg(F.countDistinct("file").alias("files")).collect()
    assert {r.files for r in files_per_key} == {2}  # one file per write for each widget and colour
    for (path,) in written.select("file").distinct().collect():
        in_file = [r.widget_id for r in spark.read.parquet(path).collect()]  # one small file: one task, in order
        assert in_file == sorted(in_file)
    assert len(catalog.files(CLUSTERED.name)) <= 2 * 2 * 2  # colours x shuffle partitions (2 in tests) x writes


def test_writes_run_as_spark_jobs_named_by_their_table_and_the_callers_name_comes_back(spark, catalog, tmp_path):
    """What Spark's UI and event log (bench/eventlog.py) show for a write: the table, not PySpark's call site."""
    running_as = F.udf(lambda _: TaskContext.get().getLocalProperty(JOB_DESCRIPTION), T.StringType())
    context = spark.sparkContext
    context.setJobDescription("the caller's step")
    try:
        for write, widget in ((catalog.overwrite, 1), (catalog.append, 2), (catalog.merge, 3)):
            write(WIDGETS.name, widgets(spark, [(widget, "")]).withColumn("colour", running_as("colour")))
            assert context.getLocalProperty(JOB_DESCRIPTION) == "the caller's step"
        staged = stage(spark, widgets(spark, [(4, "")]).withColumn("colour", running_as("colour")), tmp_path / "x")
        assert context.getLocalProperty(JOB_DESCRIPTION) == "the caller's step"
    finally:
        context.setLocalProperty(JOB_DESCRIPTION, None)

    (overwritten, appended, merged) = content(catalog.read(WIDGETS.name))
    assert (overwritten, appended) == ((1, "write silver.test_widgets"), (2, "append to silver.test_widgets"))
    # Delta adds its step to a merge's: "merge into silver.test_widgets - MERGE operation - materialize source"
    assert merged[1].startswith("merge into silver.test_widgets - ")
    assert [tuple(r) for r in staged.collect()] == [(4, "stage x")]
    assert context.getLocalProperty(JOB_DESCRIPTION) is None
