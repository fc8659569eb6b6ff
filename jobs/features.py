"""Risk model features: `phm run features`.

Reads the gold person model and writes gold.features: one row per person x
index date (training, validation and scoring dates, phm.features.index_dates),
each from data dated strictly before its index date, with the label (an
emergency admission in the follow-up) where the follow-up is observed.

The training and validation dates move a few months at a time
(risk.index_dates_every_months). A refresh that finds them where they were,
with gold.features as this job last wrote it under the same configuration,
keeps their rows as built (the sets the champion models learn from and are
judged on, which they are retrained from only as the dates move) and replaces
the scoring date's alone (the table is partitioned by split); otherwise, or
with risk.keep_earlier_index_dates off, every row is built.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.config import load_definitions
from phm.errors import UserError
from phm.features.build import build_features
from phm.features.index_dates import SCORE, IndexPlan, months_between, plan_index_dates
from phm.person.definitions import load_person_model_definitions
from phm.person.events import history_span
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.segmentation.definitions import Segmentation
from phm.tables import CODED_EVENTS, EVENTS, FEATURES, OBSERVATIONS, PERSON, RUN_ID_COLUMN

log = logging.getLogger("phm.jobs.features")

SPEC = JobSpec(
    name="features",
    description="gold person model -> gold.features (person x index date, leak-free, with the admission label)",
    outputs=(FEATURES.name,),
    depends_on=("build_person_model",),
)
INPUTS = (PERSON.name, EVENTS.name, CODED_EVENTS.name, OBSERVATIONS.name)


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
    earlier = [pair for pair in plan.dates if pair[1] != SCORE]
    kept_columns = _earlier_rows_kept(ctx, earlier)
    if kept_columns is not None:
        scoring = _build(catalog, person, events, plan, definitions, segmentation, [(plan.scoring, SCORE)])
        if set(scoring.columns) == set(kept_columns):
            log.info("features: keeping the rows at %s as built; building the scoring date %s",
                     ", ".join(f"{d} ({split})" for d, split in earlier), plan.scoring)  # fmt: skip
            catalog.overwrite(FEATURES.name, scoring, replace_where=f"split = '{SCORE}'")
        else:
            log.info("features: building every row: the features are not the columns gold.features holds")
            kept_columns = None
    if kept_columns is None:
        catalog.overwrite(FEATURES.name, _build(catalog, person, events, plan, definitions, segmentation, plan.dates))
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


def _earlier_rows_kept(ctx: JobContext, earlier: list[tuple[date, str]]) -> list[str] | None:
    """gold.features' columns if its training and validation rows are to be kept: it holds this run's training
    and validation dates, as this job last wrote it under this configuration, partitioned by split. None, with
    the reason logged, when every row is to be built."""
    catalog = ctx.catalog
    why = (
        "risk.keep_earlier_index_dates is off" if not ctx.config.risk.keep_earlier_index_dates
        else "this job has not written it under this configuration, or it changed since"
        if not ctx.written_by_current(SPEC.name, FEATURES.name, ())
        else "it is not partitioned by split" if catalog.partition_columns(FEATURES.name) != FEATURES.partition_by
        else None
    )  # fmt: skip
    if why is None:
        table = catalog.read(FEATURES.name)
        held = table.where(F.col("split") != SCORE).select("index_date", "split").distinct().collect()
        if sorted((r.index_date, r.split) for r in held) != sorted(earlier):
            why = "the training and validation dates moved"
    if why is not None:
        log.info("features: building every row: %s", why)
        return None
    return [c for c in table.columns if c != RUN_ID_COLUMN]  # the new rows must have exactly these


def _build(catalog, person, events, plan: IndexPlan, definitions, segmentation, dates) -> DataFrame:
    """gold.features rows at `dates` (some of `plan`'s)."""
    coded, observations = catalog.read(CODED_EVENTS.name), catalog.read(OBSERVATIONS.name)
    return build_features(person, events, coded, observations, definitions, segmentation, plan, dates)


if __name__ == "__main__":
    main_for(SPEC.name)
