"""Capacity-constrained targeting: whom each PCN should take on to avoid the most emergency admissions.

Candidates: people living at the scoring date, registered at a practice of a PCN, who are `eligible` (the
programme's own rule) and `amenable`, less each exclusion rule (config, Spark SQL over TARGETING_COLUMNS; a
person is counted against the first rule they meet). Value: expected admissions avoided = current risk (the
risk champion's probability) x relative benefit (the uplift champion's benefit over its untreated risk, in
[0, 1]): the uplift model says how much of a person's risk the programme removes, the risk model how much
risk there is now. Each PCN takes its best candidates up to its capacity.
Uncertainty of a PCN's total: the model spread (the bags' SD per person, summed: taken as fully correlated,
which is conservative) and the outcomes' own variance (sum of e(1-e)), combined in a normal 95% interval.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from phm.config import Capacity
from phm.rules import sql_condition

# The columns exclusion, amenability and eligibility rules may use.
TARGETING_COLUMNS = (
    "age", "sex", "conditions", "long_term_conditions", "cms_score", "efi_category", "segment",
    "emergency_admissions_12m", "annual_cost", "risk", "programme_status", "months_since_referral",
)  # fmt: skip
Z95 = 1.959964
NO_PCN = "no_pcn"


def targeting_frame(segments: DataFrame, risk: DataFrame, referred: DataFrame, scoring_date) -> DataFrame:
    """One row per person scored: TARGETING_COLUMNS with person_id, pcn_code and practice_code.

    `risk`: person_id, probability (one model); `referred`: person_id, referral_date, referral_outcome.
    """
    since = F.floor(F.months_between(F.lit(scoring_date).cast("date"), F.col("referral_date"))).cast("int")
    return (
        segments.select(
            "person_id", "pcn_code", "practice_code", *[c for c in TARGETING_COLUMNS if c in segments.columns]
        )
        .join(risk.select("person_id", F.col("probability").alias("risk")), "person_id")
        .join(referred, "person_id", "left")
        .withColumn("programme_status", F.col("referral_outcome"))
        .withColumn("months_since_referral", since)
        .drop("referral_date", "referral_outcome")
    )


def apply_rules(frame: DataFrame, eligible: str, amenable: str, exclusions: dict[str, str]) -> DataFrame:
    """frame + excluded_by (the first rule met: no_pcn, not_eligible, not_amenable or an exclusion's name; null
    for a candidate). no_pcn: not registered at a practice of a PCN, so no PCN can offer a place."""
    reason: Column = F.lit(None).cast("string")
    checks = [(NO_PCN, "pcn_code IS NULL", "pcn_code"),
              ("not_eligible", f"NOT coalesce({eligible}, false)", "impactability.eligible"),
              ("not_amenable", f"NOT coalesce({amenable}, false)", "impactability.amenable"),
              *[(name, f"coalesce({sql}, false)", f"impactability.exclusions.{name}")
                for name, sql in exclusions.items()]]  # fmt: skip
    for name, sql, key in reversed(checks):  # the first rule in order wins
        reason = F.when(sql_condition(frame, sql, key, "the targeting columns"), F.lit(name)).otherwise(reason)
    return frame.withColumn("excluded_by", reason)


def capacity_column(capacity: Capacity) -> Column:
    pcn_capacity = F.lit(capacity.per_pcn)
    for pcn, places in capacity.pcn.items():
        pcn_capacity = F.when(F.col("pcn_code") == pcn, F.lit(places)).otherwise(pcn_capacity)
    return pcn_capacity


def choose(candidates: DataFrame, value: str, capacity: Capacity) -> DataFrame:
    """The best candidates by `value` in each PCN up to its capacity, with rank_in_pcn (ties: person_id)."""
    order = Window.partitionBy("pcn_code").orderBy(F.col(value).desc(), F.col("person_id"))
    ranked = candidates.withColumn("rank_in_pcn", F.row_number().over(order)).withColumn(
        "capacity", capacity_column(capacity)
    )
    return ranked.where(F.col("rank_in_pcn") <= F.col("capacity"))


def with_expected_avoided(frame: DataFrame) -> DataFrame:
    """relative_benefit, expected_admissions_avoided (risk x relative benefit) and its model SD."""
    relative = F.least(F.greatest(F.col("benefit") / F.col("untreated_risk"), F.lit(0.0)), F.lit(1.0))
    return (
        frame.withColumn("relative_benefit", relative)
        .withColumn("expected_admissions_avoided", F.col("risk") * F.col("relative_benefit"))
        .withColumn("expected_admissions_avoided_sd", F.col("risk") * F.col("benefit_sd") / F.col("untreated_risk"))
    )


def pcn_summary(
    ruled: DataFrame, chosen: DataFrame, by_risk: DataFrame, capacity: Capacity, cost_per_admission: float
) -> DataFrame:
    """mart.intervention_summary rows: per PCN candidates, exclusions, chosen and expected avoided (95%)."""
    excluded = (
        ruled.where(F.col("excluded_by").isNotNull())
        .groupBy("pcn_code", "excluded_by")
        .count()
        .groupBy("pcn_code")
        .agg(F.map_from_entries(F.collect_list(F.struct("excluded_by", "count"))).alias("excluded"))
    )
    candidates = (
        ruled.where(F.col("excluded_by").isNull()).groupBy("pcn_code").agg(F.count(F.lit(1)).alias("candidates"))
    )
    e = F.col("expected_admissions_avoided")
    totals = chosen.groupBy("pcn_code").agg(
        F.count(F.lit(1)).alias("chosen"),
        F.sum(e).alias("expected_admissions_avoided"),
        F.sqrt(F.pow(F.sum("expected_admissions_avoided_sd"), 2) + F.sum(e * (1 - e))).alias("_sd"),
    )
    risk_only = by_risk.groupBy("pcn_code").agg(F.sum(e).alias("expected_admissions_avoided_by_risk_only"))
    pcns = ruled.select("pcn_code").where(F.col("pcn_code").isNotNull()).distinct()
    out = (
        pcns.join(candidates, "pcn_code", "left")
        .join(excluded, "pcn_code", "left")
        .join(totals, "pcn_code", "left")
        .join(risk_only, "pcn_code", "left")
        .fillna(
            0,
            ["candidates", "chosen", "expected_admissions_avoided", "_sd", "expected_admissions_avoided_by_risk_only"],
        )
        .withColumn("excluded", F.coalesce("excluded", F.create_map().cast("map<string,bigint>")))
        .withColumn("capacity", capacity_column(capacity))
        .withColumn("admissions_avoided_low", F.greatest(e - Z95 * F.col("_sd"), F.lit(0.0)))
        .withColumn("admissions_avoided_high", e + Z95 * F.col("_sd"))
    )
    for name, source in (("expected_cost_avoided", e), ("cost_avoided_low", F.col("admissions_avoided_low")),
                         ("cost_avoided_high", F.col("admissions_avoided_high"))):  # fmt: skip
        out = out.withColumn(name, F.round(source * F.lit(cost_per_admission), 2))
    return out.drop("_sd")
