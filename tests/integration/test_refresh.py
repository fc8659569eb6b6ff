"""`phm refresh` on the tiny synthetic ICS, as `make run` does it: every stage, then `phm status`;
ingest's quarantine is exactly the injected defects and no identifier leaves the restricted layers."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm import cli
from phm.governance.leaks import leak_hits, text_leak_hits
from phm.ingest.contracts import load_contracts
from phm.runtime.jobs import discover_jobs, run_job
from phm.tables import (
    ACTUARIAL_BACKTEST,
    ACTUARIAL_PROJECTION,
    CASE_FINDING_EVALUATION,
    CODED_EVENTS,
    COHORT_SUMMARY,
    CONDITION_ASCERTAINMENT,
    CONDITIONS,
    EVENTS,
    EXPECTED_PREVALENCE,
    FEATURES,
    IMPACTABILITY_ORACLE_EVALUATION,
    INEQUALITIES,
    INTERVENTION_TARGETS,
    JOB_RUNS,
    LINKAGE_PROFILES,
    LINKAGE_QUALITY,
    OBSERVATIONS,
    PERSON,
    PERSON_ID_HISTORY,
    PERSON_LINK,
    POPULATION_PROFILE,
    PROGRAMME_EVALUATION,
    PROGRAMME_TRIAL,
    QOF_PREVALENCE,
    QUARANTINE,
    RESTRICTED_LAYERS,
    RISK_ACHIEVABLE_AUC,
    RISK_MODEL_PERFORMANCE,
    RISK_ORACLE_EVALUATION,
    RISK_SCORES,
    SEGMENT_HISTORY,
    SEGMENT_MATRIX,
    SEGMENTS,
    UPLIFT_MODEL_PERFORMANCE,
)

from ..conftest import TEST_KEY_HEX
from .conftest import FIRST_STAGES, STAGES

pytestmark = pytest.mark.slow


def test_refresh_runs_every_stage_and_status_reports_it(refreshed, capsys):
    code, base, arguments, _ = refreshed
    assert code == 0
    assert cli.main(["status", "--json", *arguments]) == 0
    status = json.loads(capsys.readouterr().out)
    tables = {t["name"]: t for t in status["tables"]}
    assert tables[QOF_PREVALENCE.name]["rows"] == 210  # 21 registers x 10 deciles
    # the first instalment's refresh and its stages, then this one's
    assert tables[JOB_RUNS.name]["rows"] == 1 + len(FIRST_STAGES) + 1 + len(STAGES)
    runs = {r["job"]: r for r in reversed(status["runs"])}  # newest first: each job's latest run
    assert {runs[name]["status"] for name in ["refresh", *STAGES]} == {"succeeded"}
    assert {runs[name]["parent_run_id"] for name in STAGES} == {runs["refresh"]["run_id"]}
    assert tables["silver.inpatient"]["run_id"] == runs["ingest"]["run_id"]
    assert (base / "landing" / "gp_events" / "2026-03").is_dir()
    assert len(list((base / "logs").glob("*.log"))) == 1 + len(FIRST_STAGES) + 1 + len(STAGES)
    docs = list((base / "reports" / runs["ingest"]["run_id"] / "data_docs").rglob("*.html"))
    assert any(p.name == "index.html" for p in docs) and len(docs) > 10


def test_every_source_is_ingested(sample):
    config, catalog = sample
    for contract in load_contracts(config.resolve(config.ingest.sources)).values():
        if contract.source == "programme":
            continue  # the tiny sample may have no referrals
        assert catalog.read(contract.silver_table).count() > 0, contract.source


def test_quarantine_holds_exactly_the_injected_defects(sample, spark):
    config, catalog = sample
    injected = spark.read.parquet(config.resolve(config.paths.truth) + "/injected_defects")
    quarantined = catalog.read(QUARANTINE.name).where(F.col("period") != "static")
    assert quarantined.where(F.col("record_id").isNull()).count() == 0
    expected = {(r.source, r.record_id) for r in injected.select("source", "record_id").distinct().collect()}
    got = {(r.source, r.record_id) for r in quarantined.select("source", "record_id").distinct().collect()}
    assert len(expected) >= 20 and injected.select("defect").distinct().count() >= 5  # the test can fail
    assert got - expected == set(), "clean rows were quarantined"
    assert expected - got == set(), "injected defects were accepted"
    duplicates = injected.where("defect = 'exact_duplicate'").select("source", "record_id")
    for contract in load_contracts(config.resolve(config.ingest.sources)).values():
        if contract.kind == "activity" and catalog.exists(contract.silver_table):  # first copies kept, once
            silver = catalog.read(contract.silver_table).select(F.col(contract.record_id).alias("record_id"))
            kept = silver.join(duplicates.where(F.col("source") == contract.source), "record_id")
            assert kept.count() == kept.distinct().count()


def test_no_canary_identifier_outside_the_restricted_layers(sample, canaries):
    config, catalog = sample
    searched = [name for name in catalog.existing_tables() if name.split(".")[0] not in RESTRICTED_LAYERS]
    # Two tables at a time: each search is a small Spark job whose planning keeps one core busy (measured on
    # the sample's 52 tables: 38 s against 55 s one at a time).
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda name: leak_hits(catalog.read(name), canaries), searched)
        hits = dict(zip(searched, found, strict=True))
    assert {name: found for name, found in hits.items() if found} == {}
    assert {"silver.gp_registrations", "silver.inpatient", "silver.quarantine", "mart.data_quality"} <= set(searched)
    # and the search does find them where they are meant to be
    assert leak_hits(catalog.read("vault.identity"), canaries)
    reports = Path(config.resolve(config.paths.reports))
    pages = "\n".join(p.read_text(errors="replace") for p in reports.rglob("*.html"))  # Data Docs
    assert pages and text_leak_hits(pages, canaries) == []


def test_no_canary_identifier_or_key_in_run_logs_or_mlflow(refreshed, canaries):
    """Every log line the refresh wrote and everything MLflow holds (params, tags and metric names in its
    database; charts, models and reports among its artifacts), searched as text."""
    base = refreshed[1]
    logs = sorted((base / "logs").glob("*.log"))
    artifacts = sorted(p for p in (base / "mlartifacts").rglob("*") if p.is_file())
    assert len(logs) > len(STAGES) and len(artifacts) > 10 and (base / "mlflow.db").is_file()
    for path in [*logs, *artifacts, base / "mlflow.db"]:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert text_leak_hits(text, canaries) == [], path
        assert TEST_KEY_HEX not in text.lower(), path


def test_a_second_refresh_with_nothing_new_writes_no_links_person_model_or_risk_model(sample, spark):
    config, catalog = sample
    written = (
        PERSON_LINK.name, LINKAGE_PROFILES.name, PERSON_ID_HISTORY.name, PERSON.name, LINKAGE_QUALITY.name,
        EVENTS.name, CODED_EVENTS.name, CONDITIONS.name, OBSERVATIONS.name, SEGMENTS.name, CONDITION_ASCERTAINMENT.name,
        FEATURES.name,
        RISK_MODEL_PERFORMANCE.name, RISK_SCORES.name, SEGMENT_MATRIX.name, RISK_ORACLE_EVALUATION.name,
        RISK_ACHIEVABLE_AUC.name, PROGRAMME_TRIAL.name, PROGRAMME_EVALUATION.name, UPLIFT_MODEL_PERFORMANCE.name,
        INTERVENTION_TARGETS.name, IMPACTABILITY_ORACLE_EVALUATION.name, POPULATION_PROFILE.name, INEQUALITIES.name,
        EXPECTED_PREVALENCE.name, COHORT_SUMMARY.name,
        CASE_FINDING_EVALUATION.name, SEGMENT_HISTORY.name, ACTUARIAL_PROJECTION.name, ACTUARIAL_BACKTEST.name,
    )  # fmt: skip
    before = {name: catalog.version(name) for name in written}
    jobs = discover_jobs()
    stages = (
        "ingest", "link", "build_person_model", "evaluate_person_model", "segment", "features", "train_risk", "score",
        "evaluate_risk", "evaluate_programme", "train_impactability", "target", "evaluate_impactability", "profile",
        "case_finding", "evaluate_case_finding", "actuarial",
    )  # fmt: skip
    for stage in stages:
        result = run_job(jobs[stage], config, spark)
        assert (result.status, result.rows_out) == ("succeeded", 0), stage
    # the refresh's maintenance compacted what it had to: maintaining again touches no data table
    run_job(jobs["maintain"], config, spark)
    assert {name: catalog.version(name) for name in written} == before
    # an output that went missing is rebuilt, not skipped
    segments = catalog.read(SEGMENTS.name).count()
    shutil.rmtree(catalog.path(SEGMENTS.name))
    result = run_job(jobs["segment"], config, spark)
    assert result.status == "succeeded" and catalog.read(SEGMENTS.name).count() == segments == result.rows_out
