"""A multi-state (Markov) projection of segment sizes, costs and emergency admissions, with Monte Carlo intervals.

State: single year of age (0 to max_age, the last open-ended) x Bridges to Health segment. Each step every
person ages one year and moves to a segment, dies or is lost with the probabilities observed between past
dates for their age group and segment (the age groups of NHS England's risk stratification guidance);
entrants (births, people moving in) arrive at the rates observed, by age and segment. Costs and emergency
admissions per person are those observed for the age group and segment at the base date (constant prices);
the decedents of a step cost what decedents were observed to cost in their last 12 months.

Uncertainty, per draw: the transition probabilities from a Dirichlet on the observed counts (zero counts stay
impossible: the Bayesian bootstrap), entrant rates from a Gamma on the observed counts, mean costs from their
sampling distribution; then the people themselves move by multinomial draws and each cell's cost varies
around its mean by the observed spread (central limit). Intervals are quantiles of the draws.
Cells never observed borrow from the same segment at all ages, then from the whole population.
This is the cohort-component method of population projection (ONS subnational projections) with segments as
the components, the form of the segment-transition projections in NHS PHM system modelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from phm.actuarial.history import DIED, LOST
from phm.actuarial.scenarios import BASELINE, Scenario

AGE_GROUPS = ("0-17", "18-44", "45-64", "65-74", "75-84", "85+")
GROUP_STARTS = np.array([0, 18, 45, 65, 75, 85])
MEASURES = ("people", "cost", "emergency_admissions")
ALL = "all"


def group_of_age(ages: np.ndarray) -> np.ndarray:
    return np.searchsorted(GROUP_STARTS, ages, side="right") - 1


@dataclass(frozen=True)
class CellCosts:
    """Per age group x segment: people observed, mean and SD of cost, mean emergency admissions and cost."""

    people: np.ndarray
    cost_mean: np.ndarray
    cost_sd: np.ndarray
    admissions_mean: np.ndarray
    emergency_cost_mean: np.ndarray

    @staticmethod
    def from_sums(sums: pd.DataFrame, segments: tuple[str, ...], group_column: str, segment_column: str) -> CellCosts:
        """From rows of people, cost, cost_squared, emergency_admissions and emergency_cost sums; a cell with no
        one borrows from its segment, then from everyone."""
        shape = (len(AGE_GROUPS), len(segments))
        totals = {
            k: np.zeros(shape) for k in ("people", "cost", "cost_squared", "emergency_admissions", "emergency_cost")
        }
        for row in sums.itertuples(index=False):
            g, s = AGE_GROUPS.index(getattr(row, group_column)), segments.index(getattr(row, segment_column))
            for key, values in totals.items():
                values[g, s] += getattr(row, key)
        pooled = {k: np.broadcast_to(v.sum(axis=0, keepdims=True), shape) for k, v in totals.items()}
        overall = {k: np.full(shape, v.sum()) for k, v in totals.items()}
        for fallback in (pooled, overall):
            empty = totals["people"] == 0
            for key in totals:
                totals[key] = np.where(empty, fallback[key], totals[key])
        n = np.maximum(totals["people"], 1)
        mean = totals["cost"] / n
        variance = np.maximum(totals["cost_squared"] / n - mean**2, 0) * n / np.maximum(n - 1, 1)
        return CellCosts(
            people=totals["people"],
            cost_mean=mean,
            cost_sd=np.sqrt(variance),
            admissions_mean=totals["emergency_admissions"] / n,
            emergency_cost_mean=totals["emergency_cost"] / n,
        )


@dataclass(frozen=True)
class ActuarialModel:
    base_date: date
    segments: tuple[str, ...]
    max_age: int
    moves: np.ndarray  # [group, segment, segment + died + lost] people observed
    entrants: np.ndarray  # [age, segment] entrants observed over entrant_steps steps
    entrant_steps: int
    living: CellCosts  # at the base date
    dying: CellCosts  # decedents' last step, by age group and segment at its start
    initial: np.ndarray  # [age, segment] people at the base date
    observed: pd.DataFrame  # the base date's actual figures (observed_figures)

    @property
    def states(self) -> tuple[str, ...]:
        return (*self.segments, DIED, LOST)


def observed_figures(states: pd.DataFrame, moves: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """segment x measure -> value and people at `as_of`: people, cost and emergency admissions of the living
    by segment (their last 12 months), of the step's decedents ('died') and of everyone ('all')."""
    living = states[states["reference_date"] == as_of].groupby("segment")[["people", "cost", "emergency_admissions"]]
    rows = living.sum()
    dead = moves[(moves["to_date"] == as_of) & (moves["to_state"] == DIED)]
    rows.loc[DIED] = dead[["people", "cost", "emergency_admissions"]].sum() if len(dead) else 0
    rows.loc[ALL] = rows.sum()
    rows.loc[ALL, "people"] -= rows.loc[DIED, "people"]  # the living: the decedents are not in the population
    long = rows.reset_index(names="segment").melt(id_vars="segment", var_name="measure", value_name="value")
    people = rows["people"].to_dict()
    long["people"] = long["segment"].map(people)
    return long


