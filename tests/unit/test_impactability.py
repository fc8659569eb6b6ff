"""Impactability logic on hand-built data: the emulated trial, the effect estimators against a known effect,
Qini, the uplift learners, targeting rules and capacity, and the generator's effect rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from pyspark.sql import functions as F

from phm.config import Capacity
from phm.errors import ConfigError, UserError
from phm.impactability.cohort import build_trial, plan_trial, referrals, trial_with_features
from phm.impactability.effects import (
    Trial,
    characteristics,
    estimate_effects,
    fit_propensity,
    match,
    overlap,
    smd,
)
from phm.impactability.targeting import apply_rules, choose, with_expected_avoided
from phm.impactability.uplift import (
    BaggedUplift,
    UpliftSpec,
    between_group_variance,
    expected_qini,
    load_uplift_specs,
    qini_coefficient,
    qini_standard_error,
    relative_benefit,
    select_uplift_model,
    shrunk_relative_benefits,
)
from phm.synthetic.calibration import load_calibration
from phm.synthetic.programme import relative_effect

REPO = Path(__file__).resolve().parents[2]


# -- the emulated trial ----------------------------------------------------------------------------------------
def test_trial_baseline_is_the_latest_index_date_with_a_full_window_and_follow_up():
    dates = [date(2024, 4, 1), date(2025, 4, 1)]
    plan = plan_trial(dates, date(2026, 4, 1), 12, date(2024, 4, 10))
    assert (plan.baseline, plan.window_end, plan.window_days) == (date(2024, 4, 1), date(2025, 4, 1), 365)
    with pytest.raises(UserError, match="no index date"):
        plan_trial(dates, date(2026, 4, 1), 12, date(2025, 6, 1))  # referrals start after every usable baseline
    with pytest.raises(UserError, match="no programme referral"):
        plan_trial(dates, date(2026, 4, 1), 12, None)


def _events(spark, rows):
    return spark.createDataFrame(rows, "person_id string, source string, activity string, event_date date, "
                                       "setting string, emergency boolean")  # fmt: skip


def test_trial_roles_time_zero_and_outcomes(spark):
    d = date
    features = spark.createDataFrame(
        [(p, d(2024, 4, 1), "P1" if p != "f" else "P2", age, ltc)
         for p, age, ltc in [("a", 70.0, 0.0), ("b", 70.0, 3.0), ("c", 80.0, 1.0), ("d", 30.0, 0.0), ("e", 66.0, 0.0),
                             ("f", 90.0, 4.0), ("g", 75.0, 0.0), ("h", 70.0, 2.0)]],
        "person_id string, index_date date, practice_code string, age double, long_term_conditions double",
    )  # fmt: skip
    events = _events(spark, [
        ("a", "programme", "programme_referral", d(2024, 6, 1), "enrolled", False),
        ("a", "inpatient", "emergency_admission", d(2024, 1, 10), None, True),  # before time zero: prior
        ("a", "inpatient", "emergency_admission", d(2024, 8, 1), None, True),  # after: outcome
        ("a", "inpatient", "emergency_admission", d(2025, 7, 1), None, True),  # after the follow-up: neither
        ("b", "programme", "programme_referral", d(2024, 9, 1), "declined", False),
        ("c", "programme", "programme_referral", d(2025, 5, 1), "enrolled", False),  # after the window
        ("d", "programme", "programme_referral", d(2024, 5, 1), "enrolled", False),  # not eligible (30, 0 LTCs)
        ("e", "programme", "programme_referral", d(2024, 2, 1), "enrolled", False),  # before the baseline
        ("g", "deaths", "death", d(2024, 4, 2), None, False),  # dies before any time zero in the window
        ("h", "inpatient", "emergency_admission", d(2025, 1, 5), None, True),
    ])  # fmt: skip
    plan = plan_trial([d(2024, 4, 1)], d(2026, 4, 1), 12, d(2024, 2, 1))
    trial, roles = build_trial(features, events, referrals(events, "programme"), plan,
                               "age >= 65 OR long_term_conditions >= 2", seed=1)  # fmt: skip
    got = {r.person_id: r for r in trial.collect()}
    assert set(got) == {"a", "b", "c", "h"}  # f: practice P2 referred nobody; g died; d, e: see roles
    assert (got["a"].treated, got["a"].time_zero, got["a"].outcome, got["a"].outcome_count, got["a"].prior) == (
        1, d(2024, 6, 1), 1, 1, 1)  # fmt: skip
    assert (got["b"].treated, got["b"].role, got["b"].time_zero) == (0, "comparator_declined", d(2024, 9, 1))
    assert (got["c"].treated, got["c"].role) == (0, "comparator_referred_after_window")
    assert d(2024, 4, 1) <= got["h"].time_zero < d(2025, 4, 1) and got["h"].role == "comparator"
    assert got["h"].outcome == int(got["h"].time_zero <= d(2025, 1, 5))
    assert {r.person_id: r.role for r in roles.collect()} == {
        "a": "treated", "b": "comparator_declined", "c": "comparator_referred_after_window",
        "d": "not_eligible_at_baseline", "e": "referred_before_baseline",
    }  # fmt: skip


def test_a_trial_written_before_the_did_propensity_asks_for_evaluate_programme(spark):
    old = spark.createDataFrame([("a", date(2024, 4, 1), 1, 0, 0, 0.3, False, "treated")],
                                "person_id string, baseline_date date, treated int, outcome int, prior int, "
                                "propensity double, held_out boolean, role string")  # fmt: skip
    features = spark.createDataFrame([("a", date(2024, 4, 1), 70)], "person_id string, index_date date, age int")
    with pytest.raises(UserError, match="run `phm run evaluate_programme`"):
        trial_with_features(old, features)
    joined = trial_with_features(old.withColumn("did_propensity", F.lit(0.2)), features).collect()
    assert [(r.person_id, r.age, r.propensity, r.did_propensity) for r in joined] == [("a", 70, 0.3, 0.2)]


# -- effect estimates ------------------------------------------------------------------------------------------
def _confounded(n=6000, effect=-0.08, seed=3):
    """Risk drives referral (confounding); the treated's admission probability falls by `effect`."""
    rng = np.random.default_rng(seed)
    risk_factor = rng.normal(size=n)
    noise = rng.normal(size=n)
    p0 = 1 / (1 + np.exp(-(-1.0 + 0.9 * risk_factor)))
    t = (rng.random(n) < 1 / (1 + np.exp(-(-2.0 + 1.2 * risk_factor)))).astype(int)
    y = (rng.random(n) < np.clip(p0 + effect * t, 0, 1)).astype(float)
    prior = (rng.random(n) < p0).astype(float)
    x = pd.DataFrame({"risk_factor": risk_factor, "noise": noise})
    return Trial(x, t, y, prior)


