"""The linked person model: `phm run build_person_model`.

Reads every activity source's silver table and silver.person_link, and
writes gold.events (the timeline, with costs and flags), gold.conditions
(registers current at the reference date) and gold.observations (BP, HbA1c,
BMI, smoking), all keyed by person_id. The reference date is gold.person's
(the last day of the latest loaded period). Definitions are config:
person_model.codelists, person_model.unit_costs. Every silver row is
accounted for: each becomes one event, except social care end records,
which close their package's event.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from phm.errors import UserError
from phm.ingest.contracts import load_contracts
from phm.person.conditions import condition_codes, conditions_at
from phm.person.definitions import load_person_model_definitions
from phm.person.events import BUILDERS, build_events
from phm.person.observations import observations
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.tables import CONDITIONS, EVENTS, OBSERVATIONS, PERSON, PERSON_LINK

log = logging.getLogger("phm.jobs.build_person_model")

SPEC = JobSpec(
    name="build_person_model",
    description="silver + person_link -> gold.events (costed timeline), gold.conditions, gold.observations",
    outputs=(EVENTS.name, CONDITIONS.name, OBSERVATIONS.name),
    depends_on=("link",),
)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    definitions = load_person_model_definitions(config)
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
    links = catalog.read(PERSON_LINK.name)
    rows_in = _rows_and_unlinked(silver, record_ids, links)
    events = build_events(silver, record_ids, links, definitions, reference_date)
    catalog.overwrite(EVENTS.name, events)
    written = catalog.read(EVENTS.name)
    _account(rows_in, written)

    codes = condition_codes(written, definitions.conditions)
    ages = person.select("person_id", "age")
    current = conditions_at(codes, ages, definitions.conditions, reference_date).withColumn(
        "reference_date", F.lit(reference_date).cast("date")
    )
    catalog.overwrite(CONDITIONS.name, current)
    catalog.overwrite(OBSERVATIONS.name, observations(written, definitions.observations, reference_date))
    ctx.rows_in = sum(rows_in.values())
    log.info(
        "build_person_model: %d events, %d current conditions, %d observations at %s",
        catalog.rows_written[EVENTS.name],
        catalog.rows_written[CONDITIONS.name],
        catalog.rows_written[OBSERVATIONS.name],
        reference_date,
    )


def _rows_and_unlinked(silver: dict, record_ids: dict[str, str], links) -> dict[str, int]:
    """Rows per silver table, in one pass over the record keys; a UserError if any has no person_link row
    (checked on the keys, so the timeline itself is computed once, when it is written)."""
    keys = None
    for source, frame in silver.items():
        part = frame.select(F.lit(source).alias("source"), F.col(record_ids[source]).cast("string").alias("record_id"))
        keys = part if keys is None else keys.unionByName(part)
    counts = (
        keys.join(links.select("source", "record_id", F.lit(True).alias("_linked")), ["source", "record_id"], "left")
        .groupBy("source")
        .agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(F.col("_linked").isNull(), 1)).alias("unlinked"))
        .collect()
    )
    unlinked = [f"{r['source']} {r['unlinked']}" for r in counts if r["unlinked"]]
    if unlinked:
        raise UserError(
            f"build_person_model: records with no person_link row ({', '.join(unlinked)}); run `phm run link` "
            "after ingest so every accepted record is linked"
        )
    return {r["source"]: r["rows"] for r in counts}


def _account(rows_in: dict[str, int], events) -> None:
    """Every silver row is an event, or a social care end record folded into its package (which says so)."""
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


if __name__ == "__main__":
    main_for(SPEC.name)
