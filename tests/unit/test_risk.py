"""Risk stratification logic on hand-built data: index dates, leak-free features and labels, measures, the
champion gate, model specs, tiers and the oracle comparison."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from phm.config import RiskConfig, RiskTiers, load_definitions
from phm.errors import ConfigError, SchemaMismatchError, UserError
from phm.features.build import build_features
from phm.features.index_dates import IndexPlan, months_between, plan_index_dates
from phm.models.metrics import calibration_in_the_large, performance, performance_by_group
from phm.models.oracle import oracle_measures, true_person_of, true_probability
from phm.models.registry import VALIDATION_DATE_TAG, decide, retraining_due
from phm.models.scoring import with_tiers
from phm.models.specs import Gate, ModelSpec, load_model_specs
from phm.models.training import fit_on_spark, spark_importance, spark_probability
from phm.person.codes import coded_events
from phm.person.definitions import load_person_model_definitions
from phm.runtime.catalog import Catalog
from phm.segmentation.definitions import Segmentation
from phm.segmentation.scores import coded_event_families
from phm.tables import FEATURES

REPO = Path(__file__).resolve().parents[2]


# -- index dates -----------------------------------------------------------------------------------------------
def test_index_dates_step_back_one_follow_up_and_drop_windows_longer_than_the_history():
    plan = plan_index_dates(date(2026, 3, 31), date(2023, 4, 1), RiskConfig())
    assert (plan.scoring, plan.validation, plan.training) == (date(2026, 4, 1), date(2025, 4, 1), (date(2024, 4, 1),))
    assert (plan.windows, plan.dropped_windows) == ((3, 12), (24,))
    assert [split for _, split in plan.dates] == ["train", "validation", "score"]

    longer = plan_index_dates(date(2026, 3, 31), date(2021, 4, 1), RiskConfig(training_index_dates=3))
    assert longer.training == (date(2024, 4, 1), date(2023, 4, 1), date(2022, 4, 1))
    assert longer.windows == (3, 12) and longer.dropped_windows == (24,)  # 12 months before 2022-04-01
    assert plan_index_dates(date(2026, 3, 31), date(2021, 4, 1), RiskConfig(training_index_dates=2)).windows == (
        3, 12, 24,
    )  # fmt: skip


def test_validation_and_training_dates_move_a_step_at_a_time_from_the_earliest_the_history_allows():
    start = date(2023, 4, 1)  # the earliest validation date: 12 months' history, then one follow-up: 2025-04-01
    months = [date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31), date(2026, 6, 30), date(2026, 9, 30)]
    plans = [plan_index_dates(reference, start, RiskConfig()) for reference in months]
    assert [(p.scoring, p.validation, p.training) for p in plans] == [
        (date(2026, 4, 1), date(2025, 4, 1), (date(2024, 4, 1),)),
        (date(2026, 5, 1), date(2025, 4, 1), (date(2024, 4, 1),)),
        (date(2026, 6, 1), date(2025, 4, 1), (date(2024, 4, 1),)),
        (date(2026, 7, 1), date(2025, 7, 1), (date(2024, 7, 1),)),
        (date(2026, 10, 1), date(2025, 10, 1), (date(2024, 10, 1),)),
    ]
    monthly = [plan_index_dates(reference, start, RiskConfig(index_dates_every_months=1)) for reference in months]
    assert [p.validation for p in monthly] == [date(2025, 4, 1), date(2025, 5, 1), date(2025, 6, 1),
                                               date(2025, 7, 1), date(2025, 10, 1)]  # fmt: skip
    assert all(p.scoring == q.scoring and p.windows == q.windows for p, q in zip(plans, monthly, strict=True))


def test_too_short_a_history_is_a_user_error_that_says_what_is_needed():
    with pytest.raises(UserError, match=r"too short.*needs 36"):
        plan_index_dates(date(2026, 3, 31), date(2024, 6, 1), RiskConfig())
    with pytest.raises(UserError, match=r"35 months of history"):  # one month short of the earliest validation date
        plan_index_dates(date(2026, 2, 28), date(2023, 4, 1), RiskConfig(index_dates_every_months=1))
    assert months_between(date(2023, 4, 1), date(2024, 4, 1)) == 12
    assert months_between(date(2023, 4, 15), date(2024, 4, 1)) == 11


def test_risk_config_rejects_unordered_windows_and_tiers():
    with pytest.raises(ValueError, match="ascending"):
        RiskConfig(lookback_months=[12, 3])
    with pytest.raises(ValueError, match="below high"):
        RiskTiers(high=80, emerging=90)


# -- features and labels ---------------------------------------------------------------------------------------
EVENT = (
    "person_id string, source string, record_id string, period string, service string, activity string, "
    "setting string, event_date date, end_date date, code_system string, code string, value double, "
    "value2 double, length_of_stay int, cost double, daily_cost double, emergency boolean, acsc boolean, fall boolean"
)
PLAN = IndexPlan(
    training=(date(2025, 4, 1),),
    validation=date(2025, 7, 1),
    scoring=date(2025, 10, 1),
    windows=(3, 12),
    dropped_windows=(),
    history_start=date(2024, 1, 1),
    follow_up_months=3,
)


def _event(person, when, activity="gp_record", code=None, emergency=False, los=None, cost=None, daily=None, end=None,
           service="gp", setting=None, value=None):  # fmt: skip
    system = "snomed" if code and code.isdigit() else ("icd10" if code else None)
    return (
        person, "src", f"{person}-{when}-{activity}-{code}", when[:7], service, activity, setting,
        date.fromisoformat(when), date.fromisoformat(end) if end else None, system, code, value, None, los, cost,
        daily, emergency, False, False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def hand_built_features(spark, config):
    definitions = load_person_model_definitions(config)
    segmentation = load_definitions(config.resolve(config.person_model.segmentation), Segmentation)
    person = spark.createDataFrame(
        [(p, date(2025, 9, 30), 70, "F", "White", 3, 2, "P1", "N1") for p in ("a", "b", "c")],
        "person_id string, reference_date date, age int, sex string, ethnicity string, imd_decile int, "
        "imd_quintile int, practice_code string, pcn_code string",
    )
    rows = [
        _event("a", "2010-01-01"),  # first seen long ago
        _event("a", "2025-03-31", "emergency_admission", emergency=True, los=4, cost=2000.0, service="acute"),
        _event("a", "2025-04-01", "emergency_admission", emergency=True, los=2, cost=1500.0, service="acute"),
        _event("a", "2025-07-01", "emergency_admission", emergency=True, los=1, cost=1000.0, service="acute"),
        _event("a", "2025-04-01", code="38341003"),  # hypertension coded on the training index date
        _event(
            "a", "2025-03-02", "care_package", daily=10.0, end="2025-05-31", service="social_care", setting="home_care"
        ),
        _event("b", "2020-05-01"),
        _event("b", "2025-05-01", "death", service="deaths"),
        _event("c", "2025-05-01", "ae_attendance", cost=200.0, service="ae"),
    ]
    events = spark.createDataFrame(rows, EVENT)
    observations = spark.createDataFrame(
        [("a", "blood_pressure", date(2025, 3, 1), 150.0, None, True, "r1"),
         ("a", "blood_pressure", date(2025, 4, 1), 120.0, None, True, "r2")],
        "person_id string, observation string, event_date date, value double, category string, plausible boolean, "
        "record_id string",
    )  # fmt: skip
    coded = coded_events(events, coded_event_families(definitions.conditions, segmentation.electronic_frailty_index))
    built = build_features(person, events, coded, observations, definitions, segmentation, PLAN)
    return {(r.person_id, r.split): r for r in built.collect()}, built


def test_population_at_each_index_date_excludes_the_dead_and_the_not_yet_seen(hand_built_features):
    rows, _ = hand_built_features
    assert sorted(rows) == [("a", "score"), ("a", "train"), ("a", "validation"), ("b", "train"),
                            ("c", "score"), ("c", "validation")]  # fmt: skip


def test_features_use_only_data_before_the_index_date_and_the_label_what_follows(hand_built_features):
    rows, _ = hand_built_features
    train, validation, score = rows["a", "train"], rows["a", "validation"], rows["a", "score"]
    # The admission the day before the index date is a feature; the one on it is the label.
    assert (train.emergency_admissions_3m, train.bed_days_3m, train.label) == (1.0, 4.0, 1)
    assert train.days_since_emergency_admission == 1.0
    assert (validation.emergency_admissions_3m, validation.emergency_admissions_12m, validation.label) == (1.0, 2.0, 1)
    assert (score.emergency_admissions_3m, score.label) == (1.0, None)
    # A condition coded on the index date is not yet known; a reading on it is not the latest.
    assert (train.condition_hypertension, validation.condition_hypertension) == (0.0, 1.0)
    assert (train.latest_blood_pressure, validation.latest_blood_pressure) == (150.0, 120.0)
    # A package that ends after the index date: its days before it only, and running on the day before.
    assert (train.cost_3m, train.social_care_running) == (2000.0 + 30 * 10.0, 1.0)
    assert validation.social_care_running == 0.0
    # A death without an admission in the follow-up is a 0; attributes and trends are carried.
    assert rows["b", "train"].label == 0
    assert (train.age, train.female, train.age_group, train.imd_quintile) == (70.0, 1.0, "65-74", 2)
    assert train.emergency_admissions_trend == pytest.approx(1 * 12 / 3 - 1 * 12 / 12)


def test_the_features_table_takes_further_numeric_columns_only(hand_built_features, fresh_config, spark):
    _, built = hand_built_features
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))
    catalog.overwrite(FEATURES.name, built)
    assert "condition_hypertension" in catalog.read(FEATURES.name).columns
    with pytest.raises(SchemaMismatchError, match="further columns are double"):
        catalog.overwrite(FEATURES.name, built.withColumn("note", F.lit("text")))


# -- measures --------------------------------------------------------------------------------------------------
def test_performance_measures_on_a_hand_ranked_list():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0] * 10)
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] * 10)
    got = performance(y, p)
    assert (got["persons"], got["events"], got["auc"]) == (100, 20, 1.0)
    assert (got["ppv_top1"], got["sensitivity_top5"], got["ppv_top10"]) == (1.0, 0.25, 1.0)
    assert got["observed_rate"] == 0.2 and got["mean_predicted"] == pytest.approx(0.26)
    assert performance(np.zeros(5), np.full(5, 0.1))["auc"] is None  # one outcome only: undefined


def test_calibration_slope_and_intercept_of_true_and_distorted_probabilities():
    rng = np.random.default_rng(7)
    p = rng.beta(1, 12, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    calibrated = performance(y, p)
    assert calibrated["calibration_slope"] == pytest.approx(1.0, abs=0.03)
    assert calibrated["calibration_intercept"] == pytest.approx(0.0, abs=0.02)
    overconfident = performance(y, 1 / (1 + np.exp(-2 * np.log(p / (1 - p)))))
    assert overconfident["calibration_slope"] == pytest.approx(0.5, abs=0.03)
    assert calibration_in_the_large(y, np.log(p / 2 / (1 - p / 2))) > 0.5  # halved risk: under-predicted


def test_subgroups_more_than_the_margin_below_the_overall_auc_are_flagged():
    rng = np.random.default_rng(3)
    n = 4000
    group = np.where(np.arange(n) < n // 2, "good", "poor")
    y = rng.random(n) < 0.3
    p = np.where(group == "good", 0.2 + 0.6 * y + rng.normal(0, 0.2, n), rng.random(n))
    frame = pd.DataFrame({"y": y.astype(int), "p": np.clip(p, 0.01, 0.99), "imd_quintile": group})
    table = performance_by_group(frame, ("imd_quintile",), margin=0.03).set_index("group_value")
    assert list(table.index) == ["all", "good", "poor"]
    assert table.loc["poor", "flagged"] and not table.loc["good", "flagged"] and not table.loc["all", "flagged"]


# -- the champion gate -----------------------------------------------------------------------------------------
GATE = Gate(min_auc=0.7, calibration_slope=(0.8, 1.2), min_improvement=0.005)


@pytest.mark.parametrize(
    ("auc", "slope", "champion", "promote", "reason"),
    [
        (0.69, 1.0, None, False, "below the gate's min_auc 0.7"),
        (0.75, 1.3, None, False, "outside the gate's range"),
        (0.75, 1.0, None, True, "no champion yet"),
        (0.75, 1.0, ("3", 0.74, ""), True, "beats champion v3's 0.7400 on the same validation rows"),
        (0.75, 1.0, ("3", 0.748, ""), False, "does not beat champion v3's 0.7480 by min_improvement 0.005"),
        (0.75, 1.0, ("3", 0.75, ""), False, "does not beat"),
        (0.75, 1.0, ("3", None, "champion v3 needs features"), True, "champion v3 needs features"),
    ],
)
def test_gate_and_champion_decide_promotion_with_a_reason(auc, slope, champion, promote, reason):
    decision = decide({"auc": auc, "calibration_slope": slope}, GATE, champion)
    assert decision.promote is promote
    assert reason in decision.reason


# -- model specs -----------------------------------------------------------------------------------------------
class _Registry:
    """What retraining_due asks of an MLflow client: each registered model's champion (or MlflowException)."""

    def __init__(self, champions: dict):
        self.champions = champions

    def get_model_version_by_alias(self, name, alias):
        from mlflow.exceptions import MlflowException

        if name not in self.champions:
            raise MlflowException(f"no {alias} for {name}")
        version, measured = self.champions[name]
        return SimpleNamespace(version=version, tags={VALIDATION_DATE_TAG: measured} if measured else {})