def test_adjusted_estimates_cover_a_known_effect_that_the_naive_difference_misses():
    trial = _confounded()
    e = fit_propensity(trial.x, trial.t, 0).predict_proba(trial.x)[:, 1]
    table = estimate_effects(trial, e, e, caliper_sd=0.2, resamples=200, seed=0).set_index("method")
    for method in ("ipw", "matched", "did_ipw", "naive_before_after"):
        assert table.loc[method, "ci_low"] <= -0.08 <= table.loc[method, "ci_high"], method
    assert table.loc["naive_difference", "estimate"] > 0.05  # the sicker were treated: it looks harmful
    assert table.loc["naive_difference", "ci_low"] > -0.08
    assert table.loc["naive_before_after", "comparators"] == 0
    diagnostics = overlap(e, trial.t, trial.x)
    assert diagnostics["max_abs_smd_before"] > 0.5 > 0.1 > diagnostics["max_abs_smd_after"]


def _referred_on_a_lasting_risk(n=40000, relative_effect=0.3, seed=5):
    """(trial, true ATT): a lasting risk the data do not show drives both referral and admissions; the features
    are a recorded characteristic and the admissions of the year before baseline (one draw of the same risk)."""
    rng = np.random.default_rng(seed)
    conditions, unseen = rng.poisson(1.5, n).astype(float), rng.normal(size=n)
    p0 = 1 - np.exp(-np.exp(-2.2 + 0.35 * conditions + 0.8 * unseen))
    t = (rng.random(n) < 1 / (1 + np.exp(-(-2.5 + 0.3 * conditions + 0.9 * unseen)))).astype(int)
    admissions_12m = rng.poisson(-np.log1p(-p0))  # prior: an admission in the year before
    p = p0 * (1 - relative_effect * t)
    y = (rng.random(n) < p).astype(float)
    x = pd.DataFrame({"conditions": conditions, "emergency_admissions_12m": admissions_12m.astype(float)})
    return Trial(x, t, y, (admissions_12m > 0).astype(float)), float((p - p0)[t == 1].mean())


