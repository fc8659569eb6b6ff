"""The linked person model: `phm run build_person_model`.

Reads every activity source's silver table and silver.person_link, and
writes gold.events (the timeline, with costs and flags), gold.coded_events
(its coded events matched to the conditions' and eFI deficits' code lists),
gold.conditions (registers current at the reference date) and
gold.observations (BP, HbA1c, BMI, smoking), all keyed by person_id. The
reference date is gold.person's (the last day of the latest loaded period). Definitions are config:
person_model.codelists, person_model.unit_costs. Every silver row is
accounted for: each becomes one event, except social care end records,
which close their package's event.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.config import load_definitions
from phm.errors import UserError
from phm.ingest.contracts import load_contracts
from phm.person.codes import coded_events
from phm.person.conditions import condition_codes, conditions_at
from phm.person.definitions import load_person_model_definitions
from phm.person.events import BUILDERS, REBUILT_WHOLE, build_events
from phm.person.observations import observations
from phm.runtime.catalog import DELETE, INSERT
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.staging import stage
from phm.segmentation.definitions import Segmentation
from phm.segmentation.scores import coded_event_families
from phm.tables import CODED_EVENTS, CONDITIONS, EVENTS, OBSERVATIONS, PERSON, PERSON_LINK

log = logging.getLogger("phm.jobs.build_person_model")
# Past this share of gold.events changed, it is rewritten whole: a merge writes each changed row as a rewrite would
# and reads the table besides (not measured at the boundary; a monthly refresh changes about 3% of it).
WHOLE_PAST = 0.25
# The merge's changed events are sent whole to every task when there are at most this many (about 300 bytes each):
# the table is then scanned without a shuffle; a month re-delivered whole is joined the usual way.
BROADCAST_ROWS = 250_000

SPEC = JobSpec(
    name="build_person_model",
    description="silver + person_link -> gold.events (costed timeline), gold.coded_events, gold.conditions, "
    "gold.observations",
    outputs=(EVENTS.name, CODED_EVENTS.name, CONDITIONS.name, OBSERVATIONS.name),
    depends_on=("link",),
)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    definitions = load_person_model_definitions(config)
    segmentation = load_definitions(config.resolve(config.person_model.segmentation), Segmentation)
    for needed in (PERSON_LINK.name, PERSON.name):
        if not catalog.exists(needed):
            raise UserError(f"build_person_model: {needed} does not exist; run `phm run link` first")
    contracts = {
        source: contract
        for source, contract in load_contracts(config.resolve(config.ingest.sources)).items()
        if source in BUILDERS and catalog.exists(contract.silver_table)
    }
    tables = [contract.silver_table for contract in contracts.values()]
    if ctx.unchanged_since_last_success((PERSON_LINK.name, PERSON.name, *tables), SPEC.outputs):
        log.info("build_person_model: person links, gold.person and the silver tables are unchanged; nothing to do")
        ctx.rows_out = 0
        return
    if not contracts:
        raise UserError("build_person_model: no activity source has been ingested; run `phm run ingest` first")
    absent = sorted(set(BUILDERS) - set(contracts))
    if absent:
        log.warning(
            "build_person_model: no silver table yet for %s; their activity is not in gold.events", ", ".join(absent)
        )
    person = catalog.read(PERSON.name)
    reference_date = str(person.agg(F.max("reference_date")).first()[0])
    silver = {source: catalog.read(contract.silver_table) for source, contract in contracts.items()}
    record_ids = {source: contract.record_id for source, contract in contracts.items()}
    changes = _changes_since_last_build(ctx, contracts)
    staging = Path(config.resolve(config.paths.checkpoints)) / f"build_person_model-{ctx.run_id}"
    try:
        rows_in = None
        if changes is not None:
            rows_in = _changed_in_place(ctx, silver, record_ids, *changes, definitions, reference_date, staging)
        if rows_in is None:
            links = catalog.read(PERSON_LINK.name)
            rows_in = _rows_and_unlinked(silver, record_ids, links)
            catalog.overwrite(EVENTS.name, build_events(silver, record_ids, links, definitions, reference_date))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = catalog.read(EVENTS.name)
    events_total = _account(rows_in, written)

    # Matched whole from the timeline as written, once, where features, segment and actuarial matched it again
    # each (twice for features and the history), every refresh: docs/person_model.md.
    families = coded_event_families(definitions.conditions, segmentation.electronic_frailty_index)
    catalog.overwrite(CODED_EVENTS.name, coded_events(written, families))
    codes = condition_codes(catalog.read(CODED_EVENTS.name))
    ages = person.select("person_id", "age")
    current = conditions_at(codes, ages, definitions.conditions, reference_date).withColumn(
        "reference_date", F.lit(reference_date).cast("date")
    )
    catalog.overwrite(CONDITIONS.name, current)
    catalog.overwrite(OBSERVATIONS.name, observations(written, definitions.observations, reference_date))
    ctx.rows_in = sum(rows_in.values())
    log.info(
        "build_person_model: %d events (%d rows of gold.coded_events), %d current conditions, %d observations at %s",
        events_total,
        catalog.rows_written[CODED_EVENTS.name],
        catalog.rows_written[CONDITIONS.name],
        catalog.rows_written[OBSERVATIONS.name],
        reference_date,
    )


def _changes_since_last_build(ctx: JobContext, contracts: dict) -> tuple[dict[str, DataFrame], DataFrame] | None:
    """The rows each silver table (by source) and silver.person_link gained and lost (`_change_type`) since the
    versions the last successful run read, or None when gold.events is to be built whole: no earlier run, another
    configuration (code lists, unit costs), a source it did not read, or change data not recorded throughout.
    gold.events is what that run made of those versions: only this job writes it, and a failed run's writes are
    rolled back."""
    catalog, last = ctx.catalog, ctx.last_success
    read = (last.input_versions or {}) if last is not None else {}
    tables = {source: contract.silver_table for source, contract in contracts.items()}
    whole = (
        "it has not been built" if last is None or not catalog.exists(EVENTS.name)
        else "the configuration changed since the last run" if not ctx.config_unchanged_since_last_success()
        else "a source is new since the last run"
        if any(read.get(table) is None for table in [*tables.values(), PERSON_LINK.name])
        else None
    )  # fmt: skip
    if whole:
        log.info("build_person_model: building gold.events whole: %s", whole)
        return None

    def changes_of(table: str) -> DataFrame | None:
        found = catalog.changes(table, read[table])
        if found is None:
            log.info("build_person_model: building gold.events whole: %s has no change data since the last run", table)
        return found

    changes = {}
    for source, table in tables.items():
        changes[source] = changes_of(table)
        if changes[source] is None:
            return None
    link_changes = changes_of(PERSON_LINK.name)
    return None if link_changes is None else (changes, link_changes)


def _changed_in_place(
    ctx, silver, record_ids, changes, link_changes, definitions, reference_date, staging: Path
) -> dict[str, int] | None:
    """gold.events changed in place: the events of the rows each silver table gained, without those of the rows it
    lost, the records whose link changed moved to their person, and the sources in REBUILT_WHOLE rebuilt. Two
    commits, as link changes person_link: a merge of the few events that replace, leave or move (re-delivered
    rows, social care, relinked records), then the events whose key the table does not hold appended (new rows,
    new social care packages: no key to look up). Returns the rows per silver table, or None (nothing written)
    when more than WHOLE_PAST of the events would change; a UserError if a new row, or an old row whose link was
    removed, has no person_link row."""
    catalog, spark = ctx.catalog, ctx.spark
    whole, keys = F.col("source").isin(*REBUILT_WHOLE), ["source", "record_id"]
    link_changes = stage(spark, link_changes, staging / "links")  # netted once, read four times
    linked, unlinked_since = (_rows(link_changes, kind).select(*keys, "person_id") for kind in (INSERT, DELETE))
    # Rows added since the last run were linked since (link runs after ingest): their person is among the links
    # added since. The sources rebuilt whole need every record's.
    people = catalog.read(PERSON_LINK.name).select(*keys, "person_id")
    added = {source: (frame if source in REBUILT_WHOLE else _rows(changes[source], INSERT))
             for source, frame in silver.items()}  # fmt: skip
    links = people.where(whole).unionByName(linked.where(~whole))
    upserts = stage(spark, build_events(added, record_ids, links, definitions, reference_date), staging / "events")
    if upserts.where(F.col("person_id").isNull()).limit(1).count():  # linked before the last run: look them up
        found = upserts.where(F.col("person_id").isNull()).drop("person_id").join(people, keys, "left")
        upserts = stage(spark, upserts.where(F.col("person_id").isNotNull()).unionByName(found), staging / "looked_up")
    relinked = stage(spark, linked.join(unlinked_since, keys, "left_semi"), staging / "relinked")  # not the added
    relinked_rows = relinked.count()
    changed, events = upserts.count() + relinked_rows, catalog.read(EVENTS.name).count()
    if changed > WHOLE_PAST * events:  # a key rotation, a full relink
        log.info("build_person_model: %d of %d events changed; building gold.events whole", changed, events)
        return None
    removed_keys = [_keys(_rows(changes[s], DELETE), s, record_ids[s]) for s in silver if s not in REBUILT_WHOLE]
    removed_keys.append(catalog.read(EVENTS.name).where(whole).select(*keys))
    removed = stage(spark, reduce(DataFrame.unionByName, removed_keys), staging / "removed")
    lost = unlinked_since.select(*keys).join(linked, keys, "left_anti").join(removed, keys, "left_anti")
    counts = Counter()
    for frame in (upserts.where(F.col("person_id").isNull()), lost):
        counts.update({r.source: r["count"] for r in frame.groupBy("source").count().collect()})
    if counts:
        _unlinked_error([f"{source} {count}" for source, count in sorted(counts.items())])
    # `removed` holds every event of the sources rebuilt whole and the other sources' removed rows, so an event
    # replaces one the table holds exactly when its key is there; the others (e.g. a new social care package)
    # are appended with the new rows, and the merge, matched rows only, can broadcast its source.
    replacing = stage(spark, upserts.join(removed, keys, "left_semi"), staging / "replacing")  # read several times
    few = replacing.count() + relinked_rows <= BROADCAST_ROWS
    catalog.apply_changes(EVENTS.name, replacing, removed, relinked, broadcast=few, insert=False)
    merged = catalog.last_data_operation(EVENTS.name).get("operationMetrics") or {}
    catalog.append(EVENTS.name, upserts.join(removed, keys, "left_anti"))
    appended = catalog.last_data_operation(EVENTS.name).get("operationMetrics") or {}
    log.info(
        "build_person_model: gold.events changed in place: %d events added, %s replaced or relinked, %s removed",
        int(merged.get("numTargetRowsInserted", 0)) + int(appended.get("numOutputRows", 0)),
        merged.get("numTargetRowsUpdated", 0), merged.get("numTargetRowsDeleted", 0),
    )  # fmt: skip
    return {source: frame.count() for source, frame in silver.items()}


def _keys(rows: DataFrame, source: str, record_id: str) -> DataFrame:
    """(source, record_id) of a source's silver rows."""
    return rows.select(F.lit(source).alias("source"), F.col(record_id).cast("string").alias("record_id"))


