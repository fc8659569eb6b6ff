"""Where a Spark application's executor time went, from its event log: task-seconds per SQL execution and stage.

A whole run's wall time on a shared machine moves by 5-10% between runs of the same code, so a change that saves
3% of one query cannot be seen in it. The seconds the executors' tasks spent in each query move much less, and
say which query a change touched; this reads them from the event log Spark writes when `spark.eventLog.enabled`
is true (`bench/bench.py --event-logs` turns it on for every stage it runs). In Spark 4 the log is a folder
`eventlog_v2_<app id>` of rolled files `events_<n>_<app id>.zstd` (zstd-compressed by default), or one file when
rolling is off; both are read, compressed with zstd or not.

    python bench/eventlog.py LOG [--top 25] [--execution ID] [--json]

An execution is labelled by its description (the catalogue's writes name their table, `write silver.gp_events`;
others keep PySpark's call site, `collect at ingest.py:195`), the tables it scanned (`silver.gp_events`, or a
staged folder's name) and the command it ran (`Execute SaveIntoDataSourceCommand`), never by the data: plans can
hold literal values, so no plan text is printed.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zstandard

from phm.tables import LAYERS

NO_EXECUTION = -1  # jobs run outside any SQL execution (RDD actions, e.g. a checkpoint's)
SQL_EVENTS = "org.apache.spark.sql.execution.ui."
# A scanned location in a physical plan: "Location: PreparedDeltaFileIndex(1 paths)[file:/w/silver/gp_events]"
# or "Location: InMemoryFileIndex [file:/w/bronze/gp_events, ...]".
SCANNED = re.compile(r"Location: \w+(?:\(\d+ paths?\))? ?\[(?:\w+:)?([^,\]]+)")
COMMAND = re.compile(r"\bExecute (\w+)|\b(AppendData|OverwriteByExpression|OverwritePartitionsDynamic|WriteFiles)\b")
OTHER_CODECS = (".lz4", ".lzf", ".snappy")  # spark.eventLog.compression.codec's others (short names as suffixes)
ROLLED_FILE = re.compile(r"^events_(\d+)_")


class EventLogError(Exception):
    """An event log that cannot be read; the message names the file and says what to do."""


@dataclass
class StageTotals:
    """One stage's tasks (every attempt's), summed."""

    stage_id: int
    name: str = ""
    execution_id: int = NO_EXECUTION
    tasks: int = 0
    failed_tasks: int = 0
    task_seconds: float = 0.0  # launch to finish, as a core is busy with the task
    run_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gc_seconds: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    spilled_bytes: int = 0


@dataclass
class ExecutionTotals:
    """One SQL execution (a query, a write, a Delta command's inner query) and its stages' tasks."""

    execution_id: int
    root_id: int
    call: str = ""
    reads: list[str] = field(default_factory=list)
    command: str = ""
    stage_ids: list[int] = field(default_factory=list)
    tasks: int = 0
    task_seconds: float = 0.0

    @property
    def label(self) -> str:
        reads = ", ".join(self.reads) if self.reads else "no table"
        return f"{self.call or '(no call)'}: {reads}" + (f" -> {self.command}" if self.command else "")


@dataclass
class LogSummary:
    application: str = ""
    wall_seconds: float = 0.0  # the application's start to its end (or its last task, if it did not end)
    tasks: int = 0
    failed_tasks: int = 0
    task_seconds: float = 0.0
    # How many of the wall seconds had 0, 1, 2, ... tasks running: the seconds with none are the driver's alone
    # (planning, Python, pandas, Delta's log), and those with fewer tasks than cores are a stage's last tasks.
    # A task finishes when the driver has its result, so its core's next task may have started milliseconds
    # before: counts above the cores are those instants.
    seconds_by_tasks_running: dict[int, float] = field(default_factory=dict)
    executions: dict[int, ExecutionTotals] = field(default_factory=dict)
    stages: dict[int, StageTotals] = field(default_factory=dict)

    @property
    def idle_seconds(self) -> float:
        """The wall seconds in which no task ran."""
        return self.seconds_by_tasks_running.get(0, 0.0)

    def busiest(self, top: int) -> list[ExecutionTotals]:
        ranked = sorted(self.executions.values(), key=lambda e: (-e.task_seconds, e.execution_id))
        return [e for e in ranked if e.tasks][:top]


def log_files(path: Path) -> list[Path]:
    """The files of one application's log, in the order Spark wrote them."""
    if path.is_dir():
        rolled = [(int(m.group(1)), p) for p in path.iterdir() if (m := ROLLED_FILE.match(p.name))]
        if not rolled:
            raise EventLogError(f"{path}: no events_<n>_<app id> files; give an eventlog_v2_* folder or a log file")
        return [p for _, p in sorted(rolled)]
    if path.is_file():
        return [path]
    raise EventLogError(f"{path}: no such event log; Spark writes them under spark.eventLog.dir")


def _text(path: Path, raw: io.BufferedReader) -> io.TextIOWrapper:
    codec = path.suffix if path.suffix != ".inprogress" else Path(path.stem).suffix
    if codec == ".zstd":
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True),
                                encoding="utf-8")  # fmt: skip
    if codec in OTHER_CODECS:
        raise EventLogError(
            f"{path}: compressed with {codec[1:]}, which this does not read; set "
            "spark.eventLog.compression.codec=zstd (Spark's default) or spark.eventLog.compress=false"
        )
    return io.TextIOWrapper(raw, encoding="utf-8")  # uncompressed: no suffix, or the app id's (".1796649660932")


