"""`phm run generate` on small populations: determinism, truth mapping, monthly increments, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm.config import load_config
from phm.errors import UserError
from phm.runtime.catalog import Catalog
from phm.runtime.jobs import discover_jobs, run_job
from phm.synthetic.extracts import EXTRACT_FORMATS
from phm.tables import JOB_RUNS

from ..conftest import TEST_CONFIG, test_overrides

pytestmark = pytest.mark.slow

SMALL = ["synthetic.population=3000", "synthetic.people_per_block=1000", "synthetic.history_months=6",
         "synthetic.seed=11", "synthetic.index_dates=[2025-12-31]"]  # fmt: skip
SOURCE_IDS = {"gp_registrations": "record_id", "gp_events": "record_id", "inpatient": "SpellID",
              "ae": "attendance_id", "outpatient": "appointment_id", "deaths": "record_id",
              "community": "contact_id", "mental_health": "contact_id", "social_care": "EventRef",
              "housing": "CaseRef"}  # fmt: skip


def generate(base: Path, *extra: str):
    config = load_config(str(TEST_CONFIG), [*test_overrides(base), *SMALL, *extra])
    from phm.runtime.spark import get_spark

    run_job(discover_jobs()["generate"], config, get_spark(config))
    return config


def extract_lines(landing: Path) -> dict[str, list[str]]:
    """Every text extract's lines by file, sorted (Spark may write rows of a period in any order)."""
    return {str(path.relative_to(landing)): sorted(path.read_text().splitlines()) for path in landing.rglob("*.csv")}


def read_extract(spark, landing: Path, source: str):
    path = str(landing / source / "*")
    if EXTRACT_FORMATS[source].file_format == "parquet":
        return spark.read.parquet(path)
    return spark.read.option("header", True).csv(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory, spark):
    base = tmp_path_factory.mktemp("small")
    return base, generate(base)


