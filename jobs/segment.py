"""Population segmentation at the reference date: `phm run segment`.

Reads gold.person, gold.conditions, gold.events and gold.coded_events and writes gold.segments:
one row per living person with the Bridges to Health segment, long-term
conditions, Cambridge Multimorbidity Score, electronic frailty index,
high-intensity use and annual cost (definitions: person_model.segmentation,
each with its source in phm.segmentation). The segment x risk-tier matrix
follows once risk tiers exist (the risk stratification stage).
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from phm.config import load_definitions
from phm.errors import UserError
from phm.person.definitions import load_codelists
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.segmentation.definitions import Segmentation, check_against_codelists
from phm.segmentation.segments import build_segments
from phm.tables import CODED_EVENTS, CONDITIONS, EVENTS, PERSON, SEGMENTS

log = logging.getLogger("phm.jobs.segment")

SPEC = JobSpec(
    name="segment",
    description="gold person model -> gold.segments (Bridges to Health, CMS, eFI, high-intensity use, annual cost)",
    outputs=(SEGMENTS.name,),
    depends_on=("build_person_model",),
)
INPUTS = (PERSON.name, CONDITIONS.name, EVENTS.name, CODED_EVENTS.name)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    path = config.resolve(config.person_model.segmentation)
    segmentation = load_definitions(path, Segmentation)
    codelists = load_codelists(f"{config.resolve(config.person_model.codelists)}/conditions")
    check_against_codelists(segmentation, codelists, path)
    for needed in INPUTS:
        if not catalog.exists(needed):
            raise UserError(f"segment: {needed} does not exist; run `phm run build_person_model` first")
    if ctx.unchanged_since_last_success(INPUTS, SPEC.outputs):
        log.info("segment: the person model is unchanged since the last segmentation; nothing to do")
        ctx.rows_out = 0
        return
    person = catalog.read(PERSON.name)
    conditions = catalog.read(CONDITIONS.name)
    reference_date = str(
        conditions.agg(F.max("reference_date")).first()[0] or person.agg(F.max("reference_date")).first()[0]
    )
    events, coded = catalog.read(EVENTS.name), catalog.read(CODED_EVENTS.name)
    segments = build_segments(person, conditions, events, coded, codelists, segmentation, reference_date)
    catalog.overwrite(SEGMENTS.name, segments)
    sizes = (
        catalog.read(SEGMENTS.name)
        .groupBy("segment_order", "segment")
        .agg(F.count(F.lit(1)).alias("people"), F.sum("annual_cost").alias("cost"))
        .orderBy("segment_order")
        .collect()
    )
    people = sum(r["people"] for r in sizes)
    log.info(
        "segment: %d living persons at %s: %s",
        people,
        reference_date,
        "; ".join(f"{r['segment']} {100 * r['people'] / people:.1f}%" for r in sizes),
    )


if __name__ == "__main__":
    main_for(SPEC.name)
