"""Linkage logic on hand-made records: profiles, the deterministic pass, every comparison level and blocking
rule, the NHS-number conflict veto, clustering, stable person ids, gold.person and the truth evaluation."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from splink import Linker

from phm.errors import UserError
from phm.linkage import model as linkage_model
from phm.linkage import profiles as profiles_module
from phm.linkage.evaluation import evaluate, nhs_number_baseline
from phm.linkage.linking import (
    _one_edit_away,
    attach_number_only,
    blocked_with,
    deterministic_edges,
    with_earlier_state,
    without_number_conflicts,
)
from phm.linkage.person_ids import MERGE, MOVE, SPLIT, assign, check_unique
from phm.linkage.person_index import person_index
from phm.linkage.profiles import deterministic_keys, profiles, updated_profiles
from phm.linkage.quality import quality
from phm.runtime.catalog import Catalog
from phm.runtime.staging import splink_tables_removed
from phm.tables import IDENTITY
from phm_jobs.link import _records_date_and_sources, read_nicknames

REPO = Path(__file__).resolve().parents[2]
A, B, C, D = "9990000018", "9990000026", "9990000034", "9990000042"  # valid (modulus 11)
INVALID = "9990000019"
RECORD = "source string, period string, record_id string, profile_id string, nhs_number string, forename string, " \
         "surname string, date_of_birth date, sex string, postcode string"  # fmt: skip


def records(spark, rows):
    """(profile_id, nhs, forename, surname, dob, sex, postcode) -> linkage records, one per row."""
    full = [("gp_registrations", "2026-01", f"r{i}", *row) for i, row in enumerate(rows)]
    return spark.createDataFrame(full, RECORD)


def nicknames(spark):
    return read_nicknames(spark, str(REPO / "configs" / "linkage" / "nicknames.csv"))


def by_id(df, key="profile_id"):
    return {r[key]: r for r in df.collect()}


def test_nicknames_config_is_read_upper_case_and_checked(spark, tmp_path):
    names = by_id(nicknames(spark).where(F.col("nickname") == "BOB"), "formal")
    assert "ROBERT" in names
    bad = tmp_path / "n.csv"
    bad.write_text("name,short\nRobert,Bob\n")
    with pytest.raises(Exception, match="expected the columns formal,nickname"):
        read_nicknames(spark, str(bad))


def test_profiles_derive_forms_known_surnames_and_postcode_parts(spark):
    rows = [
        ("p1", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),
        ("p1", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),
        ("p2", A, "ROBERT", "JONES", date(1950, 1, 2), "U", "LS1 4AB"),  # same number and DOB: a name change
        ("p3", INVALID, "ANN", "SMITH", None, "F", None),
    ]
    one_from_ae = records(spark, rows).withColumn(
        "source", F.when(F.col("record_id") == "r1", F.lit("ae")).otherwise(F.col("source"))
    )
    got = by_id(profiles(one_from_ae, nicknames(spark)))
    assert (got["p1"].record_count, got["p1"].gp_record_count) == (2, 1)
    assert got["p1"].sources == ["ae", "gp_registrations"]
    assert "ROBERT" in got["p1"].forename_forms and "BOB" in got["p1"].forename_forms
    assert got["p1"].surnames == ["JONES", "SMITH"] == got["p2"].surnames
    assert (got["p1"].postcode_sector, got["p1"].postcode_district) == ("LS1 4", "LS1")
    assert got["p2"].sex is None  # U compares as missing
    assert got["p3"].nhs_number_valid is False and got["p3"].surnames == ["SMITH"]


@pytest.mark.parametrize("broadcast_limit", [2_000_000, 0], ids=["state split by broadcast", "state shuffled"])
def test_profiles_updated_from_changed_records_equal_profiles_of_all_records(spark, monkeypatch, broadcast_limit):
    monkeypatch.setattr(profiles_module, "BROADCAST_PROFILES", broadcast_limit)
    rows = [  # (record_id, source, profile_id, nhs, forename, surname, dob, sex, postcode)
        ("r1", "gp_registrations", "p1", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),
        ("r2", "ae", "p1", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),
        ("r3", "ae", "p2", A, "BOB", "BROWN", date(1950, 1, 2), "M", "LS1 4AB"),  # goes: its only record deleted
        ("r4", "outpatient", "p3", B, "ANN", "LEE", date(1960, 5, 6), "F", "LS2 1AA"),
        ("r5", "outpatient", "p4", None, "CY", "DAY", date(1970, 1, 1), "F", None),
        ("r10", "outpatient", "p7", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS7 1AA"),  # unchanged; A's names do
        ("r11", "outpatient", "p8", C, "EVE", "ADAMS", date(1980, 3, 4), "F", "LS8 1AA"),  # untouched
    ]
    arriving = [
        ("r6", "ae", "p1", A, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),  # p1 counts one more A&E record
        ("r7", "gp_registrations", "p5", A, "ROBERT", "JONES", date(1950, 1, 2), "M", "LS1 4AB"),  # A's new name
        ("r8", "community", "p6", None, "DI", "ROSS", None, "U", "LS9 9ZZ"),  # a new profile with no number
        ("r9", "gp_registrations", "p3", B, "ANN", "LEE", date(1960, 5, 6), "F", "LS2 1AA"),  # p3 now from two
    ]
    schema = "record_id string, source string, profile_id string, nhs_number string, forename string, " \
             "surname string, date_of_birth date, sex string, postcode string"  # fmt: skip
    before, inserted = (
        spark.createDataFrame(r, schema).withColumn("period", F.lit("2026-01")) for r in (rows, arriving)
    )
    deleted = before.where(F.col("record_id").isin("r3", "r5"))
    inserted = inserted.unionByName(before.where(F.col("record_id") == "r5"))  # r5 re-delivered unchanged
    after = before.where(~F.col("record_id").isin("r3", "r5")).unionByName(inserted)
    names = nicknames(spark)

    def rows_of(df):
        rows = [r.asDict() | {"records_by_source": sorted(r.records_by_source.items())} for r in df.collect()]
        return sorted(rows, key=lambda row: row["profile_id"])

    got = updated_profiles(profiles(before, names), inserted, deleted, names)
    assert rows_of(got) == rows_of(profiles(after, names))
    got = by_id(got)
    assert got.keys() == {"p1", "p3", "p4", "p5", "p6", "p7", "p8"}  # p2 went
    assert got["p1"].surnames == ["JONES", "SMITH"] == got["p5"].surnames == got["p7"].surnames  # BROWN went
    assert (got["p1"].record_count, got["p1"].gp_record_count, got["p3"].sources) == (
        3, 1, ["gp_registrations", "outpatient"])  # fmt: skip


def test_deterministic_keys_need_a_valid_number_and_one_date_of_birth(spark):
    rows = [
        ("a1", A, "ANN", "X", date(1950, 1, 2), "F", None),
        ("a2", A, None, None, None, None, None),  # number only: takes the number's one DOB
        ("b1", B, "BO", "Y", date(1960, 1, 1), "M", None),
        ("b2", B, "BO", "Y", date(1961, 1, 1), "M", None),
        ("b3", B, None, None, None, None, None),  # number seen with two DOBs: ambiguous, unkeyed
        ("c1", C, None, None, None, None, None),  # number never seen with a DOB: keyed by number alone
        ("x1", INVALID, "CY", "Z", date(1970, 1, 1), "F", None),  # invalid number: never keyed
    ]
    keys = {r.profile_id: r.key for r in deterministic_keys(profiles(records(spark, rows), nicknames(spark))).collect()}
    assert keys == {"a1": f"{A}|1950-01-02", "a2": f"{A}|1950-01-02", "b1": f"{B}|1960-01-01",
                    "b2": f"{B}|1961-01-01", "c1": f"{C}|"}  # fmt: skip
    edges = deterministic_edges(profiles(records(spark, rows), nicknames(spark))).collect()
    assert [(e.profile_id_l, e.profile_id_r, e.match_probability) for e in edges] == [("a1", "a2", 1.0)]


# Each comparison's levels, highest first; gamma = number of non-null levels below it (null = -1).
COMPARISON_CASES = [
    # (left, right, {comparison: expected gamma})
    (
        (A, "ANN", "SMITH", date(1950, 1, 2), "F", "LS1 4AB"),
        (A, "ANN", "SMITH", date(1950, 1, 2), "F", "LS1 4AB"),
        {"nhs_number": 2, "forename": 5, "surname": 5, "date_of_birth": 5, "sex": 1, "postcode": 3},
    ),
    (
        (INVALID, "BOB", "SMITH", date(1950, 1, 2), "M", "LS1 4AB"),
        (INVALID, "ROBERT", "SMYTH", date(1950, 2, 1), "F", "LS1 4XY"),
        {"nhs_number": 1, "forename": 4, "surname": 1, "date_of_birth": 4, "sex": 0, "postcode": 2},
    ),
    (
        (A, "JONATHAN", "MARTIN", date(1950, 1, 2), "M", "LS1 4AB"),
        ("9990000081", "JONATHON", "MARTYN", date(1950, 1, 3), None, "LS1 9ZZ"),
        {"nhs_number": 1, "forename": 2, "surname": 2, "date_of_birth": 3, "sex": -1, "postcode": 1},
    ),
    (
        (A, "MARIA", "MARTIN", date(1950, 1, 2), "F", "LS1 4AB"),
        (B, "MARTHA", "MARTENS", date(1950, 8, 30), "F", "M1 1AA"),
        {"nhs_number": 0, "forename": 1, "surname": 1, "date_of_birth": 1, "postcode": 0},
    ),
    (
        (None, "ANN", "LEE", date(1950, 1, 2), "F", None),
        (B, "ZOE", "KHAN", date(1980, 8, 30), "F", "M1 1AA"),
        {"nhs_number": -1, "forename": 0, "surname": 0, "date_of_birth": 0, "postcode": -1},
    ),
    (  # names swapped between the fields
        (None, "ANN", "KHAN", date(1960, 5, 6), "F", "M1 1AA"),
        (None, "KHAN", "ANN", date(1960, 5, 6), "F", "M1 1AA"),
        {"nhs_number": -1, "forename": 3, "surname": 3, "date_of_birth": 5, "postcode": 3},
    ),
    (  # a day out across a month's end: two characters, within a month
        (C, None, None, date(1985, 12, 30), None, "M1 1AA"),
        (C, None, None, date(1985, 12, 29), None, "M1 1AA"),
        {"nhs_number": 2, "date_of_birth": 2, "postcode": 3},
    ),
    (  # one name equal to the other's other field is not a swap
        (None, "JAMES", "JAMES", date(1960, 5, 6), "M", None),
        (None, "JAMES", "OKAFOR", date(1960, 5, 6), "M", None),
        {"forename": 5, "surname": 0},
    ),
]


@pytest.fixture(scope="module")
def comparison_linker(spark):
    rows = [(f"l{i}", *left) for i, (left, _, _) in enumerate(COMPARISON_CASES)]
    rows += [(f"r{i}", *right) for i, (_, right, _) in enumerate(COMPARISON_CASES)]
    profile = profiles(records(spark, rows), nicknames(spark))
    settings = dataclasses.replace(linkage_model.settings(), retain_intermediate_calculation_columns=True)
    api = linkage_model.spark_api(spark)
    return Linker(api.register(linkage_model.comparable(profile)), settings, log_level=logging.WARNING), profile, api


@pytest.mark.parametrize("case", range(len(COMPARISON_CASES)))
def test_each_comparison_level(comparison_linker, case):
    linker, profile, api = comparison_linker
    left = profile.where(F.col("profile_id") == f"l{case}").select(*linkage_model.MODEL_COLUMNS)
    right = profile.where(F.col("profile_id") == f"r{case}").select(*linkage_model.MODEL_COLUMNS)
    scored = linker.inference.score_pair(api.register(left), api.register(right)).as_spark_dataframe().first()
    expected = COMPARISON_CASES[case][2]
    assert {name: scored[f"gamma_{name}"] for name in expected} == expected


def test_the_tables_splink_writes_in_a_block_are_removed_and_earlier_ones_kept(comparison_linker, spark):
    _, profile, _ = comparison_linker
    api = linkage_model.spark_api(spark)  # its own cache: the fixture's may hold the tf table from other tests
    checkpoints = Path(urlparse(spark.sparkContext.getCheckpointDir()).path)
    earlier = checkpoints / "__splink__an_earlier_runs_table"
    earlier.mkdir()
    before = set(checkpoints.glob("__splink__*"))
    try:
        with splink_tables_removed(spark):
            linker = Linker(api.register(linkage_model.comparable(profile)), linkage_model.settings())
            linker.table_management.compute_tf_table("forename")
            written = set(checkpoints.glob("__splink__*")) - before
            assert written  # Splink writes its tables here (break_lineage_method="parquet")
        assert not any(path.exists() for path in written)
        assert set(checkpoints.glob("__splink__*")) == before
    finally:
        earlier.rmdir()


@pytest.fixture(scope="module")
def duckdb_comparison_linker(comparison_linker):
    """The same comparisons on Splink's DuckDB backend, which trains the model (phm.linkage.model.train)."""
    _, profile, _ = comparison_linker
    api = linkage_model.duckdb_api()
    settings = dataclasses.replace(linkage_model.settings(), retain_intermediate_calculation_columns=True)
    rows = linkage_model.comparable(profile).toArrow()
    return Linker(api.register(rows), settings, log_level=logging.WARNING), rows, api


