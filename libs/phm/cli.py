"""`phm`: the one command line.

    phm run JOB [--config FILE] [--set key.path=value ...]
    phm refresh [--config FILE] [--set ...]
    phm jobs [--config FILE]
    phm status [--json] [--config FILE]
    phm keygen [--if-missing] [--config FILE]
    phm reidentify --cohort NAME --purpose TEXT [--pcn CODE] [--config FILE]
    phm rekey (--new-key-file PATH | --new-key-env VAR) [--config FILE]
    phm theograph [PERSON_ID ...] [--cohort NAME [--pcn CODE] [--limit N]] [--years Y] [--config FILE]
    phm --version

A user error (bad config, missing jar, unknown job or table) prints one line
and exits 2, without a traceback; a failed job exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
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
    jobs = with_config(sub.add_parser("jobs", help="list the registered jobs and the tables each writes"))
    jobs.add_argument("--json", action="store_true", help="the pipeline for schedulers: name, script, dependencies")
    keygen = with_config(sub.add_parser("keygen", help="create a local development pseudonymisation key file"))
    keygen.add_argument("--if-missing", action="store_true", help="do nothing if a key is already configured")
    status = with_config(sub.add_parser("status", help="tables (version, rows, writer run) and recent runs"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--runs", type=int, default=40, help="recent runs to show (default 40: a whole refresh)")
    reidentify = with_config(
        sub.add_parser("reidentify", help="a case-finding list with identities, for a duty of care (audited)")
    )
    reidentify.add_argument("--cohort", required=True, help="the case-finding cohort (mart.cohort_NAME)")
    reidentify.add_argument("--purpose", required=True, help="why the care team needs to know who these people are")
    reidentify.add_argument("--pcn", help="that PCN's list only")
    rekey = with_config(sub.add_parser("rekey", help="rotate the pseudonymisation key (every pseudonym re-keyed)"))
    new_key = rekey.add_mutually_exclusive_group(required=True)
    new_key.add_argument("--new-key-file", help="the key file to rotate to (e.g. made by `phm keygen`)")
    new_key.add_argument("--new-key-env", help="the environment variable holding the key to rotate to")
    theograph = with_config(
        sub.add_parser("theograph", help="one person's contacts with every service over time (pseudonymised HTML)")
    )
    theograph.add_argument("person_ids", nargs="*", metavar="PERSON_ID", help="pseudonymised person_id(s)")
    theograph.add_argument("--cohort", help="draw the people at the top of mart.cohort_NAME (a case-finding list)")
    theograph.add_argument("--pcn", help="with --cohort: that PCN's list only")
    theograph.add_argument("--limit", type=int, default=10, help="with --cohort: how many people (default 10)")
    theograph.add_argument("--years", type=float, default=3.0, help="years before the reference date (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from phm.runtime.logs import configure_console

    configure_console()
    try:
        if args.command == "rekey":
            given = (
                f"ingest.new_key_file={args.new_key_file}"
                if args.new_key_file
                else f"ingest.new_key_env={args.new_key_env}"
            )
            args.overrides, args.command, args.job = [*args.overrides, given], "run", "rekey"
        config = load_config(args.config, args.overrides)
        if args.command == "jobs":
            return _jobs(config, as_json=args.json)
        if args.command == "keygen":
            return _keygen(config, args.if_missing)
        register_source_tables(config)
        if args.command == "run":
            return _run(config, args.job)
        if args.command == "refresh":
            return _refresh(config)
        if args.command == "status":
            return _status(config, as_json=args.json, runs=args.runs)
        if args.command == "reidentify":
            return _reidentify(config, args.cohort, args.purpose, args.pcn)
        if args.command == "theograph":
            return _theograph(config, args.person_ids, args.cohort, args.pcn, args.limit, args.years)
    except UserError as exc:
        print(f"phm: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    raise AssertionError(f"unhandled command {args.command}")


def _jobs(config: PhmConfig, as_json: bool = False) -> int:
    from phm.runtime.jobs import discover_jobs, pipeline_order

    jobs = discover_jobs()
    on_demand = sorted(name for name, job in jobs.items() if not job.spec.scheduled)
    if as_json:  # deploy/airflow/pipeline.json is this (the DAG builds its tasks from it)
        stages = [{"name": name, "script": f"jobs/{jobs[name].script}", "depends_on": list(jobs[name].spec.depends_on),
                   "scheduled": jobs[name].spec.scheduled} for name in pipeline_order(jobs) + on_demand]  # fmt: skip
        # What spark-submit needs beside the scripts: Delta's Maven coordinates and the wheel `make package` builds.
        submit = {
            "packages": ",".join(config.jvm.delta_coordinates),
            "wheel": f"dist/phm-{phm.__version__}-py3-none-any.whl",
        }
        print(json.dumps({"stages": stages, "spark_submit": submit}, indent=2))
        return EXIT_OK
    for name in pipeline_order(jobs) + on_demand:
        spec = jobs[name].spec
        after = f" (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
        after += "" if spec.scheduled else " (on demand: not part of a refresh)"
        writes = ", ".join(spec.outputs_of(config)) or "files only"
        print(f"{name}{after}: {spec.description}\n    writes {writes}")
    return EXIT_OK


def _keygen(config: PhmConfig, if_missing: bool) -> int:
    """A development key: never for real data (use the organisation's key management, via the env var)."""
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
    from phm.runtime.jobs import RESUMED

    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    resumed = [r for r in results if r.status == RESUMED]
    lines = [f"refresh finished: {len(results) - len(resumed)} stage(s) succeeded"
             + (f", {len(resumed)} completed by a failed refresh and not run again" if resumed else "")]  # fmt: skip
    for result in results:
        how = "resumed: done by" if result.status == RESUMED else f"{result.seconds:7.1f}s  run"
        lines.append(f"  {result.job:<24} {how} {result.run_id}")
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


def _write_whole(target: Path, text: str, owner_only: bool = False) -> None:
    """Write `text` beside `target` and rename it into place, so a reader never sees half a file; `owner_only`
    creates it readable by its owner alone (identified lists), never briefly wider."""
    partial = target.with_name(target.name + ".partial")
    mode = 0o600 if owner_only else 0o644
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(partial, target)


def _cohort_table(config: PhmConfig, cohort: str) -> str:
    """mart.cohort_<name> of a configured cohort (declared here: the table is declared with its definition)."""
    from phm.cohorts.case_finding import cohort_table, load_cohort_specs

    specs = load_cohort_specs(config.resolve(config.cohorts.definitions))
    if cohort not in specs:
        raise UserError(f"no cohort {cohort} in {config.cohorts.definitions}; cohorts: {', '.join(sorted(specs))}")
    return cohort_table(specs[cohort][0]).name


def _reidentify(config: PhmConfig, cohort: str, purpose: str, pcn: str | None) -> int:
    """The identified list under the restricted folder, owner-only, if the requester's roles cover every
    practice on it; every request (granted or refused) appended to vault.audit before anything is disclosed."""
    import datetime as dt
    import pwd

    import pandas as pd
    from pyspark.sql import functions as F

    from phm.config import load_definitions
    from phm.governance.reidentification import Roles, decide, identified_list
    from phm.runtime.catalog import Catalog
    from phm.runtime.jobs import new_run_id
    from phm.runtime.spark import get_spark
    from phm.tables import AUDIT, IDENTITY, PERSON_LINK

    user = pwd.getpwuid(os.getuid()).pw_name  # the account running this, not a settable variable
    request_id = new_run_id("reidentify")
    spark = get_spark(config)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse), run_id=request_id)

    def audit(granted: bool, reason: str, held: tuple[str, ...], people: int | None = None, output=None) -> None:
        row = {"request_id": request_id, "requested_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
               "user": user, "roles": list(held), "cohort": cohort, "pcn_code": pcn, "purpose": purpose,
               "granted": granted, "reason": reason, "people": people, "output": output}  # fmt: skip
        catalog.append(AUDIT.name, catalog.from_pandas(AUDIT.name, pd.DataFrame([row])))

    try:  # a request that cannot even be considered is refused, and audited, like any other
        roles = load_definitions(config.resolve(config.reidentification.roles), Roles)
        table = _cohort_table(config, cohort)
        if not catalog.exists(table):
            raise UserError(f"no table {table}; run `phm run case_finding` first")
    except UserError as error:
        audit(False, str(error), ())
        raise UserError(f"reidentify refused (audited as {request_id}): {error}") from None
    rows = catalog.read(table)
    rows = rows.where(F.col("pcn_code") == pcn) if pcn else rows
    registered = rows.select("practice_code", "pcn_code").distinct().collect()
    practices = {r.practice_code or "(no practice)": r.pcn_code for r in registered}
    decision = decide(user, roles, cohort, purpose, practices)
    if not decision.granted:
        audit(False, decision.reason, decision.roles)
        raise UserError(f"reidentify refused (audited as {request_id}): {decision.reason}")
    listed = identified_list(rows, catalog.read(PERSON_LINK.name), catalog.read(IDENTITY.name)).toPandas()
    folder = Path(config.resolve(config.reidentification.output))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    target = folder / f"{request_id}-{cohort}.csv"
    audit(True, decision.reason, decision.roles, len(listed), str(target))  # accountable before disclosure
    _write_whole(target, listed.to_csv(index=False), owner_only=True)
    print(f"{len(listed)} people of {cohort} identified for {user} -> {target} (audited as {request_id})")
    return EXIT_OK