def test_did_weighted_on_characteristics_recovers_an_effect_that_weights_on_prior_use_shrink():
    # Weighting on prior use picks comparators whose prior year was high by chance; they regress to the mean
    # and take the treated's lasting excess out of the DiD with the effect (Daw & Hatfield 2018).
    trial, truth = _referred_on_a_lasting_risk()
    covariates = list(trial.x.columns)
    assert characteristics(covariates, ["*_3m", "*_12m", "*_trend", "days_since_*"]) == ["conditions"]
    e_all = fit_propensity(trial.x, trial.t, 0).predict_proba(trial.x)[:, 1]
    e_did = fit_propensity(trial.x[["conditions"]], trial.t, 0).predict_proba(trial.x[["conditions"]])[:, 1]
    on_prior_use = estimate_effects(trial, e_all, e_all, 0.2, 200, 0).set_index("method").loc["did_ipw"]
    on_characteristics = estimate_effects(trial, e_all, e_did, 0.2, 200, 0).set_index("method").loc["did_ipw"]
    assert on_characteristics.ci_low <= truth <= on_characteristics.ci_high
    assert not on_prior_use.ci_low <= truth <= on_prior_use.ci_high
    assert truth < on_prior_use.estimate  # shrunk towards no effect


def test_propensity_on_heavy_tailed_counts_balances_them_after_weighting():
    # Referral on the log of a heavy-tailed utilisation count: a raw-scale logistic regression gives the
    # heaviest users propensities near 1 and over-corrects; the log1p scale restores balance.
    rng = np.random.default_rng(3)
    visits = rng.poisson(rng.lognormal(1.0, 1.2, 6000))
    t = (rng.random(6000) < 1 / (1 + np.exp(-(np.log1p(visits) - 3.0)))).astype(int)
    x = pd.DataFrame({"visits_12m": visits.astype(float), "age": rng.uniform(20, 90, 6000).round()})
    e = fit_propensity(x, t, 0).predict_proba(x)[:, 1]
    diagnostics = overlap(e, t, x)
    assert diagnostics["max_abs_smd_before"] > 0.5 and diagnostics["max_abs_smd_after"] < 0.1


def test_matching_respects_the_caliper_and_smd_is_zero_for_identical_arms():
    e = np.array([0.1, 0.5, 0.9, 0.11, 0.52])
    t = np.array([1, 1, 1, 0, 0])
    treated, matched = match(e, t, caliper_sd=0.1)
    assert list(zip(treated, matched, strict=True)) == [(0, 3), (1, 4)]  # 0.9 has no comparator near it
    x = pd.DataFrame({"v": [1.0, 2.0, 1.0, 2.0]})
    assert smd(x, np.array([1, 1, 0, 0])).iloc[0] == 0.0


# -- Qini and uplift models ------------------------------------------------------------------------------------
def _randomised_trial(rng, n: int):
    """(benefit, t, y): a coin allocates treatment, which takes each person's benefit off a 0.4 risk."""
    benefit = rng.uniform(0, 0.3, n)
    t = rng.integers(0, 2, n)
    return benefit, t, (rng.random(n) < 0.4 - t * benefit).astype(float)


