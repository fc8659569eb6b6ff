"""The published actuarial marts, made from the model's aggregates and draws, each disclosure-controlled
(phm.governance.disclosure) before it leaves: counts of real people 1-7 suppressed, others rounded to 5, and
everything that rests on a suppressed count suppressed with it. Projected figures are model output, not
counts of people; their people are rounded to 5 all the same, so that they read as the estimates they are."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from phm.actuarial.history import month_end
from phm.actuarial.projection import ALL, ActuarialModel, Simulation, summarise
from phm.governance.disclosure import disclosure_control, disclosure_control_in_parts, round_to

PROJECTED = ("median", "low", "high")
DIFFERENCES = ("difference_median", "difference_low", "difference_high")


def step_date(base: date, step: int, step_months: int) -> date:
    return month_end(base.year, base.month + step * step_months)


def transition_matrix(moves: pd.DataFrame, max_suppressed: int, rounding_base: int) -> pd.DataFrame:
    """mart.segment_transitions from phm.actuarial.history.move_counts: by age group and for all ages."""
    keys = ["from_date", "to_date", "age_group", "from_segment", "to_state"]
    by_group = moves.assign(age_group=moves["age_group"].fillna("unknown")).groupby(keys)["people"].sum()
    everyone = moves.groupby([k for k in keys if k != "age_group"])["people"].sum().reset_index()
    table = pd.concat([by_group.reset_index(), everyone.assign(age_group=ALL)], ignore_index=True)
    rows = table.groupby(["from_date", "age_group", "from_segment"])["people"].transform("sum")
    table["share"] = table["people"] / rows
    table["_row"] = table["from_date"].astype(str) + "|" + table["age_group"] + "|" + table["from_segment"]
    published = disclosure_control(
        table, counts=("people",), dependent=("share",), sets=("_row",), max_suppressed=max_suppressed,
        rounding_base=rounding_base,
    )  # fmt: skip
    return published.drop(columns="_row")


def cost_table(breakdown: pd.DataFrame, max_suppressed: int, rounding_base: int) -> pd.DataFrame:
    """mart.actuarial_costs from phm.actuarial.costs.cost_breakdown; secondary suppression within each set of
    groups that adds up to a published total (a breakdown; a segment's age groups). A group's few emergency
    admissions hide its admissions, not its people."""
    sets = np.where(breakdown["breakdown"] == "segment_age_group", "segment_age_group|" + breakdown["segment"],
                    breakdown["breakdown"])  # fmt: skip
    values = ("total_cost", "cost_per_person", "cost_ci_low", "cost_ci_high", "share_of_people", "share_of_cost")
    parts = [(("people",), values), (("emergency_admissions",), ("emergency_admissions_per_1000",))]
    published = disclosure_control_in_parts(breakdown.assign(_set=sets), parts, ("_set",), max_suppressed,
                                            rounding_base)  # fmt: skip
    return published.drop(columns="_set")


def concentration_table(concentration: pd.DataFrame, max_suppressed: int, rounding_base: int) -> pd.DataFrame:
    """mart.cost_concentration: a share resting on 7 people or fewer is suppressed; people rounded to 5."""
    return disclosure_control(
        concentration, counts=("people",), dependent=("cost_share",), sets=(), max_suppressed=max_suppressed,
        rounding_base=rounding_base,
    )  # fmt: skip


def _observed_people(model: ActuarialModel, rows: pd.DataFrame) -> pd.Series:
    counts = model.observed[model.observed["measure"] == "people"].set_index("segment")["value"]
    return rows["segment"].map(counts)


def _round_people(table: pd.DataFrame, columns: Sequence[str], rounding_base: int) -> pd.DataFrame:
    people = table["measure"] == "people"
    for column in columns:
        table.loc[people, column] = round_to(table.loc[people, column].astype(float), rounding_base).astype(float)
    return table


def projection_table(
    model: ActuarialModel,
    runs: dict[str, tuple[Simulation, Simulation | None]],
    interval: float,
    step_months: int,
    max_suppressed: int,
    rounding_base: int,
) -> pd.DataFrame:
    """mart.actuarial_projection from the draws of the baseline and of each scenario: name -> (simulation, its
    effect against the baseline or None)."""
    frames = [summarise(model, simulation, interval, name, effect) for name, (simulation, effect) in runs.items()]
    table = pd.concat(frames, ignore_index=True)
    observed = table[table["step"] == 0].assign(_people=lambda t: _observed_people(model, t).fillna(0))
    observed = disclosure_control(
        observed, counts=("_people",), dependent=(*PROJECTED, *DIFFERENCES), sets=(),
        max_suppressed=max_suppressed, rounding_base=rounding_base,
    ).drop(columns="_people")  # fmt: skip
    table = pd.concat([observed, table[table["step"] > 0].assign(suppressed=None)], ignore_index=True)
    table = _round_people(table, (*PROJECTED, *DIFFERENCES), rounding_base)
    return table.assign(
        base_date=model.base_date,
        projection_date=[step_date(model.base_date, s, step_months) for s in table["step"]],
        interval=interval,
        simulations=int(next(iter(runs.values()))[0].people.shape[0]),
    )


def backtest_table(
    model: ActuarialModel,
    simulation: Simulation,
    actual: dict[int, pd.DataFrame],
    interval: float,
    step_months: int,
    max_suppressed: int,
    rounding_base: int,
) -> pd.DataFrame:
    """mart.actuarial_backtest: the projection from the model's base date against `actual` (step ->
    phm.actuarial.projection.observed_figures at that step's date), and against assuming no change."""
    projected = summarise(model, simulation, interval).drop(columns=[*DIFFERENCES, "scenario"])
    projected = projected[projected["step"] > 0]
    truth = pd.concat([frame.assign(step=step) for step, frame in actual.items()], ignore_index=True)
    table = projected.merge(
        truth.rename(columns={"value": "actual", "people": "_people"}), on=["step", "segment", "measure"], how="left"
    )
    base = model.observed.set_index(["segment", "measure"])["value"]
    table["no_change"] = [
        float(base.get((s, m), np.nan)) for s, m in zip(table["segment"], table["measure"], strict=True)
    ]
    table = disclosure_control(
        table.assign(_people=table["_people"].fillna(0)), counts=("_people",), dependent=("actual", "no_change"),
        sets=(), max_suppressed=max_suppressed, rounding_base=rounding_base,
    ).drop(columns="_people")  # fmt: skip
    table = _round_people(table, (*PROJECTED, "actual", "no_change"), rounding_base)
    actual_values = table["actual"].astype(float)
    table["error"] = table["median"] - actual_values
    table["relative_error"] = table["error"] / actual_values.where(actual_values != 0)
    table["covered"] = np.where(
        actual_values.isna(), None, (table["low"] <= actual_values) & (actual_values <= table["high"])
    )
    table["no_change_relative_error"] = (table["no_change"] - actual_values) / actual_values.where(actual_values != 0)
    return table.assign(
        base_date=model.base_date,
        target_date=[step_date(model.base_date, s, step_months) for s in table["step"]],
    )