def read_events(path: Path) -> Iterator[dict]:
    """Every event of one application's log. A log still being written may end in half a line, which is skipped."""
    for file in log_files(path):
        with file.open("rb") as raw, _text(file, raw) as lines:
            pending: int | None = None  # the line number of one that was not JSON
            try:
                for number, line in enumerate(lines, 1):
                    if pending is not None:
                        # (not quoted: an event can hold a plan's literal values)
                        raise EventLogError(f"{file}, line {pending}: not a JSON event; is it an event log?")
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        pending = number  # only the last line may be cut short
            except (zstandard.ZstdError, UnicodeDecodeError) as error:
                raise EventLogError(f"{file}: not a readable event log ({error})") from None


def table_name(location: str) -> str:
    """A scanned location as the catalogue names it ("silver.gp_events" for <warehouse>/silver/gp_events, and
    "silver.gp_events log" for its _delta_log's files), or its last part for anything else (a job's staged rows:
    "gp_events" for <checkpoints>/<run>/gp_events)."""
    parts = location.rstrip("/").split("/")
    log = "_delta_log" in parts[:-1]  # Delta reading its log's files (a snapshot, a checkpoint)
    if log:
        parts = parts[: parts.index("_delta_log")]
    while len(parts) > 1 and "=" in parts[-1]:  # a partition's folder (period=2026-01): its table's
        parts.pop()
    name = f"{parts[-2]}.{parts[-1]}" if len(parts) > 1 and parts[-2] in LAYERS else parts[-1]
    return f"{name} log" if log else name


def call_site(description: str) -> str:
    """The call that ran an execution, with its file's name but not its folder: "collect at ingest.py:194"."""
    action, at, where = description.partition(" at ")
    return f"{action} at {where.rsplit('/', 1)[-1]}" if at else description