def test_layout_periods_formats_and_ledger(small, spark):
    base, config = small
    landing = base / "landing"
    for source in EXTRACT_FORMATS:
        assert sorted(p.name for p in (landing / source).iterdir()) == [
            "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]  # fmt: skip
    # One file a period, named as a supplier names its deliveries (not Spark's part-<write uuid> names).
    assert [p.name for p in (landing / "ae" / "2026-03").iterdir()] == ["ae_202603.parquet"]
    assert [p.name for p in (landing / "inpatient" / "2026-03").iterdir()] == ["inpatient_202603.csv"]
    header = (landing / "inpatient" / "2026-03" / "inpatient_202603.csv").read_text().splitlines()[0]
    assert header.startswith("SpellID,NHSNumber,Forename,Surname,DOB,Gender,Postcode,GPPractice,AdmissionDate")
    inpatient = read_extract(spark, landing, "inpatient")
    assert inpatient.where(~F.col("AdmissionDate").rlike(r"^\d{2}/\d{2}/\d{4}$")).count() == 0
    assert (landing / "reference" / "static" / "practices.csv").is_file()
    assert (landing / "local_authority" / "static" / "lsoa_imd.csv").is_file()
    [run] = Catalog(spark, config.resolve(config.paths.warehouse)).read(JOB_RUNS.name).collect()
    assert run["job"] == "generate" and run["status"] == "succeeded" and run["rows_out"] > 10_000


def test_another_seed_gives_other_extracts(small, tmp_path):
    """(The same seed giving the same extracts, line for line, is the monthly-increments test below.)"""
    base, _ = small
    other = tmp_path / "other"
    generate(other, "synthetic.seed=12", "synthetic.until=2025-10")  # the first month is enough to differ
    theirs, ours = extract_lines(other / "landing"), extract_lines(base / "landing")
    assert theirs.keys() <= ours.keys() and theirs != {key: ours[key] for key in theirs}


def test_every_record_maps_to_exactly_one_true_person(small, spark):
    base, _ = small
    truth = spark.read.parquet(str(base / "truth" / "record_person"))
    assert truth.count() == truth.select("source", "record_id").distinct().count()
    people = spark.read.parquet(str(base / "truth" / "person"))
    assert truth.join(people, "true_person_id", "left_anti").count() == 0
    for source, id_column in SOURCE_IDS.items():
        ids = read_extract(spark, base / "landing", source).select(F.col(id_column).alias("record_id")).distinct()
        mapped = ids.join(truth.where(F.col("source") == source), "record_id", "left_anti")
        assert ids.count() > 0 and mapped.count() == 0, source


def test_injected_defects_are_in_the_extracts(small, spark):
    base, _ = small
    defects = spark.read.parquet(str(base / "truth" / "injected_defects"))
    events = read_extract(spark, base / "landing", "gp_events")
    malformed = defects.where((F.col("source") == "gp_events") & (F.col("defect") == "malformed_date"))
    assert malformed.count() > 0
    rows = events.join(malformed, "record_id").select("event_date").distinct().collect()
    assert all(r["event_date"].endswith("-02-30") for r in rows)
    duplicated = defects.where(F.col("defect") == "exact_duplicate").where(F.col("source") == "gp_events")
    counts = events.join(duplicated, "record_id").groupBy("record_id").count()
    assert counts.count() == duplicated.count() and counts.where("count != 2").count() == 0


def test_damaged_lines_are_the_ones_the_truth_lists(small, spark):
    base, _ = small
    damaged = {
        r["record_id"]: (r["source"], r["defect"])
        for r in spark.read.parquet(str(base / "truth" / "injected_defects"))
        .where(F.col("defect").isin("truncated_line", "stray_delimiter", "wrong_type"))
        .collect()
    }
    assert len(damaged) > 0
    seen = {}
    for path in (base / "landing").rglob("*.csv"):
        lines = path.read_text().split("\n")
        width = len(lines[0].split(","))
        for line in lines[1:]:
            record_id = line.split(",")[0]
            if record_id in damaged:
                seen[record_id] = (damaged[record_id][1], len(line.split(",")) - width, "see notes" in line)
    assert set(seen) == set(damaged)
    for kind, extra_fields, text_in_number in seen.values():
        if kind == "truncated_line":
            assert extra_fields < 0
        elif kind == "stray_delimiter":
            assert extra_fields == 1
        else:
            assert text_in_number


def test_council_sources_key_people_by_their_own_reference(small, spark):
    base, _ = small
    social = read_extract(spark, base / "landing", "social_care")
    assert social.count() > 0
    starts = social.where(F.col("RecordType") == "Start")
    assert starts.where(~F.col("StartDate").rlike(r"^\d{2}-\d{2}-\d{4}$")).count() == 0  # dd-MM-yyyy, even when bad
    assert 0.5 < social.where(F.col("NHSNo").isNotNull()).count() / social.count() < 0.95  # often missing
    housing = read_extract(spark, base / "landing", "housing")
    assert housing.count() > 0 and not {"NHSNo", "NHSNumber", "nhs_number"} & set(housing.columns)  # none held
    assert housing.where(~F.col("ApproachDate").rlike(r"^\d{2}/\d{2}/\d{4}$")).count() == 0
    truth = spark.read.parquet(str(base / "truth" / "record_person"))
    for extract, record_id, reference, prefix in ((social, "EventRef", "ClientRef", "SC"),
                                                  (housing, "CaseRef", "ApplicantRef", "HC")):  # fmt: skip
        refs = (
            extract.join(truth, extract[record_id] == truth["record_id"])
            .groupBy("true_person_id")
            .agg(F.countDistinct(reference).alias("refs"), F.min(reference).alias("ref"))
        )
        assert refs.where("refs != 1").count() == 0  # one reference per person, stable across records
        assert refs.where(~F.col("ref").startswith(prefix)).count() == 0


def test_truth_store_contents(small, spark):
    base, _ = small
    people = spark.read.parquet(str(base / "truth" / "person"))
    assert people.count() == 3000
    assert people.where(~F.col("nhs_number").rlike(r"^999\d{7}$")).count() == 0
    risk = spark.read.parquet(str(base / "truth" / "admission_risk"))
    assert risk.where((F.col("p_emergency_12m") <= 0) | (F.col("p_emergency_12m") >= 1)).count() == 0
    assert spark.read.parquet(str(base / "truth" / "canaries")).count() == 5
    conditions = spark.read.parquet(str(base / "truth" / "person_condition"))
    assert conditions.where(~F.col("coded_flag")).count() > 0  # undiagnosed conditions exist
    report = json.loads((base / "truth" / "calibration_report.json").read_text())
    assert {"group", "name", "value", "target", "within"} <= set(report[0])


def test_monthly_increments_add_only_new_periods_and_match_a_full_run(small, tmp_path):
    """Generated again with the same seed, a month at a time: the same extracts, line for line."""
    base, _ = small
    stepwise = tmp_path / "stepwise"
    generate(stepwise, "synthetic.until=2025-12")
    assert sorted(p.name for p in (stepwise / "landing" / "gp_events").iterdir()) == ["2025-10", "2025-11", "2025-12"]
    first_files = {p: p.stat().st_mtime_ns for p in (stepwise / "landing").rglob("*.csv")}
    generate(stepwise)
    assert extract_lines(stepwise / "landing") == extract_lines(base / "landing")
    assert all(p.stat().st_mtime_ns == t for p, t in first_files.items())  # delivered months untouched


def test_a_different_config_cannot_add_to_existing_landing(small):
    base, _ = small
    with pytest.raises(UserError, match="holds extracts generated with another seed"):
        generate(base, "synthetic.seed=99")


@pytest.fixture(scope="module")
def mid_sized(tmp_path_factory) -> Path:
    """20,000 people over 3 years (the `make run` sample), generated once for the calibration tests."""
    base = tmp_path_factory.mktemp("mid_sized")
    generate(base, "synthetic.population=20000", "synthetic.people_per_block=5000", "synthetic.history_months=36",
             "synthetic.seed=20261122", "synthetic.index_dates=[2025-03-31]")  # fmt: skip
    return base


def test_calibration_on_a_mid_sized_sample(mid_sized):
    """Every figure within tolerance or a named known gap."""
    report = json.loads((mid_sized / "truth" / "calibration_report.json").read_text())
    outside = [f"{f['group']}: {f['name']} = {f['value']:.4g} (target {f['target']:.4g})"
               for f in report if not f["within"] and not f["known_gap"]]  # fmt: skip
    assert outside == []
    assert len(report) > 60
    auc = next(f for f in report if f["group"] == "risk")
    assert 0.72 <= auc["value"] <= 0.88
    cost = next(f for f in report if f["group"] == "cost")
    assert cost["within"]


def test_programme_referral_is_confounded_and_effects_differ(mid_sized, spark):
    """Referred people are riskier than eligible people not referred; effects vary by group."""
    programme = spark.read.parquet(str(mid_sized / "truth" / "programme"))
    eligible = programme.where("eligible_flag")
    assert programme.where("eligible_flag AND NOT practice_adopted_flag").count() == 0
    risk = {
        r["referred"]: r["risk"]
        for r in eligible.groupBy(F.col("referred_on").isNotNull().alias("referred"))
        .agg(F.avg("p_emergency_12m_untreated").alias("risk")).collect()
    }  # fmt: skip
    assert risk[True] > 1.3 * risk[False]  # clinicians referred the sicker: naive comparisons are biased
    enrolled = programme.where("enrolled_flag")
    effects = {r["true_relative_effect"] for r in enrolled.select("true_relative_effect").distinct().collect()}
    assert len(effects) >= 3 and max(effects) == pytest.approx(0.35)
    assert enrolled.where(F.col("true_effect") < 0).count() == 0
    register = read_extract(spark, mid_sized / "landing", "programme")
    # every referral delivered (some twice: exact duplicate lines are injected defects)
    referred = programme.where(F.col("referred_on").isNotNull()).count()
    assert register.select("referral_id").distinct().count() == referred
    assert {r["outcome"] for r in register.select("outcome").distinct().collect()} == {"enrolled", "declined"}
