"""Actuarial cost models, segment transitions, projections, scenarios and a backtest: `phm run actuarial`.

Reads gold.person, gold.events and gold.coded_events and writes:
- gold.segment_history: each living person's Bridges to Health segment, cost and emergency activity at every
  date `actuarial.step_months` apart back from the reference date (as far as the history allows);
- mart.actuarial_costs and mart.cost_concentration: cost per person by segment, age-sex band and segment x
  age group; the share of cost spent on the costliest 1 ... 100% and the Gini coefficient;
- mart.segment_transitions: the segment transition matrix between consecutive dates;
- mart.actuarial_projection: people, cost and emergency admissions per segment `horizon_steps` ahead with
  Monte Carlo intervals, for the baseline and each scenario in configs/scenarios/;
- mart.actuarial_backtest: the same projection made from `backtest_steps` back, against what happened.
Every mart is disclosure-controlled (profiling.disclosure). Method and sources: phm.actuarial.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.actuarial.costs import annual_costs, cost_breakdown, cost_concentration, cost_sums
from phm.actuarial.history import (
    entrant_counts,
    history_dates,
    move_counts,
    segment_history,
    state_counts,
    transitions,
)
from phm.actuarial.marts import backtest_table, concentration_table, cost_table, projection_table, transition_matrix
from phm.actuarial.projection import ALL, fit, observed_figures, scenario_effect, simulate
from phm.actuarial.scenarios import BASELINE, load_scenarios
from phm.config import load_definitions
from phm.errors import UserError
from phm.person.definitions import load_codelists
from phm.person.events import history_span
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.segmentation.definitions import Segmentation, check_against_codelists
from phm.tables import (
    ACTUARIAL_BACKTEST,
    ACTUARIAL_COSTS,
    ACTUARIAL_PROJECTION,
    CODED_EVENTS,
    COST_CONCENTRATION,
    EVENTS,
    PERSON,
    SEGMENT_HISTORY,
    SEGMENT_TRANSITIONS,
    SEGMENTS,
)
from phm_jobs.segment import INPUTS as SEGMENT_INPUTS

log = logging.getLogger("phm.jobs.actuarial")

SPEC = JobSpec(
    name="actuarial",
    description="gold person model -> gold.segment_history, mart.actuarial_costs, mart.cost_concentration, "
    "mart.segment_transitions, mart.actuarial_projection (with scenarios) and mart.actuarial_backtest",
    outputs=(
        SEGMENT_HISTORY.name,
        ACTUARIAL_COSTS.name,
        COST_CONCENTRATION.name,
        SEGMENT_TRANSITIONS.name,
        ACTUARIAL_PROJECTION.name,
        ACTUARIAL_BACKTEST.name,
    ),
    depends_on=("segment",),
)
INPUTS = (PERSON.name, EVENTS.name, CODED_EVENTS.name)


def _write(catalog, spec, frame: pd.DataFrame) -> None:
    catalog.overwrite(spec.name, catalog.from_pandas(spec.name, frame))


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    settings, rules = config.actuarial, config.profiling.disclosure
    path = config.resolve(config.person_model.segmentation)
    segmentation = load_definitions(path, Segmentation)
    codelists = load_codelists(f"{config.resolve(config.person_model.codelists)}/conditions")
    check_against_codelists(segmentation, codelists, path)
    segments = tuple(s.name for s in segmentation.bridges_to_health.segments)
    scenarios = load_scenarios(config.resolve(settings.scenarios), segments)
    for needed in INPUTS:
        if not catalog.exists(needed):
            raise UserError(f"actuarial: {needed} does not exist; run `phm run build_person_model` first")
    if ctx.unchanged_since_last_success(INPUTS, SPEC.outputs):
        log.info("actuarial: the person model and the settings are unchanged since the last run; nothing to do")
        ctx.rows_out = 0
        return
    person, events = catalog.read(PERSON.name), catalog.read(EVENTS.name)
    reference_date, history_start = history_span(
        person, events, "actuarial", catalog.least_value(EVENTS.name, "period")
    )
    dates = history_dates(reference_date, history_start, settings.step_months, settings.min_history_months)
    if len(dates) < 2:
        raise UserError(
            f"actuarial: the history from {history_start} to {reference_date} holds {len(dates)} segmentation "
            f"date(s) {settings.step_months} months apart with {settings.min_history_months} months before each; "
            "a projection needs two: load more history or lower actuarial.step_months / min_history_months"
        )
    log.info("actuarial: segmentation dates %s", ", ".join(map(str, dates)))
    latest = _current_segments(ctx, dates[-1])
    catalog.overwrite(
        SEGMENT_HISTORY.name,
        segment_history(person, events, catalog.read(CODED_EVENTS.name), codelists, segmentation, dates, latest),
    )
    history = catalog.read(SEGMENT_HISTORY.name)
    moves = move_counts(transitions(history, events, dates))
    states, entrants = state_counts(history), entrant_counts(history, dates)

    _write(
        catalog,
        ACTUARIAL_COSTS,
        cost_table(cost_breakdown(cost_sums(history)), rules.max_suppressed, rules.rounding_base),
    )
    concentration = pd.concat(
        [cost_concentration(annual_costs(history, as_of)).assign(reference_date=as_of) for as_of in dates],
        ignore_index=True,
    )
    _write(catalog, COST_CONCENTRATION, concentration_table(concentration, rules.max_suppressed, rules.rounding_base))
    _write(catalog, SEGMENT_TRANSITIONS, transition_matrix(moves, rules.max_suppressed, rules.rounding_base))

    model = fit(states, moves, entrants, segments, dates[-1], settings.max_age)
    steps, draws, seed = settings.horizon_steps, settings.simulations, settings.seed
    runs = {BASELINE: (simulate(model, steps, draws, seed), None)}
    for name, scenario in scenarios.items():
        runs[name] = (
            simulate(model, steps, draws, seed, scenario),
            scenario_effect(model, steps, draws, seed, scenario),
        )
    projection = projection_table(
        model, runs, settings.interval, settings.step_months, rules.max_suppressed, rules.rounding_base
    )
    _write(catalog, ACTUARIAL_PROJECTION, projection)

    back = min(settings.backtest_steps, len(dates) - 2)
    if back < 1:
        log.warning("actuarial: no backtest: it needs three segmentation dates and the history holds %d", len(dates))
        backtest = pd.DataFrame(columns=ACTUARIAL_BACKTEST.schema.names)
    else:
        if back < settings.backtest_steps:
            log.warning(
                "actuarial: backtest from %d step(s) back, not %d: the history holds %d segmentation dates and the "
                "backtest's model must be fitted on a step before its base date", back, settings.backtest_steps,
                len(dates),
            )  # fmt: skip
        base = dates[-1 - back]
        past = fit(states, moves, entrants, segments, base, settings.max_age)
        actual = {k: observed_figures(states, moves, dates[-1 - back + k]) for k in range(1, back + 1)}
        backtest = backtest_table(
            past, simulate(past, back, settings.simulations, settings.seed), actual, settings.interval,
            settings.step_months, rules.max_suppressed, rules.rounding_base,
        )  # fmt: skip
    _write(catalog, ACTUARIAL_BACKTEST, backtest)
    _log_figures(concentration, projection, backtest, dates[-1])


def _current_segments(ctx: JobContext, latest) -> DataFrame | None:
    """gold.segments if the segment stage built it at the `latest` date from the person model as it is now, with
    this configuration (the history's last date is then read, not built again: at 1m the stage took 175-182 s
    against 189-203 s, docs/bench.md); else None."""
    catalog = ctx.catalog
    if not ctx.written_by_current("segment", SEGMENTS.name, SEGMENT_INPUTS):
        log.info("actuarial: gold.segments is not the segment stage's output for the person model as it is now; "
                 "the segments at %s are built here", latest)  # fmt: skip
        return None
    segments = catalog.read(SEGMENTS.name)
    built_at = segments.agg(F.max("reference_date")).first()[0]
    if built_at != latest:
        log.info("actuarial: gold.segments is at %s, not %s; the segments at %s are built here", built_at, latest,
                 latest)  # fmt: skip
        return None
    log.info("actuarial: the segments at %s are gold.segments' (the segment stage's, from this person model)", latest)
    return segments


def _log_figures(concentration: pd.DataFrame, projection: pd.DataFrame, backtest: pd.DataFrame, latest) -> None:
    shares = concentration[concentration["reference_date"] == latest].set_index("top_percent")
    log.info(
        "actuarial: cost concentration at %s: top 1%% %.1f%%, top 5%% %.1f%%, top 20%% %.1f%% of cost; Gini %.2f",
        latest, *(100 * shares.loc[p, "cost_share"] for p in (1, 5, 20)), shares["gini"].iloc[0],
    )  # fmt: skip
    last = projection[(projection["step"] == projection["step"].max()) & (projection["segment"] == ALL)]
    for row in last.itertuples():
        difference = ""
        if not pd.isna(row.difference_median):
            low, high = row.difference_low, row.difference_high
            difference = f"; vs baseline {row.difference_median:+,.0f} ({low:+,.0f} to {high:+,.0f})"
        log.info("actuarial: %s", f"{row.scenario} step {row.step} {row.measure} {row.median:,.0f} "
                 f"({row.low:,.0f} to {row.high:,.0f}){difference}")  # fmt: skip
    if len(backtest):
        final = backtest[backtest["step"] == backtest["step"].max()]
        sizes = final[(final["measure"] == "people") & ~final["segment"].isin([ALL, "died"])]
        total = final[(final["measure"] == "cost") & (final["segment"] == ALL)].iloc[0]
        misplaced = (sizes["median"] - sizes["actual"]).abs().sum() / sizes["actual"].sum()
        unchanged = (sizes["no_change"] - sizes["actual"]).abs().sum() / sizes["actual"].sum()
        log.info(
            "actuarial: backtest from %s, %d step(s): segment sizes off by %.1f%% of people (no change %.1f%%), mean "
            "absolute error per segment %.1f%% (no change %.1f%%), %d of %d intervals covered; total cost error "
            "%+.1f%% (no change %+.1f%%)",
            final["base_date"].iloc[0], final["step"].iloc[0], 100 * misplaced, 100 * unchanged,
            100 * sizes["relative_error"].abs().mean(), 100 * sizes["no_change_relative_error"].abs().mean(),
            int(final["covered"].eq(True).sum()), int(final["covered"].notna().sum()), 100 * total["relative_error"],
            100 * total["no_change_relative_error"],
        )  # fmt: skip


if __name__ == "__main__":
    main_for(SPEC.name)
