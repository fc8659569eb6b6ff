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
    """The linked records with their truth, counted: one row per true person, predicted person, source and
    corruption set, with `n` records, their flags (the same for every record of one true person in one
    predicted person) and the groups the true person is reported in. Counted before anything else is worked
    out, because a person has tens of records and only a few such rows."""
    corruption = F.when(F.col("corruptions").isNull(), F.array(F.lit(NO_CORRUPTION))).otherwise(
        F.split("corruptions", ";")
    )
    counted = (
        links.select("source", "record_id", "person_id")
        .join(record_truth.select("source", "record_id", "true_person_id", corruption.alias("corruption")),
              ["source", "record_id"])
        .groupBy("true_person_id", "person_id", "source", "corruption")
        .agg(F.count(F.lit(1)).alias("n"))
    )  # fmt: skip
    groups = person_truth.select(
        "true_person_id", "ethnicity", "age_band", F.col("imd_quintile").cast("string").alias("imd_quintile")
    )
    return _with_flags(counted).join(groups, "true_person_id", "left")


def _with_flags(counted: DataFrame) -> DataFrame:
    """Counted records with missed_link, split and falsely_merged. Windows over the counted rows, in a straight
    line: a join of the flags worked out on the cells would be a second branch of the plan over the same
    records, and Spark would join and count them twice."""
    cell = Window.partitionBy("true_person_id", "person_id")
    true_person = Window.partitionBy("true_person_id")
    predicted_person = Window.partitionBy("person_id")
    main = F.first("person_id").over(
        true_person.orderBy(F.col("_cell_n").desc(), F.col("person_id")).rowsBetween(
            Window.unboundedPreceding, Window.unboundedFollowing
        )
    )
    return (
        counted.withColumn("_cell_n", F.sum("n").over(cell))
        .withColumn("missed_link", F.col("person_id") != main)
        .withColumn("split", F.size(F.collect_set("person_id").over(true_person)) > 1)
        .withColumn("_in_merged_cluster", F.size(F.collect_set("true_person_id").over(predicted_person)) > 1)
        .withColumn("falsely_merged", F.max("_in_merged_cluster").over(true_person))
        .drop("_cell_n", "_in_merged_cluster")
    )


def metrics(labelled: DataFrame, groups: Sequence[str] = (), multi_groups: Sequence[str] = ()) -> DataFrame:
    """One row per scope and group value with METRICS, from labelled's counted records: the overall row, then
    one per value of each of `groups` (labelled's columns), then one per element of each of `multi_groups`
    (array columns). Every scope in one pass: each count is repeated once per scope (explode) and summed into
    cells (a scope's group value x true person x predicted person, whose flags are the same for every record in
    it), and every figure is one aggregation of the cells."""

    def scope(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("scope"), value.cast("string").alias("group_value"))

    single = F.array(scope(OVERALL, F.lit(OVERALL)), *[scope(group, F.col(group)) for group in groups])

    def scopes_of(group: str) -> Column:  # F.transform passes an index to a lambda of two parameters: one here
        return F.transform(group, lambda value: scope(group, value))

    several = [scopes_of(group) for group in multi_groups]
    flags = ["missed_link", "split", "falsely_merged"]
    keys = ["scope", "group_value"]
    n = F.col("n")
    cells = (
        labelled.select(
            F.explode(F.concat(single, *several)).alias("_scope"), "true_person_id", "person_id", "n", *flags
        )
        .select("_scope.*", "true_person_id", "person_id", "n", *flags)
        .groupBy(*keys, "true_person_id", "person_id")
        .agg(F.sum(n).alias("n"), *[F.max(flag).alias(flag) for flag in flags])
    )
    # Each cell beside its true person's and its predicted person's record counts in the scope: the sum over a
    # person's cells of n*(m-1) is m*(m-1), so every figure is one aggregation of the cells, in a straight line
    # of windows (branches of the plan would each repeat the join and the counting: Spark reuses no exchange
    # between them, their columns differ).
    true_person = Window.partitionBy(*keys, "true_person_id")
    predicted_person = Window.partitionBy(*keys, "person_id")
    first_cell = F.col("person_id") == F.min("person_id").over(true_person)  # one cell per true person
    out = (
        cells.withColumn("true_n", F.sum(n).over(true_person))
        .withColumn("first_cell", first_cell)
        .withColumn("predicted_n", F.sum(n).over(predicted_person))
        .groupBy(*keys)
        .agg(
            F.sum(n).alias("records"),
            F.sum(F.when(F.col("missed_link"), n).otherwise(0)).alias("missed_link_records"),
            _pair_count(n, n).alias("true_positive_pairs"),
            _pair_count(n, F.col("true_n")).alias("true_pairs"),
            _pair_count(n, F.col("predicted_n")).alias("predicted_pairs"),
            F.count_if(F.col("first_cell")).alias("persons"),
            F.count_if(F.col("first_cell") & F.col("split")).alias("split_persons"),
            F.count_if(F.col("first_cell") & F.col("falsely_merged")).alias("falsely_merged_persons"),
        )
        .where(F.col("group_value").isNotNull())  # a record without a group value is left out of that scope
    )
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
    # One query with no branches (the scopes exploded in it): nothing is computed twice, nothing to cache.
    return metrics(labelled(links, record_truth, person_truth), GROUPS, MULTI_GROUPS).select(
        F.lit(method).alias("method"), "*"
    )


def _pair_count(n: Column, m: Column) -> Column:
    """Pairs within groups, never listing them: a group of m records has m*(m-1)/2, and here each of its cells
    of n records adds n*(m-1)/2 (with n = m for whole groups)."""
    return (F.sum(n * (m - 1)) / 2).cast("long")


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator)
