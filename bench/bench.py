"""`make bench`: time and peak memory of the platform's stages at whole-system sizes.

Runs each stage as its own `phm run` process (a fresh JVM, as a scheduler
would) on configs/bench.yaml, sampling the memory of the whole process tree
(Python driver, JVM, Python workers) every 0.5 s, and writes
bench/results.json and bench/results.md. Repeats give a median; the machine
is shared, so quote medians and ratios, not single runs.

With `--cluster N` the same stages are submitted with `spark-submit` (the
job scripts, the packaged library on --py-files) to a standalone cluster it
starts on 127.0.0.1: a master and N workers sharing the machine's cores
(phm.runtime.standalone); the memory sampled is then the submitter's tree and
the daemons' (whose executors do the work). Its rows carry the mode
`standalone NxC`, beside `local[*]` rows of a run without it.

With `--one-process` each phase's refresh is one `phm refresh` process (one
JVM for every stage, as `make run` runs it); each stage's time and peak are
read off the refresh's "stage k/N: NAME" lines as they come. Its rows carry
the mode `local[*] one process`.

With `--event-logs` every process on local[*] writes Spark's event log under bench/work/eventlogs/, and each
stage's row gains the task-seconds its executors spent, the seconds in which no task or 1, 2, ... tasks ran
(no task running: the driver's own work) and its three busiest SQL executions (bench/eventlog.py; with
`--one-process`, the tasks launched while the stage ran): a change to one query is seen there when the wall
time's noise hides it.

With `--stages` only the stages named run (each reads what the earlier ones
wrote, so name those too): `--stages generate --phases full` measures
generation alone, and replaces only those rows in the results file; with
`--one-process` the refresh runs only the stages named (e.g. without the
evaluate_* stages, which read the truth store).

    python bench/bench.py [--sizes 100000 1000000] [--repeats 1] [--phases full increment nothing_new]
                          [--cluster 2 --worker-memory 5g | [--one-process] [--event-logs]] [--stages generate ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from eventlog import read_events, summarise
from phm.runtime.standalone import (
    StandaloneCluster,
    build_wheel,
    cluster_env,
    spark_submit,
    standalone_cluster_running,
)

REPO = Path(__file__).resolve().parents[1]

BENCH_CONFIG = REPO / "configs" / "bench.yaml"
PHM = [sys.executable, "-m", "phm"]
PAGE = os.sysconf("SC_PAGE_SIZE")
# /proc/PID/stat of a child and its parent are read a moment apart: a shared address space may have grown.
SAME_RESIDENT_SHARE = 0.01


@dataclass(frozen=True)
class ProcessMemory:
    """One process as /proc/PID/stat shows it."""

    parent: int
    resident: int  # bytes (RSS)
    layout: tuple[int, ...]  # virtual size, start and end of code, start of stack


def process_table() -> dict[int, ProcessMemory]:
    """Every process /proc shows (one that exits while it is read is left out)."""
    table: dict[int, ProcessMemory] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) "; fields[0] is field 3, the state
            table[int(entry.name)] = ProcessMemory(
                parent=int(fields[1]),
                resident=int(fields[21]) * PAGE,
                layout=tuple(int(fields[i]) for i in (20, 23, 24, 25)),
            )
        except (OSError, ValueError, IndexError):
            continue
    return table


def tree_members(table: dict[int, ProcessMemory], roots: tuple[int, ...]) -> set[int]:
    """The roots and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.parent, []).append(pid)
    members, frontier = set(roots), list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in members:
                members.add(child)
                frontier.append(child)
    return members


def shares_parent_memory(pid: int, table: dict[int, ProcessMemory]) -> bool:
    """Whether a process has its parent's address space, as a JVM's child has between posix_spawn (vfork) and
    exec: /proc shows it with all of the JVM's resident memory, which a sum over processes would count twice
    (a fresh fork looks the same for an instant, and its pages are still its parent's too)."""
    me = table[pid]
    parent = table.get(me.parent)
    return (
        parent is not None
        and me.layout == parent.layout
        and abs(me.resident - parent.resident) <= SAME_RESIDENT_SHARE * parent.resident
    )