def test_qini_rewards_ranking_by_benefit_and_the_oracle_beats_random():
    rng = np.random.default_rng(0)
    n = 20000
    benefit, t, y = _randomised_trial(rng, n)
    w = np.ones(n)
    oracle, random_order = qini_coefficient(benefit, t, y, w), qini_coefficient(rng.random(n), t, y, w)
    assert oracle > 0.005 and abs(random_order) < 0.001
    assert qini_coefficient(-benefit, t, y, w) < -0.005  # ranked backwards
    assert expected_qini(benefit, benefit) > expected_qini(rng.random(n), benefit)


def test_bagged_t_learner_finds_who_benefits():
    rng = np.random.default_rng(1)
    n = 4000
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    benefit = np.where(x["a"] > 0, 0.25, 0.0)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.4 - t * benefit).astype(float)
    spec = UpliftSpec(name="u", description="d", learner="t", features=["*"], bags=3,
                      params={"n_estimators": 60, "num_leaves": 4, "min_child_samples": 50})  # fmt: skip
    predicted = BaggedUplift(spec, ["a", "b"]).fit(x, t, y, seed=0).predict(x)
    assert predicted["benefit"][x["a"] > 0].mean() - predicted["benefit"][x["a"] <= 0].mean() > 0.15
    assert (predicted["benefit_sd"] >= 0).all() and predicted["untreated_risk"].between(0.3, 0.5).mean() > 0.9


def test_relative_benefit_is_the_did_effect_over_the_treated_counterfactual_rate():
    t, y = np.array([1, 1, 0, 0]), np.array([0.0, 1.0, 1.0, 1.0])
    prior, propensity = np.array([1.0, 1.0, 1.0, 0.0]), np.full(4, 0.5)  # comparators' ATT weight 1
    # treated change -0.5, comparators' +0.5: effect -1.0; the treated's rate 0.5 would have been 1.5
    assert relative_benefit(t, y, prior, propensity) == pytest.approx(1.0 / 1.5)
    # harm larger than the treated's own rate (effect +1.0 on a rate of 0.5): no counterfactual rate, no benefit
    assert relative_benefit(t, 1 - y, 1 - prior, propensity) == 0.0


def test_proportional_learner_recovers_a_relative_effect_despite_the_treateds_unrecorded_risk():
    rng = np.random.default_rng(2)
    n = 6000
    x = pd.DataFrame({"a": rng.normal(size=n)})
    frailty = rng.random(n) < 0.3  # unrecorded; raises risk in both spans, and the chance of referral
    risk = np.clip(0.05 + 0.15 * (x["a"].to_numpy() > 0) + 0.2 * frailty, 0, 1)
    t = (rng.random(n) < np.where(frailty, 0.5, 0.2)).astype(int)
    prior = (rng.random(n) < risk).astype(float)
    y = (rng.random(n) < risk * (1 - 0.4 * t)).astype(float)  # enrolment takes 40% off anyone's risk
    propensity = np.full(n, t.mean())  # the recorded feature does not predict referral
    spec = UpliftSpec(name="p", description="d", learner="proportional", features=["*"], bags=5,
                      params={"n_estimators": 40, "num_leaves": 4, "min_child_samples": 50})  # fmt: skip
    model = BaggedUplift(spec, ["a"]).fit(x, t, y, seed=0, prior=prior, did_propensity=propensity)
    assert np.mean(model.learners) == pytest.approx(0.4, abs=0.12)
    predicted = model.predict(x)
    relative = predicted["benefit"] / predicted["untreated_risk"]
    assert relative.std() < 0.05 and predicted["benefit_sd"].gt(0).all()
    assert predicted["benefit"][x["a"] > 0].mean() > 2 * predicted["benefit"][x["a"] <= 0].mean()
    with pytest.raises(ValueError, match="needs the prior outcomes"):
        BaggedUplift(spec, ["a"]).fit(x, t, y, seed=0)