def _rows(changes: DataFrame, kind: str) -> DataFrame:
    return changes.where(F.col("_change_type") == kind).drop("_change_type")


def _unlinked_error(counts: list[str]):
    raise UserError(
        f"build_person_model: records with no person_link row ({', '.join(counts)}); run `phm run link` "
        "after ingest so every accepted record is linked"
    )


def _rows_and_unlinked(silver: dict, record_ids: dict[str, str], links) -> dict[str, int]:
    """Rows per silver table, in one pass over the record keys; a UserError if any has no person_link row
    (checked on the keys, so the timeline itself is computed once, when it is written)."""
    keys = reduce(DataFrame.unionByName, [_keys(frame, source, record_ids[source]) for source, frame in silver.items()])
    counts = (
        keys.join(links.select("source", "record_id", F.lit(True).alias("_linked")), ["source", "record_id"], "left")
        .groupBy("source")
        .agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(F.col("_linked").isNull(), 1)).alias("unlinked"))
        .collect()
    )
    unlinked = [f"{r['source']} {r['unlinked']}" for r in counts if r["unlinked"]]
    if unlinked:
        _unlinked_error(unlinked)
    return {r["source"]: r["rows"] for r in counts}


def _account(rows_in: dict[str, int], events) -> int:
    """Every silver row is an event, or a social care end record folded into its package (which says so).
    Returns the number of events."""
    folded = (F.col("source") == "social_care") & F.col("end_date").isNotNull()
    folded = folded & (F.col("activity") != "care_end_without_start")
    counts = {
        r["source"]: (r["events"], r["folded"])
        for r in events.groupBy("source")
        .agg(F.count(F.lit(1)).alias("events"), F.count(F.when(folded, 1)).alias("folded"))
        .collect()
    }
    for source, rows in rows_in.items():
        events_of, folded_of = counts.get(source, (0, 0))
        if events_of != rows - folded_of:
            raise RuntimeError(
                f"build_person_model: silver.{source} has {rows} rows but gold.events {events_of} "
                f"(expected {rows - folded_of}); an event builder lost or duplicated rows"
            )
    return sum(events_of for events_of, _ in counts.values())


if __name__ == "__main__":
    main_for(SPEC.name)
