"""The best achievable AUC (phm.synthetic.achievable) on inline populations built with the generator's own
emergency rate."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from phm.synthetic.achievable import ReconstructionError, achievable_auc, observer, truth_columns
from phm.synthetic.activity import true_admission_probability
from phm.synthetic.calibration import load_calibration

from ..conftest import REPO

CALIBRATION = load_calibration(str(REPO / "configs/synthetic/calibration.yaml"))
INDEX, REFERENCE = date(2025, 4, 1), date(2026, 3, 31)


def population(calibration, n=40_000, seed=3) -> pd.DataFrame:
    """truth/person's columns for n people alive through a 3-year window, drawn as the generator draws them
    (a cell divisor of each cell's mean factor stands in for the solved one: any positive divisor will do)."""
    act = calibration.activity
    rng = np.random.default_rng(seed)
    conditions = rng.poisson(0.8, n)
    high = rng.random(n) < 0.01
    h = np.exp(
        act.emergency_conditions_log_rr_per_condition * conditions
        + act.emergency_unobserved_sd * rng.standard_normal(n)
    )
    h = np.where(high, h * act.ae_high_intensity_emergency_rr, h)
    people = pd.DataFrame(
        {
            "block": rng.integers(0, 2, n),
            "age_band": rng.integers(0, 7, n),
            "death_date": pd.NaT,
            "condition_count": conditions,
            "emergency_age_group": rng.integers(0, 5, n),
            "imd_quintile": rng.integers(1, 6, n),
            "emergency_factor": h,
            "ae_high_intensity_flag": high,
            "exposure_years": 3.0,
        }
    )
    people["age_at_start"] = people["age_band"] * 13.0 + 5
    means = people.groupby(["emergency_age_group", "imd_quintile"])["emergency_factor"].transform("mean")
    people["cell_rate_divisor"] = people["cell_mean_factor"] = means
    people["p_emergency_12m"] = true_admission_probability(people, SimpleNamespace(calibration=calibration))
    return people


def test_with_nothing_unobserved_the_achievable_auc_is_the_oracles():
    calibration = CALIBRATION.model_copy(
        update={"activity": CALIBRATION.activity.model_copy(update={"emergency_unobserved_sd": 0.0})}
    )
    seen = observer(population(calibration), calibration, INDEX, REFERENCE)
    row = achievable_auc(seen, calibration, [12], 12, seed=1).iloc[0]
    assert row.persons == 40_000
    # the observer knows the true rate: every predictor is the true probability (up to rounding, which breaks ties)
    for auc in (row.no_history_auc, row.admissions_only_auc, row.achievable_auc):
        assert auc == pytest.approx(row.oracle_auc, abs=1e-4)


def test_history_reveals_the_unobserved_factor_but_never_all_of_it():
    seen = observer(population(CALIBRATION), CALIBRATION, INDEX, REFERENCE)
    rows = achievable_auc(seen, CALIBRATION, [12, 24], 12, seed=1).set_index("history_months")
    assert (rows["oracle_auc"] == rows["oracle_auc"].iloc[0]).all()  # the same outcomes for every history
    for months in (12, 24):
        row = rows.loc[months]
        assert row.no_history_auc + 0.005 < row.admissions_only_auc < row.achievable_auc < row.oracle_auc - 0.02
    assert rows.loc[12, "achievable_auc"] < rows.loc[24, "achievable_auc"]
    again = achievable_auc(seen, CALIBRATION, [12, 24], 12, seed=1).set_index("history_months")
    pd.testing.assert_frame_equal(rows, again)  # seeded


def test_without_both_outcomes_an_auc_is_missing_not_an_error():
    seen = observer(population(CALIBRATION, n=20), CALIBRATION, INDEX, REFERENCE)
    row = achievable_auc(seen, CALIBRATION, [12], 0, seed=1).iloc[0]  # no follow-up: nobody admitted
    assert row.outcome_rate == 0 and np.isnan([row.oracle_auc, row.no_history_auc, row.achievable_auc]).all()


def test_people_dead_or_not_yet_in_the_window_at_the_index_date_are_left_out():
    people = population(CALIBRATION, n=1000)
    year_to_reference = (REFERENCE - INDEX).days / 365.25
    people.loc[:99, "death_date"] = pd.Timestamp("2025-01-15")  # died before the index date
    people.loc[:99, "exposure_years"] = 3.0 - (REFERENCE - date(2025, 1, 15)).days / 365.25
    people.loc[100:199, "death_date"] = pd.Timestamp("2025-10-01")  # died in the follow-up: at risk
    people.loc[100:199, "exposure_years"] = 3.0 - (REFERENCE - date(2025, 10, 1)).days / 365.25
    people.loc[200:299, "exposure_years"] = 0.5  # moved in after the index date: not at risk at it
    people.loc[300:399, "exposure_years"] = 1.5  # moved in half a year before it
    seen = observer(people, CALIBRATION, INDEX, REFERENCE)
    assert len(seen.e_true) == 800
    years_before = seen.years_in_window - seen.years_after_index
    assert years_before[:100] == pytest.approx(np.full(100, 3.0 - year_to_reference))  # the follow-up's deaths
    assert years_before[100:200] == pytest.approx(np.full(100, 1.5 - year_to_reference))
    assert years_before[200:] == pytest.approx(np.full(600, 3.0 - year_to_reference))


def test_a_truth_store_of_another_calibration_is_refused():
    people = population(CALIBRATION, n=1000)
    people["p_emergency_12m"] *= 1.01
    with pytest.raises(ReconstructionError, match="generate it again"):
        observer(people, CALIBRATION, INDEX, REFERENCE)


def test_a_truth_store_without_the_person_factors_is_refused(spark):
    people = population(CALIBRATION, n=2).drop(columns=["age_at_start", "cell_mean_factor"])
    people["date_of_birth"] = date(1950, 3, 1)
    frame = spark.createDataFrame(people.astype({"death_date": "datetime64[ns]"}))
    with pytest.raises(ReconstructionError, match="lacks cell_mean_factor: it was written by an earlier generator"):
        truth_columns(frame, date(2023, 3, 1))


def test_the_age_is_computed_in_spark_and_no_date_of_birth_leaves_it(spark):
    people = population(CALIBRATION, n=2).drop(columns=["age_at_start"])
    people["date_of_birth"] = [date(1950, 3, 1), date(2024, 1, 1)]
    people["nhs_number"] = "9990000000"
    frame = truth_columns(spark.createDataFrame(people.astype({"death_date": "datetime64[ns]"})), date(2023, 3, 1))
    rows = frame.toPandas()
    assert "date_of_birth" not in rows.columns and "nhs_number" not in rows.columns
    assert rows["age_at_start"].tolist() == pytest.approx([73.0, 0.0])
