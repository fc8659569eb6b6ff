"""Job registry and runner.

A job is a module in the `phm_jobs` package (the repository's jobs/ folder)
with a `SPEC` (a JobSpec: name, outputs, the jobs it depends on) and a
`run(ctx)` function that reads and writes tables through `ctx.catalog`.
The runner gives every run an id, a ledger row and a log file, and when a run
fails it puts every output table back at the version it had before the run.
Runs hold the warehouse's writer lock (one writer at a time); the first to take
it recovers any run that died without finishing, and a refresh resumes after
the stages a failed refresh completed (`phm.runtime.recovery`).
"""

from __future__ import annotations

import graphlib
import importlib
import logging
import pkgutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import ModuleType

from pyspark.sql import SparkSession

import phm
from phm.config import PhmConfig
from phm.errors import UnknownJobError, UserError
from phm.runtime.catalog import Catalog
from phm.runtime.ledger import FAILED, SUCCEEDED, Ledger, RunRecord
from phm.runtime.lock import warehouse_lock
from phm.runtime.logs import run_log
from phm.runtime.recovery import recover_interrupted_runs, resumable_stages, roll_back

log = logging.getLogger(__name__)

JOBS_PACKAGE = "phm_jobs"
REFRESH_JOB = "refresh"
RESUMED = "resumed"  # a stage a failed refresh had completed, not run again


@dataclass(frozen=True)
class JobSpec:
    """What a job is: its name, what it writes, and which jobs must run before it."""

    name: str
    description: str
    outputs: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    # For jobs whose tables follow from configuration (one silver table per source contract).
    outputs_for: Callable[[PhmConfig], tuple[str, ...]] | None = None
    # False: run on demand only (`phm run`, or named in refresh.stages), never by a plain refresh.
    scheduled: bool = True
    # True: registers MLflow model versions and moves their aliases (phm.runtime.tracking.move_alias), which a
    # failed run takes back as it puts its tables back.
    registers_models: bool = False

    def outputs_of(self, config: PhmConfig) -> tuple[str, ...]:
        return self.outputs + (self.outputs_for(config) if self.outputs_for else ())