@pytest.mark.parametrize("case", range(len(COMPARISON_CASES)))
def test_each_comparison_level_is_the_same_in_duckdb(duckdb_comparison_linker, case):
    linker, rows, api = duckdb_comparison_linker
    ids = rows.column(linkage_model.UNIQUE_ID).to_pylist()
    left, right = (rows.take([ids.index(f"{side}{case}")]) for side in ("l", "r"))
    scored = linker.inference.score_pair(api.register(left), api.register(right)).as_pandas_dataframe()
    expected = COMPARISON_CASES[case][2]
    assert {name: int(scored[f"gamma_{name}"].iloc[0]) for name in expected} == expected


def test_trained_values_move_into_the_spark_settings_level_by_level():
    trained = linkage_model.settings().get_settings("duckdb").as_dict()
    for c, comparison in enumerate(trained["comparisons"]):
        for lvl, level in enumerate(comparison["comparison_levels"][1:], start=1):  # the null level has none
            level["m_probability"], level["u_probability"] = 0.01 * (c + 1), 0.001 * lvl
    trained["probability_two_random_records_match"] = 0.0042
    model = linkage_model.in_dialect(trained, "spark")
    assert model["sql_dialect"] == "spark" and model["probability_two_random_records_match"] == 0.0042
    levels = [(c, lvl, level) for c, comparison in enumerate(model["comparisons"])
              for lvl, level in enumerate(comparison["comparison_levels"])]  # fmt: skip
    assert all("m_probability" not in level for _, lvl, level in levels if lvl == 0)
    assert all((level["m_probability"], level["u_probability"]) == (0.01 * (c + 1), 0.001 * lvl)
               for c, lvl, level in levels if lvl > 0)  # fmt: skip
    within_a_year = model["comparisons"][3]["comparison_levels"][5]
    assert within_a_year["sql_condition"].startswith("abs(datediff(`date_of_birth_l`, `date_of_birth_r`)) <= ")
    trained["comparisons"][0]["comparison_levels"].pop()
    with pytest.raises(ValueError):
        linkage_model.in_dialect(trained, "spark")