def _age_segment_grid(frame: pd.DataFrame, segments: tuple[str, ...], max_age: int) -> np.ndarray:
    """[age, segment] sums of the frame's people (ages from max_age up pooled)."""
    grid = np.zeros((max_age + 1, len(segments)))
    ages = np.minimum(frame["age"].to_numpy(int), max_age)
    np.add.at(grid, (ages, [segments.index(s) for s in frame["segment"]]), frame["people"].to_numpy(float))
    return grid


def fit(
    states: pd.DataFrame,
    moves: pd.DataFrame,
    entrants: pd.DataFrame,
    segments: tuple[str, ...],
    base_date: date,
    max_age: int,
) -> ActuarialModel:
    """The model from the aggregates of phm.actuarial.history, using only what was known at `base_date`: moves
    and entrants of steps ending on or before it, costs and people at it."""
    moves = moves[(moves["to_date"] <= base_date) & moves["age_group"].notna()]
    if moves.empty:
        raise ValueError(f"no steps end on or before {base_date}: a projection needs at least one observed step")
    entrants = entrants[entrants["to_date"] <= base_date]
    steps = moves["to_date"].nunique()
    states_now = states[states["reference_date"] == base_date]
    states_now = states_now.assign(age_group=[AGE_GROUPS[g] for g in group_of_age(states_now["age"].to_numpy())])
    all_states = (*segments, DIED, LOST)
    counts = np.zeros((len(AGE_GROUPS), len(segments), len(all_states)))
    for row in moves.itertuples(index=False):
        counts[AGE_GROUPS.index(row.age_group), segments.index(row.from_segment), all_states.index(row.to_state)] += (
            row.people
        )
    initial = _age_segment_grid(states_now, segments, max_age).astype(np.int64)
    arrived = _age_segment_grid(entrants, segments, max_age)
    died = moves[moves["to_state"] == DIED]
    return ActuarialModel(
        base_date=base_date,
        segments=segments,
        max_age=max_age,
        moves=counts,
        entrants=arrived,
        entrant_steps=steps,
        living=CellCosts.from_sums(states_now, segments, "age_group", "segment"),
        dying=CellCosts.from_sums(died, segments, "age_group", "from_segment"),
        initial=initial,
        observed=observed_figures(states, moves, base_date),
    )


def transition_probabilities(counts: np.ndarray, rng: np.random.Generator | None, draws: int) -> np.ndarray:
    """[draws, group, segment, state]: Dirichlet draws on the observed counts (the point estimates without a
    generator). Rows never observed borrow the segment's row over all ages, else stay where they are."""
    pooled = np.broadcast_to(counts.sum(axis=0, keepdims=True), counts.shape)
    stay = np.broadcast_to(np.eye(counts.shape[1], counts.shape[2])[None], counts.shape)
    empty = counts.sum(axis=2, keepdims=True) == 0
    counts = np.where(empty, pooled, counts)
    counts = np.where(counts.sum(axis=2, keepdims=True) == 0, stay, counts)
    if rng is None:
        weights = np.broadcast_to(counts, (draws, *counts.shape)).astype(float)
    else:  # Dirichlet as normalised Gammas; zero counts stay zero
        weights = rng.gamma(np.where(counts > 0, counts, 1.0), size=(draws, *counts.shape)) * (counts > 0)
    return weights / weights.sum(axis=3, keepdims=True)


