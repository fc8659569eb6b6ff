"""Edges between profiles and the clusters they make: the deterministic pass, Splink, connected components.

Two ways to link:
- `link_all`: every profile against every other (first run, a retrained model
  or a requested full relink);
- `link_new`: only profiles not seen before, against each other and against
  the known profiles a blocking rule pairs them with (the monthly increment).
  Existing persons an edge reaches enter the graph as one node each, so a new
  profile that matches two persons merges them, and nothing already linked is
  split; every other person stays as it was.
Both return clusters of every current profile for `person_ids.assign`. The
scored pairs and the edges are each read more than once (the edges by the
clustering, the quality report and the link details); a caller that passes
`materialise` (e.g. the job's staging) has each computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from splink import Linker
from splink.clustering import cluster_pairwise_predictions_at_threshold

from phm.linkage import Materialise, as_is
from phm.linkage.model import PREDICTION_BLOCKING_KEYS, TF_COLUMNS, comparable, number_only
from phm.linkage.profiles import broadcast_if_few, deterministic_keys

DETERMINISTIC, PROBABILISTIC, IDENTICAL, UNLINKED = (
    "deterministic",
    "probabilistic",
    "identical_identifiers",
    "unlinked",
)
EDGE_COLUMNS = ("profile_id_l", "profile_id_r", "match_probability", "match_weight", "method")
# Splink's match weight at probability 1 is unbounded; deterministic edges carry this instead.
DETERMINISTIC_WEIGHT = 99.0
# A number-only profile joins the cluster holding its number on this share of the number's fuller records
# (above a half, so at most one cluster does).
NUMBER_HOME_SHARE = 0.9


@dataclass
class Linked:
    clusters: DataFrame  # profile_id, cluster_id, record_count (and earlier_id from link_new): every current profile
    edges: DataFrame  # EDGE_COLUMNS at or above the threshold, between profiles (link_new maps them to persons)
    scored: DataFrame  # every scored comparison: match_weight, match_probability (for the quality report)


def deterministic_edges(profiles: DataFrame, among: DataFrame | None = None) -> DataFrame:
    """Profiles with equal deterministic keys, each tied to the lowest profile of its key.

    With `among` (the new profiles), only keys that occur among them are tied.
    """
    keyed = deterministic_keys(profiles)
    if among is not None:
        keyed = keyed.join(
            keyed.join(among.select("profile_id"), "profile_id", "left_semi").select("key"), "key", "left_semi"
        )
    anchors = keyed.groupBy("key").agg(F.min("profile_id").alias("_anchor"))
    return (
        keyed.join(anchors, "key")
        .where(F.col("profile_id") != F.col("_anchor"))
        .select(
            F.col("_anchor").alias("profile_id_l"),
            F.col("profile_id").alias("profile_id_r"),
            F.lit(1.0).alias("match_probability"),
            F.lit(DETERMINISTIC_WEIGHT).alias("match_weight"),
            F.lit(DETERMINISTIC).alias("method"),
        )
    )


def probabilistic_edges(scored: DataFrame, threshold: float, profiles: DataFrame) -> DataFrame:
    """Scored pairs at or above the threshold, less those that would give one person two valid NHS numbers."""
    accepted = scored.where(F.col("match_probability") >= threshold).select(
        "profile_id_l", "profile_id_r", "match_probability", "match_weight", F.lit(PROBABILISTIC).alias("method")
    )
    return without_number_conflicts(accepted, profiles)


def without_number_conflicts(edges: DataFrame, profiles: DataFrame) -> DataFrame:
    """Edges that cannot join two different valid NHS numbers directly or through one profile.

    A valid NHS number belongs to one person (single-digit errors and adjacent
    transpositions fail the modulus-11 check), so an edge between profiles with
    different valid numbers is dropped; and a profile without a valid number
    (e.g. an A&E record with no number, scored against twins at one address)
    keeps only its edges to the number it matches best (highest match weight;
    ties: the lower number), so it cannot bridge two numbered persons. Chains
    of two or more unnumbered profiles can still bridge; the evaluation counts
    what remains as false merges.
    """
    numbers = profiles.select("profile_id", F.when(F.col("nhs_number_valid"), F.col("nhs_number")).alias("_number"))
    ends = edges.join(
        numbers.withColumnRenamed("profile_id", "profile_id_l").withColumnRenamed("_number", "_number_l"),
        "profile_id_l",
        "left",
    ).join(
        numbers.withColumnRenamed("profile_id", "profile_id_r").withColumnRenamed("_number", "_number_r"),
        "profile_id_r",
        "left",
    )
    consistent = ends.where(
        F.col("_number_l").isNull() | F.col("_number_r").isNull() | (F.col("_number_l") == F.col("_number_r"))
    )
    # Each end without a number, with the number at the other end of each edge.
    one_sided = consistent.where(F.col("_number_l").isNull() != F.col("_number_r").isNull())
    free_end = F.when(F.col("_number_l").isNull(), F.col("profile_id_l")).otherwise(F.col("profile_id_r"))
    number = F.coalesce(F.col("_number_l"), F.col("_number_r"))
    by_number = one_sided.groupBy(free_end.alias("_free"), number.alias("_to")).agg(F.max("match_weight").alias("_w"))
    best = by_number.groupBy("_free").agg(F.min(F.struct(-F.col("_w"), F.col("_to")))["_to"].alias("_best"))
    checked = consistent.withColumn("_free", F.when(F.col("_number_l").isNull() != F.col("_number_r").isNull(),
                                                    free_end)).withColumn("_to", number)  # fmt: skip
    return (
        checked.join(best, "_free", "left")
        .where(F.col("_best").isNull() | (F.col("_to") == F.col("_best")))
        .select(*EDGE_COLUMNS)
    )


def link_all(linker: Linker, profiles: DataFrame, threshold: float, materialise: Materialise = as_is) -> Linked:
    scored = materialise(_scored_columns(linker.inference.predict().as_spark_dataframe()), "scored")
    edges = materialise(
        deterministic_edges(profiles).unionByName(probabilistic_edges(scored, threshold, profiles)), "edges"
    )
    nodes = profiles.select("profile_id")
    # Staged: attaching number-only profiles reads it four times.
    labelled = materialise(
        connected_components(linker, nodes, edges, "profile_id").join(_kinds(profiles), "profile_id"), "labelled"
    )
    clusters = _attached(labelled, materialise)
    return Linked(clusters.select("profile_id", "cluster_id", "record_count"), edges, scored)


def link_new(
    linker: Linker, profiles: DataFrame, previous: DataFrame, threshold: float, materialise: Materialise = as_is
) -> Linked:
    """Link profiles absent from `previous` (profile_id, person_id) to each other and to existing persons."""
    api = linker._db_api  # the linker's registered backend (Splink has no public accessor)
    # Staged: the new profiles (tens of thousands in a month at 1m people) are read by every step below, each
    # read otherwise a join of every profile with every earlier one. Found by their ids alone (two narrow
    # columns shuffled, not every profile's identifiers), staged so that the planner, seeing how few they
    # are, broadcasts them to pick the profiles out.
    new_ids = materialise(
        profiles.select("profile_id").join(previous.select("profile_id"), "profile_id", "left_anti"), "new_ids"
    )
    new = materialise(profiles.join(new_ids, "profile_id", "left_semi"), "new_profiles")
    new_sdf = api.register(comparable(new))
    # Staged: Splink reads its inputs once per blocking rule, and each read would redo the five semi-joins. The
    # candidates are cut from all profiles, then the new ones dropped: cheaper than first joining 3.7m profiles
    # with 3.7m earlier ones (at 1m people) to find the known.
    candidates = blocked_with(comparable(profiles), comparable(new)).join(new.select("profile_id"), "profile_id",
                                                                          "left_anti")  # fmt: skip
    known_sdf = api.register(materialise(candidates, "known_blocked"))
    # predict_within / predict_between take term frequencies only from registered tables: compute them
    # over every profile (the linker's input), as predict() would.
    for column in TF_COLUMNS:
        linker.table_management.compute_tf_table(column)
    scored = materialise(
        _scored_columns(
            linker.inference.predict_within(new_sdf)
            .as_spark_dataframe()
            .unionByName(linker.inference.predict_between(new_sdf, known_sdf).as_spark_dataframe())
        ),
        "scored",
    )
    # A deterministic key is a number's (deterministic_keys), so the profiles holding the new profiles' numbers
    # give every key among them.
    numbered = profiles.join(new.select("nhs_number").where(F.col("nhs_number").isNotNull()).distinct(),
                             "nhs_number", "left_semi")  # fmt: skip
    # The edges and the graph read only the profiles and persons at an edge's end (154k edges in a month at 1m
    # people), picked out of every profile and every earlier one by a broadcast of their ids: joined with the edges
    # as they were, every profile's number and every earlier profile's person (3.7m rows) were shuffled to meet
    # them, the persons four times (predict and cluster 91.9 -> 77.6 s, docs/bench.md).
    accepted = _ends(scored.where(F.col("match_probability") >= threshold), materialise, "accepted_ends")
    edges = materialise(
        deterministic_edges(numbered, among=new).unionByName(
            probabilistic_edges(scored, threshold, profiles.join(accepted, "profile_id", "left_semi"))
        ),
        "edges",
    )
    person_of = materialise(
        previous.join(_ends(edges, materialise, "edge_ends"), "profile_id", "left_semi").select(
            F.col("profile_id").alias("_pid"), F.col("person_id").alias("_person")
        ),
        "edge_persons",
    )
    # Ends that are existing profiles become their person's node.
    graph_edges = edges
    for side in ("profile_id_l", "profile_id_r"):
        graph_edges = (
            graph_edges.join(person_of, graph_edges[side] == person_of["_pid"], "left")
            .withColumn(side, F.coalesce("_person", side))
            .drop("_pid", "_person")
        )
    graph_edges = graph_edges.select(F.col("profile_id_l").alias("node_id_l"), F.col("profile_id_r").alias("node_id_r"))
    # Only persons an edge reaches can change: every other person stays one cluster, named by its person_id
    # (as a node of its own it would be: a component's cluster_id is one of its nodes).
    nodes = new.select(F.col("profile_id").alias("node_id")).unionByName(
        person_of.select(F.col("_person").alias("node_id")).distinct()
    )
    node_clusters = connected_components(linker, nodes, graph_edges, "node_id").withColumnRenamed("node_id", "_node")
    # Every profile's node: a new profile is its own, a known one its person's.
    noded = _kinds(profiles).join(previous, "profile_id", "left")
    node = F.coalesce("person_id", "profile_id")
    # Staged: attaching number-only profiles reads it four times, each a join of every profile with the earlier
    # persons (at 1m people 3.7m profiles: 35 s for the clusters unstaged).
    labelled = materialise(
        noded.join(node_clusters, node == F.col("_node"), "left")
        .withColumn("cluster_id", F.coalesce("cluster_id", "person_id"))
        .withColumnRenamed("person_id", "earlier_id")
        .drop("_node"),
        "labelled",
    )
    clusters = _attached(labelled, materialise)
    # With each profile's earlier person, which person_ids.assign would otherwise join again (3.7m profiles).
    return Linked(clusters.select("profile_id", "cluster_id", "record_count", "earlier_id"), edges, scored)


def blocked_with(known: DataFrame, new: DataFrame) -> DataFrame:
    """The known profiles a prediction blocking rule pairs with some new profile (equal, not null, on all of
    the rule's columns): scoring new against these finds every pair scoring against all known would, without
    Splink copying every known profile for each refresh.

    One pass over the known profiles, each looked up in the new profiles' keys of every rule (few: the
    planner broadcasts them), rather than a semi-join per rule and the union of them deduplicated (five scans
    and a shuffle; 3.7m profiles at 1m people)."""
    paired = known
    flags = []
    for i, columns in enumerate(PREDICTION_BLOCKING_KEYS):
        flag = f"_paired_by_rule_{i}"
        keys = new.select(*columns).where(reduce(Column.__and__, [F.col(c).isNotNull() for c in columns]))
        paired = paired.join(keys.distinct().withColumn(flag, F.lit(True)), list(columns), "left")
        flags.append(flag)
    return paired.where(F.coalesce(*flags, F.lit(False))).select(*known.columns)


def _ends(pairs: DataFrame, materialise: Materialise, name: str) -> DataFrame:
    """The distinct profile ids at either end of `pairs`, computed once (`materialise`) and hinted for broadcast
    when few (profiles.broadcast_if_few)."""
    ends = materialise(_at_either_end(pairs).distinct(), name)
    return broadcast_if_few(ends)(ends)


def _at_either_end(pairs: DataFrame, *columns: str) -> DataFrame:
    """A row for each end of each pair (profile_id_l, profile_id_r): its profile_id, with the pair's `columns`."""
    return pairs.select(F.col("profile_id_l").alias("profile_id"), *columns).unionByName(
        pairs.select(F.col("profile_id_r").alias("profile_id"), *columns)
    )