BLOCKING_PROFILES = [
    ("n1", A, "ANN", "SMITH", date(1950, 1, 2), "F", "LS1 4AB"),
    ("n2", A, "X", "Y", date(1990, 5, 5), "F", "M1 1AA"),  # same number only: rule 1
    ("d1", None, "JO", "BROWN", date(1960, 3, 3), "F", "B1 1AA"),
    ("d2", None, "JOANNE", "BROWN", date(1960, 3, 3), "F", "B9 9ZZ"),  # dob + surname: rule 2
    ("f1", None, "PETER", "PAN", date(1970, 4, 4), "M", "C1 1AA"),
    ("f2", None, "PETER", "PANN", date(1970, 4, 4), "M", "C9 9ZZ"),  # dob + forename: rule 3
    ("s1", None, "KIM", "LO", date(1980, 6, 6), "F", "D1 2AB"),
    ("s2", None, "KIMBERLY", "LOWE", date(1980, 6, 6), "F", "D1 2XY"),  # dob + sector: rule 4
    ("m1", None, "SAM", "HILL", date(1990, 7, 7), "M", "E1 3AB"),
    ("m2", None, "SAM", "HILL", date(1991, 7, 8), "M", "E1 9ZZ"),  # names + district: rule 5
    ("z1", None, "UNA", "ZED", date(2000, 1, 1), "F", "F1 1AA"),  # nothing shared with anyone
]