@pytest.mark.parametrize(
    ("champions", "every", "due"),
    [
        ({"a": ("1", "2025-04-01"), "b": ("3", "2025-02-01")}, 3, None),  # 0 and 2 months old
        ({"a": ("1", "2025-04-01"), "b": ("3", "2025-01-01")}, 3, "b's champion v3 was measured at 2025-01-01, 3 "),
        ({"a": ("1", "2025-04-01"), "b": ("3", "2025-04-01")}, 0, "retrain_every_months is 0"),
        ({"a": ("1", "2025-04-01")}, 3, "b has no champion"),
        ({"a": ("1", "2025-04-01"), "b": ("3", None)}, 3, "b's champion v3 records no validation date"),
    ],
)
def test_champions_are_retrained_when_the_oldest_is_due(champions, every, due):
    reason = retraining_due(_Registry(champions), ["a", "b"], date(2025, 4, 1), every)
    assert reason == due if due is None else reason.startswith(due)


def test_spec_feature_patterns_keep_table_order_and_name_what_matches_nothing():
    spec = ModelSpec(name="m", description="d", algorithm="lightgbm", features=["cost_*", "age", "condition_*"],
                     exclude=["condition_asthma"])  # fmt: skip
    available = ["age", "condition_asthma", "condition_copd", "cost_3m", "cost_12m", "female"]
    assert spec.select_features(available, "m.yaml") == ["age", "condition_copd", "cost_3m", "cost_12m"]
    with pytest.raises(ConfigError, match=r"m.yaml: features: 'bmi_\*' matches no column"):
        ModelSpec(name="m", description="d", algorithm="lightgbm", features=["bmi_*"]).select_features(
            available, "m.yaml"
        )


