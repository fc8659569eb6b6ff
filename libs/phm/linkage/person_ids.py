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

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.frames import first_in_each
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

    clusters: (profile_id, cluster_id, record_count) for every current profile, and earlier_id (its person_id
    in `previous`, null for a new profile) when the clustering has joined them already (linking.link_new).
    previous: (profile_id, person_id) of the last run, or None on the first run.
    Returns (profile_id, cluster_id, person_id) and the history rows
    (event, person_id_from, person_id_to, records, profiles), both from the assignment computed once
    (`materialise`).
    """
    settled = None
    if previous is None:
        previous = clusters.sparkSession.createDataFrame([], "profile_id string, person_id string")
        current = clusters.withColumn("earlier_id", F.lit(None).cast("string"))
    else:
        if "earlier_id" not in clusters.columns:
            clusters = materialise(
                clusters.join(previous.withColumnRenamed("person_id", "earlier_id"), "profile_id", "left"),
                "current_ids",
            )
        current, settled = _unsettled(clusters, materialise)
    earlier = current.where(F.col("earlier_id").isNotNull())
    cells = earlier.groupBy("cluster_id", "earlier_id").agg(F.sum("record_count").alias("records"))
    by_records = [F.col("records").desc()]
    home = first_in_each(cells, "earlier_id", [*by_records, F.col("cluster_id")])
    kept = materialise(
        first_in_each(home, "cluster_id", [*by_records, F.col("earlier_id")]).select(
            "cluster_id", F.col("earlier_id").alias("kept_id")
        ),
        "kept_ids",
    )
    founders = current.groupBy("cluster_id").agg(F.min("profile_id").alias("founder"))
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
    if settled is not None:
        assigned = assigned.unionByName(settled)
    return assigned.select("profile_id", "cluster_id", "person_id"), history


def _unsettled(current: DataFrame, materialise: Materialise) -> tuple[DataFrame, DataFrame]:
    """Split the clustered profiles (with their earlier_id) into those the rules must decide, and the settled
    rest with their cluster's id as person_id.

    A cluster whose every profile had the cluster's id as its person keeps that id, and nothing else
    changes for that person: no profile of it is anywhere else (that profile's cluster would hold an earlier
    id not its own, so would be decided, and with it every cluster named by an earlier id it holds). A
    refresh names each person no new profile reached by its person_id (linking.link_new), so only the
    clusters new profiles reached are decided: the rules' joins and rankings over every profile (3.7m at 1m
    people) become a few passes over them and rankings over the few."""
    foreign = F.col("earlier_id").isNull() | (F.col("earlier_id") != F.col("cluster_id"))
    changed = current.where(foreign).select("cluster_id").distinct()
    named = (
        current.join(changed, "cluster_id", "left_semi")
        .where(F.col("earlier_id").isNotNull())
        .select(F.col("earlier_id").alias("cluster_id"))
    )
    # Staged: few, so the planner broadcasts them to both joins below.
    decided = materialise(changed.unionByName(named).distinct(), "decided_clusters")
    settled = current.join(decided, "cluster_id", "left_anti").select(
        "profile_id", "cluster_id", "record_count", "earlier_id", F.col("cluster_id").alias("person_id")
    )
    # Staged: the rules read the decided profiles five times.
    return materialise(current.join(decided, "cluster_id", "left_semi"), "decided_ids"), settled


def check_unique(assigned: DataFrame) -> None:
    clashes = assigned.groupBy("person_id").agg(F.countDistinct("cluster_id").alias("clusters")).where("clusters > 1")
    if clashes.limit(1).count():
        raise PersonIdCollisionError("two clusters were given the same person_id; nothing was written")


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
