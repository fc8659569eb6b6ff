"""Risk stratification on the refreshed tiny ICS: leak-free features and labels, models tracked, registered and
gated in MLflow, the population scored with spark_udf, the segment x tier matrix, the oracle comparison, and the
same against a real MLflow tracking server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta

import numpy as np
import pytest
from dateutil.relativedelta import relativedelta
from delta.tables import DeltaTable
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm import cli
from phm.config import load_config, load_definitions
from phm.features.build import build_features
from phm.features.index_dates import SCORE, VALIDATION, plan_index_dates
from phm.impactability.uplift import load_uplift_specs
from phm.models.registry import CANDIDATE, CHAMPION, VALIDATION_DATE_TAG
from phm.models.specs import load_model_specs
from phm.person.codes import coded_events
from phm.person.definitions import load_person_model_definitions
from phm.runtime.catalog import Catalog
from phm.runtime.standalone import free_port
from phm.segmentation.definitions import Segmentation
from phm.segmentation.scores import coded_event_families
from phm.tables import (
    EVENTS,
    FEATURES,
    OBSERVATIONS,
    PERSON,
    RISK_ACHIEVABLE_AUC,
    RISK_MODEL_PERFORMANCE,
    RISK_ORACLE_EVALUATION,
    RISK_SCORES,
    RUN_ID_COLUMN,
    SEGMENT_MATRIX,
    SEGMENTS,
)

from ..conftest import TEST_CONFIG, test_overrides
from .conftest import copy_of_sample

pytestmark = pytest.mark.slow
KEYS = ["person_id", "index_date"]


def _client(config) -> MlflowClient:
    return MlflowClient(tracking_uri=config.tracking_uri)


def _specs(config):
    return [spec for spec, _ in load_model_specs(config.resolve(config.risk.models)).values()]


def test_labels_are_the_admissions_in_the_follow_up_of_each_index_date(sample):
    config, catalog = sample
    features = catalog.read(FEATURES.name)
    assert features.count() == features.select(*KEYS).distinct().count() > 0
    assert {r.split for r in features.select("split").distinct().collect()} == {"train", "validation", "score"}
    assert features.where("split = 'score' AND label IS NOT NULL").count() == 0
    assert features.where("split != 'score' AND label IS NULL").count() == 0
    admissions = catalog.read(EVENTS.name).where("emergency").select("person_id", "event_date")
    follow_up = config.risk.follow_up_months
    expected = (
        features.where("split != 'score'")
        .select(*KEYS)
        .join(admissions, "person_id", "left")
        .groupBy(*KEYS)
        .agg(
            F.max(
                (
                    (F.col("event_date") >= F.col("index_date"))
                    & (F.col("event_date") < F.add_months(F.col("index_date"), follow_up))
                ).cast("int")
            ).alias("expected")
        )
    )
    compared = features.join(expected, KEYS).where(F.coalesce(F.col("expected"), F.lit(0)) != F.col("label"))
    assert compared.count() == 0
    assert features.where("split != 'score' AND label = 1").count() > 0  # the test can fail


def _plan(config, person, events):
    """The features job's index dates for these gold.person and gold.events."""
    first_period = events.agg(F.min("period")).first()[0]
    reference_date = person.agg(F.max("reference_date")).first()[0]
    return plan_index_dates(reference_date, date(int(first_period[:4]), int(first_period[5:7]), 1), config.risk)


def _built(config, person, events, observations, plan):
    """Every gold.features row of `plan`, built whole from these tables (the events matched to the code lists
    here, as build_person_model does)."""
    segmentation = load_definitions(config.resolve(config.person_model.segmentation), Segmentation)
    definitions = load_person_model_definitions(config)
    coded = coded_events(events, coded_event_families(definitions.conditions, segmentation.electronic_frailty_index))
    return build_features(person, events, coded, observations, definitions, segmentation, plan)


def _same_rows(one, other) -> bool:
    return one.exceptAll(other).count() == 0 and other.exceptAll(one).count() == 0


def test_features_do_not_change_when_everything_after_the_index_date_is_removed(sample, spark):
    config, catalog = sample
    stored = catalog.read(FEATURES.name)
    person, events, observations = (catalog.read(n) for n in (PERSON.name, EVENTS.name, OBSERVATIONS.name))
    plan = _plan(config, person, events)
    cut = F.lit(plan.validation)
    # The future removed: later events, later end dates of services running at the cut, later readings.
    before = events.where(F.col("event_date") < cut).withColumn(
        "end_date", F.when(F.col("end_date") < cut, F.col("end_date"))
    )
    rebuilt = _built(config, person, before, observations.where(F.col("event_date") < cut), plan)
    columns = [c for c in rebuilt.columns if c not in ("label",)]
    earlier = "split IN ('train', 'validation')"
    got = rebuilt.where(earlier).select(*columns)
    want = stored.where(earlier).select(*columns)
    assert want.count() > 0
    assert _same_rows(got, want)


