"""`phm run ingest` on small crafted extracts: actions, accounting, re-deliveries, repeats, drift, bad lines."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm import cli
from phm.config import load_config
from phm.ingest.pseudonymise import reference_pseudonym
from phm.runtime.catalog import Catalog
from phm.runtime.jobs import discover_jobs, run_job
from phm.tables import DATA_QUALITY, IDENTITY, INGEST_FILES, JOB_RUNS, LANDED_ROWS, QUARANTINE

from ..conftest import TEST_CONFIG, TEST_KEY_HEX, test_overrides

pytestmark = pytest.mark.slow

PRACTICES = "practice_code,practice_name,pcn_code,place_code,pcn_name,place_name\nQ00001,P1,U00001,PL01,N1,L1\n"
POSTCODES = "postcode,lsoa_code\nQA1 1AB,E09900000\nQA1 2AB,E09900001\n"
LSOAS = "lsoa_code,imd_decile,pcn_code,place_code\nE09900000,2,U00001,PL01\nE09900001,9,U00001,PL01\n"
INPATIENT_HEADER = (
    "SpellID,NHSNumber,Forename,Surname,DOB,Gender,Postcode,GPPractice,AdmissionDate,DischargeDate,"
    "AdmissionMethod,PatientClassification,PrimaryDiagnosis,PrimaryProcedure"
)
JANUARY = [
    "s1,9990000018,Ann,Smith,02/05/1939,2,qa11ab,Q00001,10/01/2026,12/01/2026,21,1,S72.1,",  # clean
    "s2,,Bob,Jones,28/12/1986,1,QA1 2AB,Q00001,11/01/2026,11/01/2026,11,2,,W371",  # no NHS number: warn
    "s3,9990000026,Cy,Ng,01/01/1950,9,QA1 2AB,Q00009,30/02/2026,,21,1,J189,",  # bad date: quarantine
    "s4,9990000034,Di,O'Neil,01/01/1960,2,QA1 1AB,Q00001,11/01/2026,,21,1,J18,9,",  # stray comma: malformed
    "s1,9990000018,Ann,Smith,02/05/1939,2,qa11ab,Q00001,10/01/2026,12/01/2026,21,1,S72.1,",  # duplicate
    "s5,9990000042,Ed,Ray,01/01/1950,1,QA1 1AB,Q00001,11/01/2026,,99,1,ZZZ99,",  # bad method & code
]
FEBRUARY = ["s6,9990000050,Flo,Lee,03/03/1980,2,QA1 2AB,Q00001,02/02/2026,03/02/2026,21,1,I10X,"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def deliver(landing: Path, period: str, lines: list[str], header: str = INPATIENT_HEADER, name="spells.csv") -> Path:
    return write(landing / "inpatient" / period / name, "\n".join([header, *lines]) + "\n")


def crafted(base: Path):
    landing = base / "landing"
    write(landing / "reference" / "static" / "practices.csv", PRACTICES)
    write(landing / "reference" / "static" / "postcode_lsoa.csv", POSTCODES)
    write(landing / "local_authority" / "static" / "lsoa_imd.csv", LSOAS)
    deliver(landing, "2026-01", JANUARY)
    deliver(landing, "2026-02", FEBRUARY)
    deliver(landing, "2026-03", [])  # a month with no spells: a header only
    return load_config(str(TEST_CONFIG), test_overrides(base)), landing


def ingest(config, spark):
    return run_job(discover_jobs()["ingest"], config, spark)


def rows(df, *columns):
    return sorted(tuple(r) for r in df.select(*columns).collect())


@pytest.fixture(scope="module")
def shared(tmp_path_factory, spark):
    """A crafted landing ingested once, shared by the tests that only read it."""
    config, landing = crafted(tmp_path_factory.mktemp("crafted"))
    ingest(config, spark)
    return config, landing, Catalog(spark, config.resolve(config.paths.warehouse))


@pytest.fixture
def loaded(shared, tmp_path, spark):
    """A copy of it (landing and warehouse), private to the test (for tests that change it)."""
    base = shared[1].parent
    for folder in ("landing", "warehouse"):
        shutil.copytree(base / folder, tmp_path / folder)
    config = load_config(str(TEST_CONFIG), test_overrides(tmp_path))
    return config, tmp_path / "landing", Catalog(spark, config.resolve(config.paths.warehouse))


def test_rows_are_accepted_warned_or_quarantined_with_reasons(shared):
    _config, _, catalog = shared
    silver = catalog.read("silver.inpatient")
    assert rows(silver, "spell_id", "period", "line_number", "admission_date", "primary_diagnosis") == [
        ("s1", "2026-01", 2, date(2026, 1, 10), "S721"),
        ("s2", "2026-01", 3, date(2026, 1, 11), None),
        ("s6", "2026-02", 2, date(2026, 2, 2), "I10X"),
    ]
    warned = {r.spell_id: r.warnings for r in silver.select("spell_id", "warnings").collect()}
    assert warned == {"s1": None, "s2": ["nhs_number_present"], "s6": None}
    quarantine = catalog.read(QUARANTINE.name)
    assert rows(quarantine, "record_id", "line_number", "rule") == [
        ("s1", 6, "spell_id_unique"),
        ("s3", 4, "admission_date_parses"),
        ("s4", 5, "malformed_line"),
        ("s5", 7, "admission_method_known"),
    ]
    s5 = quarantine.where("record_id = 's5'").first()
    assert s5.failed_rules == ["admission_method_known", "primary_diagnosis_icd10"]
    assert s5.reason == "not an NHS Data Dictionary admission method (in_set)"
    s4 = quarantine.where("record_id = 's4'").first()
    assert s4.reason == "the line could not be parsed: 15 fields where the header has 14"
    s3 = catalog.read("silver.practices")  # the unknown practice of s3 was only a warning, but s3 is quarantined
    assert rows(s3, "practice_code") == [("Q00001",)]


def test_identifiers_go_to_the_vault_and_silver_keeps_pseudonyms_and_derivations(shared):
    _, _, catalog = shared
    key = bytes.fromhex(TEST_KEY_HEX)
    s1 = catalog.read("silver.inpatient").where("spell_id = 's1'").first().asDict()
    assert s1["nhs_number_pseudonym"] == reference_pseudonym(key, "nhs_number", "9990000018")
    assert s1["surname_pseudonym"] == reference_pseudonym(key, "surname", "SMITH")
    assert s1["date_of_birth_pseudonym"] == reference_pseudonym(key, "date_of_birth", "1939-05-02")
    assert s1["postcode_pseudonym"] == reference_pseudonym(key, "postcode", "QA1 1AB")
    assert (s1["age_at_event"], s1["age_band"], s1["postcode_sector"], s1["lsoa_code"], s1["imd_decile"]) == (
        86, "85-89", "QA1 1", "E09900000", 2)  # fmt: skip
    assert not {"nhs_number", "forename", "surname", "date_of_birth", "postcode"} & set(s1)
    assert "9990000018" not in str(s1.values()) and "SMITH" not in str(s1.values()).upper()
    vault = catalog.read(IDENTITY.name)
    assert rows(vault, "source", "record_id", "nhs_number", "surname", "postcode") == [
        ("inpatient", "s1", "9990000018", "SMITH", "QA1 1AB"),
        ("inpatient", "s2", None, "JONES", "QA1 2AB"),
        ("inpatient", "s6", "9990000050", "LEE", "QA1 2AB"),
    ]
    assert vault.where("record_id = 's1'").first().nhs_number_pseudonym == s1["nhs_number_pseudonym"]


def test_every_file_is_accounted_for_in_bronze_ledger_and_quality_mart(shared, spark):
    _, _, catalog = shared
    files = {r.file: r for r in catalog.read(INGEST_FILES.name).where("source = 'inpatient'").collect()}
    january = files["inpatient/2026-01/spells.csv"]
    assert (january.rows_in, january.rows_accepted, january.rows_quarantined, january.rows_warned) == (6, 2, 4, 1)
    assert files["inpatient/2026-02/spells.csv"].rows_in == 1
    assert files["inpatient/2026-03/spells.csv"].rows_in == 0  # recorded, so not loaded again
    bronze = catalog.read(LANDED_ROWS.name).where("source = 'inpatient'")
    assert bronze.count() == 7
    malformed = bronze.where("line_number = 5 AND period = '2026-01'").first()
    assert malformed.raw_line == JANUARY[3] and malformed["values"] is None
    assert january.columns == INPATIENT_HEADER.split(",")
    ann = bronze.where("line_number = 2 AND period = '2026-01'").first()["values"]
    assert dict(zip(january.columns, ann, strict=True))["Forename"] == "Ann"  # named by the file's header
    [run] = catalog.read(JOB_RUNS.name).where("job = 'ingest'").collect()
    assert (run.rows_in, run.rows_quarantined) == (7 + 1 + 2 + 2, 4)  # inpatient + practices + postcodes + LSOAs
    quality = catalog.read(DATA_QUALITY.name).where("source = 'inpatient' AND period = '2026-01'")
    failing = {r.rule: (r.action, r.failing_rows) for r in quality.where("failing_rows > 0").collect()}
    assert failing == {
        "malformed_line": ("quarantine", 1),
        "spell_id_present": ("quarantine", 1),  # the malformed line has no readable fields
        "spell_id_unique": ("quarantine", 1),
        "admission_date_parses": ("quarantine", 1),
        "admission_date_present": ("quarantine", 2),
        "admission_method_known": ("quarantine", 1),
        "primary_diagnosis_icd10": ("quarantine", 1),
        "nhs_number_present": ("warn", 2),
        "practice_exists": ("warn", 1),
    }
    assert quality.where("rule = 'admission_method_known'").first().rows_checked == 6


def test_the_same_landing_again_writes_nothing(shared, spark):
    config, _, catalog = shared
    versions = {name: catalog.version(name) for name in catalog.existing_tables()}
    result = ingest(config, spark)
    after = {name: catalog.version(name) for name in catalog.existing_tables()}
    assert result.output_versions == {}
    assert {k: v for k, v in after.items() if k != JOB_RUNS.name} == {
        k: v for k, v in versions.items() if k != JOB_RUNS.name
    }


def test_bronze_and_ledger_of_an_earlier_version_are_upgraded_by_the_next_load(loaded, spark):
    """Until 2026-12-07 bronze kept each row's fields as a map and the ledger no columns (phm.ingest.upgrade)."""
    config, landing, catalog = loaded
    bronze, files = catalog.read(LANDED_ROWS.name), catalog.read(INGEST_FILES.name)
    values_before = rows(bronze, "file", "line_number", "values", "raw_line")
    columns_before = rows(files, "file", "columns")
    header = files.select("file", "columns")
    as_map = F.when(F.col("values").isNotNull(), F.map_from_arrays("columns", "values"))
    old_bronze = bronze.join(header, "file").withColumn("fields", as_map).drop("values", "columns")
    for name, old in ((LANDED_ROWS.name, old_bronze), (INGEST_FILES.name, files.drop("columns"))):
        old = old.localCheckpoint()  # read whole before the table is replaced
        old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(catalog.path(name))
    assert "fields" in catalog.read(LANDED_ROWS.name).columns

    deliver(landing, "2026-04", FEBRUARY, name="april.csv")
    ingest(config, spark)  # the accounting check passes: the upgrade's rewrites are not this load's rows
    bronze, files = catalog.read(LANDED_ROWS.name), catalog.read(INGEST_FILES.name)
    assert "fields" not in bronze.columns
    april = "inpatient/2026-04/april.csv"
    assert rows(bronze.where(F.col("file") != april), "file", "line_number", "values", "raw_line") == values_before
    assert rows(files.where(F.col("file") != april), "file", "columns") == columns_before
    assert bronze.where(F.col("file") == april).count() == 1