def test_the_shipped_specs_load_and_a_misnamed_spec_is_refused(tmp_path):
    specs = load_model_specs(str(REPO / "models" / "risk"))
    assert {"emergency_admission_gbm", "emergency_admission_lr"} <= set(specs)
    assert specs["emergency_admission_gbm"][0].registered_model == "phm_emergency_admission_gbm"
    (tmp_path / "other.yaml").write_text("name: mine\ndescription: d\nalgorithm: lightgbm\nfeatures: ['*']\n")
    with pytest.raises(ConfigError, match="name the file mine.yaml"):
        load_model_specs(str(tmp_path))


def test_a_spark_gbt_spec_takes_gbtclassifier_params_and_no_search(tmp_path):
    base = "name: trees\ndescription: d\nalgorithm: spark_gbt\nfeatures: ['*']\n"
    (tmp_path / "trees.yaml").write_text(base + "params: {maxIter: 5, maxDepth: 2}\n")
    spec = load_model_specs(str(tmp_path))["trees"][0]
    assert spec.trains_on_spark and spec.params == {"maxIter": 5, "maxDepth": 2}
    (tmp_path / "trees.yaml").write_text(base + "params: {num_leaves: 7}\n")
    with pytest.raises(ConfigError, match=r"params \['num_leaves'\] are not GBTClassifier's; it takes maxIter"):
        load_model_specs(str(tmp_path))
    (tmp_path / "trees.yaml").write_text(
        base + "search: {trials: 2, space: {maxDepth: {type: int, low: 2, high: 5}}}\n"
    )
    with pytest.raises(ConfigError, match="algorithm spark_gbt has no search"):
        load_model_specs(str(tmp_path))