def test_a_refresh_keeps_the_training_and_validation_rows_as_built_and_builds_the_scoring_dates(
    refreshed, sample, spark, tmp_path_factory
):
    """With the index dates where they were, features replaces only the scoring date's rows: a late correction
    to gold.events reaches them, not the training and validation sets (also when a run with nothing to do came
    in between), until the rows are built whole (risk.keep_earlier_index_dates off, or the dates moved)."""
    config, _ = sample
    copy = copy_of_sample(refreshed, spark, tmp_path_factory.mktemp("kept_rows"))
    catalog = copy.catalog
    # Built once under the copy's configuration (its warehouse is in the digest): every row.
    assert cli.main(["run", "features", *copy.arguments]) == 0
    before = catalog.read(FEATURES.name)  # this version, whatever is written later
    assert before.select(RUN_ID_COLUMN).distinct().count() == 1
    validation = before.where(F.col("split") == VALIDATION).first().index_date
    window_start = validation - relativedelta(months=max(config.risk.lookback_months))
    # Emergency admissions in the windows before the validation date withdrawn, one run after another, as
    # build_person_model changes gold.events in place.
    admissions = (
        catalog.read(EVENTS.name)
        .where(F.col("emergency") & F.col("event_date").between(window_start, validation - timedelta(days=1)))
        .orderBy("source", "record_id")
        .limit(2)
        .collect()
    )
    assert len(admissions) == 2

    def withdraw(admission) -> None:
        DeltaTable.forPath(spark, catalog.path(EVENTS.name)).delete(
            (F.col("source") == admission.source) & (F.col("record_id") == admission.record_id)
        )

    def whole_build():
        person, events, observations = (catalog.read(n) for n in (PERSON.name, EVENTS.name, OBSERVATIONS.name))
        return _built(config, person, events, observations, _plan(config, person, events))

    earlier, scoring = F.col("split") != SCORE, F.col("split") == SCORE
    for admission in admissions:
        withdraw(admission)
        assert cli.main(["run", "features", *copy.arguments]) == 0
        assert cli.main(["run", "features", *copy.arguments]) == 0  # nothing new: nothing to do, nothing written
        got = catalog.read(FEATURES.name)
        assert _same_rows(got.where(earlier), before.where(earlier))  # the same rows, by the same run
        assert _same_rows(got.where(scoring).drop(RUN_ID_COLUMN), whole_build().where(scoring))
    assert catalog.partition_columns(FEATURES.name) == ("split",)

    assert cli.main(["run", "features", *copy.arguments, "--set", "risk.keep_earlier_index_dates=false"]) == 0
    got = catalog.read(FEATURES.name).drop(RUN_ID_COLUMN)
    assert _same_rows(got, whole_build())
    withdrawn = [a.person_id for a in admissions]
    moved = got.where(earlier).exceptAll(before.drop(RUN_ID_COLUMN).where(earlier)).select("person_id").collect()
    assert withdrawn[0] in {r.person_id for r in moved} <= set(withdrawn)  # the test can fail


def test_models_are_tracked_registered_and_promoted_with_their_reasons(sample):
    config, catalog = sample
    client = _client(config)
    performance = catalog.read(RISK_MODEL_PERFORMANCE.name)
    for spec in _specs(config):
        champion = client.get_model_version_by_alias(spec.registered_model, CHAMPION)
        candidate = client.get_model_version_by_alias(spec.registered_model, CANDIDATE)
        assert str(champion.version) == str(candidate.version) == "1"
        run = client.get_run(champion.run_id)
        assert {"auc", "auprc", "brier", "calibration_slope", "calibration_intercept", "ppv_top5",
                "sensitivity_top10"} <= set(run.data.metrics)  # fmt: skip
        assert any(name.startswith("imd_quintile.") and name.endswith(".auc") for name in run.data.metrics)
        assert run.data.params["data.gold.features.version"] == str(catalog.version(FEATURES.name))
        assert "no champion yet" in run.data.tags["phm.promotion_reason"]
        assert client.get_model_version(spec.registered_model, "1").tags["promotion_reason"]
        artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
        assert {"roc.png", "calibration.png", "feature_importance.png", "subgroup_performance.csv",
                "features.txt"} <= artifacts  # fmt: skip
        rows = performance.where(F.col("model_name") == spec.name)
        overall = rows.where("grouping = 'all'").first()
        assert overall.model_version == "1" and overall.persons > 0 and 0.5 < overall.auc <= 1.0
        assert overall.auc == pytest.approx(run.data.metrics["auc"])
        assert {r.grouping for r in rows.select("grouping").distinct().collect()} == {
            "all", "imd_quintile", "ethnicity", "sex", "age_group",
        }  # fmt: skip


