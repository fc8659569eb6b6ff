"""Key rotation on hand-made vault rows: new pseudonyms equal to Python's HMAC under the new key, the old -> new
mappings of pseudonyms and profile ids, and unmapped values flagged (the job stops on them)."""

from __future__ import annotations

from datetime import date

from phm.governance.rekey import (
    NEW_PROFILE,
    OLD_PROFILE,
    STALE,
    UNMAPPED,
    profile_mapping,
    pseudonym_mapping,
    rekey_columns,
    rekey_profiles,
    rekeyed_identity,
)
from phm.ingest.contracts import IDENTIFIER_KINDS, pseudonym_column
from phm.ingest.pseudonymise import NEW_KEY_COLUMNS, key_id, reference_pseudonym, with_key
from phm.linkage.profiles import profile_id
from phm.tables import IDENTITY

OLD, NEW, OTHER = bytes.fromhex("11" * 32), bytes.fromhex("22" * 32), bytes.fromhex("33" * 32)
PEOPLE = {  # record_id -> identifiers (nhs_number, forename, surname, date_of_birth, postcode)
    "r1": ("9990000018", "ANN", "SMITH", date(1950, 1, 2), "QA1 1AB"),
    "r2": ("9990000018", "ANN", "SMITH", date(1950, 1, 2), "QA1 1AB"),  # the same person again
    "r3": (None, "BOB", "JONES", date(1986, 12, 28), None),
}


def pseudonyms(key: bytes, values: tuple) -> dict[str, str | None]:
    named = dict(zip(("nhs_number", "forename", "surname", "date_of_birth", "postcode"), values, strict=True))
    text = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in named.items()}
    return {kind: reference_pseudonym(key, kind, text[kind]) if text.get(kind) else None for kind in IDENTIFIER_KINDS}


def vault(spark, key: bytes, tamper: str | None = None):
    rows = []
    for record, values in PEOPLE.items():
        made = pseudonyms(OTHER if record == tamper else key, values)
        rows.append({"source": "gp_registrations", "period": "2026-01", "record_id": record, "key_id": key_id(key),
                     **dict(zip(("nhs_number", "forename", "surname", "date_of_birth", "postcode"), values,
                                strict=True)),
                     "sex": "F", **{pseudonym_column(kind): made[kind] for kind in IDENTIFIER_KINDS}})  # fmt: skip
    full = [{name: row.get(name) for name in IDENTITY.schema.fieldNames()} for row in rows]
    return spark.createDataFrame(full, IDENTITY.schema)


def rekey(spark, identity):
    both = with_key(spark, with_key(spark, identity, OLD), NEW, NEW_KEY_COLUMNS)
    return rekeyed_identity(both, key_id(NEW))


def test_the_vault_gets_the_new_keys_pseudonyms_and_key_id(spark):
    rekeyed = {r.record_id: r for r in rekey(spark, vault(spark, OLD)).collect()}
    for record, values in PEOPLE.items():
        row, new, old = rekeyed[record], pseudonyms(NEW, values), pseudonyms(OLD, values)
        assert {kind: row[pseudonym_column(kind)] for kind in IDENTIFIER_KINDS} == new
        assert {kind: row[f"_old_{pseudonym_column(kind)}"] for kind in IDENTIFIER_KINDS} == old
        assert (row.key_id, row.nhs_number, row[STALE]) == (key_id(NEW), values[0], False)
    assert set(rekey(spark, vault(spark, OLD)).columns) >= set(IDENTITY.schema.fieldNames())
    assert not any(c.startswith("_hmac") for c in rekey(spark, vault(spark, OLD)).columns)  # no key is kept


def test_a_row_the_old_key_did_not_make_is_stale(spark):
    stale = {r.record_id: r[STALE] for r in rekey(spark, vault(spark, OLD, tamper="r3")).collect()}
    assert stale == {"r1": False, "r2": False, "r3": True}


def test_the_mappings_hold_every_pseudonym_and_profile_once(spark):
    identity = vault(spark, OLD)
    rekeyed = rekey(spark, identity)
    pairs = [(pseudonyms(OLD, values), pseudonyms(NEW, values)) for values in PEOPLE.values()]
    expected = {(kind, old[kind], new[kind]) for old, new in pairs for kind in IDENTIFIER_KINDS if old[kind]}
    assert sorted(tuple(r) for r in pseudonym_mapping(rekeyed).collect()) == sorted(expected)
    old_profiles = {r.record_id: r.p for r in identity.select("record_id", profile_id(identity).alias("p")).collect()}
    new_vault = rekeyed.select(*IDENTITY.schema.fieldNames())
    new_profiles = {r.record_id: r.p for r in new_vault.select("record_id", profile_id(new_vault).alias("p")).collect()}
    mapped = {(r[OLD_PROFILE], r[NEW_PROFILE]) for r in profile_mapping(rekeyed).collect()}
    assert mapped == {(old_profiles[r], new_profiles[r]) for r in PEOPLE} and len(mapped) == 2  # r1 and r2 share one
    assert all(old_profiles[r] != new_profiles[r] for r in PEOPLE)


def test_silver_and_linkage_columns_go_through_the_mappings_and_unknown_values_are_flagged(spark):
    rekeyed = rekey(spark, vault(spark, OLD))
    ann_old, ann_new = pseudonyms(OLD, PEOPLE["r1"]), pseudonyms(NEW, PEOPLE["r1"])
    silver = spark.createDataFrame(
        [("e1", ann_old["nhs_number"], 3), ("e2", None, 4), ("e3", "f" * 64, 5)],
        "event_id string, nhs_number_pseudonym string, value int",
    )
    out = {r.event_id: r for r in rekey_columns(silver, {"nhs_number_pseudonym": "nhs_number"},
                                                pseudonym_mapping(rekeyed)).collect()}  # fmt: skip
    assert [tuple(out[e]) for e in ("e1", "e2", "e3")] == [
        ("e1", ann_new["nhs_number"], 3, False), ("e2", None, 4, False), ("e3", None, 5, True)]  # fmt: skip
    mapping = profile_mapping(rekeyed)
    old_profile, new_profile = mapping.first()[OLD_PROFILE], mapping.first()[NEW_PROFILE]
    links = spark.createDataFrame([("gp", "r1", old_profile, "P1"), ("gp", "rx", "unknown", "P2")],
                                  "source string, record_id string, profile_id string, person_id string")  # fmt: skip
    got = sorted(tuple(r) for r in rekey_profiles(links, mapping).collect())
    assert got == [("gp", "r1", new_profile, "P1", False), ("gp", "rx", None, "P2", True)]
    assert rekey_profiles(links, mapping).columns == [*links.columns, UNMAPPED]