def tree_memory_bytes(*roots: int) -> int:
    """Resident memory of processes and all their descendants, leaving out children that have their parent's
    address space. Read from /proc/PID/stat, which costs microseconds: a page a forked Python worker still shares
    with its daemon counts in both, by the daemon's size per worker (about 0.05 GB; PSS would split it, but
    /proc/PID/smaps_rollup took 76 ms for a 3 GB JVM, 15% of a core at two samples a second, and stalls it)."""
    table = process_table()
    members = tree_members(table, roots) & table.keys()
    return sum(
        table[pid].resident
        for pid in members
        if not (table[pid].parent in members and shares_parent_memory(pid, table))
    )


def measured_run(
    args: list[str], log: Path, env: dict[str, str] | None = None, also: tuple[int, ...] = ()
) -> tuple[float, int, int]:
    """(wall seconds, peak memory in bytes, exit code) of one command; the memory is of its process tree and of the
    trees of the processes `also` (a cluster's daemons, whose executors do the command's work)."""
    seconds, sections, code = measured_sections(args, log, lambda line: None, env, also)
    return seconds, max((s.peak for s in sections), default=0), code


@dataclass
class Section:
    """A stretch of one process's run: from the output line that began it to the next one's (or the end)."""

    name: str
    began_at: float = field(default_factory=time.time)  # epoch seconds, as Spark's event log times its tasks
    seconds: float = 0.0
    peak: int = 0
    lines: list[str] = field(default_factory=list)


def measured_sections(
    args: list[str],
    log: Path,
    section_begun: Callable[[str], str | None],
    env: dict[str, str] | None = None,
    also: tuple[int, ...] = (),
    first: str = "session_start",
) -> tuple[float, list[Section], int]:
    """(wall seconds, sections, exit code) of one command whose output is copied to `log`: a new section begins
    at each output line `section_begun` names one for (the first, `first`, is what comes before); each section
    has its wall time, the peak memory sampled while it ran and its output lines."""
    sections = [Section(first)]
    lock = threading.Lock()
    with log.open("w", buffering=1) as out:  # line by line: a long run can be watched
        started = begun = time.monotonic()
        process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                   text=True, bufsize=1)  # fmt: skip
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                memory = tree_memory_bytes(process.pid, *also)
                with lock:
                    sections[-1].peak = max(sections[-1].peak, memory)
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            name = section_begun(line)
            now = time.monotonic()  # before reading the memory, which takes a few milliseconds
            # The memory at a boundary belongs to both sections (and a section shorter than the sampling interval
            # still has a reading).
            memory = tree_memory_bytes(process.pid, *also) if name is not None else 0
            with lock:
                if name is not None:
                    sections[-1].seconds, begun = now - begun, now
                    sections[-1].peak = max(sections[-1].peak, memory)
                    sections.append(Section(name, began_at=time.time(), peak=memory))
                sections[-1].lines.append(line.rstrip("\n"))
        code = process.wait()
        done.set()
        sampler.join()
        sections[-1].seconds = time.monotonic() - begun
    return time.monotonic() - started, sections, code


# 37 monthly periods ending 2026-03 (configs/base.yaml's reference date): the full refresh loads the first 36,
# three years (the risk models need two follow-up years and a year of history), the increment the 37th.
HISTORY_MONTHS = 37
LAST_PERIOD_BUT_ONE = "2026-02"


def _settings(base: Path, size: int, *extra: str) -> list[str]:
    """--config and --set arguments of the benchmark warehouse under `base`."""
    overrides = [
        f"synthetic.population={size}",
        f"synthetic.history_months={HISTORY_MONTHS}",
        *extra,
        *[f"paths.{key}={base / key}" for key in ("landing", "truth", "warehouse", "reports", "logs", "checkpoints")],
        f"linkage.model={base / 'models' / 'linkage.json'}",
        f"mlflow.tracking_uri=sqlite:///{base / 'mlflow.db'}",
        f"mlflow.artifact_location={base / 'mlartifacts'}",
    ]
    return ["--config", str(BENCH_CONFIG), *[a for o in overrides for a in ("--set", o)]]