@dataclass
class JobContext:
    """What a running job gets: config, session, catalogue and run id; counts it may report."""

    config: PhmConfig
    spark: SparkSession
    catalog: Catalog
    run_id: str
    rows_in: int | None = None
    rows_out: int | None = None  # set by jobs whose output is not tables (else counted from table writes)
    rows_quarantined: int | None = None
    job: str = ""

    def unchanged_since_last_success(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> bool:
        """True if this job's last successful run read these tables with the rows they hold now, with the same
        configuration and definition files (its ledger digest), and its outputs are still there: re-running
        would write the same. The inputs are recorded as read either way, so the next run can tell too."""
        if not all(self.catalog.exists(name) for name in outputs):
            return False
        current = {name: self.catalog.version(name) for name in inputs}
        for name in inputs:
            if current[name] is not None:
                self.catalog.read(name, version=current[name])
        return None not in current.values() and self._ran_on_these_rows(self.last_success, inputs)

    def written_by_current(self, job: str, output: str, inputs: tuple[str, ...]) -> bool:
        """True if `output` holds what `job` last wrote to it on succeeding with this configuration and definition
        files, from the rows `inputs` hold now: reading it is as good as computing it again (another job's
        output this job could otherwise recompute; with no inputs, the job's own earlier output). Runs that
        wrote nothing to it (they had nothing to do) are passed over."""
        last = Ledger(self.spark, self.catalog.warehouse).last_succeeded(job, wrote=output)
        written = last.output_versions[output] if last is not None else None
        return (
            written is not None
            and self.catalog.data_unchanged(output, written)
            and self._ran_on_these_rows(last, inputs)
        )

    def _ran_on_these_rows(self, last, inputs: tuple[str, ...]) -> bool:
        """True if `last` (a ledger row of a successful run, or None) ran with this configuration's digest and read
        the rows `inputs` hold now."""
        if last is None or last.config_digest != self.config.digest():
            return False
        read = last.input_versions or {}
        return all(self.catalog.data_unchanged(name, read.get(name)) for name in inputs)

    def config_unchanged_since_last_success(self) -> bool:
        """True if this job last succeeded with the same configuration and definition files (its ledger digest)."""
        return self.last_success is not None and self.last_success.config_digest == self.config.digest()

    @cached_property
    def last_success(self):
        """The ledger's row of this job's last successful run (read once a run), or None."""
        return Ledger(self.spark, self.catalog.warehouse).last_succeeded(self.job)


@dataclass(frozen=True)
class Job:
    spec: JobSpec
    run: Callable[[JobContext], None]
    script: str | None = None  # the module's file in jobs/ (what `spark-submit` runs), for discovered jobs


@dataclass
class RunResult:
    run_id: str
    job: str
    status: str
    seconds: float
    output_versions: dict[str, int] = field(default_factory=dict)
    rows_out: int | None = None
    error: str | None = None


def discover_jobs() -> dict[str, Job]:
    """Every job module in the jobs package, by name."""
    package = importlib.import_module(JOBS_PACKAGE)
    jobs: dict[str, Job] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not _may_be_a_job(info.name):
            continue
        module = importlib.import_module(f"{JOBS_PACKAGE}.{info.name}")
        job = _job_of(module)
        if job is not None:
            jobs[job.spec.name] = job
    return jobs


def get_job(name: str, jobs: dict[str, Job] | None = None) -> Job:
    """The job called `name`: from `jobs`, else from the jobs package's module of that name (most jobs are named
    after their module), else from every module (discover_jobs). A process that runs one job (`phm run`, a
    scheduler's spark-submit of a job's script) so imports its module alone: every job's module with its
    libraries took 2.3-2.7 s to import, one job's 0.3-0.9 s."""
    if jobs is None:
        job = _job_in_module_named(name)
        if job is not None:
            return job
        jobs = discover_jobs()
    if name not in jobs:
        raise UnknownJobError(f"unknown job {name!r}; jobs: {', '.join(sorted(jobs))} (see `phm jobs`)")
    return jobs[name]


def pipeline_order(jobs: dict[str, Job], only: list[str] | None = None, exclude: list[str] = ()) -> list[str]:
    """Jobs in dependency order (ties broken by name, so the order is stable): the scheduled ones, or `only`."""
    for job in jobs.values():
        unknown = [d for d in job.spec.depends_on if d not in jobs]
        if unknown:
            raise UnknownJobError(f"job {job.spec.name} depends on unknown job(s) {unknown}")
    sorter = graphlib.TopologicalSorter({name: jobs[name].spec.depends_on for name in jobs})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    if only is not None:
        for name in only:
            get_job(name, jobs)
        order = [name for name in order if name in only]
    else:
        order = [name for name in order if jobs[name].spec.scheduled]
    for name in exclude:
        get_job(name, jobs)
    return [name for name in order if name not in exclude]


def new_run_id(job: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{job}-{uuid.uuid4().hex[:8]}"


def run_job(
    job: Job,
    config: PhmConfig,
    spark: SparkSession,
    parent_run_id: str | None = None,
) -> RunResult:
    """Run one job with a ledger row; on failure restore its outputs and re-raise."""
    run_id = new_run_id(job.spec.name)
    with _exclusive(config, spark, run_id):
        return _run_locked(job, config, spark, run_id, parent_run_id)


def _run_locked(job: Job, config: PhmConfig, spark: SparkSession, run_id: str, parent_run_id: str | None) -> RunResult:
    warehouse = config.resolve(config.paths.warehouse)
    catalog = Catalog(spark, warehouse, run_id=run_id)
    ledger = Ledger(spark, warehouse)
    record = _record(job.spec.name, run_id, config, spark, parent_run_id)
    with run_log(config.resolve(config.paths.logs), run_id):
        declared = job.spec.outputs_of(config)
        before = {name: catalog.version(name) for name in declared}
        existing_before = {k: v for k, v in before.items() if v is not None}
        # What to put back if this process dies mid-write (the next lock holder does it).
        record.output_versions = existing_before
        ledger.start(record)
        log.info("%s: started (run %s)", job.spec.name, run_id)
        started = time.monotonic()
        ctx = JobContext(config=config, spark=spark, catalog=catalog, run_id=run_id, job=job.spec.name)
        try:
            job.run(ctx)
        except BaseException as exc:
            roll_back(catalog, before)
            if job.spec.registers_models:
                try:
                    _undo_registrations(config, run_id)
                except Exception as undo_failed:  # (MLflow unreachable, say): the run's own error is what to raise
                    log.error("%s: its model registrations could not be taken back: %s", job.spec.name, undo_failed)
            record.status = FAILED
            record.error = _one_line(exc)
            record.input_versions = dict(catalog.versions_read)
            record.output_versions = existing_before
            ledger.finish(record)
            log.error("%s: failed after %.1fs: %s", job.spec.name, time.monotonic() - started, record.error)
            if isinstance(exc, SystemExit) and not exc.code:
                # A library's sys.exit(0) inside a stage (pyspark.sql.connect does so when it takes the process
                # for a doctest run) would end `phm refresh` with exit status 0 and the stage failed.
                raise RuntimeError(f"{job.spec.name} called sys.exit({exc.code}) before it finished") from exc
            raise
        undeclared = sorted(set(catalog.versions_written) - set(declared))
        if undeclared:
            roll_back(catalog, before | {name: None for name in undeclared})
            raise RuntimeError(f"job {job.spec.name} wrote undeclared outputs {undeclared}; add them to its SPEC")
        record.status = SUCCEEDED
        record.input_versions = dict(catalog.versions_read)
        record.output_versions = dict(catalog.versions_written)
        record.rows_in = ctx.rows_in
        record.rows_out = ctx.rows_out if ctx.rows_out is not None else sum(catalog.rows_written.values())
        record.rows_quarantined = ctx.rows_quarantined
        ledger.finish(record)
        seconds = time.monotonic() - started
        log.info("%s: succeeded in %.1fs, %s rows out", job.spec.name, seconds, record.rows_out)
    return RunResult(run_id, job.spec.name, SUCCEEDED, seconds, record.output_versions, record.rows_out)


def run_pipeline(config: PhmConfig, spark: SparkSession, jobs: dict[str, Job] | None = None) -> list[RunResult]:
    """`phm refresh`: every registered stage (or refresh.stages) in dependency order, under one parent run,
    skipping the stages a failed refresh with the same config completed (resuming where it stopped)."""
    jobs = jobs if jobs is not None else discover_jobs()
    order = pipeline_order(jobs, config.refresh.stages, config.refresh.exclude)
    run_id = new_run_id(REFRESH_JOB)
    warehouse = config.resolve(config.paths.warehouse)
    with _exclusive(config, spark, run_id, jobs), run_log(config.resolve(config.paths.logs), run_id):
        for name in order:  # tables declared from config (case_finding's cohorts) are known before resuming
            jobs[name].spec.outputs_of(config)
        done = resumable_stages(spark, warehouse, REFRESH_JOB, config.digest())
        ledger = Ledger(spark, warehouse)
        record = _record(REFRESH_JOB, run_id, config, spark, None)
        results: list[RunResult] = []
        ledger.start(record)
        log.info("refresh %s: %d stage(s): %s", run_id, len(order), ", ".join(order))
        name = ""
        try:
            for position, name in enumerate(order, start=1):
                if name in done:
                    stage = done[name]
                    log.info("stage %d/%d: %s was completed by run %s of a failed refresh; resuming after it",
                             position, len(order), name, stage.run_id)  # fmt: skip
                    results.append(RunResult(stage.run_id, name, RESUMED, 0.0, dict(stage.output_versions or {}), 0))
                    continue
                log.info("stage %d/%d: %s", position, len(order), name)
                results.append(run_job(jobs[name], config, spark, parent_run_id=run_id))
                # What a stage (or a library it calls) cached and did not release would hold memory every later
                # stage needs: each stage starts as in a process of its own.
                spark.catalog.clearCache()
        except BaseException as exc:
            record.status = FAILED
            record.error = f"stage {name}: {_one_line(exc)}"
            ledger.finish(record)
            raise
        record.status = SUCCEEDED
        for result in results:
            record.output_versions.update(result.output_versions)
        record.rows_out = sum(r.rows_out or 0 for r in results)
        ledger.finish(record)
    return results


@contextmanager
def _exclusive(
    config: PhmConfig, spark: SparkSession, run_id: str, jobs: dict[str, Job] | None = None
) -> Iterator[None]:
    """Hold the warehouse's writer lock; whoever takes it first recovers the runs that died without finishing."""
    warehouse = config.resolve(config.paths.warehouse)
    with warehouse_lock(warehouse, run_id, config.refresh.lock_wait_seconds) as first:
        if first:

            def spec_of(name: str) -> JobSpec | None:  # only asked when a run died: rarely
                registry = jobs if jobs is not None else discover_jobs()
                return registry[name].spec if name in registry else None

            def outputs_of(name: str) -> tuple[str, ...] | None:
                spec = spec_of(name)
                return spec.outputs_of(config) if spec is not None else None

            def undo_in_mlflow(dead_run_id: str, name: str) -> None:
                from phm.runtime.tracking import end_interrupted_runs

                end_interrupted_runs(config, [dead_run_id])
                spec = spec_of(name)
                if spec is None or spec.registers_models:
                    _undo_registrations(config, dead_run_id)

            recover_interrupted_runs(spark, warehouse, outputs_of, recovered_by=run_id, undo_elsewhere=undo_in_mlflow)
        yield


def _undo_registrations(config: PhmConfig, run_id: str) -> None:
    from phm.runtime.tracking import undo_registrations  # (MLflow: imported only when a run must be undone)

    for version in undo_registrations(config, [run_id]):
        log.warning("%s was registered by run %s, which did not finish: deleted, its aliases put back", version,
                    run_id)  # fmt: skip


def _job_in_module_named(name: str) -> Job | None:
    """The job of the jobs package's module `name` if it is the job called `name`; None if there is no such module
    or its job has another name."""
    if not (name.isidentifier() and _may_be_a_job(name)):
        return None
    module_name = f"{JOBS_PACKAGE}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name != module_name:
            raise  # the module is there but imports something that is not
        return None
    job = _job_of(module)
    return job if job is not None and job.spec.name == name else None


def _may_be_a_job(module_name: str) -> bool:
    """Modules of the jobs package whose names start with _ (helpers, __init__) hold no job."""
    return not module_name.startswith("_")


def _job_of(module: ModuleType) -> Job | None:
    spec = getattr(module, "SPEC", None)
    run = getattr(module, "run", None)
    if isinstance(spec, JobSpec) and callable(run):
        return Job(spec, run, Path(module.__file__).name if module.__file__ else None)
    return None


def _record(job: str, run_id: str, config: PhmConfig, spark: SparkSession, parent: str | None) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        job=job,
        environment=config.environment,
        config_digest=config.digest(),
        phm_version=phm.__version__,
        spark_master=spark.sparkContext.master,
        parent_run_id=parent,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = "" if isinstance(exc, UserError) else f"{type(exc).__name__}: "
    return (kind + text)[:1000]
