"""Targeting without an uplift champion, on the refreshed tiny ICS.

It re-runs `target` twice on the shared sample (adding ledger rows and table versions), so it lives in a module
that sorts after test_refresh, whose checks count the refresh's own runs and versions."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm import cli
from phm.impactability.uplift import load_uplift_specs
from phm.models.registry import CHAMPION, champion_of
from phm.tables import INTERVENTION_SUMMARY, INTERVENTION_TARGETS

pytestmark = pytest.mark.slow


def test_without_an_uplift_champion_targets_are_chosen_on_risk_with_the_assumed_benefit(sample, refreshed):
    config, catalog = sample
    arguments = refreshed[2]
    client = MlflowClient(tracking_uri=config.tracking_uri)
    champions = {}
    for spec, _ in load_uplift_specs(config.resolve(config.impactability.models)).values():
        champion = champion_of(client, spec.registered_model)
        if champion is not None:
            champions[spec.registered_model] = champion.version
            client.delete_registered_model_alias(spec.registered_model, CHAMPION)
    try:
        assert cli.main(["run", "target", *arguments]) == 0  # the refresh goes on without an uplift champion
        assumed = config.impactability.assumed_relative_benefit
        targets = catalog.read(INTERVENTION_TARGETS.name)
        assert {r.uplift_model for r in targets.select("uplift_model").distinct().collect()} == {
            f"none: risk alone, assumed relative benefit {assumed:g}"
        }
        assert targets.count() > 0
        assert targets.where(F.abs(F.col("relative_benefit") - assumed) > 1e-12).count() == 0
        assert targets.where(F.abs(F.col("expected_admissions_avoided") - F.col("risk") * assumed) > 1e-12).count() == 0
        for row in catalog.read(INTERVENTION_SUMMARY.name).collect():  # chosen on risk: the same as risk alone
            assert row.expected_admissions_avoided == pytest.approx(row.expected_admissions_avoided_by_risk_only)
    finally:
        for name, version in champions.items():
            client.set_registered_model_alias(name, CHAMPION, version)
        assert cli.main(["run", "target", *arguments]) == 0
    assert champions  # the fixture models pass their lenient gates; with them back, so is uplift targeting
    assert catalog.read(INTERVENTION_TARGETS.name).where(F.col("uplift_model").startswith("none")).count() == 0


def test_a_preferred_uplift_model_that_is_no_spec_stops_target_naming_the_setting(sample, refreshed, capsys):
    _, catalog = sample
    before = catalog.version(INTERVENTION_TARGETS.name)
    bad = ["--set", "impactability.preferred_uplift_model=uplift_nonesuch"]
    assert cli.main(["run", "target", *refreshed[2], *bad]) == 2
    error = capsys.readouterr().err
    assert "impactability.preferred_uplift_model: 'uplift_nonesuch' is not a spec in" in error
    assert "Traceback" not in error and catalog.version(INTERVENTION_TARGETS.name) == before
