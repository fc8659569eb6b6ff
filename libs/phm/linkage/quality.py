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

from collections import Counter

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from phm.linkage.linking import UNLINKED
from phm.linkage.profiles import GP_SOURCE
from phm.tables import LINKAGE_QUALITY

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
    many profiles (3.7m against 36.2m records at 1m people). Every measure is a sum of a few hundred counts
    that one pass over the profiles gathers (`_profile_counts`): the measures were a query each, which read
    the profiles nine times."""
    low, high = WEIGHT_RANGE
    weight = F.least(F.greatest(F.floor("match_weight"), F.lit(low)), F.lit(high)).cast("int")
    by_weight = _counts(scored.groupBy(weight.alias("group_value")).count())
    records, unlinked, outside_gp, by_method, by_size = Counter(), Counter(), Counter(), Counter(), Counter()
    profiles = persons = 0
    for row in _profile_counts(linked_profiles).collect():
        profiles += row.profiles
        persons += row.persons
        if row.size_band is not None:
            by_size[row.size_band] += row.persons
        if row.source is None:  # a profile without records (none at present): counted as a profile only
            continue
        records[row.source] += row.records
        unlinked[row.source] += row.records if row.link_method == UNLINKED else 0
        by_method[_group(row.link_method)] += row.records
        if not row.gp_registered:
            outside_gp[row.source] += row.records
    totals = {
        "scored_comparisons": sum(by_weight.values()),
        "accepted_edges": edges.count(),
        "persons": persons,
        "profiles": profiles,
        "identity_records": sum(records.values()),
    }
    measures = [
        *_rows("comparisons", comparisons),
        *_rows("match_weight", by_weight),
        *_rows("cluster_profiles", by_size),
        *_rows("records", records),
        *_rows("unlinked_records", unlinked),
        *_rows("unlinked_rate", {source: unlinked[source] / n for source, n in records.items()}),
        *_rows("without_gp_registration", outside_gp),
        *_rows("link_method", by_method),
        *_rows("history", _counts(history.groupBy(F.col("event").alias("group_value")).count())),
    ]
    measures += [(name, "all", float(n)) for name, n in totals.items()]
    return linked_profiles.sparkSession.createDataFrame(
        [(run_id, *measure) for measure in measures], LINKAGE_QUALITY.schema
    )


def _profile_counts(linked_profiles: DataFrame) -> DataFrame:
    """Records, profiles and persons counted by source, link method, whether the person has a GP registration
    record and, for persons, their number of profiles (size_band): a few hundred rows. One shuffle of the
    profiles by person gives each profile its person's values."""
    person = Window.partitionBy("person_id")
    registered = F.coalesce(F.map_contains_key("records_by_source", GP_SOURCE), F.lit(False))
    profiles = linked_profiles.select(
        "link_method",
        "records_by_source",
        F.max(registered).over(person).alias("gp_registered"),
        # one profile of each person carries the person's size
        F.when(
            F.min("profile_id").over(person) == F.col("profile_id"), _size_band(F.count(F.lit(1)).over(person))
        ).alias("size_band"),
    )
    entries = profiles.select(
        "link_method",
        "gp_registered",
        "size_band",
        F.posexplode_outer("records_by_source").alias("entry", "source", "records"),
    )
    once = F.coalesce(F.col("entry"), F.lit(0)) == 0  # each profile's first source (or its only row)
    return entries.groupBy("source", "link_method", "gp_registered", "size_band").agg(
        F.coalesce(F.sum("records"), F.lit(0)).cast("long").alias("records"),
        F.count(F.when(once, 1)).alias("profiles"),
        F.count(F.when(once & F.col("size_band").isNotNull(), 1)).alias("persons"),
    )


def _counts(counted: DataFrame) -> dict[str, int]:
    """(group_value, count) rows, a few dozen, as a dict."""
    return {_group(row.group_value): row["count"] for row in counted.collect()}


def _group(value: object) -> str:
    return "(none)" if value is None else str(value)


def _rows(measure: str, values: dict[str, float]) -> list[tuple[str, str, float]]:
    return [(measure, _group(group), float(value)) for group, value in values.items()]


def _size_band(n: Column) -> Column:
    return (
        F.when(n <= 10, n.cast("string"))
        .when(n <= 20, F.lit("11-20"))
        .when(n <= 50, F.lit("21-50"))
        .otherwise(F.lit("51+"))
    )