def test_every_person_is_scored_by_the_champion_with_a_tier_and_the_matrix_is_published_safely(sample):
    config, catalog = sample
    scores = catalog.read(RISK_SCORES.name)
    population = catalog.read(FEATURES.name).where("split = 'score'")
    scored = [spec for spec in _specs(config) if spec.score]
    assert scores.count() == population.count() * len(scored)
    assert scores.join(population, "person_id", "left_anti").count() == 0
    assert scores.where("probability < 0 OR probability > 1").count() == 0
    # Tiers: each person's percentile is percent_rank of their probability (ties share the lowest), and the
    # configured cut-offs split them; a tier's share misses the cut-off only by the people tied across it.
    cut = config.risk.tiers
    for _, rows in scores.select("model_name", "probability", "percentile", "tier").toPandas().groupby("model_name"):
        percentile = (rows["probability"].rank(method="min") - 1) / (len(rows) - 1) * 100
        assert rows["percentile"].to_numpy() == pytest.approx(percentile.to_numpy(), abs=1e-4)
        expected = np.where(percentile >= cut.high, "high", np.where(percentile >= cut.emerging, "emerging", "low"))
        assert (rows["tier"].to_numpy() == expected).all()
        highest = (rows["probability"].rank(method="max") - 1) / (len(rows) - 1) * 100
        for at_least in (cut.high, cut.emerging):
            tied_across = ((percentile < at_least) & (highest >= at_least)).mean()
            share = (percentile >= at_least).mean()
            assert 1 - at_least / 100 - tied_across - 0.01 <= share <= 1 - at_least / 100 + 0.01
    champion = _client(config).get_model_version_by_alias(scored[0].registered_model, CHAMPION).version
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {str(champion)}
    # every published cell of the bubble matrix is its exact figures, counts rounded to 5; the rest suppressed
    rules = config.profiling.disclosure
    matrix = catalog.read(SEGMENT_MATRIX.name).toPandas()
    exact = (
        catalog.read(SEGMENTS.name).join(scores, "person_id")
        .groupBy("model_name", "segment", "tier")
        .agg(F.count("*").alias("n"), F.sum("annual_cost").alias("cost"), F.sum("probability").alias("expected"))
        .toPandas()
    )  # fmt: skip
    both = matrix.merge(exact, on=["model_name", "segment", "tier"], how="outer")
    assert len(both) == len(exact) == len(matrix) > 0
    shown = both[both["suppressed"].isna()]
    assert len(shown) and ((shown["people"] - shown["n"]).abs() <= rules.rounding_base / 2).all()
    assert shown["annual_cost"].to_numpy() == pytest.approx(shown["cost"].to_numpy(), rel=1e-6)
    # expected admissions are published to 2 decimal places
    assert shown["expected_admitted_people"].to_numpy() == pytest.approx(shown["expected"].to_numpy(), abs=0.0051)
    hidden = both[both["suppressed"].isin(["primary", "secondary"])]
    assert hidden[["people", "annual_cost"]].isna().all().all()
    assert (hidden[hidden["suppressed"] == "primary"]["n"] <= rules.max_suppressed).all()


def test_champions_are_compared_with_the_oracle(sample, spark):
    config, catalog = sample
    rows = catalog.read(RISK_ORACLE_EVALUATION.name).collect()
    assert {r.model_name for r in rows} == {spec.name for spec in _specs(config)}
    for row in rows:
        assert row.persons_with_truth == row.persons > 0  # every linked person maps to a true person
        assert 0.5 < row.oracle_auc <= 1 and row.auc_gap == pytest.approx(row.oracle_auc - row.model_auc)
    # the best any model can reach there: with the longest feature window and with all the history before the date
    ceiling = catalog.read(RISK_ACHIEVABLE_AUC.name).toPandas()
    validation = catalog.read(FEATURES.name).where(F.col("split") == VALIDATION)
    assert set(ceiling["index_date"]) == {validation.first().index_date} == {r.index_date for r in rows}
    assert len(ceiling) == 2 and ceiling["history_months"].is_unique
    # the observer's people at risk: the true persons registered before the date and alive at it
    index_date = F.lit(validation.first().index_date)
    truth = spark.read.parquet(config.resolve(config.paths.truth) + "/person")
    living = F.col("death_date").isNull() | (F.col("death_date") > index_date)
    at_risk = truth.where((F.col("registered_on") < index_date) & living).count()
    assert (ceiling["persons"] == at_risk).all()
    # (the sample's few outcomes make its AUCs too noisy to order; tests/unit/test_achievable.py orders them)
    aucs = ceiling[["oracle_auc", "no_history_auc", "admissions_only_auc", "achievable_auc"]]
    assert aucs.notna().all().all() and ((aucs > 0) & (aucs <= 1)).all().all()
    client = _client(config)
    champion = client.get_model_version_by_alias(_specs(config)[0].registered_model, CHAMPION)
    metrics = client.get_run(champion.run_id).data.metrics
    assert "oracle.oracle_auc" in metrics
    assert {f"oracle.achievable_auc_{m}m" for m in ceiling["history_months"]} <= set(metrics)