def _changed(p: np.ndarray, scenario: Scenario, cells: np.ndarray, segments: tuple[str, ...]) -> np.ndarray:
    """Transition probabilities [draws, age, segment, state] with the scenario's transition changes applied to
    the cohort cells: the moves it adds or removes are taken from or given to staying put."""
    p = p.copy()
    for change in scenario.transitions:
        targets = [segments.index(s) for s in change.to_segments]
        for s in range(len(segments)):
            into = [t for t in targets if t != s]
            if not into or not cells[:, s].any():
                continue
            delta = p[:, cells[:, s], s][..., into] * change.relative_change * scenario.coverage
            delta = np.minimum(delta.sum(axis=-1), p[:, cells[:, s], s, s])[..., None] * (
                delta / np.where(delta.sum(axis=-1, keepdims=True) == 0, 1, delta.sum(axis=-1, keepdims=True))
            )
            block = p[:, cells[:, s], s]
            block[..., into] += delta
            block[..., s] -= delta.sum(axis=-1)
            p[:, cells[:, s], s] = block
    return np.clip(p, 0, None) / np.clip(p, 0, None).sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Simulation:
    """Draws x step (0 = the base date) x segment (+ died): people, cost and emergency admissions."""

    people: np.ndarray
    cost: np.ndarray
    emergency_admissions: np.ndarray


def simulate(
    model: ActuarialModel,
    steps: int,
    draws: int,
    seed: int,
    scenario: Scenario | None = None,
    process_noise: bool = True,
) -> Simulation:
    """Monte Carlo projection `steps` ahead: per draw, the model's parameters are drawn from their uncertainty,
    then (with process_noise) people move by multinomial draws and costs vary around their means; without it,
    each draw follows its parameters' expected path. The parameters are drawn first, so the same seed gives a
    scenario and the baseline the same parameters (see scenario_effect)."""
    rng = np.random.default_rng(seed)
    segments, n_seg = model.segments, len(model.segments)
    ages = np.arange(model.max_age + 1)
    groups = group_of_age(ages)
    probabilities = transition_probabilities(model.moves, rng, draws)[:, groups]  # [draws, age, segment, state]
    entrant_rates = rng.gamma(np.where(model.entrants > 0, model.entrants, 1.0), size=(draws, *model.entrants.shape))
    entrant_rates = entrant_rates * (model.entrants > 0) / model.entrant_steps

    def parameters(cells: CellCosts) -> tuple[np.ndarray, ...]:
        """Per [draws, age, segment]: the mean cost drawn from its sampling distribution; per [age, segment]:
        the cost's SD, mean emergency admissions and mean emergency admission cost."""
        error = cells.cost_sd / np.sqrt(np.maximum(cells.people, 1))
        mean = np.clip(cells.cost_mean + error * rng.standard_normal((draws, *cells.cost_mean.shape)), 0, None)
        return mean[:, groups], cells.cost_sd[groups], cells.admissions_mean[groups], cells.emergency_cost_mean[groups]

    living, dying = parameters(model.living), parameters(model.dying)

    cells = scenario.cohort_cells(segments, model.max_age) if scenario else np.zeros((len(ages), n_seg), bool)
    admissions_change = (scenario.emergency_admissions_change or 0.0) * scenario.coverage if scenario else 0.0
    changed = _changed(probabilities, scenario, cells, segments) if scenario and scenario.transitions else probabilities

    shape = (draws, steps + 1, n_seg + 1)
    out = {m: np.zeros(shape) for m in MEASURES}
    base = model.observed.set_index(["segment", "measure"])["value"]
    for j, name in enumerate((*segments, DIED)):
        for measure in MEASURES:
            out[measure][:, 0, j] = base.get((name, measure), 0.0)
    people = np.broadcast_to(model.initial, (draws, *model.initial.shape)).astype(float if not process_noise else int)
    for step in range(1, steps + 1):
        active = scenario is not None and step >= scenario.start_step
        p = changed if active else probabilities
        moved = rng.multinomial(people, p) if process_noise else people[..., None] * p  # [draws, age, from, state]
        survivors = moved[..., :n_seg].sum(axis=2)  # [draws, age, to]
        aged = np.zeros_like(survivors)
        aged[:, 1:] = survivors[:, :-1]
        aged[:, -1] += survivors[:, -1]
        people = aged + (rng.poisson(entrant_rates) if process_noise else entrant_rates)
        deaths = moved[..., n_seg]  # [draws, age at the start, from]
        factor = np.where(cells, admissions_change, 0.0) if active else 0.0
        for count, (mean, sd, admissions, emergency), columns, summed in (
            (people, living, slice(0, n_seg), (1,)),  # by segment at the end of the step
            (deaths, dying, n_seg, (1, 2)),  # one column: the step's decedents
        ):
            cost = count * np.clip(mean + factor * emergency, 0, None)
            if process_noise:
                cost = np.clip(cost + np.sqrt(count) * sd * rng.standard_normal(count.shape), 0, None)
            out["people"][:, step, columns] = count.sum(axis=summed)
            out["cost"][:, step, columns] = cost.sum(axis=summed)
            out["emergency_admissions"][:, step, columns] = (count * admissions * (1 + factor)).sum(axis=summed)
    return Simulation(**out)


