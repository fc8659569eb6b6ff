"""Recorded vs true prevalence (evaluation against the synthetic truth store only).

Recorded: persons of gold.person alive at the reference date, and their
current conditions in gold.conditions, grouped by gold.person's IMD quintile.
True: the truth store's people registered and alive at the reference date,
their conditions with onset on or before it (true_coded: also diagnosed by
then), grouped by the IMD quintile of the LSOA they were generated in; a
register's minimum age (e.g. depression 18+) applies to both sides.
Both overall ("all") and by quintile; only conditions the truth store knows.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ALL = "all"


def _by_quintile(frame: DataFrame, *measures) -> DataFrame:
    """Aggregates per condition for each IMD quintile and for everyone ("all")."""
    quintile = F.coalesce(F.col("imd_quintile").cast("string"), F.lit("unknown"))
    per = frame.withColumn("imd_quintile", quintile).groupBy("condition", "imd_quintile").agg(*measures)
    overall = frame.groupBy("condition").agg(*measures).withColumn("imd_quintile", F.lit(ALL))
    return per.unionByName(overall)


def _population(frame: DataFrame, name: str) -> DataFrame:
    quintile = F.coalesce(F.col("imd_quintile").cast("string"), F.lit("unknown"))
    per = frame.withColumn("imd_quintile", quintile).groupBy("imd_quintile").agg(F.count(F.lit(1)).alias(name))
    return per.unionByName(frame.agg(F.count(F.lit(1)).alias(name)).withColumn("imd_quintile", F.lit(ALL)))


def ascertainment(
    person: DataFrame,
    conditions: DataFrame,
    truth_person: DataFrame,
    truth_conditions: DataFrame,
    as_of: str,
    min_ages: dict[str, int] | None = None,
) -> DataFrame:
    date = F.lit(as_of).cast("date")
    age = F.floor(F.months_between(date, F.col("date_of_birth")) / 12)
    minimum = (
        F.coalesce(
            F.create_map(*[F.lit(x) for kv in (min_ages or {}).items() for x in kv])[F.col("condition")], F.lit(0)
        )
        if min_ages
        else F.lit(0)
    )
    living = person.where(~F.col("deceased")).select("person_id", "imd_quintile")
    truth_living = truth_person.where(
        (F.col("registered_on") <= date) & (F.col("death_date").isNull() | (F.col("death_date") > date))
    ).select("true_person_id", ((F.col("imd_decile") + 1) / 2).cast("int").alias("imd_quintile"), age.alias("_age"))
    known = [r[0] for r in truth_conditions.select("condition").distinct().collect()]
    recorded = _by_quintile(
        conditions.where(F.col("condition").isin(known)).join(living, "person_id"),
        F.count(F.lit(1)).alias("recorded"),
    )
    true_cases = _by_quintile(
        truth_conditions.where(F.col("onset_date") <= date)
        .join(truth_living, "true_person_id")
        .where(F.col("_age") >= minimum),
        F.count(F.lit(1)).alias("true_cases"),
        F.count(F.when(F.col("diagnosed_date") <= date, 1)).alias("true_coded"),
    )
    grid = (
        truth_conditions.select("condition")
        .distinct()
        .crossJoin(
            _population(living, "persons").join(_population(truth_living, "true_persons"), "imd_quintile", "full")
        )
    )
    return (
        grid.join(recorded, ["condition", "imd_quintile"], "left")
        .join(true_cases, ["condition", "imd_quintile"], "left")
        .fillna(0, subset=["persons", "true_persons", "recorded", "true_cases", "true_coded"])
        .select(
            date.alias("reference_date"),
            "condition",
            "imd_quintile",
            "persons",
            "recorded",
            F.when(F.col("persons") > 0, F.col("recorded") / F.col("persons")).alias("recorded_prevalence"),
            "true_persons",
            "true_cases",
            "true_coded",
            F.when(F.col("true_persons") > 0, F.col("true_cases") / F.col("true_persons")).alias("true_prevalence"),
            F.when(F.col("true_cases") > 0, F.col("recorded") / F.col("true_cases")).alias("recorded_to_true"),
        )
    )
