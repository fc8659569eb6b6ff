"""The synthetic generator's pure parts: geography, condition intercepts, typos, identifier quality, records."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from phm.synthetic.activity import emergency_divisors
from phm.synthetic.calibration import load_calibration
from phm.synthetic.corruption import (
    apply_name_errors,
    apply_source_quality,
    identity_at_events,
    ocr_misreading,
    typo_of,
)
from phm.synthetic.extracts import injected_defects, line_defect_id_bound, line_defect_of, line_defect_share
from phm.synthetic.generator import history_start, make_plan, periods
from phm.synthetic.geography import build_geography
from phm.synthetic.population import _intercepts_for, condition_logits, generate_block
from phm.synthetic.records import RECORD_ARROW_SCHEMA, _as_arrow

from ..conftest import REPO

CALIBRATION = load_calibration(str(REPO / "configs/synthetic/calibration.yaml"))
QOF = pd.read_csv(REPO / "configs/reference/qof_prevalence_by_imd_decile_2019_20.csv", dtype=str)


def plan(population=4000, seed=7, block=2000):
    return make_plan(seed, population, block, date(2026, 3, 31), 12, CALIBRATION, QOF)


def test_window_and_monthly_periods():
    start = history_start(date(2026, 3, 31), 36)
    assert start == date(2023, 4, 1)
    months = periods(start, date(2026, 3, 31))
    assert (len(months), months[0], months[-1]) == (36, "2023-04", "2026-03")


def test_geography_sizes_follow_the_ics_tiers():
    geo = build_geography(1_000_000, CALIBRATION.geography, seed=1)
    assert len(geo.lsoas) == 667  # ~1,500 people each
    assert 100 <= len(geo.practices) <= 130 and 20 <= len(geo.pcns) <= 25 and 3 <= len(geo.places) <= 4
    assert geo.lsoas["imd_decile"].value_counts().between(66, 67).all()  # equal shares of 667
    assert geo.lsoas["postcode_district"].str.match(r"^Q[A-Z][0-9]+$").all()
    assert set(geo.practices["pcn_code"]) == set(geo.pcns["pcn_code"])


def test_intercepts_make_the_mean_over_latent_health_equal_the_target():
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    target = np.array([0.001, 0.05, 0.3, 0.9])
    intercepts = _intercepts_for(target, 1.5 * nodes, weights)
    means = (1 / (1 + np.exp(-(intercepts[:, None] + 1.5 * nodes))) * weights).sum(-1)
    np.testing.assert_allclose(means, target, rtol=1e-6)
    assert _intercepts_for(np.array([0.0]), nodes, weights)[0] == -np.inf


def test_same_block_same_people_and_other_seed_other_people():
    first = generate_block(1, plan())
    again = generate_block(1, plan())
    other = generate_block(1, plan(seed=8))
    pd.testing.assert_frame_equal(first, again)
    assert not first["nhs_number"].equals(other["nhs_number"])
    assert first["person_index"].tolist() == list(range(2000, 4000))


def test_people_have_valid_distinct_test_range_nhs_numbers_and_twins_share_details():
    people = pd.concat([generate_block(b, plan()) for b in range(2)])
    assert people["nhs_number"].is_unique
    assert people["nhs_number"].str.match(r"^999[0-9]{7}$").all()
    twins = people[people["twin_of"].notna()]
    assert len(twins) > 0
    firsts = people.set_index("true_person_id").loc[twins["twin_of"]]
    for column in ("surname", "date_of_birth", "postcode", "practice_code"):
        assert (firsts[column].to_numpy() == twins[column].to_numpy()).all()


@pytest.mark.parametrize("seed", range(20))
def test_typos_change_the_name_and_rarely_its_first_letter(seed):
    rng = np.random.default_rng(seed)
    typos = [typo_of("Margaret", CALIBRATION.identifiers, rng) for _ in range(200)]
    assert all(t != "Margaret" for t in typos)
    assert all(abs(len(t) - len("Margaret")) <= 2 for t in typos)
    assert sum(t[0] != "M" for t in typos) / len(typos) < 0.2  # 7.8% configured, plus multiple typos


def test_identity_follows_moves_and_name_changes():
    people = pd.DataFrame(
        {
            "nhs_number": ["9990000018"], "forename": ["Ann"], "surname": ["Old"], "new_surname": ["New"],
            "date_of_birth": [pd.Timestamp("1990-05-06")], "sex": ["F"], "postcode": ["QA1 1AA"],
            "new_postcode": ["QA2 2BB"], "moved_on": [pd.Timestamp("2025-06-01")],
            "surname_changed_on": [pd.Timestamp("2025-01-01")],
        }
    )  # fmt: skip
    events = pd.DataFrame({"row": [0, 0, 0], "event_date": pd.to_datetime(["2024-12-31", "2025-02-01", "2025-07-01"])})
    seen = identity_at_events(people, events)
    assert seen["surname"].tolist() == ["Old", "New", "New"]
    assert seen["postcode"].tolist() == ["QA1 1AA", "QA1 1AA", "QA2 2BB"]
    assert seen["old_postcode"].tolist() == [None, None, "QA1 1AA"]


def test_source_quality_rates_and_notes():
    n = 20_000
    identity = pd.DataFrame(
        {
            "nhs_number": ["9434765919"] * n, "forename": ["Robert"] * n, "surname": ["Smith"] * n,
            "date_of_birth": np.array(["1980-03-07"] * n, dtype="datetime64[D]"), "sex": ["M"] * n,
            "postcode": ["QA1 1AA"] * n, "old_postcode": [None] * n,
        }
    )  # fmt: skip
    quality = CALIBRATION.identifiers.sources["ae"]
    seen = apply_source_quality(identity, quality, CALIBRATION.identifiers, np.random.default_rng(3))
    missing = seen["nhs_number"].isna().mean()
    assert missing == pytest.approx(quality.nhs_number_missing, abs=0.004)
    nicknames = (seen["forename"] == "Bob").mean()
    assert nicknames == pytest.approx(quality.nickname * (1 - quality.name_typo), abs=0.006)
    notes = seen["corruptions"].fillna("")
    assert ((seen["nhs_number"].isna()) == notes.str.contains("missing_nhs_number")).all()
    unchanged = notes == ""
    assert (seen.loc[unchanged, "surname"] == "Smith").all() and (seen.loc[unchanged, "forename"] == "Robert").all()
    swapped = notes.str.contains("dob_day_month_swap")
    assert (seen.loc[swapped, "date_of_birth"] == np.datetime64("1980-07-03")).all()
    slips = notes.str.contains("nhs_number_slip")
    assert slips.mean() == pytest.approx(CALIBRATION.identifiers.invalid_nhs_number_rate, abs=0.001)
    assert (seen.loc[slips, "nhs_number"] != "9434765919").all()
    # GP events carry the number of the practice's record: never slipped on one event alone.
    events = apply_source_quality(identity, CALIBRATION.identifiers.sources["gp_events"], CALIBRATION.identifiers,
                                  np.random.default_rng(3))  # fmt: skip
    assert events["corruptions"].isna().all() and (events["nhs_number"] == "9434765919").all()


def test_names_swapped_between_fields_and_ocr_misreadings():
    n = 20_000
    seen = pd.DataFrame(
        {"forename": ["Bernard"] * n, "surname": ["Mitchell"] * n, "corruptions": [None, "nickname"] * (n // 2)}
    )
    quality = CALIBRATION.identifiers.sources["social_care"]
    out = apply_name_errors(seen, quality, np.random.default_rng(5))
    notes = out["corruptions"].fillna("")
    swapped = notes.str.contains("name_swap")
    assert swapped.mean() == pytest.approx(quality.name_swap, abs=0.003)
    plain = swapped & ~notes.str.contains("ocr")
    assert (out.loc[plain, "forename"] == "Mitchell").all() and (out.loc[plain, "surname"] == "Bernard").all()
    # A misread name is one letter shape away from the true one (Bernard: rn->m, n->ri, d->cl).
    misread = notes.str.contains("forename_ocr") & ~swapped
    assert misread.mean() == pytest.approx(quality.ocr_error, abs=0.003)
    assert set(out.loc[misread, "forename"]) == {"Bemard", "Berriard", "Bernarcl"}
    assert set(out.loc[notes.str.contains("surname_ocr") & ~swapped, "surname"]) == {
        "Mitcliell",
        "MitcheIl",
        "MitchelI",
    }
    untouched = ~swapped & ~notes.str.contains("ocr")
    assert (out.loc[untouched, "forename"] == "Bernard").all() and (out.loc[untouched, "surname"] == "Mitchell").all()
    assert (notes[1::2].str.startswith("nickname")).all()  # earlier corruptions are kept
    # A source with neither error is left as it was; a name with no confusable shape is never misread.
    assert apply_name_errors(seen, CALIBRATION.identifiers.sources["gp_events"], np.random.default_rng(5)) is seen
    assert ocr_misreading("Joy", np.random.default_rng(1)) == "Joy"


def test_nhs_number_capacity_is_checked():
    from phm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"synthetic.population: 1,000,000 people need more NHS numbers"):
        make_plan(1, 1_000_000, 5000, date(2026, 3, 31), 12, CALIBRATION, QOF)


def test_frailty_deficits_are_distinct_per_person_and_rise_with_age():
    from phm.synthetic.activity import _frailty_deficits

    block = generate_block(0, plan(population=4000, block=4000))
    start = np.datetime64("2025-04-01", "D")
    first_day = np.full(len(block), start)
    alive = np.full(len(block), 365)
    rows = _frailty_deficits(block, plan(population=4000, block=4000), first_day, alive, np.ones(len(block)))[0]
    assert not rows.duplicated(["row", "code"]).any()
    assert set(rows["code"]) <= set(CALIBRATION.frailty.deficit_snomed)
    assert ((rows["event_date"] >= start) & (rows["event_date"] < start + np.timedelta64(365, "D"))).all()
    per_person = rows.groupby("row").size().reindex(range(len(block)), fill_value=0)
    by_band = per_person.groupby(block["age_band"].to_numpy()).mean()
    expected = np.asarray(CALIBRATION.frailty.deficits_per_person_by_age)
    assert by_band[0] == by_band[1] == 0
    assert by_band[6] > by_band[5] > by_band[4] > by_band[3]
    np.testing.assert_allclose(by_band[4], expected[4], rtol=0.15)


def test_cvd_risk_statins_and_learning_disability_health_checks():
    from phm.synthetic.activity import generate_events, person_factors
    from phm.synthetic.prevention import LD_HEALTH_CHECK_SNOMED, QRISK_SNOMED, STATIN_SNOMED

    the_plan = plan(population=20000, block=20000)
    people = generate_block(0, the_plan)
    factors = person_factors(people, the_plan)
    ref = np.datetime64(the_plan.reference_date, "D")
    age = (ref - people["date_of_birth"].to_numpy().astype("datetime64[D]")).astype(int) / 365.25
    alive = people["death_date"].isna().to_numpy()
    cvd = (people["onset_coronary_heart_disease"].notna() | people["onset_stroke_tia"].notna()).to_numpy()
    risk = factors["cvd_risk_10y"].to_numpy()
    # a risk only for 25-84 without CVD; about 31% of people 30-84 are eligible for primary prevention (Ueda 2017)
    assert np.isnan(risk[(age < 25) | (age >= 85) | cvd]).all()
    assert not np.isnan(risk[(age >= 25) & (age < 85) & ~cvd]).any()
    adults = alive & (age >= 30) & (age < 85)
    assert (risk[adults] >= 0.10).mean() == pytest.approx(0.31, abs=0.03)
    # risk rises with age and is higher for men
    men, women = people["sex"].to_numpy() == "M", people["sex"].to_numpy() == "F"
    middle = (age >= 50) & (age < 60) & ~cvd
    assert np.nanmedian(risk[middle & men]) > np.nanmedian(risk[middle & women])
    assert np.nanmedian(risk[(age >= 70) & (age < 80)]) > np.nanmedian(risk[middle])
    # most people with CVD are on a statin; a score is recorded only where there is a risk
    started = factors["statin_started_on"].notna().to_numpy()
    assert started[cvd & alive].mean() == pytest.approx(CALIBRATION.prevention.statin_secondary, abs=0.05)
    assert not factors["qrisk_recorded_on"].notna().to_numpy()[np.isnan(risk)].any()

    factors["cell_mean_factor"] = factors["cell_rate_divisor"] = factors["emergency_factor"].mean()
    events = generate_events(people, factors, the_plan)
    qrisk = events[events["kind"] == "qrisk"]
    assert (qrisk["code"] == QRISK_SNOMED).all() and qrisk["value"].between(0.1, 99).all()
    assert len(qrisk) == factors["qrisk_recorded_on"].notna().sum()
    # statin issues every 56 days from the start (or the window's start) to the end of the person's time
    issues = events[events["kind"] == "medication"]
    assert set(issues["code"]) <= set(STATIN_SNOMED) and set(issues["row"]) <= set(np.flatnonzero(started))
    gaps = issues.sort_values(["row", "event_date"]).groupby("row")["event_date"].diff().dropna()
    assert (gaps == np.timedelta64(CALIBRATION.prevention.statin_issue_days, "D")).all()
    assert (issues["event_date"].to_numpy() >= factors["statin_started_on"].to_numpy()[issues["row"]]).all()
    # health checks only for people 14+ with a diagnosed learning disability, about the yearly share of them
    checks = events[events["kind"] == "health_check"]
    learning_disability = people["diagnosed_learning_disability"].notna().to_numpy()
    assert (checks["code"] == LD_HEALTH_CHECK_SNOMED).all() and learning_disability[checks["row"]].all()
    born = people["date_of_birth"].to_numpy().astype("datetime64[D]")[checks["row"]]
    assert ((checks["event_date"].to_numpy() - born).astype(int) / 365.25 >= 14).all()
    window_start = np.datetime64(the_plan.history_start, "D")
    registered = people["registered_on"].to_numpy().astype("datetime64[D]") <= window_start
    diagnosed = people["diagnosed_learning_disability"].to_numpy().astype("datetime64[D]") <= window_start
    eligible = learning_disability & diagnosed & alive & (age >= 15) & registered
    checked = np.isin(np.flatnonzero(eligible), checks["row"].to_numpy()).mean()
    assert eligible.sum() > 30 and checked == pytest.approx(CALIBRATION.prevention.ld_health_check_yearly, abs=0.12)


def test_emergency_divisor_spreads_the_capped_excess_over_the_cell():
    # Oldest group, most deprived: 282 admissions per 1,000 a year. Ten person-years at h = 100 would reach
    # 0.282 x 100 / 1.99 = 14.2 a year at the mean's divisor, over the cap of 12.
    histogram = pd.DataFrame(
        {
            "emergency_age_group": [4, 4, 0],
            "imd_quintile": [1, 1, 5],
            "bucket": [0, 460, 69],
            "years": [990.0, 10.0, 100.0],
            "weighted_factor_sum": [990.0, 1000.0, 200.0],
        }
    )
    divisors = emergency_divisors(histogram, plan()).set_index(["emergency_age_group", "imd_quintile"])
    # (990 x 0.282 / d + 10 x 12) / 1000 = 0.282, the ten capped
    assert divisors.loc[(4, 1), "cell_rate_divisor"] == pytest.approx(990 * 0.282 / (282 - 120), rel=1e-9)
    # nobody near the cap: the cell's mean h
    assert divisors.loc[(0, 5), "cell_rate_divisor"] == pytest.approx(2.0, rel=1e-9)


def test_conditions_drawn_before_deaths_are_raised_where_cases_die_more():
    _, no_window = condition_logits(CALIBRATION, QOF, 0.0)
    _, three_years = condition_logits(CALIBRATION, QOF, 3.0)
    heart_failure = list(CALIBRATION.health.conditions).index("heart_failure")
    oldest, children = len(CALIBRATION.population.age_bands) - 1, 0
    assert (three_years[heart_failure, oldest] - no_window[heart_failure, oldest] > 0.2).all()
    finite = np.isfinite(no_window[:, children])
    assert np.allclose(three_years[:, children][finite], no_window[:, children][finite], atol=0.01)


def test_emergency_divisor_counts_person_years_not_people():
    # Two buckets of 50 people: h = 1 alive all 3 years, h = 4 alive half a year on average. Per person the mean
    # h is 2.5; per person-year it is (150 + 4 x 25) / 175.
    histogram = pd.DataFrame(
        {
            "emergency_age_group": [2, 2],
            "imd_quintile": [3, 3],
            "bucket": [0, 138],
            "years": [150.0, 25.0],
            "weighted_factor_sum": [150.0, 100.0],
        }
    )
    divisor = emergency_divisors(histogram, plan())["cell_rate_divisor"].iloc[0]
    assert divisor == pytest.approx(250 / 175, rel=1e-9)


def test_line_defect_bound_keeps_every_damaged_line_among_the_candidates():
    rates = CALIBRATION.defects
    ids = [f"{k:016x}" for k in np.random.default_rng(7).integers(0, 2**63, 200_000, dtype=np.int64) * 2]
    edge = int(line_defect_share(rates) * 2**32)
    ids += [f"{k:08x}00000000" for k in (edge - 1, edge, edge + 1, edge + 2)]  # at the boundary
    bound = line_defect_id_bound(rates)
    damaged = {i for i in ids if line_defect_of(i, rates) is not None}
    candidates = {i for i in ids if i[:8] < bound}
    assert damaged and damaged <= candidates
    assert len(candidates - damaged) <= 2  # the bound's margin of one id prefix


def test_injected_defects_lists_what_each_source_format_can_carry(spark):
    rates = CALIBRATION.defects
    edge = line_defect_share(rates)
    damaged_id = f"{int(rates.truncated_line / 2 * 2**32):08x}00000001"  # a truncated line, by line_defect_of
    wrong_type_id = f"{int((edge - rates.wrong_type / 2) * 2**32):08x}00000002"  # text in a numeric column
    clean_id = f"{int(min(edge * 2, 0.99) * 2**32):08x}00000003"  # above the bound: no line damage
    assert line_defect_of(damaged_id, rates) == "truncated_line"
    assert line_defect_of(wrong_type_id, rates) == "wrong_type"
    assert line_defect_of(clean_id, rates) is None
    records = spark.createDataFrame(
        [
            ("gp_events", "2025-04", clean_id, "unknown_code"),  # GP events carry codes
            ("deaths", "2025-04", clean_id, "unknown_code"),  # deaths have no code column: not applied
            ("ae", "2025-04", clean_id, "malformed_date"),  # typed Parquet dates cannot be malformed
            ("ae", "2025-05", damaged_id, "future_date"),  # Parquet: no line damage, the future date stays
            ("inpatient", "2025-04", damaged_id, "malformed_date"),  # both the record's and the line's
            ("gp_events", "2025-05", wrong_type_id, None),  # a numeric column to put text in
            ("deaths", "2025-05", wrong_type_id, None),  # none: the line stays whole
            ("outpatient", "2025-04", clean_id, None),
        ],
        "source string, period string, record_id string, defect string",
    )
    found = sorted(tuple(r) for r in injected_defects(records, rates).collect())
    assert found == sorted(
        [
            ("gp_events", "2025-04", clean_id, "unknown_code"),
            ("ae", "2025-05", damaged_id, "future_date"),
            ("inpatient", "2025-04", damaged_id, "malformed_date"),
            ("inpatient", "2025-04", damaged_id, "truncated_line"),
            ("gp_events", "2025-05", wrong_type_id, "wrong_type"),
        ]
    )


def test_records_reach_spark_as_arrow_with_pandas_nulls_as_nulls():
    frame = pd.DataFrame(
        {
            "source": ["gp_events", "inpatient"],
            "period": ["2025-04", "2025-05"],
            "event_date": pd.to_datetime(["2025-04-03", "2025-05-31"]),
            "date_of_birth": pd.to_datetime(["1950-01-02", None]),
            "nhs_number": ["9990000018", None],
            "value": [np.nan, 7.5],
            "los_days": [np.nan, 3.0],  # a float column with gaps, as pandas' concat of event kinds leaves it
        }
    )
    table = _as_arrow(frame)
    assert table.schema == RECORD_ARROW_SCHEMA
    first, second = table.to_pylist()
    assert first == {
        **dict.fromkeys(RECORD_ARROW_SCHEMA.names),  # every column no event of the block has: null
        "source": "gp_events",
        "period": "2025-04",
        "event_date": date(2025, 4, 3),
        "date_of_birth": date(1950, 1, 2),
        "nhs_number": "9990000018",
    }
    assert (second["date_of_birth"], second["nhs_number"], second["value"], second["los_days"]) == (None, None, 7.5, 3)
