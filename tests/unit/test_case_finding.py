"""Case-finding cohorts (configs/cohorts/*.yaml) on hand-built people: who is in, in what order, with what evidence;
bad rules are config errors naming the file and key; precision and recall by hand."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from phm.cohorts.case_finding import (
    CohortSpec,
    accuracy,
    cohort_columns,
    cohort_members,
    cohort_summary,
    load_cohort_specs,
)
from phm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
REFERENCE = date(2026, 3, 31)
SEGMENT_SCHEMA = (
    "person_id string, reference_date date, age int, age_band string, sex string, ethnicity string, imd_quintile int, "
    "practice_code string, pcn_code string, segment string, conditions array<string>, long_term_conditions int, "
    "cms_score double, efi_score double, efi_category string, social_care array<string>, "
    "emergency_admissions_12m int, ae_attendances_12m int, high_intensity_user boolean, annual_cost double, "
    "housing_cases_12m int"
)


def _person(pid, age, conditions=(), pcn="P1", efi=None, efi_score=None, ae=0, housing=0):
    return (pid, REFERENCE, age, "x", "F", "White", 3, "G1", pcn, "s", list(conditions), len(conditions), 0.0,
            efi_score, efi, [], 0, ae, False, 0.0, housing)  # fmt: skip


def _reading(pid, observation, day, value=None, value2=None, category=None, plausible=True):
    record_id = f"{pid}-{observation}-{day}"
    return (pid, observation, day, value, value2, category, plausible, False, record_id)


def _bp(pid, day, systolic, diastolic, plausible=True):
    return _reading(pid, "blood_pressure", day, float(systolic), float(diastolic), plausible=plausible)


def _hba1c(pid, day, value):
    return _reading(pid, "hba1c", day, float(value))


def _qrisk(pid, day, value):
    return _reading(pid, "qrisk", day, float(value))


def _statin(pid, day):
    return _reading(pid, "lipid_lowering_therapy", day, category="statin_issued")


def _ld_check(pid, day):
    return _reading(pid, "learning_disability_health_check", day, category="completed")


OBSERVATION_NAMES = ["blood_pressure", "hba1c", "bmi", "smoking_status", "qrisk", "lipid_lowering_therapy",
                     "learning_disability_health_check"]  # fmt: skip


@pytest.fixture(scope="module")
def columns(spark):
    segments = spark.createDataFrame(
        [
            _person("htn_two_raised", 50),
            _person("htn_one_raised", 50),
            _person("htn_on_register", 50, ["hypertension"]),
            _person("htn_old_readings", 50),
            _person("htn_child", 16),
            _person("htn_implausible", 60),
            _person("dm_high", 45, pcn="P2"),
            _person("dm_borderline", 45, pcn="P2"),
            _person("dm_on_register", 45, ["diabetes"], pcn="P2"),
            _person("ae_five", 30, ae=5),
            _person("ae_four", 30, ae=4),
            _person("fall_70", 70),
            _person("frail_80", 80, efi="severe", efi_score=0.4),
            _person("fit_80", 80, efi="fit", efi_score=0.05),
            _person("fall_60", 60),
            # prevention cohorts (PCN P3)
            _person("ld_checked_recently", 30, ["learning_disability"], pcn="P3"),
            _person("ld_checked_long_ago", 30, ["learning_disability"], pcn="P3"),
            _person("ld_never_checked", 40, ["learning_disability"], pcn="P3"),
            _person("ld_child", 12, ["learning_disability"], pcn="P3"),
            _person("cvd_high_untreated", 60, pcn="P3"),
            _person("cvd_high_on_statin", 60, pcn="P3"),
            _person("cvd_high_stopped_statin", 65, pcn="P3"),
            _person("cvd_score_too_old", 70, pcn="P3"),
            _person("cvd_latest_score_low", 62, pcn="P3"),
            _person("cvd_with_chd", 60, ["coronary_heart_disease"], pcn="P3"),
            _person("cvd_aged_85", 85, pcn="P3"),
            # inclusion health (PCN P4): housing need with a health need
            _person("housed_copd", 40, ["copd"], pcn="P4", housing=1),
            _person("housed_depression", 22, ["depression"], pcn="P4", housing=2),
            _person("housed_ae_two", 19, pcn="P4", ae=2, housing=1),
            _person("housed_well", 25, pcn="P4", housing=1),
            _person("copd_housed_long_ago", 50, ["copd"], pcn="P4"),
        ],
        SEGMENT_SCHEMA,
    )
    readings = [
        _bp("htn_two_raised", date(2025, 6, 1), 150, 85), _bp("htn_two_raised", date(2026, 1, 1), 138, 92),
        _bp("htn_one_raised", date(2025, 6, 1), 150, 85), _bp("htn_one_raised", date(2026, 1, 1), 130, 80),
        _bp("htn_on_register", date(2025, 6, 1), 160, 95), _bp("htn_on_register", date(2026, 1, 1), 160, 95),
        _bp("htn_old_readings", date(2023, 1, 1), 170, 95), _bp("htn_old_readings", date(2023, 6, 1), 170, 95),
        _bp("htn_child", date(2025, 6, 1), 150, 95), _bp("htn_child", date(2026, 1, 1), 150, 95),
        _bp("htn_implausible", date(2025, 6, 1), 150, 95),
        _bp("htn_implausible", date(2026, 1, 1), 400, 95, plausible=False),
        _hba1c("dm_high", date(2025, 9, 1), 52), _hba1c("dm_borderline", date(2025, 9, 1), 47),
        _hba1c("dm_on_register", date(2025, 9, 1), 70),
        _ld_check("ld_checked_recently", date(2025, 10, 1)), _ld_check("ld_checked_recently", date(2024, 10, 1)),
        _ld_check("ld_checked_long_ago", date(2024, 12, 1)),
        _qrisk("cvd_high_untreated", date(2024, 6, 1), 15.2),
        _qrisk("cvd_high_on_statin", date(2024, 6, 1), 18.0), _statin("cvd_high_on_statin", date(2026, 2, 1)),
        _qrisk("cvd_high_stopped_statin", date(2022, 6, 1), 12.0), _statin("cvd_high_stopped_statin", date(2024, 1, 1)),
        _qrisk("cvd_score_too_old", date(2020, 6, 1), 20.0),
        _qrisk("cvd_latest_score_low", date(2023, 1, 1), 12.0), _qrisk("cvd_latest_score_low", date(2025, 6, 1), 8.0),
        _qrisk("cvd_with_chd", date(2025, 6, 1), 20.0),
        _qrisk("cvd_aged_85", date(2025, 6, 1), 40.0),
    ]  # fmt: skip
    observations = spark.createDataFrame(
        readings,
        "person_id string, observation string, event_date date, value double, value2 double, category string, "
        "plausible boolean, is_latest boolean, record_id string",
    )
    events = spark.createDataFrame(
        [
            ("fall_70", date(2025, 12, 1), True),
            ("fall_60", date(2025, 12, 1), True),
            ("fit_80", date(2024, 1, 1), True),
        ],
        "person_id string, event_date date, fall boolean",
    )
    return cohort_columns(segments, observations, events, REFERENCE, 24, OBSERVATION_NAMES).cache()


def _members(columns, name):
    spec, path = load_cohort_specs(str(REPO / "configs" / "cohorts"))[name]
    return [(r.person_id, r.pcn_code, r.priority, dict(r.evidence)) for r in
            cohort_members(columns, spec, path).orderBy("pcn_code", "priority").collect()]  # fmt: skip


def test_undiagnosed_hypertension_needs_two_raised_plausible_readings_in_the_lookback_off_the_register(columns):
    assert _members(columns, "undiagnosed_hypertension") == [
        ("htn_two_raised", "P1", 1, {"raised_readings": "2", "highest_systolic": "150.0"}),
    ]


def test_undiagnosed_diabetes_needs_an_hba1c_of_48_or_more_off_the_register(columns):
    assert _members(columns, "undiagnosed_diabetes") == [("dm_high", "P2", 1, {"highest_hba1c": "52.0"})]


def test_frequent_attenders_and_falls_risk_with_their_priority(columns):
    assert [m[0] for m in _members(columns, "frequent_ae_attenders")] == ["ae_five"]
    # 65+: a fall in the last 12 months first, then by frailty; a fall at 60 or two years ago does not count
    falls = _members(columns, "falls_risk")
    assert [(m[0], m[2]) for m in falls] == [("fall_70", 1), ("frail_80", 2)]
    assert falls[1][3] == {"falls_12m": "0", "efi_category": "severe"}


def test_housing_need_with_health_needs_ranks_conditions_then_ae(columns):
    # in: a homelessness case in the year with a long-term condition, depression or 2+ A&E attendances;
    # out: in housing need but well, or a condition without a case in the year
    got = _members(columns, "housing_need_with_health_needs")
    assert [(m[0], m[2]) for m in got] == [("housed_copd", 1), ("housed_depression", 2), ("housed_ae_two", 3)]
    assert got[1][3] == {"housing_cases_12m": "2", "long_term_conditions": "1", "ae_attendances_12m": "0"}


def test_learning_disability_health_check_due_when_none_in_the_last_12_months_never_checked_first(columns):
    # 14+ on the register; a check 16 months ago is due (and ranks after never checked); a child is not eligible
    assert _members(columns, "learning_disability_health_check_due") == [
        ("ld_never_checked", "P3", 1, {"last_health_check": "none recorded"}),
        ("ld_checked_long_ago", "P3", 2, {"last_health_check": "2024-12-01"}),
    ]


def test_high_cvd_risk_without_statin_reads_the_latest_recent_score_and_recent_issues(columns):
    # in: a raised score and no statin; a statin stopped over a year ago. out: on a statin, a score over 5 years
    # old, a latest score below 10% (an older one was raised), CHD (secondary prevention), aged 85
    assert _members(columns, "high_cvd_risk_without_statin") == [
        ("cvd_high_untreated", "P3", 1, {"qrisk": "15.2", "qrisk_date": "2024-06-01",
                                         "last_statin_issue": "none recorded"}),
        ("cvd_high_stopped_statin", "P3", 2, {"qrisk": "12.0", "qrisk_date": "2022-06-01",
                                              "last_statin_issue": "2024-01-01"}),
    ]  # fmt: skip


def test_every_configured_observation_is_a_key_of_readings_and_latest(columns):
    row = columns.where("person_id = 'fall_60'").first()  # no readings at all
    assert sorted(row.readings) == sorted(row.latest) == sorted(OBSERVATION_NAMES)
    assert all(value == [] for value in row.readings.values()) and all(v is None for v in row.latest.values())
    two = columns.where("person_id = 'cvd_latest_score_low'").first()
    assert [r.value for r in two.readings["qrisk"]] == [8.0]  # the 2023 score is outside the 24-month lookback
    raised = columns.where("person_id = 'htn_two_raised'").first()
    assert [r.value for r in raised.readings["blood_pressure"]] == [138.0, 150.0]  # newest first
    assert (two.latest["qrisk"].event_date, two.latest["qrisk"].value) == (date(2025, 6, 1), 8.0)


def test_a_cohort_added_as_a_file_needs_no_code_and_a_bad_rule_names_its_file_and_key(columns, tmp_path):
    extra = CohortSpec(name="over_75", description="75+", source="test", rule="age >= 75", priority=["age DESC"])
    assert {r.person_id for r in cohort_members(columns, extra, "over_75.yaml").collect()} == {
        "frail_80",
        "fit_80",
        "cvd_aged_85",
    }
    broken = CohortSpec(name="broken", description="x", source="test", rule="no_such_column > 1")
    with pytest.raises(ConfigError, match=r"broken.yaml: rule.*no_such_column"):
        cohort_members(columns, broken, "broken.yaml")
    with pytest.raises(ConfigError, match="broken.yaml: priority"):
        cohort_members(columns, extra.model_copy(update={"priority": ["age +"]}), "broken.yaml")


def test_summary_counts_the_cohort_and_its_population_per_pcn(columns):
    spec, path = load_cohort_specs(str(REPO / "configs" / "cohorts"))["undiagnosed_diabetes"]
    summary = cohort_summary(cohort_members(columns, spec, path), columns, spec)
    rows = {r.pcn_code: (r.people, r.population) for r in summary.collect()}
    # population: adults off the diabetes register (P1: 12 people less htn_child; P2: two of three; P3: 11 less
    # ld_child; P4: all five)
    assert rows == {"P1": (0, 11), "P2": (1, 2), "P3": (0, 10), "P4": (0, 5), "all": (1, 28)}


def test_precision_and_recall_by_hand(spark):
    def ids(*names):
        return spark.createDataFrame([(n,) for n in names], "person_id string")

    measures = accuracy(ids("a", "b", "c", "d", "e"), ids("a", "b", "x"), ids("a", "c", "z"))
    # members in the population: a, b (x is not in it); truly ill in the population: a, c
    assert measures == {"members": 2, "true_positives": 1, "precision": 0.5, "undiagnosed": 2, "found": 1,
                        "recall": 0.5, "population": 5, "undiagnosed_prevalence": 0.4}  # fmt: skip


def test_a_cohort_is_scored_by_a_condition_or_by_a_truth_rule_not_both():
    truth = {"finds": "untreated_high_cvd_risk", "rule": "cvd_risk_10y >= 0.10"}
    spec = CohortSpec(name="c", description="x", source="test", rule="true", truth=truth)
    assert spec.evaluated_for == "untreated_high_cvd_risk"
    assert CohortSpec(name="c", description="x", source="test", rule="true").evaluated_for is None
    with pytest.raises(ValueError, match="not both"):
        CohortSpec(name="c", description="x", source="test", rule="true", finds_undiagnosed="diabetes", truth=truth)