def summarise(events: Iterable[dict], launched_between: tuple[float, float] | None = None) -> LogSummary:
    """The log's tasks summed by stage and SQL execution; with `launched_between` (epoch seconds, the end left
    out) only the tasks launched in that window, e.g. one stage of a `phm refresh` process, and its length as
    the wall time. The seconds by tasks running count every task that ran in the wall time, wherever it was
    launched."""
    window = None if launched_between is None else tuple(round(t * 1000) for t in launched_between)
    summary = LogSummary()
    started = ended = last_task = None
    spans = []  # every task's (launch, finish), ms
    for event in events:
        kind = event["Event"]
        if kind == "SparkListenerApplicationStart":
            summary.application, started = event.get("App ID", ""), event["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            ended = event["Timestamp"]
        elif kind == SQL_EVENTS + "SparkListenerSQLExecutionStart":
            plan = event.get("physicalPlanDescription", "")
            command = COMMAND.search(plan)
            summary.executions[event["executionId"]] = ExecutionTotals(
                execution_id=event["executionId"],
                root_id=event.get("rootExecutionId", event["executionId"]),
                call=call_site(event.get("description", "")),
                reads=sorted({table_name(location) for location in SCANNED.findall(plan)}),
                command=(f"Execute {command.group(1)}" if command.group(1) else command.group(2)) if command else "",
            )
        elif kind == "SparkListenerJobStart":
            execution = int((event.get("Properties") or {}).get("spark.sql.execution.id", NO_EXECUTION))
            for info in event.get("Stage Infos", []):
                stage = summary.stages.setdefault(info["Stage ID"], StageTotals(info["Stage ID"]))
                stage.name, stage.execution_id = info["Stage Name"], execution
        elif kind == "SparkListenerTaskEnd":
            info, metrics = event["Task Info"], event.get("Task Metrics") or {}
            spans.append((info["Launch Time"], info["Finish Time"]))
            if window is not None and not window[0] <= info["Launch Time"] < window[1]:
                continue
            stage = summary.stages.setdefault(event["Stage ID"], StageTotals(event["Stage ID"]))
            seconds = (info["Finish Time"] - info["Launch Time"]) / 1000
            failed = info.get("Failed", False) or info.get("Killed", False)
            stage.tasks += 1
            stage.failed_tasks += failed
            stage.task_seconds += seconds
            stage.run_seconds += metrics.get("Executor Run Time", 0) / 1000
            stage.cpu_seconds += metrics.get("Executor CPU Time", 0) / 1e9
            stage.gc_seconds += metrics.get("JVM GC Time", 0) / 1000
            stage.input_bytes += (metrics.get("Input Metrics") or {}).get("Bytes Read", 0)
            stage.output_bytes += (metrics.get("Output Metrics") or {}).get("Bytes Written", 0)
            fetched = metrics.get("Shuffle Read Metrics") or {}
            stage.shuffle_read_bytes += fetched.get("Remote Bytes Read", 0) + fetched.get("Local Bytes Read", 0)
            stage.shuffle_write_bytes += (metrics.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
            stage.spilled_bytes += metrics.get("Disk Bytes Spilled", 0)
            summary.tasks += 1
            summary.failed_tasks += failed
            summary.task_seconds += seconds
            last_task = max(last_task or 0, info["Finish Time"])
            started = started if started is not None else info["Launch Time"]
    for stage in summary.stages.values():
        execution = summary.executions.setdefault(
            stage.execution_id, ExecutionTotals(stage.execution_id, stage.execution_id, call="(no SQL execution)")
        )
        execution.stage_ids.append(stage.stage_id)
        execution.tasks += stage.tasks
        execution.task_seconds += stage.task_seconds
    if window is not None:
        summary.wall_seconds = (window[1] - window[0]) / 1000
        summary.seconds_by_tasks_running = tasks_running(spans, *window)
    elif started is not None:
        end = ended or last_task or started
        summary.wall_seconds = (end - started) / 1000
        summary.seconds_by_tasks_running = tasks_running(spans, started, end)
    return summary


def tasks_running(spans: list[tuple[int, int]], begin: int, end: int) -> dict[int, float]:
    """Seconds of [begin, end) (ms) by how many of the tasks' (launch, finish) spans (ms) were running."""
    inside = [(max(launch, begin), min(finish, end)) for launch, finish in spans if launch < end and finish > begin]
    changes = sorted([(launch, 1) for launch, _ in inside] + [(finish, -1) for _, finish in inside])
    seconds: dict[int, float] = {}
    running, at = 0, begin
    for when, change in [*changes, (end, 0)]:
        if when > at:
            seconds[running] = seconds.get(running, 0.0) + (when - at) / 1000
            at = when
        running += change
    return dict(sorted(seconds.items()))


def occupancy(summary: LogSummary) -> str:
    """'no tasks 3.8 s, 1 task 6.2 s, 2 tasks 1.0 s': the wall time by tasks running."""
    return ", ".join(
        f"{'no' if n == 0 else n} task{'' if n == 1 else 's'} {s:.1f} s"
        for n, s in summary.seconds_by_tasks_running.items()
    )


def report(summary: LogSummary, top: int) -> str:
    lines = [f"{summary.application}: {summary.task_seconds:.1f} task-s in {summary.tasks} tasks "
             f"({summary.failed_tasks} failed) over {summary.wall_seconds:.1f} s",
             f"running: {occupancy(summary)}",
             f"{'task-s':>9}  {'share':>5}  {'tasks':>6}  execution"]  # fmt: skip
    for execution in summary.busiest(top):
        share = execution.task_seconds / summary.task_seconds if summary.task_seconds else 0
        lines.append(f"{execution.task_seconds:9.1f}  {share:5.1%}  {execution.tasks:6d}  "
                     f"#{execution.execution_id} {execution.label}")  # fmt: skip
    return "\n".join(lines)


def execution_report(summary: LogSummary, execution_id: int) -> str:
    if execution_id not in summary.executions:
        raise EventLogError(f"no execution {execution_id} with tasks in {summary.application or 'the log'}")
    execution = summary.executions[execution_id]
    lines = [f"#{execution_id} (root #{execution.root_id}) {execution.label}: {execution.task_seconds:.1f} task-s",
             f"{'stage':>6}  {'tasks':>6}  {'task-s':>8}  {'run':>8}  {'cpu':>8}  {'gc':>6}  "
             f"{'in GB':>6}  {'out GB':>6}  {'shuf r':>6}  {'shuf w':>6}  name"]  # fmt: skip
    for stage_id in sorted(execution.stage_ids):
        s = summary.stages[stage_id]
        gigabytes = (s.input_bytes, s.output_bytes, s.shuffle_read_bytes, s.shuffle_write_bytes)
        lines.append(f"{s.stage_id:6d}  {s.tasks:6d}  {s.task_seconds:8.1f}  {s.run_seconds:8.1f}  "
                     f"{s.cpu_seconds:8.1f}  {s.gc_seconds:6.1f}  {'  '.join(f'{b / 1e9:6.2f}' for b in gigabytes)}  "
                     f"{call_site(s.name)}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="an eventlog_v2_* folder or one event log file")
    parser.add_argument("--top", type=int, default=25, help="how many of the busiest executions to list")
    parser.add_argument("--execution", type=int, metavar="ID", help="one execution's stages instead")
    parser.add_argument("--json", action="store_true", help="every execution and stage, as JSON")
    args = parser.parse_args(argv)
    try:
        summary = summarise(read_events(args.log))
        if args.json:
            print(json.dumps(asdict(summary), indent=1))
        elif args.execution is not None:
            print(execution_report(summary, args.execution))
        else:
            print(report(summary, args.top))
    except EventLogError as error:
        print(f"eventlog: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
