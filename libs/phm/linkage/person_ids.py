"""Stable person ids: clusters of profiles -> person_id, keeping every id that already exists.

Rules (the person_id of a linked record never changes silently):
- each earlier person_id stays with the cluster that holds most of its
  records (its *home*); a cluster keeps, of the earlier ids at home there, the
  one with most records (ties: the smaller id);
- an earlier id at home in a cluster that keeps another id is *merged* into
  it; records of an earlier id that end in a cluster other than its home are
  *moved* there (to a cluster that kept an id) or *split* off (to a cluster
  with a new id);
- a cluster that keeps no earlier id gets a new id derived from its lowest
  profile id (a keyed hash, so ids are reproducible and reveal nothing); a
  new id never reuses an earlier one.
Every change is a row of silver.person_id_history.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from phm.linkage import Materialise, as_is

MERGE, MOVE, SPLIT = "merge", "move", "split"


class PersonIdCollisionError(RuntimeError):
    """Two clusters would get the same person_id (a defect: ids must be unique)."""


def mint(founder: Column, salt: Column | None = None) -> Column:
    """A new person id: 'P' + 15 hex characters of a hash of the cluster's lowest profile id."""
    text = (
        F.concat(F.lit("person|"), founder) if salt is None else F.concat(F.lit("person|"), founder, F.lit("|"), salt)
    )
    return F.concat(F.lit("P"), F.upper(F.sha2(text, 256).substr(1, 15)))


def assign(
    clusters: DataFrame, previous: DataFrame | None, run_id: str, materialise: Materialise = as_is
) -> tuple[DataFrame, DataFrame]:
    """Person ids for clustered profiles, stable against the previous assignment.

    clusters: (profile_id, cluster_id, record_count) for every current profile.
    previous: (profile_id, person_id) of the last run, or None on the first run.
    Returns (profile_id, cluster_id, person_id) and the history rows
    (event, person_id_from, person_id_to, records, profiles), both from the assignment computed once
    (`materialise`).
    """
    if previous is None:
        previous = clusters.sparkSession.createDataFrame([], "profile_id string, person_id string")
    current = clusters.join(previous.withColumnRenamed("person_id", "earlier_id"), "profile_id", "left")
    earlier = current.where(F.col("earlier_id").isNotNull())
    cells = earlier.groupBy("cluster_id", "earlier_id").agg(F.sum("record_count").alias("records"))
    by_records = [F.col("records").desc()]
    home = _first_of(cells, "earlier_id", [*by_records, F.col("cluster_id")])
    kept = materialise(
        _first_of(home, "cluster_id", [*by_records, F.col("earlier_id")]).select(
            "cluster_id", F.col("earlier_id").alias("kept_id")
        ),
        "kept_ids",
    )
    founders = clusters.groupBy("cluster_id").agg(F.min("profile_id").alias("founder"))
    earlier_ids = previous.select(F.col("person_id").alias("minted")).distinct()
    minted = founders.join(kept, "cluster_id", "left_anti").withColumn("minted", mint(F.col("founder")))
    # A split-off cluster's lowest profile may have founded an earlier id: salt with the run to stay new.
    reused = minted.join(earlier_ids, "minted", "left_semi").withColumn("minted", mint(F.col("founder"), F.lit(run_id)))
    minted = minted.join(reused.select("cluster_id"), "cluster_id", "left_anti").unionByName(reused)
    ids = kept.select("cluster_id", F.col("kept_id").alias("person_id")).unionByName(
        minted.select("cluster_id", F.col("minted").alias("person_id"))
    )
    assigned = materialise(current.join(ids, "cluster_id"), "assigned_ids")
    history = _history(assigned, kept)
    return assigned.select("profile_id", "cluster_id", "person_id"), history


def check_unique(assigned: DataFrame) -> None:
    clashes = assigned.groupBy("person_id").agg(F.countDistinct("cluster_id").alias("clusters")).where("clusters > 1")
    if clashes.limit(1).count():
        raise PersonIdCollisionError("two clusters were given the same person_id; nothing was written")


def _first_of(df: DataFrame, partition: str, order: list[Column]) -> DataFrame:
    window = Window.partitionBy(partition).orderBy(*order)
    return df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def _history(assigned: DataFrame, kept: DataFrame) -> DataFrame:
    surviving = kept.select(F.col("kept_id").alias("person_id_from"), F.lit(True).alias("_survives"))
    changed = assigned.where(F.col("earlier_id").isNotNull() & (F.col("earlier_id") != F.col("person_id")))
    moves = changed.groupBy(F.col("earlier_id").alias("person_id_from"), F.col("person_id").alias("person_id_to")).agg(
        F.sum("record_count").alias("records"), F.count(F.lit(1)).alias("profiles")
    )
    target_kept = kept.select(F.col("kept_id").alias("person_id_to"), F.lit(True).alias("_to_kept"))
    return (
        moves.join(F.broadcast(surviving), "person_id_from", "left")
        .join(F.broadcast(target_kept), "person_id_to", "left")
        .select(
            F.when(F.col("_survives").isNull(), F.lit(MERGE))
            .when(F.col("_to_kept").isNull(), F.lit(SPLIT))
            .otherwise(F.lit(MOVE))
            .alias("event"),
            "person_id_from",
            "person_id_to",
            F.col("records").cast("long"),
            F.col("profiles").cast("long"),
        )
    )