def test_each_prediction_blocking_rule_finds_its_pair_and_nothing_else(spark):
    profile = profiles(records(spark, BLOCKING_PROFILES), nicknames(spark))
    api = linkage_model.spark_api(spark)
    linker = Linker(api.register(linkage_model.comparable(profile)), linkage_model.settings(),
                    log_level=logging.WARNING)  # fmt: skip
    pairs = linker.inference.predict().as_spark_dataframe().select("profile_id_l", "profile_id_r", "match_key")
    found = {(r.profile_id_l, r.profile_id_r): int(r.match_key) for r in pairs.collect()}
    assert found == {("n1", "n2"): 0, ("d1", "d2"): 1, ("f1", "f2"): 2, ("s1", "s2"): 3, ("m1", "m2"): 4}


def test_a_refresh_scores_new_profiles_only_against_known_profiles_a_blocking_rule_pairs_them_with(spark):
    profile = linkage_model.comparable(profiles(records(spark, BLOCKING_PROFILES), nicknames(spark)))
    new = profile.where(F.col("profile_id").isin("n2", "d2", "f2", "s2", "m2"))
    known = profile.join(new, "profile_id", "left_anti")
    got = sorted(r.profile_id for r in blocked_with(known, new).collect())
    assert got == ["d1", "f1", "m1", "n1", "s1"]  # not z1; d1 and d2 share no number (both null)


def test_a_known_profile_several_blocking_rules_pair_with_new_ones_is_a_candidate_once(spark):
    both = ("x1", None, "JOANNE", "BROWN", date(1960, 3, 3), "M", "Z9 9ZZ")  # d2's by rules 2 and 3
    profile = linkage_model.comparable(profiles(records(spark, [*BLOCKING_PROFILES, both]), nicknames(spark)))
    new = profile.where(F.col("profile_id").isin("d2", "f2"))
    known = profile.join(new, "profile_id", "left_anti")
    got = sorted(r.profile_id for r in blocked_with(known, new).collect())
    assert got == ["d1", "f1", "x1"]


def test_the_numbers_one_keying_error_away_are_substitutions_and_adjacent_swaps(spark):
    rows = spark.createDataFrame([(A,), ("999000001",)], "n string")
    got = {r.n: r.near for r in rows.select("n", _one_edit_away(F.col("n")).alias("near")).collect()}
    near = set(got[A])
    assert {"9990000010", "9990000081", "0990000018", "9990000019"} <= near and A not in near
    assert len(near) == len(got[A]) == 90 + 3  # 9 digits x 10 positions; swaps of unequal neighbours: 9-0, 0-1, 1-8
    assert got["999000001"] == []


def test_number_conflicts_are_vetoed(spark):
    rows = [
        ("a", A, "T", "TWIN", date(2000, 1, 1), "F", "LS1 4AB"),
        ("b", B, "T", "TWIN", date(2000, 1, 1), "F", "LS1 4AB"),  # the twin
        ("x", None, None, None, date(2000, 1, 1), "F", "LS1 4AB"),  # no number, no name: matches both
        ("y", None, "T", "TWIN", date(2000, 1, 1), "F", None),
    ]
    profile = profiles(records(spark, rows), nicknames(spark))
    edges = spark.createDataFrame(
        [("a", "b", 0.95, 5.0, "probabilistic"), ("a", "x", 0.97, 6.0, "probabilistic"),
         ("b", "x", 0.99, 7.0, "probabilistic"), ("x", "y", 0.95, 5.0, "probabilistic")],
        "profile_id_l string, profile_id_r string, match_probability double, match_weight double, method string",
    )  # fmt: skip
    kept = {(r.profile_id_l, r.profile_id_r) for r in without_number_conflicts(edges, profile).collect()}
    assert kept == {("b", "x"), ("x", "y")}  # a-b: two valid numbers; x keeps its best number (b's)