def _theograph(
    config: PhmConfig, person_ids: list[str], cohort: str | None, pcn: str | None, limit: int, years: float
) -> int:
    """Pages under <reports>/theographs/<person_id>.html, one per person asked for or at the top of a cohort."""
    from pyspark.sql import functions as F

    from phm.reporting.theograph import theograph_page
    from phm.runtime.catalog import Catalog
    from phm.runtime.spark import get_spark
    from phm.tables import CONDITIONS, EVENTS, PERSON, RISK_SCORES, SEGMENTS

    if bool(person_ids) == bool(cohort):
        raise UserError("theograph: give person_id(s) or --cohort NAME (one or the other)")
    if years <= 0 or limit <= 0:
        raise UserError("theograph: --years and --limit must be positive")
    spark = get_spark(config)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    if cohort:
        table = _cohort_table(config, cohort)
        if not catalog.exists(table):
            raise UserError(f"theograph: no table {table}; run `phm run case_finding` first")
        listed = catalog.read(table).where(F.col("pcn_code") == pcn) if pcn else catalog.read(table)
        person_ids = [r.person_id for r in listed.orderBy("pcn_code", "priority").limit(limit).collect()]
        if not person_ids:
            raise UserError(f"theograph: {table} has nobody{f' in PCN {pcn}' if pcn else ''}")
    people = catalog.read(PERSON.name).where(F.col("person_id").isin(person_ids))
    segments = catalog.read(SEGMENTS.name).select("person_id", "segment_label", "cms_score", "efi_category")
    found = {r.person_id: r.asDict() for r in people.join(segments, "person_id", "left").collect()}
    unknown = [p for p in person_ids if p not in found]
    if unknown:
        raise UserError(
            f"theograph: no person {', '.join(unknown)} in {PERSON.name}; take person_ids from a case-finding "
            "mart (mart.cohort_<name>) or gold.segments of this warehouse"
        )

    def rows(spec) -> Any:
        return catalog.read(spec.name).where(F.col("person_id").isin(person_ids)).toPandas()

    events, conditions = rows(EVENTS), rows(CONDITIONS)
    scores = rows(RISK_SCORES) if catalog.exists(RISK_SCORES.name) else None
    folder = Path(config.resolve(config.paths.reports)) / "theographs"
    folder.mkdir(parents=True, exist_ok=True)
    for person_id in person_ids:
        person = found[person_id]
        page = theograph_page(
            person,
            events[events["person_id"] == person_id],
            conditions[conditions["person_id"] == person_id],
            scores[scores["person_id"] == person_id] if scores is not None else None,
            person["reference_date"],
            years,
        )
        target = folder / f"{person_id}.html"
        _write_whole(target, page)
        print(target)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