def test_a_changed_redelivery_replaces_its_period_only(loaded, spark):
    config, landing, catalog = loaded
    fixed = [JANUARY[0], JANUARY[1], JANUARY[2].replace("30/02/2026", "28/01/2026")]
    deliver(landing, "2026-01", fixed)
    ingest(config, spark)
    silver = catalog.read("silver.inpatient")
    assert rows(silver, "spell_id", "period") == [("s1", "2026-01"), ("s2", "2026-01"), ("s3", "2026-01"),
                                                  ("s6", "2026-02")]  # fmt: skip
    assert catalog.read(QUARANTINE.name).where("source = 'inpatient'").count() == 0
    assert catalog.read(LANDED_ROWS.name).where("source = 'inpatient'").count() == 4
    assert catalog.read(IDENTITY.name).count() == 4
    ingest(config, spark)  # and idempotently so
    assert catalog.read("silver.inpatient").count() == 4


def test_extra_columns_are_recorded_and_ignored(loaded, spark):
    config, landing, catalog = loaded
    deliver(landing, "2026-03", ["s9,9990000018,Ann,Smith,02/05/1939,2,QA1 1AB,Q00001,10/03/2026,,21,1,S721,,x"],
            header=INPATIENT_HEADER + ",Ward")  # fmt: skip
    ingest(config, spark)
    drift = catalog.read(DATA_QUALITY.name).where("rule = 'extra_column:Ward'").first()
    assert (drift.period, drift.action, drift.detail) == ("2026-03", "warn", "in inpatient/2026-03/spells.csv; ignored")
    assert catalog.read("silver.inpatient").where("spell_id = 's9'").count() == 1


