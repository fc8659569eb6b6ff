"""The person model's rules on hand-built people, with the configured definitions (configs/codelists,
configs/unit_costs.yaml, configs/segmentation.yaml): code matching, condition rules and their boundaries,
costs and flags, social care packages, observations, CMS, eFI, annual cost and every segment priority."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm.actuarial.history import segment_history
from phm.config import load_definitions
from phm.errors import ConfigError
from phm.person.codes import CONDITION, FRAILTY_DEFICIT, coded_events, match_codes
from phm.person.conditions import condition_codes, conditions_at
from phm.person.definitions import CodeList, load_codelists, load_person_model_definitions
from phm.person.evaluation import ascertainment
from phm.person.events import build_events
from phm.person.observations import observations
from phm.segmentation.definitions import Segmentation, check_against_codelists
from phm.segmentation.scores import (
    cambridge_multimorbidity_score,
    coded_event_families,
    efi_deficits,
    electronic_frailty_index,
)
from phm.segmentation.segments import activity_in_year, build_segments, segments_by_date

REPO = Path(__file__).resolve().parents[2]
AS_OF = "2026-03-31"
EVENT = (
    "person_id string, source string, record_id string, service string, activity string, setting string, "
    "event_date date, end_date date, code_system string, code string, value double, value2 double, "
    "cost double, daily_cost double, emergency boolean"
)


@pytest.fixture(scope="module")
def definitions(config):
    return load_person_model_definitions(config)


@pytest.fixture(scope="module")
def segmentation(config, definitions):
    loaded = load_definitions(config.resolve(config.person_model.segmentation), Segmentation)
    check_against_codelists(loaded, definitions.conditions, "segmentation.yaml")
    return loaded


_counter = iter(range(1, 10**6))


def event(
    person,
    when,
    code=None,
    system=None,
    activity="gp_record",
    service="gp",
    source="gp_events",
    cost=0.0,
    end=None,
    daily=None,
    emergency=False,
    setting=None,
    value=None,
    value2=None,
):
    if code is not None and system is None:
        system = "snomed" if code.isdigit() else "icd10"
    return (
        person,
        source,
        f"e{next(_counter)}",
        service,
        activity,
        setting,
        date.fromisoformat(when),
        date.fromisoformat(end) if end else None,
        system,
        code,
        value,
        value2,
        cost,
        daily,
        emergency,
    )


def events(spark, rows):
    return spark.createDataFrame(rows, EVENT)


def coded(frame, definitions, segmentation=None):
    """gold.coded_events' rows of `frame`: matched to the conditions' lists, and the eFI deficits' with
    `segmentation`."""
    families = (
        {CONDITION: list(definitions.conditions.values())} if segmentation is None
        else coded_event_families(definitions.conditions, segmentation.electronic_frailty_index)
    )  # fmt: skip
    return coded_events(frame, families)


def ages(spark, **by_person):
    return spark.createDataFrame(list(by_person.items()), "person_id string, age int")


def current(spark, definitions, rows, as_of=AS_OF, **person_ages):
    codes = condition_codes(coded(events(spark, rows), definitions))
    found = conditions_at(codes, ages(spark, **person_ages), definitions.conditions, as_of)
    return {(r.person_id, r.condition) for r in found.collect()}


# -- code matching ---------------------------------------------------------------------------------------------
def test_snomed_matches_exactly_and_icd10_by_prefix_with_exclusions(spark, definitions):
    rows = [
        event("p", "2025-01-01", "38341003"),  # hypertension (SNOMED)
        event("p", "2025-01-01", "383410030"),  # not a prefix match for SNOMED
        event("p", "2025-01-01", "I10X"),  # hypertension I10
        event("p", "2025-01-01", "C509"),  # cancer (C5)
        event("p", "2025-01-01", "C443"),  # non-melanoma skin cancer: excluded from cancer
        event("p", "2025-01-01", "C787"),  # secondary: cancer and metastatic cancer
        event("p", "2025-01-01", "E115"),  # diabetes
        event("p", "2025-01-01", "162659009"),  # hypertension resolved
    ]
    frame = events(spark, rows)
    matched = match_codes(frame, definitions.conditions.values(), keep=("record_id", "code"))
    found = sorted((r.code, r.codelist, r.entry) for r in matched.collect())
    assert found == [
        ("162659009", "hypertension", "resolved"),
        ("38341003", "hypertension", "include"),
        ("C509", "cancer", "include"),
        ("C787", "cancer", "include"),
        ("C787", "metastatic_cancer", "include"),
        ("E115", "diabetes", "include"),
        ("I10X", "hypertension", "include"),
    ]


def test_an_event_matches_a_list_once_however_many_of_its_prefixes_the_list_holds(spark):
    nested = CodeList(
        name="nested",
        description="nested",
        version="1",
        source="a test",
        icd10=["E1", "E11", "E115"],
        icd10_exclude=["E113"],
    )
    rows = [event("p", "2025-01-01", code) for code in ("E115", "E119", "E109", "E113", "E200")]
    matched = match_codes(events(spark, rows), [nested], keep=("record_id", "code"))
    # E113 is held by the list's E1 and E11 and excluded by E113: not a match
    assert sorted((r.code, r.entry) for r in matched.collect()) == [
        ("E109", "include"),
        ("E115", "include"),
        ("E119", "include"),
    ]


def test_coded_events_match_each_family_of_lists_apart_in_one_pass(spark, definitions, segmentation):
    """gold.coded_events: an event in a condition's list and a deficit's is a row of each family, and a list's
    exclusions hold within its family only (a condition and a deficit of one name do not mix)."""
    shared = dict(description="x", version="1", source="a test")
    families = {
        CONDITION: [CodeList(name="x", icd10=["C"], icd10_exclude=["C44"], resolved_snomed=["123456"], **shared)],
        FRAILTY_DEFICIT: [CodeList(name="x", icd10=["C44"], **shared)],
    }
    rows = [
        event("p", "2025-01-01", "C443", source="inpatient"),  # the deficit's; the condition excludes it
        event("p", "2025-02-01", "C509", source="inpatient"),  # the condition's only
        event("q", "2025-03-01", "123456"),  # the condition's resolution
        event("q", "2025-04-01", "E119"),  # neither's
        event("q", "2025-05-01"),  # no code
    ]
    got = coded_events(events(spark, rows), families)
    assert sorted(got.columns) == sorted(
        ["person_id", "source", "record_id", "event_date", "family", "codelist", "entry"]
    )
    assert sorted((r.person_id, str(r.event_date), r.family, r.codelist, r.entry) for r in got.collect()) == [
        ("p", "2025-01-01", FRAILTY_DEFICIT, "x", "include"),
        ("p", "2025-02-01", CONDITION, "x", "include"),
        ("q", "2025-03-01", CONDITION, "x", "resolved"),
    ]
    # the configured lists: a fall (W19X) is an eFI deficit's and no condition's; diabetes (E119) the reverse
    configured = coded(events(spark, [*rows[3:4], event("p", "2025-01-01", "W19X")]), definitions, segmentation)
    assert sorted((r.family, r.codelist) for r in configured.collect()) == [
        (CONDITION, "diabetes"), (FRAILTY_DEFICIT, "falls")
    ]  # fmt: skip


def test_a_code_list_must_be_named_after_its_file_and_hold_codes(tmp_path):
    (tmp_path / "wrong.yaml").write_text("name: right\ndescription: d\nversion: '1'\nsource: src\nsnomed: ['123456']\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: declares 'right'; name the file right.yaml"):
        load_codelists(str(tmp_path))
    (tmp_path / "wrong.yaml").write_text("name: wrong\ndescription: d\nversion: '1'\nsource: src\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: \(top level\): value error, a code list needs at least one"):
        load_codelists(str(tmp_path))


# -- condition rules -------------------------------------------------------------------------------------------
def test_ever_rule_with_resolution_and_rediagnosis(spark, definitions):
    rows = [
        event("resolved", "2024-01-01", "38341003"),
        event("resolved", "2025-01-01", "162659009"),  # hypertension resolved after the diagnosis
        event("again", "2023-01-01", "38341003"),
        event("again", "2024-01-01", "162659009"),
        event("again", "2025-06-01", "I10X", source="inpatient"),  # diagnosed again in hospital
        event("later", "2026-04-01", "38341003"),  # after the reference date: not yet known
    ]
    assert current(spark, definitions, rows, resolved=50, again=50, later=50) == {("again", "hypertension")}


def test_condition_first_recorded_and_first_source(spark, definitions):
    rows = [
        event("p", "2025-02-01", "44054006"),
        event("p", "2024-07-01", "E119", source="inpatient"),
        event("p", "2025-09-01", "44054006"),
    ]
    codes = condition_codes(coded(events(spark, rows), definitions))
    row = conditions_at(codes, ages(spark, p=60), definitions.conditions, AS_OF).collect()[0]
    assert (row.condition, row.first_recorded, row.first_source, row.last_recorded, row.records, row.sources) == (
        "diabetes",
        date(2024, 7, 1),
        "inpatient",
        date(2025, 9, 1),
        3,
        ["gp_events", "inpatient"],
    )


def test_a_resolution_counts_in_no_diagnosis_figure_and_alone_makes_no_register(spark, definitions):
    rows = [
        event("p", "2023-01-01", "162659009"),  # hypertension resolved (GP) before any diagnosis of it
        event("p", "2024-01-01", "I10X", source="inpatient"),
        event("q", "2024-01-01", "162659009"),  # a resolution only
    ]
    codes = condition_codes(coded(events(spark, rows), definitions))
    found = conditions_at(codes, ages(spark, p=60, q=60), definitions.conditions, AS_OF).collect()
    assert [(r.person_id, r.condition, r.first_recorded, r.first_source, r.last_recorded, r.records, r.sources)
            for r in found] == [
        ("p", "hypertension", date(2024, 1, 1), "inpatient", date(2024, 1, 1), 1, ["inpatient"])
    ]  # fmt: skip


def test_register_minimum_age_boundary(spark, definitions):
    rows = [event("aged17", "2025-01-01", "44054006"), event("aged16", "2025-01-01", "44054006")]
    assert current(spark, definitions, rows, aged17=17, aged16=16) == {("aged17", "diabetes")}


def test_within_years_rule_boundary(spark, definitions):
    # pregnancy: the latest code within 1 year of the reference date
    rows = [event("inside", "2025-04-01", "77386006"), event("edge", "2025-03-31", "77386006")]
    assert current(spark, definitions, rows, inside=30, edge=30) == {("inside", "pregnancy")}


# -- events: costs, flags, social care -------------------------------------------------------------------------
INPATIENT = (
    "spell_id string, period string, admission_date date, discharge_date date, admission_method string, "
    "patient_classification string, primary_diagnosis string, primary_procedure string, age_at_event int"
)
SOCIAL_CARE = (
    "event_ref string, period string, record_type string, service_type string, start_date date, "
    "end_date date, hours_per_week double, weekly_cost double, age_at_event int"
)


def links(spark, source, pairs):
    return spark.createDataFrame(
        [(source, r, p) for r, p in pairs], "source string, record_id string, person_id string"
    )


def spell(spell_id, admitted, days, method, diagnosis=None, procedure=None, classification="1", age=70):
    start = date.fromisoformat(admitted)
    return (
        spell_id,
        "2025-06",
        start,
        date.fromordinal(start.toordinal() + days),
        method,
        classification,
        diagnosis,
        procedure,
        age,
    )


def test_admission_costs_and_flags(spark, definitions):
    spells = [
        spell("long", "2025-06-01", 7, "21", "J189"),  # emergency, 2 excess bed days, not ACSC (J18.9)
        spell("asthma", "2025-06-02", 1, "21", "J459"),  # ACSC
        spell("dm_none", "2025-06-03", 1, "21", "E119"),  # diabetes without complication: not ACSC
        spell("dm_comp", "2025-06-04", 1, "21", "E115"),  # diabetes complication .5: ACSC
        spell("fall65", "2025-06-05", 9, "21", "S720", age=65),  # fall admission at 65+
        spell("fall64", "2025-06-06", 2, "21", "W19X", age=64),  # fall, under 65: ordinary cost
        spell("daycase", "2025-06-07", 0, "11", procedure="H229", classification="2"),
        spell("elective", "2025-06-08", 8, "12", procedure="W371"),  # 3 excess bed days
        spell("asthma_el", "2025-06-09", 1, "11", "J459"),  # elective: never ACSC
        spell("maternity", "2025-06-10", 2, "31", "O800"),
    ]
    silver = {"inpatient": spark.createDataFrame(spells, INPATIENT)}
    linked = links(spark, "inpatient", [(s[0], "p") for s in spells])
    built = build_events(silver, {"inpatient": "spell_id"}, linked, definitions, AS_OF)
    got = {r.record_id: (r.activity, r.cost, r.emergency, r.acsc, r.fall, r.length_of_stay) for r in built.collect()}
    assert got == {
        "long": ("emergency_admission", 1590 + 2 * 313, True, False, False, 7),
        "asthma": ("emergency_admission", 1590.0, True, True, False, 1),
        "dm_none": ("emergency_admission", 1590.0, True, False, False, 1),
        "dm_comp": ("emergency_admission", 1590.0, True, True, False, 1),
        "fall65": ("emergency_admission", 4088.0, True, False, True, 9),
        "fall64": ("emergency_admission", 1590.0, True, False, True, 2),
        "daycase": ("day_case", 738.0, False, False, False, 0),
        "elective": ("elective_admission", 3684 + 3 * 313, False, False, False, 8),
        "asthma_el": ("elective_admission", 3684.0, False, False, False, 1),
        "maternity": ("maternity_admission", 1590.0, False, False, False, 2),
    }


def test_social_care_packages_pair_starts_with_ends_one_to_one(spark, definitions):
    d = date.fromisoformat
    rows = [
        ("s1", "2025-01", "Start", "home_care", d("2025-01-01"), None, 10.0, 250.0, 80),
        ("e1", "2025-02", "End", "home_care", None, d("2025-02-04"), 10.0, 250.0, 80),
        ("s2", "2025-03", "Start", "home_care", d("2025-03-01"), None, 10.0, 250.0, 80),  # still running
        ("s3", "2025-03", "Start", "nursing_home", d("2026-03-25"), None, None, None, 80),  # no weekly cost
        ("e0", "2025-01", "End", "residential_home", None, d("2025-01-10"), None, 916.0, 80),  # no start
        # overlapping: both starts' first end is e5; it closes the later one, the earlier stays open
        ("s4", "2025-01", "Start", "home_care", d("2025-01-05"), None, 5.0, 140.0, 90),
        ("s5", "2025-01", "Start", "home_care", d("2025-01-20"), None, 5.0, 140.0, 90),
        ("e5", "2025-02", "End", "home_care", None, d("2025-02-01"), 5.0, 140.0, 90),
        ("s6", "2025-03", "Start", "home_care", None, None, 1.0, 7.0, 50),  # no start date: dated by its month
    ]
    silver = {"social_care": spark.createDataFrame(rows, SOCIAL_CARE)}
    owners = [
        ("s1", "p"),
        ("e1", "p"),
        ("s2", "p"),
        ("s3", "p"),
        ("e0", "p"),
        ("s4", "q"),
        ("s5", "q"),
        ("e5", "q"),
        ("s6", "r"),
    ]
    built = build_events(silver, {"social_care": "event_ref"}, links(spark, "social_care", owners), definitions, AS_OF)
    got = {r.record_id: (r.activity, r.end_date, r.daily_cost, r.cost) for r in built.collect()}
    assert got == {
        "s1": ("care_package", d("2025-02-04"), 250 / 7, 250 / 7 * 35),
        "s2": ("care_package", None, 250 / 7, 250 / 7 * 396),  # 1 Mar 2025 to 31 Mar 2026 inclusive
        "s3": ("care_home_placement", None, 1026 / 7, 1026 / 7 * 7),
        "e0": ("care_end_without_start", None, None, 0.0),
        "s4": ("care_package", None, 20.0, 20.0 * 451),
        "s5": ("care_package", d("2025-02-01"), 20.0, 20.0 * 13),
        "s6": ("care_package", None, 1.0, 396.0),
    }


# -- observations ----------------------------------------------------------------------------------------------
def test_latest_plausible_reading_and_smoking_status(spark, definitions):
    rows = [
        event("p", "2025-01-01", "163020007", value=150.0, value2=90.0),
        event("p", "2025-06-01", "163020007", value=128.0, value2=80.0),
        event("p", "2025-09-01", "163020007", value=999.0, value2=80.0),  # implausible: kept, not latest
        event("p", "2026-05-01", "163020007", value=120.0, value2=70.0),  # after the reference date
        event("p", "2024-01-01", "77176002"),
        event("p", "2025-02-01", "8517006"),
        event("p", "2025-02-01", "185316007"),  # a consultation, not an observation
    ]
    got = observations(events(spark, rows), definitions.observations, AS_OF)
    readings = sorted(
        (r.observation, str(r.event_date), r.value, r.category, r.plausible, r.is_latest) for r in got.collect()
    )
    assert readings == [
        ("blood_pressure", "2025-01-01", 150.0, None, True, False),
        ("blood_pressure", "2025-06-01", 128.0, None, True, True),
        ("blood_pressure", "2025-09-01", 999.0, None, False, False),
        ("smoking_status", "2024-01-01", None, "current_smoker", True, False),
        ("smoking_status", "2025-02-01", None, "ex_smoker", True, True),
    ]


# -- scores ----------------------------------------------------------------------------------------------------
def conditions_frame(spark, rows):
    return spark.createDataFrame(
        [(p, c, date.fromisoformat(first)) for p, c, first in rows],
        "person_id string, condition string, first_recorded date",
    )


def test_cambridge_multimorbidity_score(spark, segmentation):
    rows = [
        ("a", "anxiety", "2020-01-01"),
        ("a", "depression", "2020-01-01"),  # one weight: 0.50
        ("a", "hypertension", "2020-01-01"),  # 0.08
        ("b", "cancer", "2021-04-01"),  # first recorded within 5 years: 1.53
        ("c", "cancer", "2021-03-31"),  # 5 years before: not counted
        ("c", "dementia", "2025-01-01"),  # 2.50
    ]
    scores = cambridge_multimorbidity_score(
        conditions_frame(spark, rows), segmentation.cambridge_multimorbidity_score, AS_OF
    )
    assert {r.person_id: r.cms_score for r in scores.collect()} == {"a": 0.58, "b": 1.53, "c": 2.5}


def test_efi_deficits_score_categories_and_age(spark, definitions, segmentation):
    efi = segmentation.electronic_frailty_index
    assert len(efi.deficits) == 36
    # one code for each of 13 different deficits (dizziness, dyspnoea, falls, foot problems, fragility fracture,
    # housebound, hypotension, mobility, osteoporosis, parkinsonism, peptic ulcer, PVD, skin ulcer)
    codes = [
        "R42X",
        "R060",
        "W19X",
        "M201",
        "S525",
        "160689007",
        "I959",
        "R263",
        "M810",
        "G20X",
        "K259",
        "I739",
        "L890",
    ]
    per = {"fit": 3, "mild_low": 4, "mild_high": 8, "moderate_low": 9, "moderate_high": 12, "severe": 13, "young": 13}
    rows = [event(p, "2024-01-01", code, source="inpatient") for p, n in per.items() for code in codes[:n]]
    rows += [event("mild_high", "2025-01-01", "R42X")]  # the same deficit again
    rows += [event("fit", "2026-05-01", "R32X", source="inpatient")]  # after the reference date
    running = spark.createDataFrame([("mild_low", "home_care")], "person_id string, service string")
    conditions = conditions_frame(spark, [("fit", "atrial_fibrillation", "2020-01-01")])
    deficits = efi_deficits(coded(events(spark, rows), definitions, segmentation), conditions, running, efi, AS_OF)
    people = {
        "fit": 65,
        "mild_low": 70,
        "mild_high": 80,
        "moderate_low": 80,
        "moderate_high": 90,
        "severe": 90,
        "young": 64,
        "none": 75,
    }
    scored = electronic_frailty_index(deficits, ages(spark, **people), efi)
    got = {r.person_id: (r.efi_deficits, r.efi_score, r.efi_category) for r in scored.collect()}
    assert got == {
        "fit": (4, 0.1111, "fit"),  # 3 codes + atrial fibrillation
        "mild_low": (5, 0.1389, "mild"),  # 4 codes + requirement for care (home care running)
        "mild_high": (8, 0.2222, "mild"),
        "moderate_low": (9, 0.25, "moderate"),
        "moderate_high": (12, 0.3333, "moderate"),
        "severe": (13, 0.3611, "severe"),
        "none": (0, 0.0, "fit"),
    }  # "young" (64) has no eFI


# -- annual cost -----------------------------------------------------------------------------------------------
def test_annual_cost_counts_the_twelve_months_and_spans_pro_rata(spark):
    rows = [
        event("p", "2025-03-31", activity="ae_attendance", service="ae", cost=148.0),  # the day before the year
        event("p", "2025-04-01", activity="ae_attendance", service="ae", cost=148.0),  # first day of the year
        event("p", "2026-03-31", activity="emergency_admission", service="acute", cost=1590.0, emergency=True),
        event("p", "2026-04-01", activity="ae_attendance", service="ae", cost=148.0),  # after the reference date
        # a package from before the year, running 10 days into it, at 20 a day
        event(
            "p", "2024-01-01", activity="care_package", service="social_care", cost=9999.0, end="2025-04-10", daily=20.0
        ),
        event("p", "2025-03-31", activity="housing_case", service="housing", cost=0.0),  # before the year
        event("p", "2025-11-02", activity="housing_case", service="housing", cost=0.0),
    ]
    row = activity_in_year(events(spark, rows), AS_OF).collect()[0]
    assert (row.emergency_admissions_12m, row.ae_attendances_12m, row.annual_cost) == (1, 1, 148 + 1590 + 200.0)
    assert row.housing_cases_12m == 1


# -- many dates at once ----------------------------------------------------------------------------------------
EARLIER, LATER = date(2025, 6, 30), date(2026, 3, 31)


def test_segments_at_many_dates_in_one_query_equal_one_query_per_date(spark, definitions, segmentation):
    """segments_by_date (the actuarial history; features use the same *_by_date parts for their index dates) on
    people whose conditions, frailty, care and activity differ between the two dates: the earlier date's rows
    of one query for both equal those of a query for it alone."""
    rows = [
        event("a", "2024-01-01", "38341003"),  # hypertension at the earlier date, resolved before the later
        event("a", "2025-09-01", "162659009"),
        event("a", "2025-08-01", "W19X", source="inpatient"),  # a fall (an eFI deficit) after the earlier date
        event("a", "2025-05-01", activity="emergency_admission", service="acute", cost=1590.0, emergency=True),
        event("b", "2025-01-01", "52448006"),  # dementia from before both
        event("b", "2025-03-01", activity="care_package", service="social_care", setting="home_care", cost=0.0,
              end="2025-12-31", daily=20.0),  # running on the earlier date only
        event("c", "2024-05-01", activity="gp_consultation", cost=42.0),
        event("c", "2026-01-15", "38341003"),  # hypertension known only at the later date
    ]  # fmt: skip
    frame = events(spark, rows)
    matched = coded(frame, definitions, segmentation)
    person = spark.createDataFrame(
        [
            (p, age, None, "F", None, 3, "P1", "N1", "L1", False, LATER)
            for p, age in {"a": 70, "b": 82, "c": 66}.items()
        ],
        f"{PERSON}, reference_date date",
    )
    keep = (
        "person_id", "reference_date", "age", "segment", "conditions", "long_term_conditions", "cms_score",
        "efi_deficits", "emergency_admissions_12m", "annual_cost", "social_care",
    )  # fmt: skip

    def segments(dates):
        built = segments_by_date(person, frame, matched, definitions.conditions, segmentation, dates)
        return {(r.person_id, r.reference_date): tuple(r) for r in built.select(*keep).collect()}

    together = segments([EARLIER, LATER])
    # the earlier date alone: nothing recorded by the later date (conditions, care, activity) leaks back into it
    assert {key: row for key, row in together.items() if key[1] == EARLIER} == segments([EARLIER])
    for person_id in "abc":  # and the dates do differ for each person
        assert together[(person_id, EARLIER)][2:] != together[(person_id, LATER)][2:], person_id
    assert together[("b", EARLIER)][-1] == ["home_care"] and together[("b", LATER)][-1] == []


def test_the_history_taken_from_gold_segments_at_its_last_date_equals_the_history_built_whole(
    spark, definitions, segmentation
):
    """actuarial's history with its last date read from gold.segments (built by the segment stage from
    gold.conditions) holds the rows of the history built whole, and leaves out, as that does, a person of
    gold.person not seen in any source."""
    rows = [
        event("a", "2024-01-01", "38341003"),
        event("a", "2025-09-01", "162659009"),  # hypertension resolved between the dates
        event("a", "2025-05-01", activity="emergency_admission", service="acute", cost=1590.0, emergency=True),
        event("b", "2025-01-01", "52448006"),
        event("b", "2026-01-10", activity="emergency_admission", service="acute", cost=1590.0, emergency=True),
        event("c", "2025-08-01", activity="gp_consultation", cost=42.0),  # seen after the earlier date only
    ]
    frame = events(spark, rows)
    matched = coded(frame, definitions, segmentation)
    bands = {"a": (70, "70-74"), "b": (82, "80-84"), "c": (66, "65-69"), "unseen": (50, "50-54")}
    person = spark.createDataFrame(
        [(p, age, band, "F", None, 3, "P1", "N1", "L1", False, LATER) for p, (age, band) in bands.items()],
        f"{PERSON}, reference_date date",
    )
    conditions = conditions_at(
        condition_codes(matched), person.select("person_id", "age"), definitions.conditions, str(LATER)
    )
    gold_segments = build_segments(
        person, conditions.withColumn("reference_date", F.lit(LATER)), frame, matched, definitions.conditions,
        segmentation, str(LATER),
    )  # fmt: skip
    assert "unseen" in {r.person_id for r in gold_segments.collect()}

    def history(latest=None):
        built = segment_history(person, frame, matched, definitions.conditions, segmentation, [EARLIER, LATER], latest)
        return sorted(tuple(r) for r in built.collect())

    whole = history()
    assert history(gold_segments) == whole
    assert {(r[0], r[1]) for r in whole} == {("a", EARLIER), ("b", EARLIER), ("a", LATER), ("b", LATER), ("c", LATER)}


# -- Bridges to Health -----------------------------------------------------------------------------------------
PERSON = (
    "person_id string, age int, age_band string, sex string, ethnicity string, imd_quintile int, "
    "practice_code string, pcn_code string, place_code string, deceased boolean"
)


def test_every_segment_and_its_priority(spark, definitions, segmentation):
    people = {
        "eol_palliative": 70,
        "eol_cancer_decline": 60,
        "frail_dementia_and_cancer": 85,
        "frail_care_home": 88,
        "organ_hf_admitted": 75,
        "ltc_hf_not_admitted": 75,
        "organ_ckd5": 50,
        "disability_ld": 30,
        "ltc_asthma_infant": 0,
        "maternal_infant": 0,
        "maternal_pregnant": 28,
        "acute_ae": 40,
        "healthy": 40,
        "dead": 50,
        "cancer_once_admitted": 60,
    }
    person = spark.createDataFrame(
        [(p, age, None, "F", None, 3, "P1", "N1", "L1", p == "dead") for p, age in people.items()], PERSON
    )
    held = [
        ("eol_palliative", "palliative_care"),
        ("eol_palliative", "dementia"),
        ("eol_cancer_decline", "cancer"),
        ("frail_dementia_and_cancer", "dementia"),
        ("frail_dementia_and_cancer", "cancer"),
        ("organ_hf_admitted", "heart_failure"),
        ("ltc_hf_not_admitted", "heart_failure"),
        ("organ_ckd5", "ckd_stage_4_5"),
        ("organ_ckd5", "chronic_kidney_disease"),
        ("disability_ld", "learning_disability"),
        ("disability_ld", "asthma"),
        ("ltc_asthma_infant", "asthma"),
        ("maternal_pregnant", "pregnancy"),
        ("cancer_once_admitted", "cancer"),
        ("dead", "dementia"),
    ]
    conditions = conditions_frame(spark, [(p, c, "2025-01-01") for p, c in held])
    admitted = dict(activity="emergency_admission", service="acute", cost=1590.0, emergency=True)
    rows = [
        event("eol_cancer_decline", "2025-06-01", **admitted),
        event("eol_cancer_decline", "2025-09-01", **admitted),
        event("frail_dementia_and_cancer", "2025-06-01", **admitted),
        event("frail_dementia_and_cancer", "2025-07-01", **admitted),
        event("organ_hf_admitted", "2025-06-01", **admitted),
        event("ltc_hf_not_admitted", "2024-06-01", **admitted),  # more than a year ago
        event("acute_ae", "2025-12-01", activity="ae_attendance", service="ae", cost=148.0),
        event("cancer_once_admitted", "2025-12-01", **admitted),
        event(
            "frail_care_home",
            "2025-01-01",
            activity="care_home_placement",
            service="social_care",
            setting="nursing_home",
            daily=146.57,
            cost=0.0,
        ),
    ]
    frame = events(spark, rows)
    built = build_segments(
        person, conditions, frame, coded(frame, definitions, segmentation), definitions.conditions, segmentation, AS_OF
    )
    got = {r.person_id: r.segment for r in built.collect()}
    assert got == {
        "eol_palliative": "end_of_life",
        "eol_cancer_decline": "end_of_life",
        "frail_dementia_and_cancer": "end_of_life",  # cancer with 2 emergency admissions outranks dementia
        "frail_care_home": "frailty_dementia",
        "organ_hf_admitted": "organ_failure",
        "ltc_hf_not_admitted": "long_term_conditions",
        "organ_ckd5": "organ_failure",
        "disability_ld": "disability",
        "ltc_asthma_infant": "long_term_conditions",
        "maternal_infant": "maternal_infant",
        "maternal_pregnant": "maternal_infant",
        "acute_ae": "acute_illness",
        "healthy": "healthy",
        "cancer_once_admitted": "long_term_conditions",
    }  # the dead have no segment
    row = built.where(F.col("person_id") == "disability_ld").collect()[0]
    assert (row.conditions, row.long_term_conditions, row.cms_score, row.efi_category) == (
        ["asthma", "learning_disability"],
        2,
        0.19,
        None,
    )
    care_home = built.where(F.col("person_id") == "frail_care_home").collect()[0]
    assert care_home.social_care == ["nursing_home"] and care_home.annual_cost == pytest.approx(146.57 * 365)


def test_segmentation_names_only_conditions_with_code_lists(segmentation, definitions):
    broken = segmentation.model_copy(deep=True)
    broken.bridges_to_health.segments[0].any[0].conditions.append("unicorn_syndrome")
    with pytest.raises(ConfigError, match="unicorn_syndrome have no code list"):
        check_against_codelists(broken, definitions.conditions, "segmentation.yaml")


# -- recorded vs true prevalence -------------------------------------------------------------------------------
def test_ascertainment_compares_recorded_with_true_prevalence(spark):
    d = date.fromisoformat
    person = spark.createDataFrame(
        [("p1", 1, False), ("p2", 1, False), ("p3", 5, False), ("p4", 5, True)],
        "person_id string, imd_quintile int, deceased boolean",
    )
    conditions = spark.createDataFrame(
        [("p1", "diabetes"), ("p3", "diabetes"), ("p4", "diabetes"), ("p1", "pregnancy")],
        "person_id string, condition string",
    )
    truth_person = spark.createDataFrame(
        [
            ("t1", 1, d("2000-01-01"), None, d("1960-01-01")),
            ("t2", 2, d("2000-01-01"), None, d("1960-01-01")),
            ("t3", 10, d("2000-01-01"), None, d("1960-01-01")),
            ("t4", 9, d("2000-01-01"), d("2025-01-01"), d("1960-01-01")),  # dead
            ("t5", 9, d("2026-04-01"), None, d("1960-01-01")),  # registered after the reference date
            ("t6", 1, d("2000-01-01"), None, d("2010-01-01")),  # 16: under the register's age
        ],
        "true_person_id string, imd_decile int, registered_on date, death_date date, date_of_birth date",
    )
    truth_conditions = spark.createDataFrame(
        [
            ("t1", "diabetes", d("2020-01-01"), d("2021-01-01")),
            ("t2", "diabetes", d("2020-01-01"), None),  # undiagnosed
            ("t3", "diabetes", d("2020-01-01"), d("2026-04-01")),  # coded after the reference date
            ("t4", "diabetes", d("2020-01-01"), d("2020-01-01")),
            ("t6", "diabetes", d("2020-01-01"), d("2020-01-01")),
        ],
        "true_person_id string, condition string, onset_date date, diagnosed_date date",
    )
    got = {
        r.imd_quintile: (r.persons, r.recorded, r.true_persons, r.true_cases, r.true_coded, r.recorded_to_true)
        for r in ascertainment(person, conditions, truth_person, truth_conditions, AS_OF, {"diabetes": 17}).collect()
    }
    assert got == {
        "1": (2, 1, 3, 2, 1, 0.5),
        "5": (1, 1, 1, 1, 0, 1.0),
        "all": (3, 2, 4, 3, 1, 2 / 3),
    }


def test_evaluation_jobs_say_how_to_run_without_a_truth_store(fresh_config):
    from phm.errors import UserError
    from phm.synthetic.truth import truth_store

    with pytest.raises(UserError, match=r"evaluate_person_model: no truth store at .*refresh.exclude: \[evaluate_pe"):
        truth_store(fresh_config, "evaluate_person_model", "person_condition")
