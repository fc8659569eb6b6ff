"""Linkage measured against the truth store (evaluation code only; the pipeline never reads the truth).

Definitions (per record: its true person and its predicted person):
- pairwise precision / recall / F1 over record pairs: a true pair has both
  records of one true person, a predicted pair both in one predicted person;
  counted from cluster sizes (sum of n*(n-1)/2), never by listing pairs;
- missed link: a record outside its true person's main predicted person (the
  one holding most of that person's records; ties: the smaller id);
- split person: a true person whose records are in more than one predicted person;
- falsely merged person: a true person sharing a predicted person with
  another true person.
Each is reported overall and within groups (source, ethnicity, age band, IMD
quintile); within a group, pairs count when both records are in the group, so
group precision ignores merges across groups, which the overall figure holds.
Records are also reported by each corruption the generator applied to them
(`corruption`: name_swap, surname_typo, ... or none; a record with two is in
both): read its missed links, a record-level figure; its pair figures count
only pairs of two records with the same corruption.
The NHS-number-only baseline links records with equal valid NHS numbers and
leaves every other record alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from phm.identifiers import nhs_number_is_valid

OVERALL = "overall"
GROUPS = ("source", "ethnicity", "age_band", "imd_quintile")
# Groups a record can be in more than once (an array column of labelled's).
MULTI_GROUPS = ("corruption",)
NO_CORRUPTION = "none"
METRICS = (
    "records",
    "persons",
    "true_pairs",
    "predicted_pairs",
    "true_positive_pairs",
    "precision",
    "recall",
    "f1",
    "missed_link_records",
    "missed_link_rate",
    "split_persons",
    "falsely_merged_persons",
    "false_merge_rate",
)


def nhs_number_baseline(identity: DataFrame) -> DataFrame:
    """(source, record_id, person_id): equal valid NHS numbers linked, every other record on its own."""
    valid = nhs_number_is_valid(F.col("nhs_number"))
    person = F.when(valid, F.concat(F.lit("N"), F.col("nhs_number"))).otherwise(
        F.concat_ws("|", F.lit("R"), F.col("source"), F.col("record_id"))
    )
    return identity.select("source", "record_id", person.alias("person_id"))


def labelled(links: DataFrame, record_truth: DataFrame, person_truth: DataFrame) -> DataFrame:
    """Each linked record with its true person, its flags and the groups it is reported in."""
    corruption = F.when(F.col("corruptions").isNull(), F.array(F.lit(NO_CORRUPTION))).otherwise(
        F.split("corruptions", ";")
    )
    records = links.select("source", "record_id", "person_id").join(
        record_truth.select("source", "record_id", "true_person_id", corruption.alias("corruption")),
        ["source", "record_id"],
    )
    cell = Window.partitionBy("true_person_id", "person_id")
    by_person = Window.partitionBy("true_person_id")
    by_cluster = Window.partitionBy("person_id")
    flagged = (
        records.withColumn("_cell", F.count(F.lit(1)).over(cell))
        .withColumn(
            "_main",
            F.first("person_id").over(
                by_person.orderBy(F.col("_cell").desc(), F.col("person_id")).rowsBetween(
                    Window.unboundedPreceding, Window.unboundedFollowing
                )
            ),
        )
        .withColumn("missed_link", F.col("person_id") != F.col("_main"))
        .withColumn("split", F.size(F.collect_set("person_id").over(by_person)) > 1)
        .withColumn("_in_merged_cluster", F.size(F.collect_set("true_person_id").over(by_cluster)) > 1)
        .withColumn("falsely_merged", F.max("_in_merged_cluster").over(by_person))
        .drop("_cell", "_main", "_in_merged_cluster")
    )
    groups = person_truth.select(
        "true_person_id", "ethnicity", "age_band", F.col("imd_quintile").cast("string").alias("imd_quintile")
    )
    return flagged.join(groups, "true_person_id", "left")


def metrics(flagged: DataFrame, groups: Sequence[str] = (), multi_groups: Sequence[str] = ()) -> DataFrame:
    """One row per scope and group value with METRICS: the overall row, then one per value of each of `groups`
    (labelled's columns), then one per element of each of `multi_groups` (array columns). Every scope in one
    pass: each record is repeated once per scope (explode), so the counts are one set of aggregations grouped
    by scope, not a query per scope."""

    def scope(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("scope"), value.cast("string").alias("group_value"))

    single = F.array(scope(OVERALL, F.lit(OVERALL)), *[scope(group, F.col(group)) for group in groups])

    def scopes_of(group: str) -> Column:  # F.transform passes an index to a lambda of two parameters: one here
        return F.transform(group, lambda value: scope(group, value))

    several = [scopes_of(group) for group in multi_groups]
    with_group = flagged.select(
        F.explode(F.concat(single, *several)).alias("_scope"), "true_person_id", "person_id", "missed_link", "split",
        "falsely_merged",
    ).select("_scope.*", "true_person_id", "person_id", "missed_link", "split", "falsely_merged")  # fmt: skip
    keys = ["scope", "group_value"]
    pairs = _pairs(with_group, keys)
    persons = with_group.groupBy(*keys, "true_person_id").agg(
        F.max("split").alias("split"), F.max("falsely_merged").alias("falsely_merged")
    )
    person_counts = persons.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("persons"),
        F.sum(F.col("split").cast("long")).alias("split_persons"),
        F.sum(F.col("falsely_merged").cast("long")).alias("falsely_merged_persons"),
    )
    record_counts = with_group.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("records"), F.sum(F.col("missed_link").cast("long")).alias("missed_link_records")
    )
    out = record_counts.join(person_counts, keys).join(pairs, keys)  # a record without a group value is left out
    precision = _ratio(F.col("true_positive_pairs"), F.col("predicted_pairs"))
    recall = _ratio(F.col("true_positive_pairs"), F.col("true_pairs"))
    return (
        out.withColumn("precision", precision)
        .withColumn("recall", recall)
        .withColumn("f1", _ratio(2 * F.col("precision") * F.col("recall"), F.col("precision") + F.col("recall")))
        .withColumn("missed_link_rate", _ratio(F.col("missed_link_records"), F.col("records")))
        .withColumn("false_merge_rate", _ratio(F.col("falsely_merged_persons"), F.col("persons")))
        .select(*keys, *METRICS)
    )


def evaluate(links: DataFrame, record_truth: DataFrame, person_truth: DataFrame, method: str) -> DataFrame:
    """Every scope's metrics for one linkage (`method` names it: the model, or the baseline)."""
    # One query (the scopes exploded in it), so nothing to cache: the branches share its exchanges.
    return metrics(labelled(links, record_truth, person_truth), GROUPS, MULTI_GROUPS).select(
        F.lit(method).alias("method"), "*"
    )


def _pairs(with_group: DataFrame, keys: list[str]) -> DataFrame:
    def pairs_of(*people: str) -> DataFrame:
        n = F.col("n")
        return (
            with_group.groupBy(*keys, *people)
            .agg(F.count(F.lit(1)).alias("n"))
            .groupBy(*keys)
            .agg(F.sum(n * (n - 1) / 2).cast("long").alias("pairs"))
        )

    return (
        pairs_of("true_person_id")
        .withColumnRenamed("pairs", "true_pairs")
        .join(pairs_of("person_id").withColumnRenamed("pairs", "predicted_pairs"), keys)
        .join(pairs_of("true_person_id", "person_id").withColumnRenamed("pairs", "true_positive_pairs"), keys)
    )


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator)