class Local:
    """Each stage as `phm run STAGE` on the config's master (local[*])."""

    mode, tag = "local[*]", "local"
    env: dict[str, str] | None = None
    pids: tuple[int, ...] = ()

    def command(self, stage: str, settings: list[str]) -> list[str]:
        return [*PHM, "run", stage, *settings]


class OnCluster:
    """Each stage's job script through spark-submit to a running standalone cluster."""

    def __init__(self, cluster: StandaloneCluster, workers: int, cores: int, executor_memory: str, wheel: Path):
        from phm.config import load_config
        from phm.runtime.jobs import discover_jobs
        from phm.runtime.spark import local_jars

        config = load_config(str(BENCH_CONFIG))
        self.cluster, self.wheel, self.executor_memory = cluster, wheel, executor_memory
        self.jars, self.driver_memory = local_jars(config), config.spark.driver_memory
        self.scripts = {job.spec.name: REPO / "jobs" / job.script for job in discover_jobs().values()}
        self.mode, self.tag = f"standalone {workers}x{cores}", "standalone"
        self.env = cluster_env(cluster.scratch)
        self.pids = tuple(cluster.pids)

    def command(self, stage: str, settings: list[str]) -> list[str]:
        return spark_submit(self.cluster.url, self.scripts[stage], settings, self.jars, self.wheel,
                            self.driver_memory, self.executor_memory)  # fmt: skip


REFRESH = "refresh"
# `phm refresh`'s console line as it begins a stage ("07:41:02 stage 3/21: link"); a stage that a failed refresh
# completed is logged with more words after its name and is not run.
STAGE_LINE = re.compile(r"\bstage \d+/\d+: (\w+)$")


def stage_begun(line: str) -> str | None:
    """The stage a line of `phm refresh`'s output begins, if it begins one."""
    found = STAGE_LINE.search(line.rstrip())
    return found.group(1) if found else None


class OneProcess(Local):
    """The refresh as one `phm refresh` process (one JVM and session for every stage, as `make run` and a
    scheduler running the whole refresh do); generate, which delivers each phase's extracts, is its own process.
    A stage's time runs from the refresh's line beginning it to the next one's; `session_start` is the process's
    start (Python, JVM, Spark, Delta, the lock) before the first."""

    mode, tag = "local[*] one process", "oneproc"

    def command(self, stage: str, settings: list[str]) -> list[str]:
        return [*PHM, REFRESH, *settings] if stage == REFRESH else super().command(stage, settings)


def event_log_env(folder: Path) -> dict[str, str]:
    """The environment of a process whose Spark writes its event log into `folder` (emptied first): a Spark
    configuration folder of its own, with the spark-defaults.conf of SPARK_CONF_DIR, if set, and the log's two
    settings after it."""
    shutil.rmtree(folder, ignore_errors=True)
    conf = folder / "conf"
    conf.mkdir(parents=True)
    users = os.environ.get("SPARK_CONF_DIR")
    inherited = Path(users) / "spark-defaults.conf" if users else None
    settings = inherited.read_text() if inherited and inherited.is_file() else ""
    settings += f"\nspark.eventLog.enabled true\nspark.eventLog.dir {folder.resolve().as_uri()}\n"
    (conf / "spark-defaults.conf").write_text(settings)
    return {**os.environ, "SPARK_CONF_DIR": str(conf)}


def _logged_events(folder: Path) -> list[dict] | None:
    """The events of the application whose log `event_log_env(folder)` had written, read once; None if the
    process started no Spark application."""
    logs = [p for p in folder.iterdir() if p.name != "conf"]
    return list(read_events(logs[0])) if len(logs) == 1 else None


