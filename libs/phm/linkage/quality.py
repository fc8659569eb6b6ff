"""Linkage quality without truth: what an ICS can watch on real data, every run.

Measures (mart.linkage_quality: measure, group_value, value):
- match_weight: scored comparisons per whole-number match weight (clipped to
  -20..30): a healthy model shows two humps with few pairs near the threshold;
- cluster_profiles: persons by number of profiles (1..10, then 11-20, 21-50, 51+):
  very large clusters are the usual sign of a false merge;
- records, unlinked_records, unlinked_rate by source: records whose profile
  linked to nothing and is the only record with its identifiers;
- without_gp_registration by source: records of persons with no GP
  registration record (linked outside the GP population, or not resident);
- link_method: records by how they linked;
- comparisons by blocking rule (Splink's blocking analysis), scored,
  accepted_edges, persons, profiles, identity_records;
- history by event: person_id merges, moves and splits this run.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.linkage.linking import UNLINKED
from phm.linkage.profiles import GP_SOURCE

WEIGHT_RANGE = (-20, 30)


def quality(
    run_id: str,
    scored: DataFrame,
    edges: DataFrame,
    linked_profiles: DataFrame,
    history: DataFrame,
    comparisons: dict[str, int],
) -> DataFrame:
    """linked_profiles: every profile of this run (profile_id, person_id, link_method) with its records counted
    by source (records_by_source, vault.identity_profiles'). Records are counted from the profiles, not
    read from silver.person_link: each record has its profile's person and method, and there are a tenth as
    many profiles (3.7m against 36.2m records at 1m people)."""
    low, high = WEIGHT_RANGE
    weight = F.least(F.greatest(F.floor("match_weight"), F.lit(low)), F.lit(high)).cast("int")
    profiles_per_person = linked_profiles.groupBy("person_id").agg(F.count(F.lit(1)).alias("n"))
    records = linked_profiles.select(
        "person_id", "link_method", F.explode("records_by_source").alias("source", "records")
    )
    gp_persons = records.where(F.col("source") == GP_SOURCE).select("person_id").distinct()
    unlinked = F.when(F.col("link_method") == UNLINKED, F.col("records")).otherwise(F.lit(0))
    by_source = records.groupBy("source").agg(
        F.sum("records").alias("records"), F.sum(unlinked).alias("unlinked_records")
    )
    outside_gp = (
        records.join(gp_persons, "person_id", "left_anti").groupBy("source").agg(F.sum("records").alias("count"))
    )
    by_method = records.groupBy(F.col("link_method").alias("group_value")).agg(F.sum("records").alias("count"))
    spark = linked_profiles.sparkSession
    fixed = spark.createDataFrame(
        [("comparisons", rule, float(n)) for rule, n in comparisons.items()],
        "measure string, group_value string, value double",
    )
    parts = [
        fixed,
        _counted("match_weight", scored.groupBy(weight.cast("string").alias("group_value")).count()),
        _counted("cluster_profiles", profiles_per_person.groupBy(_size_band(F.col("n")).alias("group_value")).count()),
        _measure(by_source, "records", "source", F.col("records")),
        _measure(by_source, "unlinked_records", "source", F.col("unlinked_records")),
        _measure(by_source, "unlinked_rate", "source", F.col("unlinked_records") / F.col("records")),
        _measure(outside_gp, "without_gp_registration", "source", F.col("count")),
        _counted("link_method", by_method),
        _counted("history", history.groupBy(F.col("event").alias("group_value")).count()),
        _totals(scored, edges, linked_profiles, by_source, profiles_per_person),
    ]
    return reduce(DataFrame.unionByName, parts).select(F.lit(run_id).alias("linkage_run_id"), "*")


def _totals(
    scored: DataFrame, edges: DataFrame, linked_profiles: DataFrame, by_source: DataFrame, persons: DataFrame
) -> DataFrame:
    totals = {
        "scored_comparisons": scored.count(),
        "accepted_edges": edges.count(),
        "persons": persons.count(),
        "profiles": linked_profiles.count(),
        "identity_records": by_source.agg(F.sum("records")).first()[0] or 0,
    }
    return linked_profiles.sparkSession.createDataFrame(
        [(name, "all", float(n)) for name, n in totals.items()], "measure string, group_value string, value double"
    )


def _counted(measure: str, counts: DataFrame) -> DataFrame:
    return _measure(counts, measure, "group_value", F.col("count"))


def _measure(df: DataFrame, measure: str, group: str, value: Column) -> DataFrame:
    return df.select(
        F.lit(measure).alias("measure"),
        F.coalesce(F.col(group).cast("string"), F.lit("(none)")).alias("group_value"),
        value.cast("double").alias("value"),
    )


def _size_band(n: Column) -> Column:
    return (
        F.when(n <= 10, n.cast("string"))
        .when(n <= 20, F.lit("11-20"))
        .when(n <= 50, F.lit("21-50"))
        .otherwise(F.lit("51+"))
    )