def test_number_only_profiles_join_the_cluster_holding_their_number(spark):
    rows = [
        ("a1", A, "ANN", "X", date(1950, 1, 2), "F", None),
        ("a2", A, None, None, None, None, None),
        ("b1", B, "BO", "Y", date(1960, 1, 1), "M", None),
        ("b2", B, "BO", "Y", date(1961, 1, 1), "M", None),
        ("b3", B, None, None, None, None, None),
        ("x1", INVALID, "CY", "Z", date(1970, 1, 1), "F", None),
        ("x2", INVALID, None, None, None, None, None),  # the same wrong number as x1's registration
        ("y1", C, None, None, None, None, None),  # a number no fuller profile has
        ("t1", "9990000010", None, None, None, None, None),  # A with its check digit mistyped
        ("t2", "9990000081", None, None, None, None, None),  # A with its last two digits swapped
        ("t3", "9990000028", None, None, None, None, None),  # one digit from A and one from B: ambiguous
        *[("d1", D, "DI", "W", date(1928, 10, 21), "F", None)] * 9,  # D's owner, nine records
        ("d2", D, None, None, date(1927, 10, 22), "F", None),  # one record of D's a year out, left apart
        ("d3", D, None, None, None, None, None),
    ]
    profile = profiles(records(spark, rows), nicknames(spark))
    clusters = spark.createDataFrame(
        [("a1", "c1"), ("a2", "c2"), ("b1", "c3"), ("b2", "c4"), ("b3", "c5"), ("x1", "c6"), ("x2", "c7"),
         ("y1", "c8"), ("t1", "c9"), ("t2", "c10"), ("t3", "c11"), ("d1", "c12"), ("d2", "c13"), ("d3", "c14")],
        "profile_id string, cluster_id string",
    )  # fmt: skip
    got = {r.profile_id: r.cluster_id for r in attach_number_only(clusters, profile).collect()}
    # B is in two clusters, one record each: b3 stays alone, as does y1 (valid: not a keying error); D's
    # owner holds nine of its ten records: d3 joins them
    assert got == {"a1": "c1", "a2": "c1", "b1": "c3", "b2": "c4", "b3": "c5", "x1": "c6", "x2": "c6", "y1": "c8",
                   "t1": "c1", "t2": "c1", "t3": "c11", "d1": "c12", "d2": "c13", "d3": "c12"}  # fmt: skip


def test_a_refresh_keeps_each_earlier_profiles_strongest_link(spark):
    schema = "profile_id string, person_id string, link_method string, match_probability double"
    now = spark.createDataFrame(
        [("a", "P1", "unlinked", None), ("b", "P1", "probabilistic", 0.95), ("c", "P2", "identical_identifiers", None),
         ("d", "P3", "probabilistic", 0.99), ("n", "P3", "probabilistic", 0.92)],
        schema,
    )  # fmt: skip
    earlier = spark.createDataFrame(
        [("a", "P1", "probabilistic", 0.97, "run1"), ("b", "P1", "deterministic", 1.0, "run1"),
         ("c", "P2", "unlinked", None, "run1"), ("d", "P3", "probabilistic", 0.91, "run1")],
        f"{schema}, linkage_run_id string",
    )  # fmt: skip
    got = {r.profile_id: (r.link_method, r.match_probability, r.linkage_run_id)
           for r in with_earlier_state(now, earlier, "run2", refresh=True).collect()}  # fmt: skip
    # a and b keep their earlier links, so their run; c's and d's links are this run's
    assert got == {"a": ("probabilistic", 0.97, "run1"), "b": ("deterministic", 1.0, "run1"),
                   "c": ("identical_identifiers", None, "run2"), "d": ("probabilistic", 0.99, "run2"),
                   "n": ("probabilistic", 0.92, "run2")}  # fmt: skip
    # a full relink takes this run's links as they are
    relinked = {r.profile_id: r.link_method for r in with_earlier_state(now, earlier, "run2", refresh=False).collect()}
    assert (relinked["a"], relinked["b"]) == ("unlinked", "probabilistic")


def test_a_profile_keeps_the_run_that_linked_it_until_its_person_method_or_probability_changes(spark):
    columns = "profile_id string, person_id string, link_method string, match_probability double"
    earlier = spark.createDataFrame(
        [("a", "P1", "probabilistic", 0.97, "run1"), ("b", "P1", "deterministic", None, "run1"),
         ("c", "P2", "probabilistic", 0.91, "run0"), ("d", "P3", "unlinked", None, "run0"),
         ("e", "P4", "probabilistic", 0.95, "run0")],
        f"{columns}, linkage_run_id string",
    )  # fmt: skip
    now = spark.createDataFrame(
        [("a", "P1", "probabilistic", 0.97), ("b", "P1", "deterministic", None), ("c", "P2", "probabilistic", 0.99),
         ("d", "P1", "probabilistic", 0.93), ("e", "P4", "deterministic", 0.95), ("n", "P1", "probabilistic", 0.9)],
        columns,
    )  # fmt: skip
    got = {r.profile_id: r.linkage_run_id for r in with_earlier_state(now, earlier, "run2", refresh=False).collect()}
    # a, b unchanged (a null probability equals a null); c's probability, d's person, e's method changed; n new
    assert got == {"a": "run1", "b": "run1", "c": "run2", "d": "run2", "e": "run2", "n": "run2"}
    assert {r.linkage_run_id for r in with_earlier_state(now, None, "run1", refresh=True).collect()} == {"run1"}