def _scored_columns(predictions: DataFrame) -> DataFrame:
    return predictions.select("profile_id_l", "profile_id_r", "match_weight", "match_probability")


def attach_number_only(clusters: DataFrame, profiles: DataFrame) -> DataFrame:
    """A cluster of number-only profiles joins the cluster that holds its NHS number.

    Number-only profiles (an NHS number and nothing else, e.g. GP clinical
    events) cannot be scored. They join the cluster holding their number on
    at least NUMBER_HOME_SHARE of the fuller records that carry it: all of
    them when one cluster holds it, and the owner's when a stray record with
    the number stayed apart (a date of birth a year out with nothing else to
    link on: at 20,000 people one such record left 109 GP events alone).
    This holds for a number that fails the check digit too (a GP system that
    holds a wrong number puts it on the registration and the events alike).
    A number that fails the check digit and is held by no fuller profile is a
    keying error: it joins the one cluster holding a valid number one
    substitution or one adjacent transposition away (the errors the check
    digit exists to catch). A number split more evenly between clusters, or
    near two, is ambiguous and stays on its own.
    """
    return _attached(clusters.join(_kinds(profiles), "profile_id")).select(*clusters.columns)


def _kinds(profiles: DataFrame) -> DataFrame:
    """What attaching number-only profiles reads of each profile."""
    return profiles.select(
        "profile_id", "nhs_number", "nhs_number_valid", "record_count", number_only().alias("_number_only")
    )


