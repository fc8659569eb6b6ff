"""Risk model features: `phm run features`.

Reads the gold person model and writes gold.features: one row per person x
index date (training, validation and scoring dates, phm.features.index_dates),
each from data dated strictly before its index date, with the label (an
emergency admission in the follow-up) where the follow-up is observed.

A refresh keeps the rows of the index dates gold.features already holds for
the persons whose data did not change since it was written, and builds the
new dates and the changed persons (phm.features.increment); it builds every
row when that cannot be told (another configuration, the table changed since,
gold.events rewritten whole or without change data) or most persons changed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dateutil.relativedelta import relativedelta
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.config import load_definitions
from phm.errors import UserError
from phm.features.build import build_features, index_frame, population
from phm.features.increment import changed_persons, for_persons, kept_dates, refreshed_features
from phm.features.index_dates import IndexPlan, months_between, plan_index_dates
from phm.person.conditions import condition_codes
from phm.person.definitions import load_person_model_definitions
from phm.person.events import history_span
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.staging import stage
from phm.segmentation.definitions import Segmentation
from phm.tables import EVENTS, FEATURES, OBSERVATIONS, PERSON, RUN_ID_COLUMN

log = logging.getLogger("phm.jobs.features")

SPEC = JobSpec(
    name="features",
    description="gold person model -> gold.features (person x index date, leak-free, with the admission label)",
    outputs=(FEATURES.name,),
    depends_on=("build_person_model",),
)
INPUTS = (PERSON.name, EVENTS.name, OBSERVATIONS.name)
# Past this share of gold.person changed, every row is built: the changed persons' build at the kept dates reads
# all the events again, so with most persons in it the two builds cost more than one whole build.
WHOLE_PAST = 0.3


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
    staging = Path(config.resolve(config.paths.checkpoints)) / f"features-{ctx.run_id}"
    try:
        features = _from_changes(ctx, person, events, plan, definitions, segmentation, staging)
        if features is None:
            features = _build(catalog, person, events, plan, plan.dates, definitions, segmentation)
        catalog.overwrite(FEATURES.name, features)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def _from_changes(ctx: JobContext, person, events, plan: IndexPlan, definitions, segmentation, staging: Path):
    """gold.features from what changed since it was written (phm.features.increment), or None, with the reason
    logged, when every row is to be built."""
    catalog, last = ctx.catalog, ctx.last_success
    written = (last.output_versions or {}).get(FEATURES.name) if last is not None else None
    events_read = (last.input_versions or {}).get(EVENTS.name) if last is not None else None
    why = (
        "it has not been built" if written is None or not catalog.exists(FEATURES.name)
        else "the configuration changed since the last run" if not ctx.config_unchanged_since_last_success()
        else "gold.features changed since the last run" if not catalog.data_unchanged(FEATURES.name, written)
        else "gold.events was rewritten whole since the last run"
        if events_read is None or catalog.rewritten_since(EVENTS.name, events_read)
        else None
    )  # fmt: skip
    changes = catalog.changes(EVENTS.name, events_read) if why is None else None
    if why is None and changes is None:
        why = "gold.events has no change data since the last run"
    if why is None:
        previous = catalog.read(FEATURES.name).drop(RUN_ID_COLUMN)
        held = [(r.index_date, r.split) for r in previous.select("index_date", "split").distinct().collect()]
        kept = kept_dates(held, plan.dates)
        why = None if kept else "it holds none of this refresh's index dates"
    if why is not None:
        log.info("features: building every row: %s", why)
        return None
    previous = previous.where(F.col("index_date").isin([d for d, _ in kept]))
    people = population(person, events, index_frame(ctx.spark, kept))
    follow_up_end = max(d for d, _ in kept) + relativedelta(months=plan.follow_up_months)
    changed = stage(ctx.spark, changed_persons(changes, previous, people, follow_up_end), staging / "changed")
    count, persons = changed.count(), person.count()
    if count > WHOLE_PAST * persons:
        log.info("features: building every row: %d of %d persons changed since the last run", count, persons)
        return None
    rebuilt = _build(catalog, person, events, plan, kept, definitions, segmentation, changed)
    rebuilt = rebuilt if count else rebuilt.limit(0)  # nobody changed: no scan of their events
    if list(previous.columns) != list(rebuilt.columns):
        log.info("features: building every row: the features are not those gold.features holds")
        return None
    new = [pair for pair in plan.dates if pair not in kept]
    log.info(
        "features: keeping the rows at %s of all but %d person(s) whose data changed; building %s",
        ", ".join(str(d) for d, _ in kept),
        count,
        ", ".join(str(d) for d, _ in new) or "no other date",
    )
    new_rows = _build(catalog, person, events, plan, new, definitions, segmentation) if new else rebuilt.limit(0)
    return refreshed_features(previous, changed, rebuilt, new_rows)


def _build(catalog, person, events, plan: IndexPlan, dates, definitions, segmentation, persons=None) -> DataFrame:
    """gold.features rows at `dates` (some of `plan`'s) of everyone, or of `persons` (a person_id frame) only."""
    observations = catalog.read(OBSERVATIONS.name)
    if persons is not None:
        person, events, observations = (for_persons(frame, persons) for frame in (person, events, observations))
    return build_features(
        person,
        events,
        condition_codes(events, definitions.conditions),
        observations,
        definitions.conditions,
        definitions.observations,
        segmentation,
        plan,
        dates,
    )


if __name__ == "__main__":
    main_for(SPEC.name)