def _task_time(summary, busiest: int) -> dict:
    return {
        "task_seconds": round(summary.task_seconds, 1),
        "idle_seconds": round(summary.idle_seconds, 1),
        "seconds_by_tasks_running": {str(n): round(s, 1) for n, s in summary.seconds_by_tasks_running.items()},
        "busiest": [f"{e.task_seconds:.0f} task-s #{e.execution_id} {e.label}" for e in summary.busiest(busiest)],
    }


def task_time(folder: Path, busiest: int = 3) -> dict:
    """The task-seconds of the application logged in `folder` (event_log_env) and its busiest SQL executions;
    nothing if the process started no Spark application."""
    events = _logged_events(folder)
    return {} if events is None else _task_time(summarise(events), busiest)


def task_time_by_section(folder: Path, sections: list[Section], busiest: int = 3) -> list[dict]:
    """`task_time` of each section of one process's output (the tasks launched during it), the log read once."""
    events = _logged_events(folder)
    if events is None:
        return [{} for _ in sections]
    return [_task_time(summarise(events, (s.began_at, s.began_at + s.seconds)), busiest) for s in sections]


def side_by_side(base: Path, size: int, work: Path) -> dict:
    """bench/splink_duckdb.py on the benchmark warehouse: Splink's predict and clustering with the same input and
    model on Spark and on DuckDB, their times and quality."""
    log = work / f"{size}-splink_duckdb.log"
    seconds, peak, code = measured_run([sys.executable, "bench/splink_duckdb.py", *_settings(base, size)], log)
    if code != 0:
        raise SystemExit(f"bench: the DuckDB side-by-side at {size:,} failed (exit {code}); see {log}")
    found = json.loads(log.read_text().strip().splitlines()[-1])
    on_spark, on_duckdb = found["spark"], found["duckdb"]
    ratio = round(on_spark["predict_and_cluster_seconds"] / max(on_duckdb["predict_and_cluster_seconds"], 0.1), 1)
    summary = (f"predict + cluster: Spark {on_spark['predict_and_cluster_seconds']}s, DuckDB "
               f"{on_duckdb['predict_and_cluster_seconds']}s ({ratio}x); F1 Spark {on_spark['f1']:.4f}, DuckDB "
               f"{on_duckdb['f1']:.4f} ({found['comparable_profiles']:,} profiles scored)")  # fmt: skip
    return {"seconds": round(seconds, 1), "peak_memory_gb": round(peak / 1e9, 2), "spark_over_duckdb": ratio,
            **found, "summary": summary}  # fmt: skip


# What each stage logs about what it did: (logger prefix, words in the line).
SUMMARIES = {
    "ingest": ("ingest: ", ("rows in,", "nothing new")),
    "link": ("link: ", ("persons (",)),
    "evaluate_linkage": ("evaluate_linkage: ", ("F1 ",)),
    "build_person_model": ("build_person_model: ", ("events,",)),
    "segment": ("segment: ", ("living persons",)),
    "features": ("features: ", ("persons",)),
    "train_risk": ("train_risk: ", ("validation AUC",)),
    "score": ("score: ", ("high:",)),
    "evaluate_risk": ("evaluate_risk: ", ("oracle AUC",)),
    "evaluate_programme": ("evaluate_programme: ", ("did_ipw:",)),
    "train_impactability": ("train_impactability: ", ("held-out Qini",)),
    "target": ("target: ", ("people chosen",)),
    "evaluate_impactability": ("evaluate_impactability: ", ("targeting_true_admissions_avoided uplift",)),
    "profile": ("profile: ", ("published rows suppressed",)),
}


def _summary(stage: str, lines: list[str]) -> str | None:
    """The stage's last summary line (e.g. "N rows in, ... accepted, ... quarantined") among its output lines."""
    if stage not in SUMMARIES:
        return None
    prefix, words = SUMMARIES[stage]
    found = [line for line in lines if prefix in line and any(w in line for w in words)]
    return found[-1].split(prefix, 1)[1] if found else None


PHASES = ("full", "increment", "nothing_new")


