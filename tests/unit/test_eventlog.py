"""bench/eventlog.py: task-seconds per SQL execution and stage from Spark's event logs, rolled and compressed or
not; bench/bench.py's stage processes writing them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import zstandard

import eventlog

from .test_bench import bench

SQL_START = "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart"
WRITE_PLAN = """== Physical Plan ==
AdaptiveSparkPlan (4)
+- Execute InsertIntoHadoopFsRelationCommand (3)
   +- WriteFiles (2)
      +- Scan parquet  (1)

(1) Scan parquet
Output [2]: [person_id#1, code#2]
Location: InMemoryFileIndex [file:/w/bronze/gp_events/period=2026-01, file:/w/bronze/gp_events/period=2026-02]
"""
JOIN_PLAN = """== Physical Plan ==
(1) Scan parquet spark_catalog.delta.`file:/w/silver/gp_events`
Location: PreparedDeltaFileIndex [file:/checkpoints/run-1/gp_events/]
(2) Scan parquet
Location: TahoeLogFileIndex(1 paths)[file:/w/vault/identity]
"""


def task_end(stage: int, launch: int, finish: int, *, failed: bool = False, cpu_ms: int = 0, read: int = 0) -> dict:
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Task Info": {"Launch Time": launch, "Finish Time": finish, "Failed": failed, "Killed": False},
        "Task Metrics": {"Executor Run Time": finish - launch, "Executor CPU Time": cpu_ms * 1_000_000,
                         "JVM GC Time": 10, "Input Metrics": {"Bytes Read": read},
                         "Output Metrics": {"Bytes Written": 7},
                         "Shuffle Read Metrics": {"Remote Bytes Read": 1, "Local Bytes Read": 2},
                         "Shuffle Write Metrics": {"Shuffle Bytes Written": 5}, "Disk Bytes Spilled": 0},
    }  # fmt: skip


def job_start(execution: int | None, *stages: int) -> dict:
    properties = {} if execution is None else {"spark.sql.execution.id": str(execution)}
    return {"Event": "SparkListenerJobStart", "Stage IDs": list(stages), "Properties": properties,
            "Stage Infos": [{"Stage ID": s, "Stage Name": f"stage {s} at x"} for s in stages]}  # fmt: skip


EVENTS = [
    {"Event": "SparkListenerLogStart", "Spark Version": "4.2.0"},
    {"Event": "SparkListenerApplicationStart", "App ID": "local-1", "Timestamp": 1_000},
    {"Event": SQL_START, "executionId": 0, "rootExecutionId": 0, "physicalPlanDescription": WRITE_PLAN,
     "description": "parquet at /work/main/jobs/ingest.py:194"},
    job_start(0, 0, 1),
    task_end(0, 2_000, 4_500, cpu_ms=2_000, read=100),
    task_end(0, 2_000, 3_000, failed=True),
    task_end(1, 5_000, 5_500),
    {"Event": SQL_START, "executionId": 1, "rootExecutionId": 0, "physicalPlanDescription": JOIN_PLAN,
     "description": "collect at <unknown>:0"},
    job_start(1, 2),
    task_end(2, 6_000, 10_000, read=1_000),
    job_start(None, 3),  # an RDD action outside any SQL execution
    task_end(3, 10_000, 10_250),
    {"Event": "SparkListenerApplicationEnd", "Timestamp": 12_000},
]  # fmt: skip


def test_task_seconds_are_summed_by_stage_and_sql_execution_with_labels_that_carry_no_data():
    summary = eventlog.summarise(EVENTS)

    assert (summary.application, summary.wall_seconds) == ("local-1", 11.0)
    assert (summary.tasks, summary.failed_tasks, summary.task_seconds) == (5, 1, 8.25)
    write, join, outside = summary.executions[0], summary.executions[1], summary.executions[eventlog.NO_EXECUTION]
    assert (write.stage_ids, write.tasks, write.task_seconds) == ([0, 1], 3, 4.0)
    assert write.label == "parquet at ingest.py:194: bronze.gp_events -> Execute InsertIntoHadoopFsRelationCommand"
    assert write.reads == ["bronze.gp_events"]  # a partition's folder is its table's
    assert (join.root_id, join.reads, join.command, join.task_seconds) == (0, ["gp_events", "vault.identity"], "", 4.0)
    assert join.label == "collect at <unknown>:0: gp_events, vault.identity"
    assert (outside.call, outside.task_seconds) == ("(no SQL execution)", 0.25)
    assert [e.execution_id for e in summary.busiest(2)] == [0, 1]  # ties: the earlier first

    stage = summary.stages[0]
    assert (stage.execution_id, stage.tasks, stage.failed_tasks, stage.task_seconds) == (0, 2, 1, 3.5)
    assert (stage.run_seconds, stage.cpu_seconds, stage.gc_seconds) == (3.5, 2.0, 0.02)
    assert (stage.input_bytes, stage.output_bytes, stage.shuffle_read_bytes, stage.shuffle_write_bytes) == (
        100, 14, 6, 10)  # fmt: skip


def test_scanned_locations_are_named_as_the_catalogue_names_tables():
    assert eventlog.table_name("/w/warehouse/gold/person/") == "gold.person"
    assert eventlog.table_name("/w/warehouse/silver/ae/period=2026-01") == "silver.ae"
    assert eventlog.table_name("/w/warehouse/ops/job_runs/_delta_log/00000000000000000010.json") == "ops.job_runs log"
    assert eventlog.table_name("/w/checkpoints/ingest-1/gp_events") == "gp_events"  # staged rows: their folder


def test_the_tasks_of_a_stretch_of_the_run_are_those_launched_in_it():
    """One stage of a `phm refresh` process: the tasks launched from its start (inclusive) to the next's."""
    summary = eventlog.summarise(EVENTS, launched_between=(2.0, 6.0))

    assert (summary.tasks, summary.task_seconds, summary.wall_seconds) == (3, 4.0, 4.0)
    assert [(e.execution_id, e.task_seconds) for e in summary.busiest(5)] == [(0, 4.0)]
    assert eventlog.summarise(EVENTS, launched_between=(6.0, 12.0)).task_seconds == 4.25


def test_the_wall_time_is_split_by_how_many_tasks_were_running():
    """The application from 1 s to 12 s: two tasks from 2 s (one failing at 3 s, the other running to 4.5 s), one
    from 5 to 5.5 s, one from 6 to 10 s and the next from 10 to 10.25 s."""
    whole = eventlog.summarise(EVENTS)
    assert whole.seconds_by_tasks_running == {0: 3.75, 1: 6.25, 2: 1.0}
    assert whole.idle_seconds == 3.75

    # A stretch counts the tasks running in it, clipped to it, wherever they were launched.
    assert eventlog.summarise(EVENTS, launched_between=(2.0, 6.0)).seconds_by_tasks_running == {0: 1.0, 1: 2.0, 2: 1.0}
    assert eventlog.summarise(EVENTS, launched_between=(3.0, 4.0)).seconds_by_tasks_running == {1: 1.0}
    assert eventlog.summarise(EVENTS, launched_between=(10.5, 12.0)).idle_seconds == 1.5
    assert eventlog.tasks_running([], 0, 500) == {0: 0.5}


def test_the_report_ranks_executions_and_one_executions_stages_are_listed():
    summary = eventlog.summarise(EVENTS)

    lines = eventlog.report(summary, top=2).splitlines()
    assert lines[0] == "local-1: 8.2 task-s in 5 tasks (1 failed) over 11.0 s"
    assert lines[1] == "running: no tasks 3.8 s, 1 task 6.2 s, 2 tasks 1.0 s"
    assert lines[3].split()[:4] == ["4.0", "48.5%", "3", "#0"]
    assert lines[4].split()[:4] == ["4.0", "48.5%", "1", "#1"]
    assert len(lines) == 5
    stages = eventlog.execution_report(summary, 0).splitlines()
    assert [line.split()[0] for line in stages[2:]] == ["0", "1"]
    with pytest.raises(eventlog.EventLogError, match="no execution 7"):
        eventlog.execution_report(summary, 7)


def _lines(events: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def test_a_rolled_log_is_read_in_spark_order_compressed_or_not_and_a_cut_last_line_is_skipped(tmp_path):
    log = tmp_path / "eventlog_v2_local-1"
    log.mkdir()
    parts = [EVENTS[:4], EVENTS[4:8], EVENTS[8:]]
    # events_10_ sorts before events_2_ as text; Spark's order is by the number.
    (log / "events_1_local-1.zstd").write_bytes(zstandard.ZstdCompressor().compress(_lines(parts[0])))
    (log / "events_2_local-1.zstd").write_bytes(zstandard.ZstdCompressor().compress(_lines(parts[1])))
    (log / "events_10_local-1.zstd").write_bytes(
        zstandard.ZstdCompressor().compress(_lines(parts[2]) + b'{"Event": "SparkListenerTaskEn')
    )
    (log / "appstatus_local-1").write_bytes(b"")

    assert list(eventlog.read_events(log)) == EVENTS
    plain = tmp_path / "local-1.inprogress"
    plain.write_bytes(_lines(EVENTS))
    assert eventlog.summarise(eventlog.read_events(plain)).task_seconds == 8.25


def test_unreadable_logs_are_named_with_what_to_do(tmp_path, capsys):
    broken = tmp_path / "local-2"
    broken.write_bytes(_lines(EVENTS[:2]) + b"not json\n" + _lines(EVENTS[2:3]))
    with pytest.raises(eventlog.EventLogError, match=r"local-2, line 3: not a JSON event"):
        list(eventlog.read_events(broken))
    lz4 = tmp_path / "local-3.lz4"
    lz4.write_bytes(b"\x00")
    with pytest.raises(eventlog.EventLogError, match="compressed with lz4.*compression.codec=zstd"):
        list(eventlog.read_events(lz4))
    not_zstd = tmp_path / "local-4.zstd"
    not_zstd.write_bytes(b"plain text")
    with pytest.raises(eventlog.EventLogError, match="local-4.zstd: not a readable event log"):
        list(eventlog.read_events(not_zstd))
    with pytest.raises(eventlog.EventLogError, match="no events_<n>_<app id> files"):
        list(eventlog.read_events(tmp_path))

    missing = tmp_path / "missing"
    assert eventlog.main([str(missing)]) == 2
    said = capsys.readouterr().err
    assert said == f"eventlog: {missing}: no such event log; Spark writes them under spark.eventLog.dir\n"


def test_a_stage_process_gets_a_spark_configuration_that_keeps_the_users_settings(tmp_path, monkeypatch):
    users = tmp_path / "users-conf"
    users.mkdir()
    (users / "spark-defaults.conf").write_text("spark.ui.enabled false")
    monkeypatch.setenv("SPARK_CONF_DIR", str(users))
    folder = tmp_path / "events"
    (folder / "stale").mkdir(parents=True)  # an earlier run's log: gone

    env = bench.event_log_env(folder)

    assert env["SPARK_CONF_DIR"] == str(folder / "conf")
    assert sorted(p.name for p in folder.iterdir()) == ["conf"]
    assert (folder / "conf" / "spark-defaults.conf").read_text().splitlines() == [
        "spark.ui.enabled false",
        "spark.eventLog.enabled true",
        f"spark.eventLog.dir {folder.resolve().as_uri()}",
    ]
    assert bench.task_time(folder) == {}  # no Spark application ran


@pytest.mark.slow
def test_a_real_spark_applications_log_gives_its_writes_and_reads_tasks(tmp_path):
    """A Spark process started with bench.py's environment writes a (rolled, zstd) log that is read back: the
    write's three tasks and the read of what it wrote."""
    folder, numbers = tmp_path / "events", tmp_path / "numbers"
    script = textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
        spark.range(0, 3000, 1, 3).write.parquet("{numbers}")
        assert spark.read.parquet("{numbers}").filter("id % 2 = 0").count() == 1500
        spark.stop()
    """)
    subprocess.run([sys.executable, "-c", script], env=bench.event_log_env(folder), check=True, timeout=300)

    found = bench.task_time(folder)
    (log,) = [p for p in folder.iterdir() if p.name != "conf"]
    summary = eventlog.summarise(eventlog.read_events(log))
    writes = [e for e in summary.executions.values() if e.command == "Execute InsertIntoHadoopFsRelationCommand"]
    assert [(e.tasks, e.reads) for e in writes] == [(3, [])]
    assert "numbers" in {table for e in summary.executions.values() for table in e.reads}
    assert summary.failed_tasks == 0 and summary.tasks >= 4
    assert found["task_seconds"] == round(summary.task_seconds, 1) > 0
    assert found["idle_seconds"] == found["seconds_by_tasks_running"]["0"] > 0  # the JVM starting, at least
    assert sum(found["seconds_by_tasks_running"].values()) == pytest.approx(summary.wall_seconds, abs=0.3)
    # local[2]: more than two only where a task's finish (when the driver has its result) passes its core's next
    # task's launch, by milliseconds.
    assert sum(s for n, s in found["seconds_by_tasks_running"].items() if int(n) > 2) < 0.1
    assert len(found["busiest"]) == min(3, len(summary.busiest(3)))