def scenario_effect(model: ActuarialModel, steps: int, draws: int, seed: int, scenario: Scenario) -> Simulation:
    """The scenario's effect per draw of the parameters: its expected path less the baseline's, with the same
    parameters (the people's own chance variation is common to both worlds, so it is not part of the effect)."""
    with_it = simulate(model, steps, draws, seed, scenario, process_noise=False)
    without = simulate(model, steps, draws, seed, None, process_noise=False)
    return Simulation(*(getattr(with_it, m) - getattr(without, m) for m in MEASURES))


def expected_path(model: ActuarialModel, steps: int) -> np.ndarray:
    """[step, age, segment]: the expected people (point estimates, no randomness): the hand-checkable core."""
    ages = np.arange(model.max_age + 1)
    p = transition_probabilities(model.moves, None, 1)[0][group_of_age(ages)]
    path = [model.initial.astype(float)]
    for _ in range(steps):
        survivors = np.einsum("as,ast->at", path[-1], p[..., : len(model.segments)])
        aged = np.zeros_like(survivors)
        aged[1:] = survivors[:-1]
        aged[-1] += survivors[-1]
        path.append(aged + model.entrants / model.entrant_steps)
    return np.stack(path)


def summarise(
    model: ActuarialModel,
    simulation: Simulation,
    interval: float,
    scenario: str = BASELINE,
    effect: Simulation | None = None,
) -> pd.DataFrame:
    """One row per step x segment (each, died, all) x measure: median and interval of the draws and, for a
    scenario, of its effect (scenario_effect)."""
    low_q, high_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    n_seg = len(model.segments)

    def by_segment(values: np.ndarray, measure: str) -> dict[str, np.ndarray]:
        total = values[..., :n_seg].sum(axis=-1) if measure == "people" else values.sum(axis=-1)  # the living
        return {name: values[..., j] for j, name in enumerate((*model.segments, DIED))} | {ALL: total}

    rows = []
    for measure in MEASURES:
        series = by_segment(getattr(simulation, measure), measure)
        effects = by_segment(getattr(effect, measure), measure) if effect is not None else {}
        for name, draws in series.items():
            quantiles = np.quantile(draws, [0.5, low_q, high_q], axis=0)  # [3, step]
            difference = np.quantile(effects[name], [0.5, low_q, high_q], axis=0) if effects else None
            for step in range(draws.shape[1]):
                rows.append(
                    {
                        "scenario": scenario,
                        "step": step,
                        "segment": name,
                        "measure": measure,
                        "median": float(quantiles[0, step]),
                        "low": float(quantiles[1, step]),
                        "high": float(quantiles[2, step]),
                        "difference_median": np.nan if difference is None else float(difference[0, step]),
                        "difference_low": np.nan if difference is None else float(difference[1, step]),
                        "difference_high": np.nan if difference is None else float(difference[2, step]),
                    }
                )
    return pd.DataFrame(rows)