def test_spark_gbt_is_fitted_and_scored_by_spark_with_missing_values_split_off(spark):
    # Admitted: everyone over 70, and everyone whose cost is missing; age 0-99 and cost known otherwise.
    rows = [(age, None if age % 9 == 0 else float(age % 5), bool(age % 2), int(age > 70 or age % 9 == 0))
            for age in range(100)] * 3  # fmt: skip
    frame = spark.createDataFrame(rows, "age int, cost double, female boolean, label int")
    spec = ModelSpec(name="trees", description="d", algorithm="spark_gbt", features=["*"],
                     params={"maxIter": 10, "maxDepth": 3, "minInstancesPerNode": 1})  # fmt: skip
    model = fit_on_spark(spec, frame, ["age", "cost", "female"], seed=7)
    scored = spark_probability(model, frame.withColumn("person", F.col("age"))).toPandas()
    assert list(scored.columns) == ["age", "cost", "female", "label", "person", "probability"]
    assert len(scored) == 300 and scored["probability"].between(0, 1).all()
    assert performance(scored["label"].to_numpy(), scored["probability"].to_numpy())["auc"] > 0.995
    # a missing cost is told apart from every known one (as 0 it would share the cost of age 0, 5, 10, ...)
    young = scored[scored["age"] <= 70]
    assert young[young["cost"].isna()]["probability"].min() > young[young["cost"].notna()]["probability"].max()
    importance = spark_importance(model, ["age", "cost", "female"])
    assert list(importance.index[:2]) == ["age", "cost"] and importance["female"] == pytest.approx(0.0, abs=0.01)


