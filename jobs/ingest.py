"""Ingest landing extracts: bronze (as delivered), silver (checked, typed, pseudonymised), quarantine, vault.

`phm run ingest`. Loads only source-periods whose files are new or changed
since the last load (a changed period replaces its rows everywhere); with
nothing new it writes nothing. Every rule of every contract runs both as a
row predicate (deciding quarantine / warn) and as a Great Expectations
suite (Data Docs under reports/<run_id>/data_docs/); the two must agree.
A `fail` rule stops the run before anything is written. Per file,
rows in = accepted + quarantined, checked against what was written.
"""

from __future__ import annotations

import logging
import shutil
import time
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.ingest import pseudonymise
from phm.ingest.contracts import SourceContract, load_contracts
from phm.ingest.landing import LandedFile, check_period_name, plan_loads, scan_landing, schema_drift
from phm.ingest.outputs import file_accounting, to_quarantine, to_silver, to_vault
from phm.ingest.reader import landed_rows
from phm.ingest.rules import MALFORMED_RULE, compile_rules, evaluate, failure_counts
from phm.ingest.standardise import standardise
from phm.ingest.upgrade import bronze_is_old, bronze_values, files_with_columns
from phm.runtime.concurrency import run_in_dependency_order
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.spark import job_described
from phm.runtime.staging import stage
from phm.tables import DATA_QUALITY, IDENTITY, INGEST_FILES, LANDED_ROWS, QUARANTINE

log = logging.getLogger("phm.jobs.ingest")


class RuleFailedError(UserError):
    """A rule whose action is `fail` found failing rows: nothing was written."""


class AccountingError(RuntimeError):
    """Rows in != accepted + quarantined: a bug, never a user error."""


def outputs(config) -> tuple[str, ...]:
    contracts = load_contracts(config.resolve(config.ingest.sources))
    fixed = (LANDED_ROWS.name, INGEST_FILES.name, QUARANTINE.name, IDENTITY.name, DATA_QUALITY.name)
    return fixed + tuple(c.silver_table for c in contracts.values())