def refresh_stages() -> list[str]:
    """Every stage a plain `phm refresh` runs, in its order (the job registry's)."""
    from phm.runtime.jobs import discover_jobs, pipeline_order

    return pipeline_order(discover_jobs())


def steps_of(phase: str, stages: list[str]) -> list[tuple[str, list[str]]]:
    """(stage, overrides) of one phase: the whole refresh over 36 months (`full`), then the 37th month delivered
    and the refresh again (`increment`), then once more with nothing new (`nothing_new`)."""
    if phase == "full":
        return [("generate", [f"synthetic.until={LAST_PERIOD_BUT_ONE}"])] + [(s, []) for s in stages if s != "generate"]
    if phase == "increment":
        return [(s, []) for s in stages]
    return [(s, []) for s in stages if s != "generate"]


def in_one_process(steps: list[tuple[str, list[str]]], only: list[str] | None) -> list[tuple[str, list[str]]]:
    """A phase's steps as generate (its own process, if the phase has it) and one `phm refresh` of the rest: the
    stages in `only` but generate, or every stage the refresh runs by default."""
    chosen = [f"refresh.stages={[s for s in only if s != 'generate']}"] if only else []
    return [s for s in steps if s[0] == "generate"] + [(REFRESH, [f"refresh.exclude={['generate']}", *chosen])]


def bench_size(
    size: int,
    repeats: int,
    work: Path,
    phases: list[str],
    record,
    runner,
    only: list[str] | None = None,
    event_logs: bool = False,
) -> list[dict]:
    """Each phase's stages at one size, each a fresh process as a scheduler runs them (`runner`: Local or
    OnCluster) or all in one `phm refresh` (OneProcess); `only` keeps the stages named (in the refresh's order,
    e.g. generate alone); `record(rows)` is called after every process (so a long run leaves what it measured);
    with `event_logs` (not OnCluster) each stage's row gains its task-seconds from Spark's event log (in one
    process, those of the tasks launched while the stage ran)."""
    stages = [s for s in refresh_stages() if only is None or s in only]
    rows: list[dict] = []
    for repeat in range(repeats):
        base = work / f"refresh-{size}"
        shutil.rmtree(base, ignore_errors=True)
        for phase in phases:
            steps = steps_of(phase, stages)
            if isinstance(runner, OneProcess):
                steps = in_one_process(steps, stages if only else None)
            for stage, extra in steps:
                name = f"{size}-{runner.tag}-{repeat}-{phase}-{stage}"
                log, events = work / f"{name}.log", work / "eventlogs" / name
                command = runner.command(stage, _settings(base, size, *extra))
                env = event_log_env(events) if event_logs else runner.env
                if stage == REFRESH:
                    _, sections, code = measured_sections(command, log, stage_begun, env, runner.pids)
                else:  # one stage, one process: one section, the whole process
                    _, sections, code = measured_sections(command, log, lambda line: None, env, runner.pids,
                                                          first=stage)  # fmt: skip
                if code != 0:
                    raise SystemExit(f"bench: {phase} {stage} at {size:,} failed (exit {code}); see {log}")
                if not event_logs:
                    task_times = [{} for _ in sections]
                elif stage == REFRESH:
                    task_times = task_time_by_section(events, sections)
                else:  # the one section is the whole process
                    task_times = [task_time(events)]
                for section, task_seconds in zip(sections, task_times, strict=True):
                    run = {"seconds": round(section.seconds, 1), "peak_memory_gb": round(section.peak / 1e9, 2)}
                    if section.name == "generate" and phase == "full":
                        calibration = json.loads((base / "truth" / "calibration_report.json").read_text())
                        run["calibration_within"] = sum(f["within"] for f in calibration)
                        run["calibration_figures"] = len(calibration)
                        run["landing_gb"] = round(sum(p.stat().st_size for p in (base / "landing").rglob("*.*")) / 1e9,
                                                  2)  # fmt: skip
                    if section.name in SUMMARIES:
                        run["summary"] = _summary(section.name, section.lines)
                    run.update(task_seconds)
                    _add(rows, runner.mode, phase, section.name, size, run)
                record(rows)
            # After the phase's stages, which it does not change: a run stopped or failing in it (at 1m people it
            # takes longer than the link stage) has recorded every stage.
            if phase == "full" and "link" in stages and type(runner) is Local:
                _add(rows, runner.mode, "side_by_side", "splink_spark_and_duckdb", size, side_by_side(base, size, work))
                record(rows)
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _add(rows: list[dict], mode: str, phase: str, stage: str, size: int, run: dict) -> None:
    key = (mode, phase, stage, size)
    row = next((r for r in rows if (r["mode"], r["phase"], r["stage"], r["people"]) == key), None)
    if row is None:
        row = {"mode": mode, "phase": phase, "stage": stage, "people": size, "runs": []}
        rows.append(row)
    row["runs"].append(run)
    row["median_seconds"] = statistics.median(r["seconds"] for r in row["runs"])
    row["seconds_per_100k_people"] = round(row["median_seconds"] / size * 100_000, 1)
    row["median_peak_memory_gb"] = statistics.median(r["peak_memory_gb"] for r in row["runs"])
    for measure in ("task_seconds", "idle_seconds"):
        measured = [r[measure] for r in row["runs"] if measure in r]
        if measured:
            row[f"median_{measure}"] = statistics.median(measured)