def _grouped_trial(n: int, effects: list[float], seed: int):
    """People in len(effects) equal groups; enrolment (a coin) takes effects[g] off a 0.3 risk in group g."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(effects), n)
    t = (rng.random(n) < 0.3).astype(int)
    prior = (rng.random(n) < 0.3).astype(float)
    y = (rng.random(n) < 0.3 * (1 - np.asarray(effects)[group] * t)).astype(float)
    return t, y, prior, np.full(n, 0.3), group


def test_between_group_variance_is_the_spread_beyond_the_noise():
    noise = np.full(4, 0.01)
    assert between_group_variance(np.array([0.2, 0.2, 0.2, 0.2]), noise) == 0.0
    spread = np.array([0.0, 0.4, 0.8, 1.2])  # variance 0.2133 between, 0.01 of noise each
    assert between_group_variance(spread, noise) == pytest.approx(np.var(spread, ddof=1) - 0.01)
    assert between_group_variance(np.array([0.1, 0.3]), np.array([0.5, 0.5])) == 0.0  # well within the noise


def test_group_effects_are_recovered_when_they_differ_and_shrunk_to_everyones_when_they_do_not():
    t, y, prior, propensity, group = _grouped_trial(60_000, [0.1, 0.5], seed=4)
    shrunk = shrunk_relative_benefits(t, y, prior, propensity, group, groups=2, resamples=50, seed=0)
    assert shrunk == pytest.approx([0.1, 0.5], abs=0.08)  # a spread far beyond the noise is kept
    # The same effect everywhere, a few hundred treated per group: the groups' raw estimates scatter by noise,
    # and the shrunk ones sit closer to everyone's effect than the raw ones do.
    t, y, prior, propensity, group = _grouped_trial(3_000, [0.3] * 4, seed=5)
    overall = relative_benefit(t, y, prior, propensity)
    shrunk = shrunk_relative_benefits(t, y, prior, propensity, group, groups=4, resamples=50, seed=0)
    raw = [relative_benefit(t[group == g], y[group == g], prior[group == g], propensity[group == g]) for g in range(4)]
    assert np.abs(shrunk - overall).max() < 0.5 * np.abs(np.array(raw) - overall).max()
    # A group with under ten treated takes everyone's effect, and so does every group when only one is left.
    few = group.copy()
    few[np.flatnonzero((group == 3) & (t == 1))[9:]] = 0
    assert shrunk_relative_benefits(t, y, prior, propensity, few, 4, 50, 0)[3] == pytest.approx(
        relative_benefit(t, y, prior, propensity)
    )
    assert shrunk_relative_benefits(t, y, prior, propensity, np.zeros(len(t), int), 1, 50, 0).tolist() == [overall]


def test_effect_modifiers_name_a_feature_of_the_model_and_the_last_group_met_wins():
    modifiers = [{"name": "aged_80_plus", "feature": "age", "at_least": 80},
                 {"name": "multimorbid", "feature": "long_term_conditions", "at_least": 3}]  # fmt: skip
    spec = UpliftSpec(name="p", description="d", learner="proportional", features=["*"], effect_modifiers=modifiers)
    x = pd.DataFrame({"age": [50.0, 85.0, 85.0, 40.0, np.nan], "long_term_conditions": [0, 1, 4, 3, np.nan]})
    assert spec.effect_group(x).tolist() == [0, 1, 2, 2, 0]
    assert spec.groups == ["everyone_else", "aged_80_plus", "multimorbid"]
    with pytest.raises(ConfigError, match="uplift_p.yaml: effect_modifiers: multimorbid: feature 'long_term_con"):
        spec.model_copy(update={"exclude": ["long_term_*"]}).select_features(list(x.columns), "uplift_p.yaml")
    with pytest.raises(ValidationError, match="for the proportional learner, not the t-learner"):
        UpliftSpec(name="p", description="d", learner="t", features=["*"], effect_modifiers=modifiers)
    with pytest.raises(ValidationError, match="distinct names"):
        UpliftSpec(name="p", description="d", learner="proportional", features=["*"],
                   effect_modifiers=[modifiers[0], modifiers[0]])  # fmt: skip


def test_a_spec_pickled_before_effect_modifiers_existed_loads_with_none():
    spec = UpliftSpec(name="p", description="d", learner="proportional", features=["*"])
    state = spec.__getstate__()
    for added in ("effect_modifiers", "modifier_resamples"):  # as a champion registered by the release before
        del state["__dict__"][added]
    loaded = UpliftSpec.__new__(UpliftSpec)
    loaded.__setstate__(state)
    assert loaded.effect_modifiers == [] and loaded.modifier_resamples == 100
    assert loaded.effect_group(pd.DataFrame({"a": [1.0, 2.0]})).tolist() == [0, 0]


def test_proportional_learner_applies_each_groups_relative_effect_to_the_untreated_risk():
    t, y, prior, propensity, group = _grouped_trial(40_000, [0.1, 0.5], seed=6)
    x = pd.DataFrame({"frail": group.astype(float), "a": np.random.default_rng(7).normal(size=len(t))})
    spec = UpliftSpec(name="p", description="d", learner="proportional", features=["*"], bags=3,
                      effect_modifiers=[{"name": "frail", "feature": "frail", "at_least": 1}], modifier_resamples=30,
                      params={"n_estimators": 30, "num_leaves": 4, "min_child_samples": 50})  # fmt: skip
    model = BaggedUplift(spec, ["frail", "a"]).fit(x, t, y, seed=0, prior=prior, did_propensity=propensity)
    relative = model.relative_benefits()
    assert list(relative) == ["everyone_else", "frail"]
    assert relative == pytest.approx({"everyone_else": 0.1, "frail": 0.5}, abs=0.08)
    predicted = model.predict(x)
    ratio = predicted["benefit"] / predicted["untreated_risk"]
    assert ratio[group == 1].mean() > 3 * ratio[group == 0].mean()


def test_qini_standard_error_shrinks_with_more_people():
    rng = np.random.default_rng(3)

    def se(n):
        benefit, t, y = _randomised_trial(rng, n)
        return qini_standard_error(benefit, t, y, np.ones(n), resamples=100, seed=1)

    small, large = se(500), se(8000)
    assert 0 < large < small / 2  # about 1/sqrt(16) = 1/4 of it


def test_the_preferred_uplift_model_is_kept_unless_a_challenger_beats_it_beyond_noise():
    rng = np.random.default_rng(8)
    n = 20_000
    benefit, t, y = _randomised_trial(rng, n)
    w = np.ones(n)
    good, noise = benefit + rng.normal(0, 0.02, n), rng.random(n)
    args = dict(t=t, y=y, w=w, min_z=1.645, resamples=60, seed=0)
    chosen, qinis, why = select_uplift_model({"pref": noise, "oracle_like": good}, preferred="pref", **args)
    assert chosen == "oracle_like" and qinis["oracle_like"] > qinis["pref"] + 0.01
    assert why.startswith("oracle_like's held-out Qini beats the preferred pref's by +")
    # a challenger that is noise too, however its Qini falls, does not displace the preferred model
    chosen, _, why = select_uplift_model(
        {"pref": good, "other": noise, "another": rng.random(n)}, preferred="pref", **args
    )
    assert chosen == "pref" and why.startswith("the preferred model: no challenger beats its held-out Qini by 1.645 SE")
    small = dict(args, t=t[:400], y=y[:400], w=w[:400])  # 400 people: a real gain within the noise keeps pref
    assert select_uplift_model({"pref": noise[:400], "good": good[:400]}, preferred="pref", **small)[0] == "pref"
    for preferred, reason in ((None, "no preferred uplift model"), ("gone", "the preferred gone has no champion")):
        chosen, _, why = select_uplift_model({"a": noise, "b": good}, preferred=preferred, **args)
        assert chosen == "b" and why.startswith(f"{reason}: the best held-out Qini")


def test_shipped_uplift_specs_load():
    specs = load_uplift_specs(str(REPO / "models/impactability"))
    assert {spec.learner for spec, _ in specs.values()} == {"t", "x", "dr", "proportional"}


# -- targeting -------------------------------------------------------------------------------------------------
def _targeting_frame(spark):
    rows = [
        ("p1", "N1", 70.0, 3, None, None, ["copd"], 0.30, 0.05, 0.01, 0.5),
        ("p2", "N1", 82.0, 1, "severe", None, ["palliative_care"], 0.60, 0.10, 0.01, 0.5),
        ("p3", "N1", 68.0, 2, None, "enrolled", [], 0.50, 0.10, 0.01, 0.5),
        ("p4", "N1", 75.0, 2, None, None, [], 0.20, 0.10, 0.01, 0.5),
        ("p5", "N1", 40.0, 0, None, None, [], 0.90, 0.10, 0.01, 0.5),
        ("p6", "N2", 90.0, 4, "moderate", None, [], 0.10, 0.02, 0.01, 0.5),
        ("p7", "N2", 66.0, 0, "fit", None, [], 0.40, 0.00, 0.00, 0.5),
        ("p8", None, 88.0, 5, "severe", None, [], 0.80, 0.20, 0.01, 0.5),  # not registered at a practice
    ]
    return spark.createDataFrame(rows, "person_id string, pcn_code string, age double, long_term_conditions int, "
                                 "efi_category string, programme_status string, conditions array<string>, risk double, "
                                 "benefit double, benefit_sd double, untreated_risk double")  # fmt: skip


def test_rules_count_each_person_against_the_first_rule_they_meet(spark):
    ruled = apply_rules(
        _targeting_frame(spark), "age >= 65 OR long_term_conditions >= 2",
        "long_term_conditions >= 2 OR efi_category IN ('moderate', 'severe')",
        {"end_of_life": "array_contains(conditions, 'palliative_care')", "enrolled": "programme_status = 'enrolled'"},
    )  # fmt: skip
    got = {r.person_id: r.excluded_by for r in ruled.collect()}
    assert got == {"p1": None, "p2": "end_of_life", "p3": "enrolled", "p4": None, "p5": "not_eligible",
                   "p6": None, "p7": "not_amenable", "p8": "no_pcn"}  # fmt: skip
    with pytest.raises(ConfigError, match="impactability.amenable"):
        apply_rules(_targeting_frame(spark), "true", "age >>= 3 (", {})


def test_capacity_per_pcn_takes_the_most_admissions_avoided(spark):
    valued = with_expected_avoided(_targeting_frame(spark).where("pcn_code IS NOT NULL"))  # as after apply_rules
    chosen = choose(valued, "expected_admissions_avoided", Capacity(per_pcn=2, pcn={"N2": 1}))
    got = sorted((r.pcn_code, r.rank_in_pcn, r.person_id) for r in chosen.collect())
    # N1 by risk x benefit / untreated risk (0.5): p5 0.18, p2 0.12, p3 0.10, p4 0.04, p1 0.03; N2: p6 0.004, p7 0
    assert got == [("N1", 1, "p5"), ("N1", 2, "p2"), ("N2", 1, "p6")]
    by_risk = choose(valued, "risk", Capacity(per_pcn=1))
    assert sorted(r.person_id for r in by_risk.collect()) == ["p5", "p7"]


# -- the generator's truth ---------------------------------------------------------------------------------------
def test_relative_effect_rules_apply_in_order():
    cal = load_calibration(str(REPO / "configs/synthetic/calibration.yaml")).programme
    effect = relative_effect(
        np.array([70, 85, 85, 70, 90]), np.array([1, 1, 3, 4, 4]),
        np.array([False, False, False, True, False]), np.array([False, False, False, False, True]), cal,
    )  # fmt: skip
    assert list(effect) == [cal.effect_default, cal.effect_frail_elderly_80_plus, cal.effect_multimorbid_3_plus,
                            cal.effect_dementia, cal.effect_end_of_life]  # fmt: skip