def _attached(labelled: DataFrame, materialise: Materialise = as_is) -> DataFrame:
    """attach_number_only on clusters already joined with their profiles' _kinds (every column kept).

    The clusters of number-only profiles and the moves are few (171 persons of number-only profiles at 1m): staged
    (`materialise`), the planner broadcasts them to their joins with every profile."""
    alone = materialise(
        labelled.groupBy("cluster_id")
        .agg(
            F.min("_number_only").alias("_alone"),
            F.max("nhs_number").alias("nhs_number"),
            F.max("nhs_number_valid").alias("_valid"),
        )
        .where("_alone")
        .select(F.col("cluster_id").alias("_from"), "nhs_number", "_valid"),
        "number_only_clusters",
    )
    fuller = labelled.where(~F.col("_number_only") & F.col("nhs_number").isNotNull())
    homes = _main_home(fuller.join(alone.select("nhs_number"), "nhs_number", "left_semi"))
    exact = alone.join(homes, "nhs_number").select("_from", "_to")
    mistyped = alone.where(~F.col("_valid")).join(homes, "nhs_number", "left_anti")
    near = mistyped.select("_from", F.explode(_one_edit_away(F.col("nhs_number"))).alias("nhs_number"))
    held_valid = fuller.where(F.col("nhs_number_valid")).select("nhs_number", "cluster_id")
    corrected = _unique_home(near.join(held_valid, "nhs_number").select("_from", "cluster_id"), "_from").select(
        "_from", "_to"
    )
    moves = materialise(exact.unionByName(corrected), "number_only_moves")
    return (
        labelled.join(moves, labelled["cluster_id"] == moves["_from"], "left")
        .withColumn("cluster_id", F.coalesce("_to", "cluster_id"))
        .drop("_from", "_to")
    )


