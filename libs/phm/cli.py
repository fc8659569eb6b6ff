"""`phm`: the one command line.

    phm run JOB [--config FILE] [--set key.path=value ...]
    phm refresh [--config FILE] [--set ...]
    phm jobs [--config FILE]
    phm status [--json] [--config FILE]
    phm keygen [--if-missing] [--config FILE]
    phm --version

A user error (bad config, missing jar, unknown job or table) prints one line
and exits 2, without a traceback; a failed job exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import phm
from phm.config import DEFAULT_CONFIG, PhmConfig, load_config
from phm.errors import UserError
from phm.ingest.contracts import register_source_tables

log = logging.getLogger("phm.cli")

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phm", description="Population Health Management platform on Spark + Delta")
    parser.add_argument("--version", action="version", version=f"phm {phm.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help=f"config file (default: $PHM_CONFIG or {DEFAULT_CONFIG})")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override one config value (repeatable), e.g. --set spark.shuffle_partitions=4",
        )
        return p

    run = with_config(sub.add_parser("run", help="run one job"))
    run.add_argument("job", help="job name (see `phm jobs`)")
    with_config(sub.add_parser("refresh", help="run every stage in dependency order (the population refresh)"))
    with_config(sub.add_parser("jobs", help="list the registered jobs and the tables each writes"))
    keygen = with_config(sub.add_parser("keygen", help="create a local development pseudonymisation key file"))
    keygen.add_argument("--if-missing", action="store_true", help="do nothing if a key is already configured")
    status = with_config(sub.add_parser("status", help="tables (version, rows, writer run) and recent runs"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--runs", type=int, default=40, help="recent runs to show (default 40: a whole refresh)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from phm.runtime.logs import configure_console

    configure_console()
    try:
        config = load_config(args.config, args.overrides)
        if args.command == "jobs":
            return _jobs(config)
        if args.command == "keygen":
            return _keygen(config, args.if_missing)
        register_source_tables(config)
        if args.command == "run":
            return _run(config, args.job)
        if args.command == "refresh":
            return _refresh(config)
        if args.command == "status":
            return _status(config, as_json=args.json, runs=args.runs)
    except UserError as exc:
        print(f"phm: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    raise AssertionError(f"unhandled command {args.command}")


def _jobs(config: PhmConfig) -> int:
    from phm.runtime.jobs import discover_jobs, pipeline_order

    jobs = discover_jobs()
    for name in pipeline_order(jobs):
        spec = jobs[name].spec
        after = f" (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
        writes = ", ".join(spec.outputs_of(config)) or "files only"
        print(f"{name}{after}: {spec.description}\n    writes {writes}")
    return EXIT_OK


def _keygen(config: PhmConfig, if_missing: bool) -> int:
    """A development key: never for real data (use the organisation's key management, via the env var)."""
    import os

    from phm.ingest.pseudonymise import write_new_key

    path = config.pseudonym_key_file
    if os.environ.get(config.ingest.key_env) or os.path.exists(path):
        if if_missing:
            return EXIT_OK
        raise UserError(f"a key is already configured ({config.ingest.key_env} or {path}); not replacing it")
    print(f"created development pseudonymisation key {write_new_key(path)} (owner read/write only)")
    return EXIT_OK


def _run(config: PhmConfig, job_name: str) -> int:
    from phm.runtime.jobs import get_job, run_job
    from phm.runtime.spark import get_spark

    job = get_job(job_name)
    spark = get_spark(config)
    try:
        run_job(job, config, spark)
    except UserError:
        raise
    except Exception:
        log.exception("job %s failed; its outputs were left at their previous versions", job_name)
        return EXIT_FAILED
    return EXIT_OK


def _refresh(config: PhmConfig) -> int:
    from phm.runtime.jobs import run_pipeline
    from phm.runtime.spark import get_spark

    spark = get_spark(config)
    try:
        results = run_pipeline(config, spark)
    except UserError:
        raise
    except Exception:
        log.exception("refresh failed; the failed stage's outputs were left at their previous versions")
        return EXIT_FAILED
    print(_refresh_summary(config, spark, results))
    return EXIT_OK


def _refresh_summary(config: PhmConfig, spark: Any, results: list[Any]) -> str:
    from phm.runtime.catalog import Catalog

    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    lines = [f"refresh finished: {len(results)} stage(s) succeeded"]
    for result in results:
        lines.append(f"  {result.job:<24} {result.seconds:7.1f}s  run {result.run_id}")
    lines.append("tables:")
    for info in catalog.list_tables():
        lines.append(f"  {info.name:<40} v{info.version:<4} {info.rows:>12,} rows  {info.path}")
    lines.append(f"landing extracts: {config.resolve(config.paths.landing)}")
    lines.append(f"reports:          {config.resolve(config.paths.reports)}")
    lines.append(f"run logs:         {config.resolve(config.paths.logs)}")
    lines.append(f"MLflow tracking:  {config.tracking_uri}")
    return "\n".join(lines)


def _status(config: PhmConfig, as_json: bool, runs: int) -> int:
    from phm.runtime.catalog import Catalog
    from phm.runtime.spark import get_spark
    from phm.runtime.status import collect_status

    spark = get_spark(config)
    status = collect_status(Catalog(spark, config.resolve(config.paths.warehouse)), runs)
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return EXIT_OK
    print(f"warehouse: {config.resolve(config.paths.warehouse)}")
    print("tables:")
    for table in status["tables"]:
        print(f"  {table['name']:<40} v{table['version']:<4} {table['rows']:>12,} rows  by {table['run_id']}")
    print("recent runs:")
    for run in status["runs"]:
        print(f"  {run['started_at']}  {run['job']:<20} {run['status']:<10} {run['run_id']}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
