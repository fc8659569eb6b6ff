"""Impactability against the synthetic truth store: `phm run evaluate_impactability`.

Evaluation only (reads the truth store; on real data leave it out with refresh.exclude):
- each estimate of mart.programme_evaluation beside the true average effect on the treated (the truth's
  per-person effect over the follow-up, averaged over the trial's treated): bias, and whether the 95%
  interval covers it;
- each uplift champion on the held-out trial people: its Qini beside the oracle's (the same people ranked
  by true benefit) with observed outcomes, the same with true benefits in place of outcomes (expected
  Qini), and the correlation of predicted with true benefit; beside it, the expected Qini of ranking by
  the model's untreated risk alone (what a programme with one relative effect for everyone would give);
- targeting: the true admissions avoided by the people mart.intervention_targets chose, beside those
  the same capacity would avoid if chosen on risk alone (same rules, same candidates).
Into mart.impactability_oracle_evaluation, and as oracle.* metrics on the uplift champions' MLflow runs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.impactability.cohort import referrals, trial_with_features
from phm.impactability.targeting import apply_rules, choose, targeting_frame
from phm.impactability.uplift import expected_qini, load_uplift_specs, qini_coefficient, trial_outcomes
from phm.models.oracle import true_person_of, true_probability
from phm.models.registry import champion_predictions, champions_of
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import use_experiment
from phm.synthetic.calibration import load_calibration
from phm.synthetic.programme import relative_effect
from phm.synthetic.truth import truth_store
from phm.tables import (
    EVENTS,
    FEATURES,
    IMPACTABILITY_ORACLE_EVALUATION,
    INTERVENTION_TARGETS,
    PERSON_LINK,
    PROGRAMME_EVALUATION,
    PROGRAMME_TRIAL,
    RISK_SCORES,
    SEGMENTS,
)

log = logging.getLogger("phm.jobs.evaluate_impactability")

SPEC = JobSpec(
    name="evaluate_impactability",
    description="programme estimates, uplift Qini and targeting vs the synthetic truth store",
    outputs=(IMPACTABILITY_ORACLE_EVALUATION.name,),
    depends_on=("target",),
)


def true_benefit(p12: np.ndarray, relative: np.ndarray, follow_up_months: int) -> np.ndarray:
    """The fall in the probability of an emergency admission over the follow-up if enrolled."""
    untreated = true_probability(p12, follow_up_months)
    treated = true_probability(1 - (1 - np.asarray(p12, float)) ** (1 - np.asarray(relative, float)), follow_up_months)
    return untreated - treated


def run(ctx: JobContext) -> None:
    config, catalog, spark = ctx.config, ctx.catalog, ctx.spark
    truth = truth_store(config, SPEC.name, "programme")
    for needed, stage in ((PROGRAMME_EVALUATION.name, "evaluate_programme"), (INTERVENTION_TARGETS.name, "target")):
        if not catalog.exists(needed):
            raise UserError(f"evaluate_impactability: {needed} does not exist; run `phm run {stage}` first")
    inputs = (PROGRAMME_EVALUATION.name, PROGRAMME_TRIAL.name, INTERVENTION_TARGETS.name, PERSON_LINK.name)
    if ctx.unchanged_since_last_success(inputs, SPEC.outputs):
        log.info("evaluate_impactability: estimates, trial and targets are unchanged; nothing to do")
        ctx.rows_out = 0
        return
    follow_up = config.risk.follow_up_months
    truth_of = true_person_of(catalog.read(PERSON_LINK.name), spark.read.parquet(str(truth / "record_person")))
    programme = spark.read.parquet(str(truth / "programme")).select("true_person_id", "true_relative_effect",
                                                                     "p_emergency_12m_untreated")  # fmt: skip
    trial = (
        trial_with_features(catalog.read(PROGRAMME_TRIAL.name), catalog.read(FEATURES.name))
        .toPandas()
        .merge(truth_of.join(programme, "true_person_id").toPandas(), on="person_id", how="left")
    )
    trial["true_benefit"] = true_benefit(
        trial["p_emergency_12m_untreated"].fillna(0), trial["true_relative_effect"].fillna(0), follow_up
    )
    rows = _estimates(catalog, trial) + _uplift(config, trial) + _targeting(ctx, truth, truth_of, follow_up)
    for row in rows:
        log.info("evaluate_impactability: %s %s: %s (truth %s, ratio/gap %s%s)", row["measure"], row["subject"],
                 _fmt(row["value"]), _fmt(row.get("truth")), _fmt(row.get("ratio_or_gap")),
                 "" if row.get("covered") is None else f", covered {row['covered']}")  # fmt: skip
    columns = IMPACTABILITY_ORACLE_EVALUATION.schema.fieldNames()
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows])
    catalog.overwrite(
        IMPACTABILITY_ORACLE_EVALUATION.name,
        catalog.from_pandas(IMPACTABILITY_ORACLE_EVALUATION.name, frame),
    )


def _estimates(catalog, trial: pd.DataFrame) -> list[dict]:
    treated = trial[trial["treated"] == 1]
    true_att = -float(treated["true_benefit"].mean())
    rows = []
    for r in catalog.read(PROGRAMME_EVALUATION.name).collect():
        rows.append({
            "measure": "programme_effect_on_treated", "subject": r.method, "value": r.estimate, "truth": true_att,
            "ratio_or_gap": None if r.estimate is None else r.estimate - true_att, "ci_low": r.ci_low,
            "ci_high": r.ci_high, "covered": bool(r.ci_low <= true_att <= r.ci_high), "people": int(r.treated),
        })  # fmt: skip
    return rows


def _uplift(config, trial: pd.DataFrame) -> list[dict]:
    use_experiment(config, "impactability")
    client = MlflowClient()
    held_out = trial[trial["held_out"]]
    t, y, w = trial_outcomes(held_out)
    oracle_qini = qini_coefficient(held_out["true_benefit"], t, y, w)
    oracle_expected = expected_qini(held_out["true_benefit"], held_out["true_benefit"])
    specs = load_uplift_specs(config.resolve(config.impactability.models))
    registered = {name: spec.registered_model for name, (spec, _) in specs.items()}
    champions = champions_of(client, registered)
    rows = []
    for name, predicted in champion_predictions(champions, registered, held_out).items():
        champion = champions[name]
        benefit = predicted["benefit"].to_numpy()
        qini, expected = qini_coefficient(benefit, t, y, w), expected_qini(benefit, held_out["true_benefit"])
        # The baseline any uplift model must beat: ranking by the same model's untreated risk alone (the benefit
        # of a programme with one relative effect for everyone is proportional to it).
        by_risk = expected_qini(predicted["untreated_risk"].to_numpy(), held_out["true_benefit"])
        ratios = {
            "qini_ratio": qini / oracle_qini if oracle_qini else None,
            "expected_qini_ratio": expected / oracle_expected if oracle_expected else None,
            "benefit_correlation": float(np.corrcoef(benefit, held_out["true_benefit"])[0, 1])
            if len(held_out) > 2
            else None,
        }
        subject, people = f"{name} v{champion.version}", len(held_out)
        rows += [
            {"measure": "qini_held_out", "subject": subject, "value": qini, "truth": oracle_qini,
             "ratio_or_gap": ratios["qini_ratio"], "people": people},
            {"measure": "expected_qini_held_out", "subject": subject, "value": expected, "truth": oracle_expected,
             "ratio_or_gap": ratios["expected_qini_ratio"], "people": people},
            {"measure": "benefit_correlation_held_out", "subject": subject, "value": ratios["benefit_correlation"],
             "people": people},
            {"measure": "expected_qini_held_out", "subject": f"{subject} untreated risk alone", "value": by_risk,
             "truth": oracle_expected, "ratio_or_gap": by_risk / oracle_expected if oracle_expected else None,
             "people": people},
        ]  # fmt: skip
        for key, value in ratios.items():
            if value is not None:
                client.log_metric(champion.run_id, f"oracle.{key}", value)
    return rows


def _targeting(ctx: JobContext, truth, truth_of, follow_up: int) -> list[dict]:
    """True admissions avoided (over the follow-up) by the chosen people, and by risk-only choice."""
    config, catalog, spark = ctx.config, ctx.catalog, ctx.spark
    settings = config.impactability
    targets = catalog.read(INTERVENTION_TARGETS.name)
    risk_model = targets.select("risk_model").first()[0].split(" v")[0]
    risk = catalog.read(RISK_SCORES.name).where(F.col("model_name") == risk_model)
    scoring_date = risk.select("index_date").first()[0]
    ruled = apply_rules(
        targeting_frame(catalog.read(SEGMENTS.name), risk,
                        referrals(catalog.read(EVENTS.name), settings.programme_source), scoring_date),
        settings.eligible, settings.amenable, settings.exclusions,
    )  # fmt: skip
    by_risk = choose(ruled.where(F.col("excluded_by").isNull()), "risk", settings.capacity)
    people = spark.read.parquet(str(truth / "person")).select(
        "true_person_id", "date_of_birth", "condition_count", "p_emergency_12m"
    )
    dementia = (
        spark.read.parquet(str(truth / "person_condition"))
        .where((F.col("condition") == "dementia") & (F.col("onset_date") < F.lit(scoring_date)))
        .select("true_person_id", F.lit(True).alias("dementia"))
    )
    rows = []
    calibration = load_calibration(config.resolve(config.synthetic.calibration)).programme
    for subject, chosen in (("uplift", targets), ("risk_only", by_risk)):
        frame = (
            chosen.select("person_id").join(truth_of, "person_id", "left").join(people, "true_person_id", "left")
            .join(dementia, "true_person_id", "left")
            .withColumn("age", F.floor(F.months_between(F.lit(scoring_date), F.col("date_of_birth")) / 12))
            .toPandas()
        )  # fmt: skip
        dementia_flag = frame["dementia"].astype("boolean").fillna(False).to_numpy(bool)
        effect = relative_effect(frame["age"].fillna(0).to_numpy(), frame["condition_count"].fillna(0).to_numpy(),
                                 dementia_flag, np.zeros(len(frame), bool), calibration)  # fmt: skip
        avoided = true_benefit(frame["p_emergency_12m"].fillna(0).to_numpy(), effect, follow_up)
        rows.append({"measure": "targeting_true_admissions_avoided", "subject": subject, "value": float(avoided.sum()),
                     "people": len(frame)})  # fmt: skip
    rows[0]["truth"] = rows[1]["value"]
    rows[0]["ratio_or_gap"] = rows[0]["value"] / rows[1]["value"] if rows[1]["value"] else None
    return rows


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4g}"


if __name__ == "__main__":
    main_for(SPEC.name)