def test_a_missing_required_column_stops_with_the_file_and_column(tmp_path, spark, capsys):
    config, landing = crafted(tmp_path)
    deliver(landing, "2026-03", ["s9,9990000018"], header="SpellID,NHSNumber")
    overrides = [arg for o in test_overrides(tmp_path) for arg in ("--set", o)]
    assert cli.main(["run", "ingest", "--config", str(TEST_CONFIG), *overrides]) == 2
    message = capsys.readouterr().err
    assert "inpatient/2026-03/spells.csv: required column(s) ['DOB', 'Gender', 'AdmissionDate'" in message
    assert "Traceback" not in message
    assert not Catalog(spark, config.resolve(config.paths.warehouse)).exists("silver.inpatient")


def test_a_fail_rule_stops_the_run_before_anything_is_written(tmp_path, spark):
    config, landing = crafted(tmp_path)
    write(landing / "reference" / "static" / "practices.csv", PRACTICES + PRACTICES.splitlines()[1] + "\n")
    with pytest.raises(Exception, match=r"practices: 1 row\(s\) failed a rule whose action is fail, e.g. "
                                        r"reference/static/practices.csv line 3 \(practice_code_unique\)"):  # fmt: skip
        ingest(config, spark)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    assert catalog.existing_tables() == [JOB_RUNS.name]
    [run] = catalog.read(JOB_RUNS.name).collect()
    assert run.status == "failed" and "practice_code_unique" in run.error