def test_quality_counts_records_by_source_method_and_gp_registration_from_the_profiles(spark):
    linked = spark.createDataFrame(
        [("a", "P1", "deterministic", {"gp_registrations": 3, "ae": 2}), ("b", "P1", "probabilistic", {"ae": 1}),
         ("c", "P2", "unlinked", {"ae": 1}), ("d", "P3", "identical_identifiers", {"community": 2, "ae": 4})],
        "profile_id string, person_id string, link_method string, records_by_source map<string, long>",
    )  # fmt: skip
    scored = spark.createDataFrame([(-25.0,), (3.2,), (3.9,), (12.5,)], "match_weight double")
    edges = spark.createDataFrame([("a", "b")], "profile_id_l string, profile_id_r string")
    history = spark.createDataFrame([("merge",), ("merge",), ("split",)], "event string")
    rows = quality("run1", scored, edges, linked, history, {"rule 1": 7}).collect()
    got = {(r.measure, r.group_value): r.value for r in rows}
    assert {r.linkage_run_id for r in rows} == {"run1"}
    assert {k[1]: v for k, v in got.items() if k[0] == "records"} == {"gp_registrations": 3, "ae": 8, "community": 2}
    assert got[("unlinked_records", "ae")] == 1 and got[("unlinked_rate", "ae")] == 1 / 8
    # P2 and P3 have no GP registration record: their 7 records
    assert {k[1]: v for k, v in got.items() if k[0] == "without_gp_registration"} == {"ae": 5, "community": 2}
    assert {k[1]: v for k, v in got.items() if k[0] == "link_method"} == {
        "deterministic": 5, "probabilistic": 1, "unlinked": 1, "identical_identifiers": 6}  # fmt: skip
    assert {k[1]: v for k, v in got.items() if k[0] == "match_weight"} == {"-20": 1, "3": 2, "12": 1}
    assert {k[1]: v for k, v in got.items() if k[0] == "cluster_profiles"} == {"1": 2, "2": 1}
    assert got[("identity_records", "all")] == 13 and got[("profiles", "all")] == 4 and got[("persons", "all")] == 3
    assert got[("history", "merge")] == 2 and got[("comparisons", "rule 1")] == 7
    assert got[("scored_comparisons", "all")] == 4 and got[("accepted_edges", "all")] == 1


CLUSTERS = "profile_id string, cluster_id string, record_count long"
PREVIOUS = "profile_id string, person_id string"


def test_person_ids_are_minted_then_kept_and_every_change_is_recorded(spark):
    first = spark.createDataFrame([("p1", "c1", 5), ("p2", "c1", 1), ("p3", "c2", 2), ("p4", "c3", 1)], CLUSTERS)
    assigned, history = assign(first, None, "run1")
    ids = {r.profile_id: r.person_id for r in assigned.collect()}
    assert ids["p1"] == ids["p2"] != ids["p3"] != ids["p4"] and history.count() == 0
    assert all(i.startswith("P") and len(i) == 16 for i in ids.values())
    previous = spark.createDataFrame(list(ids.items()), PREVIOUS)

    # a new profile joins person 1; p3 and p4 now link (merge); same ids otherwise
    second = spark.createDataFrame(
        [("p1", "k1", 5), ("p2", "k1", 1), ("p5", "k1", 1), ("p3", "k2", 2), ("p4", "k2", 1)], CLUSTERS
    )
    assigned, history = assign(second, previous, "run2")
    now = {r.profile_id: r.person_id for r in assigned.collect()}
    assert now["p1"] == now["p2"] == now["p5"] == ids["p1"]
    assert now["p3"] == now["p4"] == ids["p3"]  # the larger person keeps its id
    assert [tuple(r) for r in history.collect()] == [(MERGE, ids["p4"], ids["p3"], 1, 1)]

    # p2 is split off on its own, and p4 moves back to... a new cluster with p3's other half
    third = spark.createDataFrame(
        [("p1", "x1", 5), ("p5", "x1", 1), ("p2", "x2", 1), ("p3", "x3", 2), ("p4", "x1", 1)], CLUSTERS
    )
    assigned, history = assign(third, spark.createDataFrame(list(now.items()), PREVIOUS), "run3")
    later = {r.profile_id: r.person_id for r in assigned.collect()}
    assert later["p1"] == ids["p1"] and later["p3"] == ids["p3"]
    assert later["p2"] not in set(ids.values())  # a new id, never a reused one
    events = {(r.event, r.person_id_from, r.person_id_to) for r in history.collect()}
    assert events == {(SPLIT, ids["p1"], later["p2"]), (MOVE, ids["p3"], ids["p1"])}


@pytest.mark.parametrize("carried", [False, True], ids=["earlier ids joined by assign", "carried by the clusters"])
@pytest.mark.parametrize("records_left_home", [5, 1], ids=["the person stays home", "its home moves"])
def test_a_refresh_decides_only_the_clusters_new_profiles_reached_and_the_persons_they_hold(
    spark, records_left_home, carried
):
    # Clusters named as link_new names them: an unreached person by its own id, a reached one by a node.
    previous = spark.createDataFrame(
        [("p1", "PA"), ("p2", "PA"), ("p3", "PB"), ("p4", "PC"), ("p5", "PD")], PREVIOUS
    )  # fmt: skip
    clusters = spark.createDataFrame(
        [("p1", "PA", records_left_home),  # looks settled, but PA's p2 left with a new profile
         ("p2", "n1", 3), ("n1", "n1", 1),
         ("p3", "PB", 2),  # settled: untouched
         ("p4", "PC", 3), ("p5", "PC", 1), ("n2", "PC", 1)],  # a new profile merged PC and PD
        CLUSTERS,
    )  # fmt: skip
    if carried:  # as link_new gives them: each profile's earlier person already joined
        clusters = clusters.join(previous.withColumnRenamed("person_id", "earlier_id"), "profile_id", "left")
    assigned, history = assign(clusters, previous, "run2")
    check_unique(assigned)
    got = {r.profile_id: r.person_id for r in assigned.collect()}
    assert (got["p3"], got["p4"], got["p5"], got["n2"]) == ("PB", "PC", "PC", "PC")
    assert got["p2"] == got["n1"]
    events = {(r.event, r.person_id_from, r.person_id_to, r.records) for r in history.collect()}
    if records_left_home > 3:  # PA's home is still p1's cluster: p2 is split off with the new profile
        assert got["p1"] == "PA" and got["p2"] not in {"PA", "PB", "PC", "PD"}
        assert events == {(MERGE, "PD", "PC", 1), (SPLIT, "PA", got["p2"], 3)}
    else:  # most of PA's records are now in n1's cluster, which keeps PA; p1 is split off
        assert got["p2"] == "PA" and got["p1"] not in {"PA", "PB", "PC", "PD"}
        assert events == {(MERGE, "PD", "PC", 1), (SPLIT, "PA", got["p1"], 1)}