def _main_home(fuller: DataFrame) -> DataFrame:
    """(nhs_number, _to): the cluster holding a number on at least NUMBER_HOME_SHARE of its records."""
    held = fuller.groupBy("nhs_number", "cluster_id").agg(F.sum("record_count").alias("_records"))
    share = F.col("_records") / F.sum("_records").over(Window.partitionBy("nhs_number"))
    return (
        held.withColumn("_share", share)
        .where(F.col("_share") >= NUMBER_HOME_SHARE)
        .select("nhs_number", F.col("cluster_id").alias("_to"))
    )


def _unique_home(pairs: DataFrame, key: str) -> DataFrame:
    """(key, _to): keys found in exactly one cluster."""
    return (
        pairs.groupBy(key)
        .agg(F.countDistinct("cluster_id").alias("_homes"), F.min("cluster_id").alias("_to"))
        .where("_homes = 1")
        .drop("_homes")
    )


def _one_edit_away(number: Column) -> Column:
    """Every 10-character number one substitution (of a digit) or one adjacent transposition away.

    The mistyped side is a handful of numbers, so it lists the numbers it could have been (99 each) and
    joins them to the valid numbers held, rather than each valid number listing keys to meet it by.
    """
    substituted = F.transform(
        F.sequence(F.lit(0), F.lit(99)),
        lambda k: F.overlay(number, (k % 10).cast("string"), (k / 10).cast("int") + 1, F.lit(1)),
    )
    swapped = F.transform(
        F.sequence(F.lit(1), F.lit(9)),
        lambda i: F.concat(number.substr(F.lit(1), i - 1), number.substr(i + 1, F.lit(1)),
                           number.substr(i, F.lit(1)), number.substr(i + 2, F.lit(10))),
    )  # fmt: skip
    candidates = F.array_remove(F.array_distinct(F.concat(substituted, swapped)), number)
    return F.when(F.length(number) == 10, candidates).otherwise(F.array())


