"""Actuarial model: dates, costs, concentration, transitions, projection maths, scenarios and the backtest,
against hand calculations on crafted frames."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from phm.actuarial.costs import cost_breakdown, cost_concentration
from phm.actuarial.history import (
    DIED,
    LOST,
    entrant_counts,
    history_dates,
    month_end,
    move_counts,
    transitions,
)
from phm.actuarial.marts import backtest_table, cost_table, transition_matrix
from phm.actuarial.projection import (
    ALL,
    expected_path,
    fit,
    observed_figures,
    scenario_effect,
    simulate,
    summarise,
)
from phm.actuarial.scenarios import Scenario, check_segments, load_scenarios
from phm.errors import ConfigError, UserError
from phm.person.events import history_span
from phm.segmentation.segments import people_on

SEGMENTS = ("ill", "healthy")
BASE, NEXT = date(2025, 3, 31), date(2026, 3, 31)


# -- dates ---------------------------------------------------------------------------------------------------
def test_month_ends_roll_over_years_and_leap_days():
    assert month_end(2024, 14) == date(2025, 2, 28)
    assert month_end(2024, 2) == date(2024, 2, 29)
    assert month_end(2026, 0) == date(2025, 12, 31)


def test_history_dates_step_back_while_each_has_its_history_before_it():
    assert history_dates(date(2026, 3, 31), date(2023, 4, 1), 12, 12) == [
        date(2024, 3, 31), date(2025, 3, 31), date(2026, 3, 31)
    ]  # fmt: skip
    # six months of history (the test sample), two-month steps, two months before each date
    assert history_dates(date(2026, 3, 31), date(2025, 10, 1), 2, 2) == [
        date(2025, 11, 30), date(2026, 1, 31), date(2026, 3, 31)
    ]  # fmt: skip
    assert history_dates(date(2026, 3, 31), date(2025, 10, 1), 12, 12) == []


# -- costs ---------------------------------------------------------------------------------------------------
def test_cost_concentration_and_gini_by_hand():
    costs = np.array([0.0] * 95 + [1, 2, 3, 4, 90])  # 100 people, total 100
    table = cost_concentration(costs).set_index("top_percent")
    assert table.loc[1, "people"] == 1 and table.loc[1, "cost_share"] == pytest.approx(0.90)
    assert table.loc[2, "cost_share"] == pytest.approx(0.94)
    assert table.loc[5, "cost_share"] == pytest.approx(1.0) and table.loc[100, "people"] == 100
    # Gini: 2 x sum(rank x cost, ascending) / (n x total) - (n + 1) / n = 2 x 9980 / 10000 - 1.01
    assert table["gini"].iloc[0] == pytest.approx(0.986)
    assert cost_concentration(np.full(10, 5.0))["gini"].iloc[0] == pytest.approx(0.0)


def test_cost_breakdown_means_intervals_and_shares_by_hand():
    sums = pd.DataFrame(
        {
            "reference_date": [NEXT] * 2,
            "segment": ["ill", "healthy"],
            "age_band": ["70-74", "70-74"],
            "age_group": ["65-74", "65-74"],
            "sex": ["F", "M"],
            "people": [2, 8],
            "cost": [30.0, 10.0],  # ill: costs 10 and 20
            "cost_squared": [500.0, 20.0],
            "emergency_admissions": [1, 0],
        }
    )
    table = cost_breakdown(sums)
    ill = table[(table["breakdown"] == "segment") & (table["segment"] == "ill")].iloc[0]
    # mean 15, sample variance (250 - 225) x 2 / 1 = 50, half-width 1.96 x sqrt(50 / 2) = 9.80
    assert ill["cost_per_person"] == 15.0
    assert (ill["cost_ci_low"], ill["cost_ci_high"]) == pytest.approx((5.20, 24.80), abs=0.01)
    assert ill["share_of_people"] == pytest.approx(0.2) and ill["share_of_cost"] == pytest.approx(0.75)
    assert ill["emergency_admissions_per_1000"] == pytest.approx(500.0)
    everyone = table[table["breakdown"] == "all"].iloc[0]
    assert everyone["people"] == 10 and everyone["total_cost"] == 40.0 and everyone["cost_per_person"] == 4.0
    assert set(table["breakdown"]) == {"all", "segment", "age_sex", "segment_age_group"}


def test_few_admissions_hide_the_admissions_not_the_people():
    sums = pd.DataFrame(
        {
            "reference_date": [NEXT] * 3,
            "segment": ["ill", "healthy", "frail"],
            "age_band": ["70-74"] * 3,
            "age_group": ["65-74"] * 3,
            "sex": ["F"] * 3,
            "people": [100, 200, 50],
            "cost": [1000.0, 200.0, 5000.0],
            "cost_squared": [20000.0, 400.0, 600000.0],
            "emergency_admissions": [3, 20, 10],
        }
    )
    rows = cost_table(cost_breakdown(sums), 7, 5)
    rows = rows[rows["breakdown"] == "segment"].set_index("segment")
    assert rows.loc["ill", "people"] == 100 and rows.loc["ill", "cost_per_person"] == 10.0
    assert pd.isna(rows.loc["ill", "emergency_admissions"]) and pd.isna(
        rows.loc["ill", "emergency_admissions_per_1000"]
    )
    assert rows.loc["ill", "suppressed"] == "primary: emergency_admissions"
    # frail's admissions (the smallest other) would give ill's away from the total (33): hidden too
    assert pd.isna(rows.loc["frail", "emergency_admissions"]) and rows.loc["frail", "people"] == 50
    assert rows.loc["frail", "suppressed"] == "secondary: emergency_admissions"
    assert rows.loc["healthy", "emergency_admissions"] == 20 and pd.isna(rows.loc["healthy", "suppressed"])


# -- history (Spark) -----------------------------------------------------------------------------------------
def test_people_on_a_date_are_those_seen_by_then_alive_and_born(spark):
    person = spark.createDataFrame(
        [("p1", NEXT, 70, "70-74"), ("p2", NEXT, 0, "00-04"), ("p3", NEXT, 50, "50-54"), ("p4", NEXT, 40, "40-44")],
        "person_id string, reference_date date, age int, age_band string",
    )
    events = spark.createDataFrame(
        [
            ("p1", date(2020, 1, 1), "gp_record"),
            ("p2", date(2025, 12, 1), "gp_consultation"),  # born after BASE
            ("p3", date(2020, 1, 1), "gp_record"),
            ("p3", date(2025, 1, 1), "death"),  # died before BASE
            ("p4", date(2025, 3, 31), "gp_consultation"),  # first seen on BASE itself
        ],
        "person_id string, event_date date, activity string",
    )
    dates = spark.createDataFrame([(BASE,)], "as_of date")
    rows = {r.person_id: (r.age, r.age_band) for r in people_on(person, events, dates).collect()}
    assert rows == {"p1": (69, "65-69"), "p4": (39, "35-39")}


def _history_and_events(spark):
    columns = (
        "person_id string, reference_date date, age int, age_band string, sex string, segment string, "
        "segment_order int, emergency_admissions_12m int, emergency_cost_12m double, annual_cost double"
    )
    history = spark.createDataFrame(
        [
            ("a", BASE, 70, "70-74", "F", "healthy", 2, 0, 0.0, 100.0),
            ("a", NEXT, 71, "70-74", "F", "ill", 1, 1, 2000.0, 3000.0),
            ("b", BASE, 80, "80-84", "M", "ill", 1, 0, 0.0, 500.0),  # dies in the step
            ("c", BASE, 30, "30-34", "M", "healthy", 2, 0, 0.0, 50.0),  # not seen at NEXT, not dead: lost
            ("d", NEXT, 0, "00-04", "F", "healthy", 2, 0, 0.0, 10.0),  # entrant
        ],
        columns,
    )
    events = spark.createDataFrame(
        [
            ("b", date(2025, 6, 1), None, "emergency_admission", True, 4000.0, None),
            ("b", date(2025, 6, 10), None, "death", False, None, None),
        ],
        "person_id string, event_date date, end_date date, activity string, emergency boolean, cost double, "
        "daily_cost double",
    )
    return history, events


def test_transitions_account_for_every_person_moving_dying_or_lost(spark):
    history, events = _history_and_events(spark)
    moves = {r.person_id: r for r in transitions(history, events, [BASE, NEXT]).collect()}
    assert {p: r.to_state for p, r in moves.items()} == {"a": "ill", "b": DIED, "c": LOST}
    assert (moves["a"].step_cost, moves["a"].age_group, moves["a"].from_segment) == (0.0, "65-74", "healthy")
    # the decedent's step: the emergency admission before death, its cost the 12 months to NEXT
    assert (moves["b"].step_cost, moves["b"].step_emergency_admissions, moves["b"].step_emergency_cost) == (
        4000.0, 1, 4000.0
    )  # fmt: skip
    counts = move_counts(transitions(history, events, [BASE, NEXT]))
    assert counts["people"].sum() == 3
    entrants = entrant_counts(history, [BASE, NEXT])
    assert entrants[["age", "segment", "people"]].values.tolist() == [[0, "healthy", 1]]


# -- projection ----------------------------------------------------------------------------------------------
def _aggregates(people: int = 100_000):
    """Everyone starts healthy aged 70. Observed (65-74): healthy -> healthy 80%, ill 15%, died 5%;
    ill -> ill 90%, died 10%. Living cost: healthy 100, ill 1,000 (400 of it emergency, 2 admissions each);
    decedents 5,000. No spread, so the projection's cost is exact up to the people's moves."""
    big = 10**9  # observed people: parameter uncertainty negligible
    states = pd.DataFrame(
        {
            "reference_date": [BASE],
            "age": [70],
            "segment": ["healthy"],
            "people": [people],
            "cost": [100.0 * people],
            "cost_squared": [100.0**2 * people],
            "emergency_admissions": [0.0],
            "emergency_cost": [0.0],
        }
    )
    moves = pd.DataFrame(
        {
            "from_date": [date(2024, 3, 31)] * 5,
            "to_date": [BASE] * 5,
            "age_group": ["65-74"] * 5,
            "from_segment": ["healthy", "healthy", "healthy", "ill", "ill"],
            "to_state": ["healthy", "ill", DIED, "ill", DIED],
            "people": [0.80 * big, 0.15 * big, 0.05 * big, 0.90 * big, 0.10 * big],
            "cost": [0.0, 0.0, 5000.0 * 0.05 * big, 0.0, 5000.0 * 0.10 * big],
            "cost_squared": [0.0, 0.0, 5000.0**2 * 0.05 * big, 0.0, 5000.0**2 * 0.10 * big],
            "emergency_admissions": [0.0] * 5,
            "emergency_cost": [0.0] * 5,
        }
    )
    return states, moves, pd.DataFrame(columns=["from_date", "to_date", "age", "segment", "people"])


def _model(people: int = 100_000):
    states, moves, entrants = _aggregates(people)
    model = fit(states, moves, entrants, SEGMENTS, BASE, max_age=100)
    # nobody is ill at the base date, so the ill cells' costs are set by hand
    living = model.living
    ill = SEGMENTS.index("ill")
    living.cost_mean[:, ill], living.cost_sd[:, ill] = 1000.0, 0.0
    living.admissions_mean[:, ill], living.emergency_cost_mean[:, ill] = 2.0, 400.0
    living.people[:, ill] = 10**9
    return model


def test_expected_path_ages_people_and_moves_them_by_hand():
    path = expected_path(_model(100), 2)
    h, i = SEGMENTS.index("healthy"), SEGMENTS.index("ill")
    assert path[1][71, h] == pytest.approx(80.0) and path[1][71, i] == pytest.approx(15.0)
    # step 2: healthy 80 x 0.8 = 64; ill 80 x 0.15 + 15 x 0.9 = 25.5; all aged 72
    assert path[2][72, h] == pytest.approx(64.0) and path[2][72, i] == pytest.approx(25.5)
    assert path[2].sum() == pytest.approx(89.5)


def test_monte_carlo_median_matches_the_hand_calculation():
    model = _model()
    simulation = simulate(model, 1, draws=200, seed=7)
    table = summarise(model, simulation, 0.95).set_index(["step", "segment", "measure"])
    assert table.loc[(1, "healthy", "people"), "median"] == pytest.approx(80_000, rel=0.01)
    assert table.loc[(1, "ill", "people"), "median"] == pytest.approx(15_000, rel=0.02)
    assert table.loc[(1, DIED, "people"), "median"] == pytest.approx(5_000, rel=0.03)
    # cost: 80,000 x 100 + 15,000 x 1,000 + 5,000 decedents x 5,000 = 48m
    assert table.loc[(1, ALL, "cost"), "median"] == pytest.approx(48e6, rel=0.01)
    low, high = table.loc[(1, "ill", "people"), ["low", "high"]]
    assert low < 15_000 < high and high - low < 1000  # binomial: 1.96 x 2 x sqrt(100,000 x 0.15 x 0.85) = 443
    assert table.loc[(0, "healthy", "people"), "median"] == 100_000  # step 0: the base date as observed


def test_scenarios_change_costs_admissions_and_transitions_by_hand():
    model = _model()
    cheaper = Scenario(name="fewer", description="d", source="test", cohort={"segments": ["ill"]},
                       coverage=0.5, emergency_admissions_change=-0.5)  # fmt: skip
    effect = scenario_effect(model, 1, draws=20, seed=3, scenario=cheaper)
    i = SEGMENTS.index("ill")
    # 15,000 ill people x 400 emergency cost x 0.5 x 0.5 = 1.5m less; 15,000 x 2 admissions x 0.25 = 7,500 fewer
    assert np.median(effect.cost[:, 1, i]) == pytest.approx(-1.5e6, rel=1e-3)
    assert np.median(effect.emergency_admissions[:, 1, i]) == pytest.approx(-7500, rel=1e-3)
    slower = Scenario(name="slower", description="d", source="test", cohort={"segments": ["healthy"]},
                      transitions=[{"to_segments": ["ill"], "relative_change": -0.2}])  # fmt: skip
    effect = scenario_effect(model, 1, draws=20, seed=3, scenario=slower)
    # p(ill) 0.15 -> 0.12, the 0.03 stays healthy: 3,000 fewer ill, 3,000 more healthy
    assert np.median(effect.people[:, 1, i]) == pytest.approx(-3000, rel=1e-3)
    assert np.median(effect.people[:, 1, SEGMENTS.index("healthy")]) == pytest.approx(3000, rel=1e-3)
    late = Scenario(name="late", description="d", source="test", start_step=2, emergency_admissions_change=-0.5)
    assert np.abs(scenario_effect(model, 1, 5, 3, late).cost).max() == 0.0


def test_scenario_files_are_checked_against_the_segments(tmp_path):
    bad = Scenario(name="x", description="d", source="test", cohort={"segments": ["frail"]},
                   emergency_admissions_change=-0.1)  # fmt: skip
    with pytest.raises(ConfigError, match=r"x.yaml: unknown segment\(s\) frail"):
        check_segments(bad, SEGMENTS, "x.yaml")
    with pytest.raises(ConfigError, match="declares no change"):
        check_segments(Scenario(name="x", description="d", source="test"), SEGMENTS, "x.yaml")
    (tmp_path / "baseline.yaml").write_text(
        "name: baseline\ndescription: d\nsource: test\nemergency_admissions_change: -0.1\n"
    )
    with pytest.raises(ConfigError, match="is the projection without a scenario"):
        load_scenarios(str(tmp_path), SEGMENTS)


def test_observed_figures_count_the_living_and_the_steps_decedents():
    states, moves, _ = _aggregates(1000)
    figures = observed_figures(states, moves, BASE).set_index(["segment", "measure"])["value"]
    assert figures[("healthy", "people")] == 1000 and figures[(ALL, "people")] == 1000
    assert figures[(DIED, "people")] == pytest.approx(0.15 * 10**9)
    assert figures[(ALL, "cost")] == pytest.approx(100_000 + 5000 * 0.15 * 10**9)


def test_backtest_compares_with_the_actual_and_with_no_change_after_disclosure_control():
    model = _model(1000)
    simulation = simulate(model, 1, draws=100, seed=1)
    actual = pd.DataFrame(
        {
            "segment": ["healthy", "ill", DIED, ALL],
            "measure": ["people"] * 4,
            "value": [790.0, 155.0, 5.0, 945.0],  # 5 decedents: suppressed
            "people": [790, 155, 5, 945],
        }
    )
    table = backtest_table(model, simulation, {1: actual}, 0.95, 12, 7, 5).set_index(["segment", "measure"])
    healthy = table.loc[("healthy", "people")]
    assert healthy["actual"] == 790 and healthy["error"] == healthy["median"] - 790
    assert healthy["relative_error"] == pytest.approx((healthy["median"] - 790) / 790)
    assert healthy["covered"] == bool(healthy["low"] <= 790 <= healthy["high"])
    assert healthy["no_change"] == 1000 and healthy["no_change_relative_error"] == pytest.approx(210 / 790)
    died = table.loc[(DIED, "people")]
    assert pd.isna(died["actual"]) and pd.isna(died["error"]) and died["suppressed"] == "primary"
    assert table.loc[("ill", "people"), "actual"] == 155 and table["target_date"].iloc[0] == date(2026, 3, 31)


def test_transition_matrix_shares_and_suppression():
    moves = pd.DataFrame(
        {
            "from_date": [BASE] * 3,
            "to_date": [NEXT] * 3,
            "age_group": ["65-74"] * 3,
            "from_segment": ["healthy"] * 3,
            "to_state": ["healthy", "ill", DIED],
            "people": [100, 50, 3],
        }
    )
    table = transition_matrix(moves, 7, 5)
    rows = table[table["age_group"] == ALL].set_index("to_state")
    assert rows.loc["healthy", "share"] == pytest.approx(100 / 153) and rows.loc["healthy", "people"] == 100
    # 3 deaths suppressed; the smallest other cell of the row too, or 153 - 100 - 50 would give it away
    assert rows.loc[DIED, "suppressed"] == "primary" and rows.loc["ill", "suppressed"] == "secondary"
    assert pd.isna(rows.loc["ill", "share"]) and len(table) == 6


def test_history_span_is_the_reference_date_and_the_first_periods_first_day(spark):
    person = spark.createDataFrame([(NEXT,)], "reference_date date")
    events = spark.createDataFrame([("2023-04",), ("2024-01",)], "period string")
    assert history_span(person, events, "actuarial") == (NEXT, date(2023, 4, 1))
    with pytest.raises(UserError, match="actuarial: gold.person or gold.events is empty"):
        history_span(person, events.where("period IS NULL"), "actuarial")
