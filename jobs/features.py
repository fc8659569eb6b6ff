"""Risk model features: `phm run features`.

Reads the gold person model and writes gold.features: one row per person x
index date (training, validation and scoring dates, phm.features.index_dates),
each from data dated strictly before its index date, with the label (an
emergency admission in the follow-up) where the follow-up is observed.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from phm.config import load_definitions
from phm.errors import UserError
from phm.features.build import build_features
from phm.features.index_dates import months_between, plan_index_dates
from phm.person.conditions import condition_codes
from phm.person.definitions import load_person_model_definitions
from phm.person.events import history_span
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.segmentation.definitions import Segmentation
from phm.tables import EVENTS, FEATURES, OBSERVATIONS, PERSON

log = logging.getLogger("phm.jobs.features")

SPEC = JobSpec(
    name="features",
    description="gold person model -> gold.features (person x index date, leak-free, with the admission label)",
    outputs=(FEATURES.name,),
    depends_on=("build_person_model",),
)
INPUTS = (PERSON.name, EVENTS.name, OBSERVATIONS.name)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    definitions = load_person_model_definitions(config)
    segmentation = load_definitions(config.resolve(config.person_model.segmentation), Segmentation)
    for needed in INPUTS:
        if not catalog.exists(needed):
            raise UserError(f"features: {needed} does not exist; run `phm run build_person_model` first")
    if ctx.unchanged_since_last_success(INPUTS, SPEC.outputs):
        log.info("features: the person model is unchanged since the last features run; nothing to do")
        ctx.rows_out = 0
        return
    person, events = catalog.read(PERSON.name), catalog.read(EVENTS.name)
    reference_date, history_start = history_span(person, events, "features", catalog.least_value(EVENTS.name, "period"))
    plan = plan_index_dates(reference_date, history_start, config.risk)
    if plan.dropped_windows:
        log.warning(
            "features: windows %s months left out: longer than the %s months of history before the first "
            "training date %s",
            list(plan.dropped_windows),
            months_between(history_start, min(plan.training)),
            min(plan.training),
        )
    features = build_features(
        person,
        events,
        condition_codes(events, definitions.conditions),
        catalog.read(OBSERVATIONS.name),
        definitions.conditions,
        definitions.observations,
        segmentation,
        plan,
    )
    catalog.overwrite(FEATURES.name, features)
    summary = (
        catalog.read(FEATURES.name)
        .groupBy("index_date", "split")
        .agg(F.count(F.lit(1)).alias("persons"), F.avg("label").alias("rate"))
        .orderBy("index_date")
        .collect()
    )
    log.info(
        "features: windows %s months, follow-up %d months; %s",
        list(plan.windows),
        plan.follow_up_months,
        "; ".join(
            f"{r.split} {r.index_date}: {r.persons} persons"
            + (f", {100 * r.rate:.2f}% admitted" if r.rate is not None else "")
            for r in summary
        ),
    )


if __name__ == "__main__":
    main_for(SPEC.name)