def connected_components(linker: Linker, nodes: DataFrame, edges: DataFrame, node_id: str) -> DataFrame:
    """(node_id, cluster_id) for every node; edges are node_id_l / node_id_r pairs (all accepted)."""
    left, right = f"{node_id}_l", f"{node_id}_r"
    api = linker._db_api
    result = cluster_pairwise_predictions_at_threshold(
        api.register(nodes.select(node_id)),
        api.register(edges.select(left, right)),
        db_api=api,
        node_id_column_name=node_id,
        edge_id_column_name_left=left,
        edge_id_column_name_right=right,
    )
    return result.as_spark_dataframe().select(node_id, "cluster_id")


def profile_link_details(profiles: DataFrame, edges: DataFrame) -> DataFrame:
    """profiles (profile_id, record_count and any other columns, kept) with how each linked: its strongest
    edge and method; identical identifiers or unlinked otherwise."""
    best = (
        _at_either_end(edges, "match_probability", "method")
        .groupBy("profile_id")
        .agg(
            F.max("match_probability").alias("match_probability"),
            F.max(F.col("method") == DETERMINISTIC).alias("_deterministic"),
        )
    )
    method = (
        F.when(F.col("_deterministic"), F.lit(DETERMINISTIC))
        .when(F.col("match_probability").isNotNull(), F.lit(PROBABILISTIC))
        .when(F.col("record_count") > 1, F.lit(IDENTICAL))
        .otherwise(F.lit(UNLINKED))
    )
    return profiles.join(best, "profile_id", "left").select(
        *profiles.columns, method.alias("link_method"), "match_probability"
    )


def with_earlier_state(state: DataFrame, earlier: DataFrame | None, run_id: str, refresh: bool) -> DataFrame:
    """state (profile_id, person_id, link_method, match_probability, ...: this run's links) given each profile's
    linkage_run_id, and on a `refresh` its strongest link of any run, from the last run's linkage_profiles
    (`earlier`), joined once.

    - A refresh scores only new profiles, so an earlier profile keeps its strongest link of any run: a
      deterministic link over a probabilistic one over none, and the higher probability.
    - linkage_run_id is the run that gave the profile its current link: a profile the earlier state links to
      the same person, by the same method, with the same probability keeps that run's id, so a refresh
      changes the rows of only the profiles it linked anew; the others get `run_id`.
    """
    if earlier is None:
        return state.withColumn("linkage_run_id", F.lit(run_id))
    before = earlier.select(
        "profile_id",
        F.col("person_id").alias("_person"),
        F.col("link_method").alias("_method"),
        F.col("match_probability").alias("_probability"),
        F.col("linkage_run_id").alias("_run"),
    )
    joined = state.join(before, "profile_id", "left")
    if refresh:
        methods = [F.col("link_method"), F.col("_method")]
        strongest = (
            F.when(F.array_contains(F.array(*methods), DETERMINISTIC), F.lit(DETERMINISTIC))
            .when(F.array_contains(F.array(*methods), PROBABILISTIC), F.lit(PROBABILISTIC))
            .otherwise(F.col("link_method"))
        )
        joined = joined.withColumn("link_method", strongest).withColumn(
            "match_probability", F.greatest("match_probability", "_probability")
        )
    unchanged = (
        (F.col("person_id") == F.col("_person"))
        & (F.col("link_method") == F.col("_method"))
        & F.col("match_probability").eqNullSafe(F.col("_probability"))
    )
    return joined.withColumn("linkage_run_id", F.when(unchanged, F.col("_run")).otherwise(F.lit(run_id))).drop(
        "_person", "_method", "_probability", "_run"
    )