SPEC = JobSpec(
    name="ingest",
    description="landing -> bronze / silver / quarantine / vault, with Great Expectations and pseudonyms",
    outputs=(),
    outputs_for=outputs,
    depends_on=("generate",),
)


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    contracts = load_contracts(config.resolve(config.ingest.sources))
    landing = config.resolve(config.paths.landing)
    landed, drift = _scan(landing, contracts)
    plan = plan_loads(landed, _loaded_state(catalog))
    if not plan.loads:
        log.info("ingest: nothing new in %s (%d source-periods already loaded)", landing, plan.unchanged)
        ctx.rows_in = ctx.rows_out = ctx.rows_quarantined = 0
        return
    log.info(
        "ingest: %d source-period(s) to load (%d new, %d changed), %d files; %d unchanged",
        len(plan.loads),
        sum(load.reason == "new" for load in plan.loads),
        sum(load.reason == "changed" for load in plan.loads),
        len(plan.files),
        plan.unchanged,
    )
    key = pseudonymise.load_key(config.ingest.key_env, config.pseudonym_key_file)
    key_id = pseudonymise.key_id(key)
    _check_vault_key(catalog, key_id)
    _upgrade_layouts(catalog, landed)

    staging = Path(config.resolve(config.paths.checkpoints)) / f"ingest-{ctx.run_id}"
    try:
        started = time.monotonic()
        formats = {c.source: c.format for c in contracts.values()}
        bronze = stage(spark, landed_rows(spark, plan.files, formats, 2 * spark.sparkContext.defaultParallelism,
                                         config.ingest.max_field_chars),
                        staging / "bronze", partition_by=("source",), open_files=len(contracts))  # fmt: skip
        log.info("ingest: read %d files in %.1fs", len(plan.files), time.monotonic() - started)

        validator = _validator(config, ctx.run_id)
        evaluated, rules_of, failing = _check(ctx, contracts, plan, bronze, validator, staging)
        validator.build_docs()
        _stop_on_fail_rules(evaluated, failing)

        started = time.monotonic()
        accounting = _write(ctx, contracts, plan, bronze, evaluated, rules_of, drift, key, key_id, landed)
        log.info("ingest: wrote and accounted in %.1fs", time.monotonic() - started)
        ctx.rows_in = sum(a["rows_in"] for a in accounting)
        ctx.rows_quarantined = sum(a["rows_quarantined"] for a in accounting)
        ctx.rows_out = sum(a["rows_accepted"] for a in accounting)
        log.info(
            "ingest: %d rows in, %d accepted, %d quarantined (%d with warnings)",
            ctx.rows_in,
            sum(a["rows_accepted"] for a in accounting),
            ctx.rows_quarantined,
            sum(a["rows_warned"] for a in accounting),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _scan(landing: str, contracts: dict[str, SourceContract]) -> tuple[list[LandedFile], dict[str, list[str]]]:
    """Every landed file, period names and required columns checked; extra columns by file."""
    landed: list[LandedFile] = []
    drift: dict[str, list[str]] = {}
    for contract in contracts.values():
        for found in scan_landing(landing, contract):
            check_period_name(found)
            extra = schema_drift(found, contract)
            if extra:
                drift[found.file] = extra
                log.warning("ingest: %s: unexpected column(s) %s recorded and ignored", found.file, extra)
            landed.append(found)
    return landed, drift


def _loaded_state(catalog) -> dict[tuple[str, str], dict[str, str]]:
    if not catalog.exists(INGEST_FILES.name):
        return {}
    state: dict[tuple[str, str], dict[str, str]] = {}
    for row in catalog.read(INGEST_FILES.name).select("source", "period", "file", "checksum").collect():
        state.setdefault((row.source, row.period), {})[row.file] = row.checksum
    return state


def _upgrade_layouts(catalog, landed: list[LandedFile]) -> None:
    """Bronze and the file ledger as an earlier version wrote them (bronze's rows as maps) rewritten in the
    current layout (phm.ingest.upgrade), the ledger first: it takes the headers from the old bronze (or
    landing). Only when there is something to load, so that a run with nothing new still writes nothing."""
    old = catalog.read(LANDED_ROWS.name) if bronze_is_old(catalog.columns(LANDED_ROWS.name)) else None
    ledger = catalog.columns(INGEST_FILES.name)  # none when there is no ledger yet
    if ledger and "columns" not in ledger:
        delivered = catalog.spark.createDataFrame(
            [(f.file, f.checksum, list(f.columns)) for f in landed],
            "file string, checksum string, columns array<string>",
        )
        catalog.overwrite(INGEST_FILES.name, files_with_columns(catalog.read(INGEST_FILES.name), old, delivered))
        log.info("ingest: %s upgraded: each file's columns recorded", INGEST_FILES.name)
    if old is not None:
        catalog.overwrite(LANDED_ROWS.name, bronze_values(old))
        log.info("ingest: %s upgraded: each row's values in its file's column order", LANDED_ROWS.name)
    for name in (INGEST_FILES.name, LANDED_ROWS.name):  # not this load's rows: its accounting counts those
        catalog.rows_written.pop(name, None)


def _check_vault_key(catalog, key_id: str) -> None:
    if not catalog.exists(IDENTITY.name):
        return
    other = catalog.read(IDENTITY.name).where(F.col("key_id") != key_id).select("key_id").limit(1).collect()
    if other:
        raise UserError(
            f"vault.identity holds pseudonyms made with another key (key id {other[0].key_id}, now {key_id}); "
            "use the key the vault was built with, or rotate keys as docs/ingest.md describes"
        )


def _validator(config, run_id: str):
    from phm.ingest.validation import Validator

    docs = Path(config.resolve(config.paths.reports)) / run_id / "data_docs" if config.ingest.data_docs else None
    return Validator(docs)


def _value_sets(contract, contracts, evaluated, catalog) -> dict[str, list[str]]:
    """Allowed values of each `values_from` reference column: this run's accepted rows, else its silver table."""
    sets: dict[str, list[str]] = {}
    for rule in contract.rules:
        if not rule.values_from:
            continue
        source, column = rule.values_from.split(".")
        frame = _reference(source, contracts, evaluated, catalog)
        if frame is None:
            raise UserError(
                f"configs/sources/{contract.source}.yaml: rule {rule.name} checks values against {source}, "
                f"which has never been loaded; deliver landing/{contracts[source].landing_folder}/ first"
            )
        sets[rule.values_from] = [
            r[0] for r in frame.select(column).where(F.col(column).isNotNull()).distinct().collect()
        ]
    return sets


def _reference(source: str, contracts, evaluated: dict[str, DataFrame], catalog) -> DataFrame | None:
    if source in evaluated:
        return evaluated[source].where(F.col("_outcome") == "accept")
    table = contracts[source].silver_table
    return catalog.read(table) if catalog.exists(table) else None


def _check(ctx, contracts, plan, bronze, validator, staging: Path):
    """Each planned source standardised, its rules evaluated per row (staged) and run as its Great Expectations
    suite, the two counts compared; sources at once (spark.concurrent_jobs), each after the sources whose
    accepted values its rules check against. Returns (flagged rows, rules, rows failing a `fail` rule) by
    source."""
    evaluated: dict[str, DataFrame] = {}

    def check(contract: SourceContract):
        def run():
            started = time.monotonic()
            rules = compile_rules(contract, _value_sets(contract, contracts, evaluated, ctx.catalog))
            headers = {f.file: f.columns for f in plan.files if f.source == contract.source}
            standardised = standardise(bronze, contract, headers)
            flagged = stage(ctx.spark, evaluate(standardised, rules), staging / contract.source)
            checked = time.monotonic()
            counts = _failing_rows(flagged, rules)
            with job_described(ctx.spark, f"expectations of {contract.source}"):  # GE's queries: name the source
                outcomes = validator.validate(contract.source, flagged, rules)
            _agree_with_gx(contract, counts, rules, outcomes)
            evaluated[contract.source] = flagged  # before its dependants start: they read its accepted values
            log.info("ingest: %s checked in %.1fs (rules %.1fs, Great Expectations %.1fs)", contract.source,
                     time.monotonic() - started, checked - started, time.monotonic() - checked)  # fmt: skip
            return flagged, rules, counts[FAIL_ROWS] or 0

        return run

    planned = {c.source: c for c in contracts.values() if plan.periods(c.source)}
    needs = {source: [r.values_from.split(".")[0] for r in c.rules if r.values_from] for source, c in planned.items()}
    done = run_in_dependency_order({s: check(c) for s, c in planned.items()}, needs, ctx.config.spark.concurrent_jobs)
    # in contract order, whatever order they finished in (every planned source is done, or this raised)
    return tuple({source: done[source][part] for source in planned} for part in range(3))


FAIL_ROWS = "_rows_failing_a_fail_rule"


def _failing_rows(flagged: DataFrame, rules):
    """One pass over the flagged rows: rows failing each rule, and rows failing a rule whose action is fail."""
    return flagged.agg(*[F.sum(F.array_contains("_failed", r.spec.name).cast("long")).alias(r.spec.name)
                         for r in rules],
                       F.sum((F.col("_outcome") == "fail").cast("long")).alias(FAIL_ROWS)).first()  # fmt: skip


def _agree_with_gx(contract: SourceContract, counts, rules, outcomes) -> None:
    """Great Expectations and the row predicates must count the same failing rows (unique: GX counts all copies)."""
    for rule in rules:
        ours, theirs = counts[rule.spec.name] or 0, outcomes.get(rule.spec.name)
        if theirs is None or theirs.unexpected is None:
            raise RuntimeError(f"Great Expectations returned no count for {contract.source} rule {rule.spec.name}")
        agree = theirs.unexpected >= ours if rule.spec.check == "unique" else theirs.unexpected == ours
        if not agree:
            raise RuntimeError(
                f"{contract.source} rule {rule.spec.name}: Great Expectations counts {theirs.unexpected} failing "
                f"rows, the row predicate {ours}; fix phm.ingest.rules or phm.ingest.validation"
            )


def _stop_on_fail_rules(evaluated: dict[str, DataFrame], failing: dict[str, int]) -> None:
    for source, total in failing.items():
        if not total:
            continue
        failed = evaluated[source].where(F.col("_outcome") == "fail")
        examples = failed.select("file", "line_number", "_failed").orderBy("file", "line_number").limit(5).collect()
        where = "; ".join(f"{r.file} line {r.line_number} ({', '.join(r._failed)})" for r in examples)
        raise RuleFailedError(
            f"{source}: {total} row(s) failed a rule whose action is fail, e.g. {where}; nothing was written. "
            f"Fix the extract and re-deliver it, or change the rule's action in configs/sources/{source}.yaml"
        )


def _write(ctx, contracts, plan, bronze, evaluated, rules_of, drift, key, key_id, landed) -> list[dict]:
    catalog, spark = ctx.catalog, ctx.spark
    pairs = {(load.source, load.period) for load in plan.loads}
    where = _pairs_predicate(pairs)
    postcode_lsoa = _reference("postcode_lsoa", contracts, evaluated, catalog) if "postcode_lsoa" in contracts else None
    lsoa_imd = _reference("lsoa_imd", contracts, evaluated, catalog) if "lsoa_imd" in contracts else None

    def to_tables(source: str, flagged: DataFrame):
        def run():
            contract, rules = contracts[source], rules_of[source]
            accepted = pseudonymise.with_key(spark, flagged.where(F.col("_outcome") == "accept"), key)
            catalog.overwrite(contract.silver_table, to_silver(accepted, contract, postcode_lsoa, lsoa_imd),
                              replace_where=_in("period", plan.periods(source)))  # fmt: skip
            vault = to_vault(accepted, contract, key_id)
            id_first = _record_id_first(contract, [f for f in landed if f.source == source])
            quarantined = to_quarantine(flagged.where(F.col("_outcome") == "quarantine"), contract, rules, id_first)
            quality = _quality_rows(contract, flagged, drift, [f for f in landed if (f.source, f.period) in pairs])
            return None if vault is None else pseudonymise.without_key(vault), quarantined, quality

        return run

    workers = ctx.config.spark.concurrent_jobs
    tasks = {s: to_tables(s, f) for s, f in evaluated.items()}
    tasks[LANDED_ROWS.name] = lambda: catalog.overwrite(LANDED_ROWS.name, bronze, replace_where=where)
    written = run_in_dependency_order(tasks, workers=workers)
    parts = [written[source] for source in evaluated]
    identities = [vault for vault, _, _ in parts if vault is not None]
    shared = {QUARANTINE.name: _union([q for _, q, _ in parts]), DATA_QUALITY.name: _union([q for _, _, q in parts])}
    if identities:
        shared[IDENTITY.name] = _union(identities)
    run_in_dependency_order({name: (lambda n=name: catalog.overwrite(n, shared[n], replace_where=where))
                             for name in shared}, workers=workers)  # fmt: skip

    accounting = [r.asDict() for r in _union([file_accounting(f) for f in evaluated.values()]).collect()]
    _check_accounting(catalog, contracts, plan, accounting)
    # every planned file, even one with a header and no rows, so that the next run knows it is loaded
    counted = {a["file"]: a for a in accounting}
    counts = ("rows_in", "rows_accepted", "rows_quarantined", "rows_warned")
    files = spark.createDataFrame(
        [
            (
                f.source,
                f.period,
                f.file,
                f.checksum,
                f.size_bytes,
                list(f.columns),
                *(counted.get(f.file, {}).get(k, 0) for k in counts),
            )
            for f in plan.files
        ],
        "source string, period string, file string, checksum string, size_bytes long, columns array<string>, "
        "rows_in long, rows_accepted long, rows_quarantined long, rows_warned long",
    ).withColumn("loaded_at", F.current_timestamp())
    catalog.overwrite(INGEST_FILES.name, files, replace_where=where)
    return accounting


def _check_accounting(catalog, contracts, plan, accounting: list[dict]) -> None:
    """Per file rows in = accepted + quarantined, and the tables now hold exactly those rows for the periods."""
    for a in accounting:
        if a["rows_in"] != a["rows_accepted"] + a["rows_quarantined"]:
            raise AccountingError(f"{a['file']}: {a['rows_in']} rows in != {a['rows_accepted']} accepted + "
                                  f"{a['rows_quarantined']} quarantined")  # fmt: skip
    pairs = {(load.source, load.period) for load in plan.loads}
    wheres = {LANDED_ROWS.name: _pairs_predicate(pairs), QUARANTINE.name: _pairs_predicate(pairs)}
    expected = {
        LANDED_ROWS.name: sum(a["rows_in"] for a in accounting),
        QUARANTINE.name: sum(a["rows_quarantined"] for a in accounting),
    }
    for source in {s for s, _ in pairs}:
        table = contracts[source].silver_table
        wheres[table] = _in("period", plan.periods(source))
        expected[table] = sum(a["rows_accepted"] for a in accounting if a["source"] == source)
    # What each table's commit wrote: an overwrite with replaceWhere replaces exactly the rows its predicate
    # matches and Delta refuses rows outside it, so (one writer at a time: the lock) the rows a commit wrote
    # are the rows the table now holds for those periods, without reading them back (a read-back of every
    # table took 7-15 s a run on the test sample, a full scan of each at scale). A table whose commit has no
    # row count is counted.
    found = {name: catalog.rows_written[name] for name in wheres if name in catalog.rows_written}
    uncounted = {name: where for name, where in wheres.items() if name not in found}
    if uncounted:
        held = _union(
            [
                catalog.spark.read.format("delta")
                .load(catalog.path(name))
                .where(where)
                .groupBy()
                .count()
                .select(F.lit(name).alias("name"), "count")
                for name, where in uncounted.items()
            ]
        )
        found.update({row.name: row["count"] for row in held.collect()})
    wrong = {name: (found[name], expected[name]) for name in expected if found[name] != expected[name]}
    if wrong:
        raise AccountingError(
            "tables do not hold the rows ingest accounted for: "
            + "; ".join(f"{name} holds {got} rows, expected {want}" for name, (got, want) in sorted(wrong.items()))
        )


def _quality_rows(contract: SourceContract, flagged: DataFrame, drift, files: list[LandedFile]) -> DataFrame:
    actions = {r.name: (r.check, r.column or ",".join(r.columns or []), r.action) for r in contract.rules}
    actions[MALFORMED_RULE] = ("parse", None, "quarantine")
    mapping = F.create_map(*[F.lit(x) for name, (check, _, action) in actions.items()
                             for x in (name, f"{check}|{action}")])  # fmt: skip
    columns = F.create_map(*[F.lit(x) for name, (_, column, _) in actions.items() for x in (name, column or "")])
    counts = failure_counts(flagged, contract)
    rows = counts.select(
        F.lit(contract.source).alias("source"),
        "period",
        "rule",
        F.split(mapping[F.col("rule")], r"\|")[0].alias("check"),
        F.when(columns[F.col("rule")] != "", columns[F.col("rule")]).alias("column"),
        F.split(mapping[F.col("rule")], r"\|")[1].alias("action"),
        "rows_checked",
        F.col("failing_rows").cast("long").alias("failing_rows"),
        F.lit(None).cast("string").alias("detail"),
    )
    drifted = [(contract.source, f.period, f"extra_column:{c}", "schema", c, "warn", 0, 0, f"in {f.file}; ignored")
               for f in files if f.source == contract.source for c in drift.get(f.file, [])]  # fmt: skip
    if drifted:
        extra = flagged.sparkSession.createDataFrame(drifted, rows.schema)
        rows = rows.unionByName(extra)
    return rows


def _record_id_first(contract: SourceContract, files: list[LandedFile]) -> bool:
    first = contract.columns[contract.record_id].source_column
    return bool(files) and all(f.columns and f.columns[0] == first for f in files)


def _pairs_predicate(pairs: set[tuple[str, str]]) -> str:
    by_source: dict[str, list[str]] = {}
    for source, period in pairs:
        by_source.setdefault(source, []).append(period)
    return " OR ".join(f"(source = '{s}' AND {_in('period', p)})" for s, p in sorted(by_source.items()))


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in sorted(values))})"


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


if __name__ == "__main__":
    main_for(SPEC.name)
