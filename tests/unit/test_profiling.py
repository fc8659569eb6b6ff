"""Profiles, standardisation, inequality indices and disclosure control against hand calculations."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from phm.governance.disclosure import disclosure_control, round_to
from phm.profiling.expected import expected_prevalence
from phm.profiling.inequalities import ridits, slope_index
from phm.profiling.profiles import band_counts, inequalities, profile
from phm.profiling.standardise import (
    ESP2013,
    directly_standardised,
    esp_band,
    poisson_limits,
    rate_interval,
    wilson_interval,
)


# -- standardisation -----------------------------------------------------------------------------------------
def test_the_european_standard_population_has_100000_people_in_19_bands():
    assert sum(ESP2013) == 100_000 and len(ESP2013) == 19
    assert [esp_band(a) for a in (0, 4, 5, 89, 90, 104)] == [0, 0, 1, 17, 18, 18]


def test_exact_poisson_wilson_and_rate_intervals_match_published_values():
    low, high = poisson_limits([0, 10])
    assert low == pytest.approx([0.0, 4.795389], abs=1e-6) and high == pytest.approx([3.688879, 18.390356], abs=1e-6)
    low, high = wilson_interval(10, 100)
    assert (float(low), float(high)) == pytest.approx((0.0552291, 0.1743657), abs=1e-6)
    low, high = rate_interval(10, 1000)
    assert (float(low), float(high)) == pytest.approx((0.004795389, 0.018390356), abs=1e-9)


def test_directly_standardised_rate_and_dobson_interval_by_hand():
    # band rates 2/100 and 8/200, weights 3 and 1: DSR = (3 x 0.02 + 0.04) / 4 = 0.025;
    # var = (9 x 2 / 100^2 + 8 / 200^2) / 4^2 = 0.000125; O = 10 with exact limits 4.795389 and 18.390356
    dsr, low, high, se = directly_standardised([2, 8], [100, 200], [3, 1])
    scale = np.sqrt(0.000125 / 10)
    assert dsr == pytest.approx(0.025) and se == pytest.approx(np.sqrt(0.000125))
    assert low == pytest.approx(0.025 + scale * (4.795389 - 10), abs=1e-7)
    assert high == pytest.approx(0.025 + scale * (18.390356 - 10), abs=1e-7)
    # no events: zero, with the exact upper limit of zero events over the people
    assert directly_standardised([0, 0], [100, 300], [1, 1]) == pytest.approx((0.0, 0.0, 3.688879 / 400, 0.0))
    # rows of groups at once: each row's figures as for that group alone
    rows = directly_standardised([[2, 8], [0, 0]], [[100, 200], [100, 300]], [3, 1])
    alone = directly_standardised([2, 8], [100, 200], [3, 1]), directly_standardised([0, 0], [100, 300], [3, 1])
    assert [figure.tolist() for figure in rows] == [list(pair) for pair in zip(*alone, strict=True)]


# -- slope and relative index of inequality ------------------------------------------------------------------
def test_ridits_are_the_midpoints_of_cumulative_shares():
    assert ridits(np.array([1, 1, 2])) == pytest.approx([0.125, 0.375, 0.75])


def test_sii_and_rii_of_an_exact_gradient_are_its_slope_and_slope_over_mean():
    # deciles 10 (least deprived), 5 and 1 with people 1, 1, 2 sit at 0.125, 0.375 and 0.75; values 1 + 4x
    result = slope_index([1, 10, 5], [2, 1, 1], [4.0, 1.5, 2.5], [0.0, 0.0, 0.0], simulations=200)
    assert (result.sii, result.mean, result.rii) == pytest.approx((4.0, 3.0, 4 / 3))
    assert (result.sii_low, result.sii_high, result.deciles) == (pytest.approx(4.0), pytest.approx(4.0), 3)


def test_sii_by_hand_on_a_step_and_its_interval_from_the_decile_errors():
    # equal people at 1/6, 1/2, 5/6 with values 0, 0, 1: slope = cov / var = (1/9) / (2/27) = 1.5, mean 1/3
    result = slope_index([10, 5, 1], [5, 5, 5], [0.0, 0.0, 1.0], [0.1, 0.1, 0.1], simulations=4000, seed=1)
    assert (result.sii, result.rii) == pytest.approx((1.5, 4.5))
    # the slope's SE with independent errors 0.1: 0.1 x sqrt(sum(w^2 (x - 0.5)^2)) / var_x = 0.1 x (sqrt(2/81) / (2/27))
    expected_se = 0.1 * np.sqrt(2 / 81) / (2 / 27)
    assert (result.sii_high - result.sii_low) / (2 * 1.96) == pytest.approx(expected_se, rel=0.06)
    assert result.sii_low < 1.5 < result.sii_high
    # too few deciles: no gradient
    assert np.isnan(slope_index([1, 2], [5, 5], [1.0, 2.0], [0.0, 0.0]).sii)


# -- disclosure control --------------------------------------------------------------------------------------
def test_small_counts_are_suppressed_others_rounded_and_one_suppressed_cell_per_set_is_protected():
    table = pd.DataFrame(
        {
            "area": ["a"] * 4 + ["b"] * 2 + ["c"] * 3 + ["d"] * 2,
            "people": [3, 52, 122, 0, 8, 9, 2, 5, 100, 4, 100],
            "total": [100] * 9 + [4, 100],
            "rate": np.arange(11, dtype=float),
        }
    )
    safe = disclosure_control(table, counts=("people", "total"), dependent=("rate",), sets=("area",))
    # a: 3 is suppressed; alone in its set it could be recovered, so the smallest other non-zero cell (52) too
    assert list(safe["suppressed"][:4]) == ["primary", "secondary", None, None]
    assert safe["people"][:4].isna().tolist() == [True, True, False, False] and safe["people"][2:4].tolist() == [120, 0]
    assert safe["rate"][:4].isna().tolist() == [True, True, False, False]
    # b: 8 and 9 are above the threshold and rounded to 10
    assert safe["people"][4:6].tolist() == [10, 10] and safe["suppressed"][4:6].isna().all()
    # c: two cells already suppressed: no secondary suppression needed
    assert list(safe["suppressed"][6:9]) == ["primary", "primary", None] and safe["people"][8] == 100
    # d: a small count in any count column suppresses the row (its total 4), and its partner with it
    assert list(safe["suppressed"][9:]) == ["primary", "secondary"]
    assert round_to(pd.Series([2.4, 2.5, 7.5, 12, 13]), 5).tolist() == [0, 5, 10, 10, 15]


# -- profiles on a few hand-built people ---------------------------------------------------------------------
def test_profile_counts_crude_and_standardised_values_by_hand(spark):
    segments = spark.createDataFrame(
        [
            ("p1", date(2026, 3, 31), 2, "0-4", "F", "White", 1, "P1", "PL1", ["asthma"], 0, 0, 100.0),
            ("p2", date(2026, 3, 31), 7, "5-9", "M", "White", 1, "P1", "PL1", ["diabetes"], 1, 2, 200.0),
            ("p3", date(2026, 3, 31), 7, "5-9", "F", "Mixed", 5, "P1", "PL1", [], 0, 0, 300.0),
            ("p4", date(2026, 3, 31), 92, "90+", "F", "White", 5, None, None, ["diabetes"], 3, 1, 400.0),
        ],
        "person_id string, reference_date date, age int, age_band string, sex string, ethnicity string, "
        "imd_quintile int, pcn_code string, place_code string, conditions array<string>, "
        "emergency_admissions_12m int, ae_attendances_12m int, annual_cost double",
    )
    person = spark.createDataFrame([("p1", 1), ("p2", 2), ("p3", 9), ("p4", 10)], "person_id string, imd_decile int")
    counts = band_counts(segments, person, ["diabetes", "asthma"], "ICS")
    rows = profile(counts, ["diabetes", "asthma"]).set_index(["tier", "area_code", "breakdown", "group", "measure"])
    system = rows.loc[("system", "ICS", "all", "all")]
    assert system.loc["people", "numerator"] == 4
    diabetes = system.loc["prevalence:diabetes"]
    assert (diabetes["numerator"], diabetes["denominator"], diabetes["value"]) == (2, 4, 50.0)
    # DSR: bands 0 (0 of 1), 1 (1 of 2), 18 (1 of 1): (5500 x 0.5 + 1000 x 1) / 100000 = 3.75%
    assert diabetes["standardised_value"] == pytest.approx(3.75)
    admissions = system.loc["emergency_admissions"]
    assert admissions["value"] == pytest.approx(1000.0)
    assert admissions["standardised_value"] == pytest.approx(1000 * (5500 * 0.5 + 1000 * 3) / 100000)
    cost = system.loc["cost"]
    half = 1.959964 * np.std([100, 200, 300, 400], ddof=1) / 2
    assert (cost["value"], cost["ci_low"], cost["ci_high"]) == pytest.approx((250.0, 250 - half, 250 + half))
    # tiers: the person without a PCN or place is counted under "unknown", never dropped
    assert rows.loc[("pcn", "P1", "all", "all", "people"), "numerator"] == 3
    assert rows.loc[("place", "unknown", "all", "all", "people"), "numerator"] == 1
    # breakdowns: by sex, and no standardisation within an age band
    assert rows.loc[("system", "ICS", "sex", "F", "prevalence:asthma"), "value"] == pytest.approx(100 / 3)
    assert np.isnan(rows.loc[("system", "ICS", "age_band", "5-9", "emergency_admissions"), "standardised_value"])
    gradients = inequalities(counts, ["diabetes", "asthma"], simulations=100, seed=0)
    cost = gradients[(gradients["tier"] == "system") & (gradients["measure"] == "cost")]
    assert cost[["area_code", "deciles", "people"]].values.tolist() == [["ICS", 4, 4]], gradients
    # cost by decile 1, 2, 9, 10 (one person each) = 100, 200, 300, 400: higher in the less deprived
    assert cost["sii"].item() < 0


# -- expected prevalence -------------------------------------------------------------------------------------
def test_expected_prevalence_by_indirect_age_sex_standardisation_by_hand():
    rows = [  # tier, area, sex, esp band, people, cases
        ("system", "ICS", "F", 10, 100, 10), ("system", "ICS", "M", 10, 100, 20),
        ("pcn", "A", "F", 10, 60, 3), ("pcn", "A", "M", 10, 40, 12),
        ("pcn", "B", "F", 10, 40, 7), ("pcn", "B", "M", 10, 60, 8),
    ]  # fmt: skip
    counts = pd.DataFrame(rows, columns=["tier", "area_code", "group", "esp_band", "people", "cond:hypertension"])
    counts = pd.concat([counts.assign(breakdown="sex"), counts.assign(breakdown="all", group="all")])
    table = expected_prevalence(counts, ["hypertension"], {"hypertension": 0.25}).set_index("area_code")
    # system rates F 10%, M 20%: A expects 60 x 0.1 + 40 x 0.2 = 14 and records 15; B expects 4 + 12 = 16
    assert table.loc["A", "expected_recorded"] == pytest.approx(14.0)
    assert table.loc["A", "ratio"] == pytest.approx(15 / 14) and table.loc["B", "ratio"] == pytest.approx(15 / 16)
    low, high = poisson_limits([15])
    assert (table.loc["A", "ratio_ci_low"], table.loc["A", "ratio_ci_high"]) == pytest.approx(
        (low[0] / 14, high[0] / 14)
    )
    # a quarter undiagnosed: A should have 14 / 0.75 = 18.67 true cases, 3.67 more than it records
    assert table.loc["A", "expected_cases"] == pytest.approx(14 / 0.75)
    assert table.loc["A", "undiagnosed_gap"] == pytest.approx(14 / 0.75 - 15)
    assert table.loc["ICS", "ratio"] == pytest.approx(1.0) and table.loc["ICS", "undiagnosed_gap"] == pytest.approx(10)
    assert table.loc["ICS", "expected_prevalence"] == pytest.approx(20.0)
    without = expected_prevalence(counts, ["hypertension"], {}).set_index("area_code")
    assert without.loc["A", "ratio"] == pytest.approx(15 / 14) and np.isnan(without.loc["A", "undiagnosed_gap"])


def test_secondary_suppression_protects_groups_within_an_area_and_areas_within_a_tier():
    cells = pd.DataFrame(
        {
            "area": ["A", "A", "B", "B", "C", "C"],
            "group": ["g1", "g2"] * 3,
            "people": [3, 50, 40, 60, 45, 70],
        }
    )
    within_areas = disclosure_control(cells, counts=("people",), dependent=(), sets=("area",))
    assert within_areas["suppressed"].tolist() == ["primary", "secondary", None, None, None, None]
    # A's g1 could be had from the g1 total less B's and C's: B's (the smaller) goes; then A's g2 likewise
    both = disclosure_control(cells, counts=("people",), dependent=(), sets=[("area",), ("group",)])
    assert both["suppressed"].tolist() == ["primary", "secondary", "secondary", "secondary", None, None]
    assert both["people"].tolist()[4:] == [45, 70] and both["people"].isna().sum() == 4