def test_person_index_takes_the_best_available_values(spark):
    # P1's GP registration records say F, 1950-06-01; two other records of theirs say M, 1950-01-06.
    profiles = spark.createDataFrame(
        [("pr1", "P1", date(1950, 6, 1), "F", 2, 2, ["gp_registrations"]),
         ("pr2", "P1", date(1950, 1, 6), "M", 2, 0, ["ae", "deaths"]),
         ("pr3", "P1", date(1950, 1, 6), "M", 1, 0, ["ae"]),
         ("pr4", "P2", date(2000, 3, 31), None, 1, 0, ["ae"]),
         ("pr5", "P3", date(1980, 2, 1), "M", 1, 0, ["ae"]), ("pr6", "P3", date(1980, 1, 2), "F", 2, 0, ["ae"]),
         # P4's date of birth is on 4 records over two profiles of different sex, against 3 on one profile
         ("pr7", "P4", date(1990, 5, 5), "M", 2, 0, ["ae"]), ("pr8", "P4", date(1990, 5, 5), "F", 2, 0, ["ae"]),
         ("pr9", "P4", date(1990, 1, 1), "F", 3, 0, ["ae"]),
         # P5: a tie of dates and of sexes
         ("pr10", "P5", date(2001, 3, 2), "M", 1, 0, ["ae"]), ("pr11", "P5", date(2001, 2, 3), "F", 1, 0, ["ae"]),
         # U(nknown) is no value: P2's two U records leave their sex unknown
         ("pr12", "P2", date(2000, 3, 31), "U", 2, 0, ["ae"])],
        "profile_id string, person_id string, date_of_birth date, sex string, record_count long, "
        "gp_record_count long, sources array<string>",
    )  # fmt: skip
    links = spark.createDataFrame(
        [("gp_registrations", "g1", "P1"), ("gp_registrations", "g2", "P1"), ("gp_registrations", "g3", "P1"),
         ("ae", "e1", "P1"),
         ("deaths", "d1", "P1"), ("ae", "e2", "P2")],
        "source string, record_id string, person_id string",
    )  # fmt: skip
    registrations = spark.createDataFrame(
        [("g1", "registration", "Asian or Asian British", "L1", 3, "Q1", date(2020, 1, 1), "2026-01", 2),
         ("g2", "address_change", "Not stated", None, None, "Q1", date(2026, 1, 5), "2026-01", 3),
         # delivered later but undated: any dated record is later
         ("g3", "deregistration", None, "L9", 9, "Q9", None, "2026-02", 1)],
        "record_id string, record_type string, ethnicity string, lsoa_code string, imd_decile int, "
        "practice_code string, effective_date date, period string, line_number long",
    )  # fmt: skip
    deaths = spark.createDataFrame([("d1", date(2026, 2, 10))], "record_id string, date_of_death date")
    practices = spark.createDataFrame([("Q1", "U1", "PL1")], "practice_code string, pcn_code string, place_code string")
    sources = ["ae", "deaths", "gp_events", "gp_registrations"]
    got = by_id(person_index(profiles, links, registrations, deaths, practices, "2026-03-31", sources), "person_id")
    p1, p2, p3, p4, p5 = (got[f"P{n}"] for n in range(1, 6))
    # GP records first, though three of P1's five records say otherwise
    assert (p1.age, p1.age_band, p1.sex, p1.ethnicity) == (75, "75-79", "F", "Asian or Asian British")
    assert (p1.practice_code, p1.pcn_code, p1.place_code, p1.gp_registered) == ("Q1", "U1", "PL1", True)
    assert (p1.lsoa_code, p1.imd_decile, p1.imd_quintile) == ("L1", 3, 2)
    assert (p1.deceased, p1.death_period, p1.records) == (True, "2026-02", 5)
    assert p1.sources == ["ae", "deaths", "gp_registrations"]
    assert (p2.age, p2.sex, p2.gp_registered, p2.practice_code, p2.deceased) == (26, None, False, None, False)
    # No GP record: the values on most records (two against one), counted by the profiles' records
    assert (p3.sex, p3.age, p3.records, p3.sources) == ("F", 46, 3, ["ae"])
    # Each value counted over all the person's records, whatever the other values on them
    assert (p4.age, p4.sex, p4.records) == (35, "F", 7)
    # Ties: the earlier date, F before M
    assert (p5.age, p5.sex) == (25, "F")


