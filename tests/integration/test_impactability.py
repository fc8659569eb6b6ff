"""Impactability on the refreshed tiny ICS: the programme trial accounts for every referral, the effect
estimates, uplift models tracked and registered in MLflow, targets within capacity and rules, the oracle."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import pytest
from dateutil.relativedelta import relativedelta
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm.impactability.cohort import REFERRAL_ROLES
from phm.impactability.effects import METHODS
from phm.impactability.uplift import load_uplift_specs
from phm.models.registry import CANDIDATE
from phm.tables import (
    EVENTS,
    IMPACTABILITY_ORACLE_EVALUATION,
    INTERVENTION_SUMMARY,
    INTERVENTION_TARGETS,
    PROGRAMME_BALANCE,
    PROGRAMME_EVALUATION,
    PROGRAMME_TRIAL,
    SEGMENTS,
    UPLIFT_MODEL_PERFORMANCE,
)

pytestmark = pytest.mark.slow


def test_the_trial_accounts_for_every_referral_and_follows_everyone_from_time_zero(sample):
    config, catalog = sample
    trial = catalog.read(PROGRAMME_TRIAL.name)
    estimates = catalog.read(PROGRAMME_EVALUATION.name).collect()
    run = MlflowClient(tracking_uri=config.tracking_uri).get_run(estimates[0].mlflow_run_id)
    referred = catalog.read(EVENTS.name).where(F.col("source") == "programme").select("person_id").distinct().count()
    roles = {role: int(run.data.metrics[f"referrals.{role}"]) for role in REFERRAL_ROLES}
    assert sum(roles.values()) == referred > 0
    assert trial.where("treated = 1").count() == roles["treated"] > 0
    assert trial.where("role = 'comparator_declined'").count() == roles["comparator_declined"]
    baseline = trial.select("baseline_date").first()[0]
    window_end = baseline + relativedelta(months=config.risk.follow_up_months)
    assert trial.where((F.col("time_zero") < F.lit(baseline)) | (F.col("time_zero") >= F.lit(window_end))).count() == 0
    assert trial.where("propensity <= 0 OR propensity >= 1 OR did_propensity <= 0 OR did_propensity >= 1").count() == 0
    # the DiD's propensity balances the characteristics only: no feature of the windows before baseline
    assert 0 < int(run.data.params["did_covariates"]) < int(run.data.params["covariates"])
    assert run.data.params["did_leaves_out"] == " ".join(config.impactability.did_leaves_out)
    assert {r.method for r in estimates} == set(METHODS)
    for row in estimates:
        assert row.ci_low <= row.ci_high and row.treated > 0, row.method
    balance = catalog.read(PROGRAMME_BALANCE.name)
    assert balance.count() > 20 and balance.where("feature = 'age'").count() == 1
    assert balance.where("smd_after_did IS NULL").count() == 0


def test_uplift_models_are_tracked_registered_and_gated(sample):
    config, catalog = sample
    client = MlflowClient(tracking_uri=config.tracking_uri)
    performance = {r.model_name: r for r in catalog.read(UPLIFT_MODEL_PERFORMANCE.name).collect()}
    for spec, _ in load_uplift_specs(config.resolve(config.impactability.models)).values():
        candidate = client.get_model_version_by_alias(spec.registered_model, CANDIDATE)
        row = performance[spec.name]
        assert row.model_version == str(candidate.version) and row.held_out_treated > 0 and row.reason
        assert candidate.tags["promotion_reason"] == row.reason
        run = client.get_run(candidate.run_id)
        assert run.data.metrics["qini"] == pytest.approx(row.qini)
        # the Qini's bootstrap standard error, which target's one-standard-error choice reads from the version
        assert float(candidate.tags["qini_se"]) == pytest.approx(run.data.metrics["qini_se"], abs=1e-6)
        assert run.data.params["learner"] == spec.learner
        assert {"qini.png", "features.txt"} <= {a.path for a in client.list_artifacts(candidate.run_id)}
        # pinned, with what the model imports lazily (MLflow's own inference missed econml and lightgbm)
        mlflow.set_tracking_uri(config.tracking_uri)
        needs = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{spec.registered_model}/{candidate.version}"))
        pins = dict(line.split("==") for line in needs.read_text().split())
        assert {"phm", "econml", "lightgbm", "scikit-learn"} <= set(pins) and pins["econml"] == version("econml")


def test_targets_respect_capacity_exclusions_and_add_up(sample):
    _, catalog = sample
    targets = catalog.read(INTERVENTION_TARGETS.name)
    summary = {r.pcn_code: r for r in catalog.read(INTERVENTION_SUMMARY.name).collect()}
    chosen = {r.pcn_code: r["count"] for r in targets.groupBy("pcn_code").count().collect()}
    assert sum(chosen.values()) > 0 and None not in chosen  # only people a PCN can offer a place to
    for pcn, row in summary.items():
        assert chosen.get(pcn, 0) == row.chosen == min(row.capacity, row.candidates)
        assert row.admissions_avoided_low <= row.expected_admissions_avoided <= row.admissions_avoided_high
        assert row.expected_admissions_avoided == pytest.approx(
            targets.where(F.col("pcn_code") == pcn).agg(F.sum("expected_admissions_avoided")).first()[0] or 0.0
        )
    people = targets.join(catalog.read(SEGMENTS.name), "person_id")
    assert people.count() == targets.count()
    assert people.where("NOT (age >= 65 OR long_term_conditions >= 2)").count() == 0
    assert people.where("array_contains(conditions, 'palliative_care')").count() == 0
    enrolled = catalog.read(EVENTS.name).where("source = 'programme' AND setting = 'enrolled'").select("person_id")
    assert targets.join(enrolled, "person_id").count() == 0
    ranked = targets.where("rank_in_pcn = 1").collect()
    for row in ranked:  # the first of each PCN has the most expected admissions avoided there
        best = targets.where(F.col("pcn_code") == row.pcn_code).agg(F.max("expected_admissions_avoided")).first()[0]
        assert row.expected_admissions_avoided == best


def test_impactability_is_compared_with_the_truth(sample):
    _, catalog = sample
    rows = catalog.read(IMPACTABILITY_ORACLE_EVALUATION.name).collect()
    estimates = [r for r in rows if r.measure == "programme_effect_on_treated"]
    assert {r.subject for r in estimates} == set(METHODS)
    assert len({r.truth for r in estimates}) == 1 and estimates[0].truth < 0  # the programme prevents admissions
    targeting = {r.subject: r for r in rows if r.measure == "targeting_true_admissions_avoided"}
    assert set(targeting) == {"uplift", "risk_only"} and targeting["uplift"].value > 0
    assert any(r.measure == "qini_held_out" for r in rows)
    baselines = [r for r in rows if r.subject.endswith("untreated risk alone")]
    assert baselines and all(r.measure == "expected_qini_held_out" and r.truth > 0 for r in baselines)