@pytest.fixture
def tracking_server(tmp_path):
    """`mlflow server` on 127.0.0.1 with a SQL (sqlite) backend and an artifact folder; stopped afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(1)
        yield url, tmp_path / "server-artifacts"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_train_gate_and_score_against_a_tracking_server(sample, tracking_server, tmp_path, spark):
    config, _ = sample
    url, served_artifacts = tracking_server
    base = tmp_path / "copy"
    shutil.copytree(config.resolve(config.paths.warehouse), base / "warehouse")
    overrides = [*test_overrides(base), f"mlflow.tracking_uri={url}"]
    arguments = ["--config", str(TEST_CONFIG), *[a for o in overrides for a in ("--set", o)]]
    assert cli.main(["run", "train_risk", *arguments]) == 0
    assert cli.main(["run", "score", *arguments]) == 0
    served = load_config(str(TEST_CONFIG), overrides)
    client = MlflowClient(tracking_uri=url)
    spec = next(s for s in _specs(served) if s.score)
    assert str(client.get_model_version_by_alias(spec.registered_model, CHAMPION).version) == "1"
    assert list(served_artifacts.rglob("MLmodel")), "the server stores the models' artifacts"
    # Retrained on the same data with another seed: a new candidate, judged against the champion on the same rows.
    assert cli.main(["run", "train_risk", *arguments, "--set", "risk.seed=7"]) == 0
    candidate = client.get_model_version_by_alias(spec.registered_model, CANDIDATE)
    assert str(candidate.version) == "2"
    reason = client.get_run(candidate.run_id).data.tags["phm.promotion_reason"]
    assert "champion v1" in reason and "on the same validation rows" in reason
    champion = client.get_model_version_by_alias(spec.registered_model, CHAMPION).version
    assert str(champion) == ("2" if "beats" in reason else "1")
    catalog = Catalog(spark, served.resolve(served.paths.warehouse))
    assert {r.model_version for r in catalog.read(RISK_SCORES.name).select("model_version").distinct().collect()} == {
        "1"
    }


def test_champions_are_kept_while_only_the_data_moved_on_and_retrained_when_due(refreshed, spark, tmp_path_factory):
    copy = copy_of_sample(refreshed, spark, tmp_path_factory.mktemp("retraining"))
    config, catalog = copy.config, copy.catalog
    risk = [spec.registered_model for spec in _specs(config)]
    uplift_specs = load_uplift_specs(config.resolve(config.impactability.models))
    uplift = [spec.registered_model for spec, _ in uplift_specs.values()]
    client = _client(config)

    def versions(models: list[str]) -> dict[str, int]:
        return {m: len(client.search_model_versions(f"name = '{m}'")) for m in models}

    for job in ("train_risk", "train_impactability"):  # the copy's own tracking store: version 1 of each spec
        assert cli.main(["run", job, *copy.arguments]) == 0
    validation = catalog.read(FEATURES.name).where(F.col("split") == "validation").first().index_date
    for model in risk + uplift:
        assert client.get_model_version(model, "1").tags[VALIDATION_DATE_TAG] == str(validation)
    # The data move on (gold.features rewritten: a new version), the configuration does not: the champions,
    # measured 0 months before the validation date, are kept (risk.retrain_every_months: 3).
    catalog.overwrite(FEATURES.name, catalog.read(FEATURES.name).drop("_run_id"))
    for job in ("train_risk", "train_impactability"):
        assert cli.main(["run", job, *copy.arguments]) == 0
    assert versions(risk + uplift) == dict.fromkeys(risk + uplift, 1)
    # Retraining asked for (a changed configuration always trains): a new version of each risk spec.
    assert cli.main(["run", "train_risk", *copy.arguments, "--set", "risk.retrain_every_months=0"]) == 0
    assert versions(risk) == dict.fromkeys(risk, 2)