def totals(rows: list[dict]) -> list[dict]:
    """Per size and phase: every stage, and the refresh a real ICS runs (no generate, no evaluate_* stages,
    which read the synthetic truth store)."""
    out = []
    for mode, size, phase in sorted({(r["mode"], r["people"], r["phase"]) for r in rows if r["phase"] in PHASES},
                                    key=lambda k: (k[0], k[1], PHASES.index(k[2]))):  # fmt: skip
        mine = [r for r in rows if (r["mode"], r["people"], r["phase"]) == (mode, size, phase)]
        real = [r for r in mine if r["stage"] != "generate" and not r["stage"].startswith("evaluate_")]
        out.append({"mode": mode, "people": size, "phase": phase, "stages": len(mine),
                    "all_stages_seconds": round(sum(r["median_seconds"] for r in mine), 1),
                    "refresh_seconds": round(sum(r["median_seconds"] for r in real), 1),
                    "peak_memory_gb": max(r["median_peak_memory_gb"] for r in mine),
                    "earlier_meter": any(r.get("earlier_meter", False) for r in mine)})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--out", default=str(REPO / "bench"))
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="WORKERS",
        help="submit every stage to a standalone cluster of this many workers on 127.0.0.1",
    )
    parser.add_argument("--worker-memory", default="5g", help="each worker's (and its executor's) memory")
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="run each phase's refresh as one `phm refresh` process instead of a process per stage",
    )
    parser.add_argument(
        "--event-logs",
        action="store_true",
        help="each process writes Spark's event log; each stage's task-seconds and busiest queries join its row",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        help="only these stages (each reads what the ones before it wrote: name them all), e.g. --stages generate",
    )
    args = parser.parse_args()
    if args.stages and set(args.stages) - set(refresh_stages()):
        parser.error(f"--stages: no refresh stage {sorted(set(args.stages) - set(refresh_stages()))}")
    if args.one_process and args.cluster:
        parser.error("--one-process runs on local[*]; it cannot be combined with --cluster")
    if args.event_logs and args.cluster:
        parser.error("--event-logs runs on local[*]; it cannot be combined with --cluster")
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if not args.cluster:
        measure(args, out, work, OneProcess() if args.one_process else Local())
        return
    workers, cores = args.cluster, max(1, (os.cpu_count() or 2) // args.cluster)
    wheel = build_wheel(REPO, work / "dist")
    with standalone_cluster_running(work / "cluster", workers, cores, args.worker_memory) as cluster:
        measure(args, out, work, OnCluster(cluster, workers, cores, args.worker_memory, wheel))


def measure(args: argparse.Namespace, out: Path, work: Path, runner) -> None:
    """Every size in `runner`'s mode, into the results file beside what it holds of other modes and sizes."""
    previous = out / "results.json"
    done = json.loads(previous.read_text())["results"] if previous.exists() else []
    for row in done:
        row.setdefault("mode", Local.mode)  # results written before the cluster mode
        with_memory_meter_named(row)
    done = rows_kept(done, runner.mode, args.sizes, args.stages, args.phases)
    for size in args.sizes:
        print(f"bench: {size:,} people x {args.repeats} ({runner.mode}), phases {', '.join(args.phases)}", flush=True)
        earlier = list(done)
        done += bench_size(size, args.repeats, work, args.phases, lambda rows, e=earlier: write_results(out, e + rows),
                           runner, args.stages, args.event_logs)  # fmt: skip
    print((out / "results.md").read_text())


def rows_kept(
    rows: list[dict],
    mode: str,
    sizes: list[int],
    stages: list[str] | None,
    phases: list[str] | tuple[str, ...] = PHASES,
) -> list[dict]:
    """The results a run in `mode` at `sizes` of `phases` leaves in place: other modes', sizes' and phases', and,
    when it runs only some `stages`, the other stages' rows (the DuckDB side by side goes with the full link, a
    one-process run's session start with any stage)."""

    def replaced(row: dict) -> bool:
        if row["mode"] != mode or row["people"] not in sizes:
            return False
        side_by_side = row["phase"] == "side_by_side"
        stage = "link" if side_by_side else row["stage"]
        phase = "full" if side_by_side else row["phase"]
        return phase in phases and (stages is None or stage in stages or stage == "session_start")

    return [row for row in rows if not replaced(row)]


def with_memory_meter_named(row: dict) -> dict:
    """A row measured by the earlier meter (`peak_rss_gb`: RSS summed over the process tree, counting a JVM twice
    whenever /proc was read while it spawned a child) under today's names, flagged `earlier_meter`: its
    figures are upper bounds, kept until the stage is measured again."""
    if "median_peak_rss_gb" in row:
        row["median_peak_memory_gb"] = row.pop("median_peak_rss_gb")
        row["earlier_meter"] = True
        for run in row["runs"]:
            run["peak_memory_gb"] = run.pop("peak_rss_gb")
    return row


EARLIER_METER_FOOTNOTE = (
    "\\* measured by the earlier meter, which also counted a JVM's child that still had the JVM's address space "
    "(between posix_spawn and exec), so the JVM twice: an upper bound (the 1m generation it put at 10.86 GB held "
    "5.8 GB)."
)


def _memory_cell(gigabytes: float, earlier_meter: bool) -> str:
    return f"{gigabytes}\\*" if earlier_meter else str(gigabytes)


def write_results(out: Path, results: list[dict]) -> None:
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 1e9, 1),
                    "python": platform.python_version()},
        "totals": totals(results),
        "results": results,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(document, indent=2))
    lines = [
        "| mode | people | phase | refresh s (no generate, no evaluate_*) | all stages s | peak memory GB |",
        "|---|---|---|---|---|---|",
        *[f"| {t['mode']} | {t['people']:,} | {t['phase']} | {t['refresh_seconds']} | {t['all_stages_seconds']} | "
          f"{_memory_cell(t['peak_memory_gb'], t['earlier_meter'])} |" for t in totals(results)],
        "",
        "| mode | people | phase | stage | median s | s per 100k | peak memory GB | task-s | no task s "
        "| what it did | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        summary = r["runs"][-1].get("summary") or ""
        memory = _memory_cell(r["median_peak_memory_gb"], r.get("earlier_meter", False))
        lines.append(f"| {r['mode']} | {r['people']:,} | {r['phase']} | {r['stage']} | {r['median_seconds']} | "
                     f"{r['seconds_per_100k_people']} | {memory} | {r.get('median_task_seconds', '')} | "
                     f"{r.get('median_idle_seconds', '')} | {summary} | "
                     f"{len(r['runs'])} |")  # fmt: skip
    if any(r.get("earlier_meter") for r in results):
        lines += ["", EARLIER_METER_FOOTNOTE]
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