def test_evaluation_counts_pairs_misses_splits_and_merges(spark):
    truth = spark.createDataFrame(
        [("s", "r1", "T1", None), ("s", "r2", "T1", "name_swap"), ("s", "r3", "T1", "name_swap;surname_typo"),
         ("s", "r4", "T2", None), ("s", "r5", "T3", "surname_typo")],
        "source string, record_id string, true_person_id string, corruptions string",
    )  # fmt: skip
    people = spark.createDataFrame(
        [("T1", "White", "20-24", 1), ("T2", "Mixed", "20-24", 1), ("T3", "White", "90+", 5)],
        "true_person_id string, ethnicity string, age_band string, imd_quintile int",
    )
    # r3 split off from T1; T2 and T3 falsely merged
    links = spark.createDataFrame(
        [("s", "r1", "A"), ("s", "r2", "A"), ("s", "r3", "B"), ("s", "r4", "C"), ("s", "r5", "C")],
        "source string, record_id string, person_id string",
    )
    rows = {(r.scope, r.group_value): r for r in evaluate(links, truth, people, "model").collect()}
    overall = rows[("overall", "overall")]
    assert (overall.true_pairs, overall.predicted_pairs, overall.true_positive_pairs) == (3, 2, 1)
    assert overall.precision == pytest.approx(0.5) and overall.recall == pytest.approx(1 / 3)
    assert (overall.missed_link_records, overall.split_persons, overall.falsely_merged_persons) == (1, 1, 2)
    white = rows[("ethnicity", "White")]
    assert (white.records, white.true_pairs, white.predicted_pairs, white.falsely_merged_persons) == (4, 3, 1, 1)
    # By corruption: a record is in every corruption it has (r3 in two), a clean one in "none".
    by_corruption = {value: (r.records, r.missed_link_records) for (scope, value), r in rows.items()
                     if scope == "corruption"}  # fmt: skip
    assert by_corruption == {"none": (2, 0), "name_swap": (2, 1), "surname_typo": (2, 1)}
    assert rows[("corruption", "name_swap")].true_pairs == 1  # r2 and r3, both swapped


def test_evaluation_breaks_ties_by_the_smaller_id_and_leaves_out_unknown_group_values(spark):
    truth = spark.createDataFrame(
        [("s", "a1", "T1", None), ("s", "a2", "T1", None), ("t", "a3", "T1", None), ("t", "a4", "T1", None),
         ("s", "b1", "T2", None)],
        "source string, record_id string, true_person_id string, corruptions string",
    )  # fmt: skip
    people = spark.createDataFrame(
        [("T1", None, "20-24", 1), ("T2", "White", "20-24", 1)],
        "true_person_id string, ethnicity string, age_band string, imd_quintile int",
    )
    # T1 in two predicted persons of two records each (a tie: X, the smaller id, is its main one); T2 merged into Y
    links = spark.createDataFrame(
        [("s", "a1", "X"), ("s", "a2", "X"), ("t", "a3", "Y"), ("t", "a4", "Y"), ("s", "b1", "Y")],
        "source string, record_id string, person_id string",
    )
    rows = {(r.scope, r.group_value): r for r in evaluate(links, truth, people, "model").collect()}
    figures = ("records", "persons", "true_pairs", "predicted_pairs", "true_positive_pairs", "missed_link_records",
               "split_persons", "falsely_merged_persons")  # fmt: skip
    got = {key: tuple(getattr(row, name) for name in figures) for key, row in rows.items()}
    assert got[("overall", "overall")] == (5, 2, 6, 4, 2, 2, 1, 2)
    # Within a source, pairs of two records of that source; a person's flags are the person's, wherever counted
    assert got[("source", "s")] == (3, 2, 1, 1, 1, 0, 1, 2)
    assert got[("source", "t")] == (2, 1, 1, 1, 1, 2, 1, 1)
    assert [key for key in got if key[0] == "ethnicity"] == [("ethnicity", "White")]  # T1's unknown: left out
    assert got[("ethnicity", "White")] == (1, 1, 0, 0, 0, 0, 0, 1)


def test_nhs_number_baseline_links_only_equal_valid_numbers(spark):
    identity = spark.createDataFrame(
        [("s", "r1", A), ("t", "r2", A), ("s", "r3", INVALID), ("t", "r4", INVALID), ("s", "r5", None)],
        "source string, record_id string, nhs_number string",
    )
    got = {r.record_id: r.person_id for r in nhs_number_baseline(identity).collect()}
    assert got["r1"] == got["r2"] and len({got["r3"], got["r4"], got["r5"], got["r1"]}) == 4


def test_the_records_are_counted_dated_and_their_sources_listed_from_the_vaults_delta_log(fresh_config, spark):
    catalog = Catalog(spark, fresh_config.resolve(fresh_config.paths.warehouse))

    def vault(rows):  # the keys; every identifier and pseudonym null
        keys = spark.createDataFrame([(s, p, r, "k1") for s, p, r in rows], T.StructType(IDENTITY.schema.fields[:4]))
        return keys.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in IDENTITY.schema.fields[4:]])

    catalog.overwrite(IDENTITY.name, vault([("gp", "2026-01", "g1"), ("gp", "2026-01", "g2"),
                                            ("ae", "2026-02", "a1"), ("ae", "2026-02", "a2"),
                                            ("practices", "reference", "p1")]))  # fmt: skip
    # the last day of the latest monthly period; the sources, sorted
    assert _records_date_and_sources(catalog) == (5, "2026-02-28", ["ae", "gp", "practices"])
    # a period delivered again replaces its rows: the count is the table's now, not the files ever written
    catalog.overwrite(IDENTITY.name, vault([("ae", "2026-02", "a1")]), replace_where="period = '2026-02'")
    assert _records_date_and_sources(catalog) == (4, "2026-02-28", ["ae", "gp", "practices"])
    catalog.overwrite(IDENTITY.name, vault([("gp", "2026-01", "g1"), ("practices", "reference", "p1")]))
    assert _records_date_and_sources(catalog) == (2, "2026-01-31", ["gp", "practices"])
    catalog.overwrite(IDENTITY.name, vault([("practices", "reference", "p1")]))
    with pytest.raises(UserError, match="vault.identity holds no monthly period"):
        _records_date_and_sources(catalog)