# -- tiers and the oracle --------------------------------------------------------------------------------------
def test_tiers_follow_the_percentile_cut_offs(spark):
    scored = spark.createDataFrame(
        [("m", f"p{i}", i / 100) for i in range(100)], "model_name string, person_id string, probability double"
    )
    tiers = {
        r.tier: r.n for r in with_tiers(scored, RiskTiers()).groupBy("tier").agg(F.count("*").alias("n")).collect()
    }
    assert tiers == {"high": 5, "emerging": 15, "low": 80}


def test_oracle_measures_of_the_true_probabilities_are_perfectly_calibrated():
    rng = np.random.default_rng(11)
    true = rng.beta(1, 10, 20_000)
    y = (rng.random(len(true)) < true).astype(int)
    same = oracle_measures(y, true, true)
    assert same["model_auc"] == same["oracle_auc"] and same["auc_gap"] == 0
    assert (same["slope_vs_true_risk"], same["intercept_vs_true_risk"]) == (pytest.approx(1.0), pytest.approx(0.0))
    assert same["decile_mean_abs_error"] == pytest.approx(0.0)
    flat = oracle_measures(y, np.full(len(y), true.mean()) + rng.normal(0, 1e-4, len(y)), true)
    assert flat["auc_gap"] > 0.2
    assert true_probability(np.array([0.5]), 6)[0] == pytest.approx(1 - 0.5**0.5)


def test_each_person_maps_to_the_true_person_of_most_of_its_records(spark):
    links = spark.createDataFrame(
        [("s", "1", "P"), ("s", "2", "P"), ("s", "3", "P"), ("s", "4", "Q")],
        "source string, record_id string, person_id string",
    )
    truth = spark.createDataFrame(
        [("s", "1", "t1"), ("s", "2", "t1"), ("s", "3", "t2"), ("s", "4", "t3")],
        "source string, record_id string, true_person_id string",
    )
    assert sorted(tuple(r) for r in true_person_of(links, truth).collect()) == [("P", "t1"), ("Q", "t3")]
