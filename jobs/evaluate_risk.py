"""Risk models against the synthetic truth store: `phm run evaluate_risk`.

Evaluation only (reads the truth store; on real data leave it out with
refresh.exclude). For each model spec's champion: its predictions on the
validation index date (through mlflow.pyfunc.spark_udf, as scoring does),
the true probabilities of the same people, the model AUC beside the oracle
AUC and the calibration against the true risk (phm.models.oracle), into
mart.risk_oracle_evaluation and as oracle.* metrics on the champion's MLflow run.
And the best AUC any model can reach at the validation date with the history
its features span and with all the history before it (phm.synthetic.achievable),
into mart.risk_achievable_auc and as oracle.achievable_auc_<N>m metrics.
"""

from __future__ import annotations

import logging

import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.features.index_dates import VALIDATION, months_between, plan_index_dates
from phm.models.oracle import oracle_measures, true_person_of, true_probability
from phm.models.registry import CHAMPION, champion_of
from phm.models.scoring import score_with_champion
from phm.models.specs import load_model_specs
from phm.person.events import history_span
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.tracking import use_experiment
from phm.synthetic.achievable import ReconstructionError, achievable_auc, observer, truth_columns
from phm.synthetic.calibration import load_calibration
from phm.synthetic.truth import truth_store
from phm.tables import EVENTS, FEATURES, PERSON, PERSON_LINK, RISK_ACHIEVABLE_AUC, RISK_ORACLE_EVALUATION

log = logging.getLogger("phm.jobs.evaluate_risk")

SPEC = JobSpec(
    name="evaluate_risk",
    description="champion risk models vs the true probabilities of the synthetic truth store (oracle AUC)",
    outputs=(RISK_ORACLE_EVALUATION.name, RISK_ACHIEVABLE_AUC.name),
    depends_on=("train_risk",),
)


def run(ctx: JobContext) -> None:
    config, catalog, spark = ctx.config, ctx.catalog, ctx.spark
    truth = truth_store(config, SPEC.name, "person")
    specs = [spec for spec, _ in load_model_specs(config.resolve(config.risk.models)).values()]
    if not catalog.exists(FEATURES.name):
        raise UserError("evaluate_risk: gold.features does not exist; run `phm run features` first")
    use_experiment(config, "risk")
    client = MlflowClient()
    champions = {spec.name: champion_of(client, spec.registered_model) for spec in specs}
    evaluated = _evaluated(catalog)
    current = {(name, str(c.version)) for name, c in champions.items() if c is not None}
    if ctx.unchanged_since_last_success((FEATURES.name, PERSON_LINK.name), SPEC.outputs) and current <= evaluated:
        log.info("evaluate_risk: features, links and champions are unchanged since the last evaluation; nothing to do")
        ctx.rows_out = 0
        return
    if not current:  # before anything is written: a failed run leaves no table changed
        raise UserError("evaluate_risk: no model has a champion yet; run `phm run train_risk` first")
    ceiling = _achievable(ctx, truth)
    validation = catalog.read(FEATURES.name).where(F.col("split") == VALIDATION)
    truth_of = true_person_of(catalog.read(PERSON_LINK.name), spark.read.parquet(str(truth / "record_person")))
    true_risk = spark.read.parquet(str(truth / "person")).select("true_person_id", "p_emergency_12m")
    rows = []
    for spec in specs:
        champion = champions[spec.name]
        if champion is None:
            log.warning("evaluate_risk: %s has no %s; nothing to evaluate", spec.name, CHAMPION)
            continue
        predicted = score_with_champion(validation, spec.registered_model).select(
            "person_id", "index_date", "label", "probability"
        )
        frame = predicted.join(truth_of, "person_id", "left").join(true_risk, "true_person_id", "left").toPandas()
        known = frame[frame["p_emergency_12m"].notna()]
        measures = oracle_measures(
            known["label"].to_numpy(),
            known["probability"].to_numpy(),
            true_probability(known["p_emergency_12m"], config.risk.follow_up_months),
        )
        rows.append(
            {
                "model_name": spec.name,
                "model_version": str(champion.version),
                "index_date": frame["index_date"].iloc[0],
                "persons": len(frame),
                "persons_with_truth": len(known),
                "events": int(frame["label"].sum()),
                **measures,
            }
        )
        achievable = {f"achievable_auc_{r.history_months}m": r.achievable_auc for r in ceiling.itertuples()}
        for key, value in {**measures, **achievable}.items():
            if not pd.isna(value):  # None or NaN: nothing measured
                client.log_metric(champion.run_id, f"oracle.{key}", value)
        log.info(
            "evaluate_risk: %s v%s: model AUC %.4f, oracle AUC %.4f (gap %.4f); slope vs true risk %.3f%s",
            spec.name, champion.version, measures["model_auc"] or float("nan"), measures["oracle_auc"] or float("nan"),
            measures["auc_gap"] or float("nan"), measures["slope_vs_true_risk"] or float("nan"),
            "".join(f"; best achievable with {r.history_months} months' history {r.achievable_auc:.4f}"
                    for r in ceiling.itertuples()),
        )  # fmt: skip
    result = spark.createDataFrame(rows, RISK_ORACLE_EVALUATION.schema)
    catalog.merge(RISK_ORACLE_EVALUATION.name, result)


def _achievable(ctx: JobContext, truth) -> pd.DataFrame:
    """mart.risk_achievable_auc's rows for the validation date (written here), with the longest feature window
    and with every month of history before the date; none (a warning) if the truth store was generated with
    another calibration than the configured one or by an earlier generator."""
    config, catalog, spark = ctx.config, ctx.catalog, ctx.spark
    reference_date, history_start = history_span(
        catalog.read(PERSON.name), catalog.read(EVENTS.name), SPEC.name, catalog.least_value(EVENTS.name, "period")
    )
    plan = plan_index_dates(reference_date, history_start, config.risk)
    months = sorted({max(plan.windows), months_between(history_start, plan.validation)})
    calibration = load_calibration(config.resolve(config.synthetic.calibration))
    try:
        person = truth_columns(spark.read.parquet(str(truth / "person")), history_start).toPandas()
        seen = observer(person, calibration, plan.validation, reference_date)
    except ReconstructionError as error:
        log.warning("evaluate_risk: no achievable AUC: %s", error)
        return pd.DataFrame(columns=RISK_ACHIEVABLE_AUC.schema.names)
    rows = achievable_auc(seen, calibration, months, config.risk.follow_up_months, config.synthetic.seed)
    rows.insert(0, "index_date", plan.validation)
    catalog.merge(RISK_ACHIEVABLE_AUC.name, catalog.from_pandas(RISK_ACHIEVABLE_AUC.name, rows))
    for row in rows.itertuples():
        log.info(
            "evaluate_risk: at %s with %d months' history, %d people: best achievable AUC %.4f (emergency admissions "
            "only %.4f, no history %.4f) against the oracle's %.4f on the same simulated outcomes",
            plan.validation, row.history_months, row.persons, row.achievable_auc, row.admissions_only_auc,
            row.no_history_auc, row.oracle_auc,
        )  # fmt: skip
    return rows


def _evaluated(catalog) -> set[tuple[str, str]]:
    if not catalog.exists(RISK_ORACLE_EVALUATION.name):
        return set()
    rows = catalog.read(RISK_ORACLE_EVALUATION.name).select("model_name", "model_version").distinct().collect()
    return {(r.model_name, r.model_version) for r in rows}


if __name__ == "__main__":
    main_for(SPEC.name)