def test_the_accounting_check_catches_lost_rows(loaded, spark):
    from delta.tables import DeltaTable

    from phm.ingest.contracts import load_contracts
    from phm.ingest.landing import LoadPlan, PeriodLoad
    from phm_jobs.ingest import AccountingError, _check_accounting

    config, _, catalog = loaded
    contracts = load_contracts(config.resolve(config.ingest.sources))
    plan = LoadPlan([PeriodLoad("inpatient", "2026-01", [], "new")])
    accounting = [{"source": "inpatient", "file": "f", "rows_in": 6, "rows_accepted": 2, "rows_quarantined": 4}]
    _check_accounting(catalog, contracts, plan, accounting)  # the tables hold exactly what was accounted for
    with pytest.raises(AccountingError, match=r"f: 7 rows in != 2 accepted \+ 4 quarantined"):
        _check_accounting(catalog, contracts, plan, [{**accounting[0], "rows_in": 7}])
    # a run's own commits are taken at their word (the rows each wrote) ...
    catalog.rows_written["silver.inpatient"] = 3
    with pytest.raises(AccountingError, match="silver.inpatient holds 3 rows, expected 2"):
        _check_accounting(catalog, contracts, plan, accounting)
    # ... and a table without one is counted
    del catalog.rows_written["silver.inpatient"]
    DeltaTable.forPath(spark, catalog.path("silver.inpatient")).delete("spell_id = 's2'")
    with pytest.raises(AccountingError, match="silver.inpatient holds 1 rows, expected 2"):
        _check_accounting(catalog, contracts, plan, accounting)


def test_removing_the_landing_copy_does_not_lose_loaded_rows(loaded, spark):
    config, landing, catalog = loaded
    shutil.rmtree(landing / "inpatient" / "2026-02")
    ingest(config, spark)
    assert catalog.read("silver.inpatient").where("period = '2026-02'").count() == 1
