"""`phm rekey` on a copy of the refreshed tiny ICS: every pseudonym and profile id re-keyed, person_ids kept, no
old pseudonym left; a delivery ingested afterwards with the new key matches what rotation made, so linkage finds
nothing new; a second rotation to the same key does nothing; rotation waits for linkage to catch up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm import cli
from phm.ingest.contracts import IDENTIFIER_KINDS, load_contracts, pseudonym_column
from phm.ingest.pseudonymise import key_id, reference_pseudonym
from phm.runtime.catalog import Catalog
from phm.tables import IDENTITY, LINKAGE_PROFILES, PERSON_LINK

from ..conftest import TEST_KEY_HEX
from .conftest import copy_of_sample

pytestmark = pytest.mark.slow
NEW_KEY_HEX, THIRD_KEY_HEX = "7a" * 32, "c4" * 32


def all_pseudonyms(catalog: Catalog, tables: dict[str, list[str]]) -> set[str]:
    values: set[str] = set()
    for table, columns in tables.items():
        for column in columns:
            values |= {r[0] for r in catalog.read(table).select(column).where(F.col(column).isNotNull()).collect()}
    return values


def links(catalog: Catalog) -> dict[tuple[str, str], tuple[str, str]]:
    """(source, record_id) -> (profile_id, person_id) of every linked record."""
    return {(r.source, r.record_id): (r.profile_id, r.person_id) for r in catalog.read(PERSON_LINK.name).collect()}


@pytest.fixture(scope="module")
def rotated(refreshed, spark, tmp_path_factory):
    """A copy of the sample (warehouse, landing, linkage model) and what it held before `phm rekey` to a new key."""
    sample = copy_of_sample(refreshed, spark, tmp_path_factory.mktemp("rekeyed"))
    copy, arguments, config, catalog = sample.folder, sample.arguments, sample.config, sample.catalog
    contracts = load_contracts(config.resolve(config.ingest.sources)).values()
    tables = {c.silver_table: [pseudonym_column(k) for k in c.identifiers] for c in contracts if c.identifiers}
    tables[IDENTITY.name] = [pseudonym_column(k) for k in IDENTIFIER_KINDS]
    before = {
        "pseudonyms": all_pseudonyms(catalog, tables),
        "rows": {t: catalog.read(t).count() for t in [*tables, LINKAGE_PROFILES.name, PERSON_LINK.name]},
        "links": links(catalog),
    }
    new_key = copy / "new.key"
    new_key.write_text(NEW_KEY_HEX + "\n")
    code = cli.main(["rekey", "--new-key-file", str(new_key), *arguments])
    return {"code": code, "copy": copy, "arguments": arguments, "catalog": catalog, "tables": tables,
            "before": before, "new_key": new_key, "config": config}  # fmt: skip


def test_every_pseudonym_and_profile_id_is_re_keyed_and_every_person_id_kept(rotated):
    assert rotated["code"] == 0
    catalog, before = rotated["catalog"], rotated["before"]
    vault = catalog.read(IDENTITY.name)
    assert {r.key_id for r in vault.select("key_id").distinct().collect()} == {key_id(bytes.fromhex(NEW_KEY_HEX))}
    assert {t: catalog.read(t).count() for t in before["rows"]} == before["rows"]
    after = all_pseudonyms(catalog, rotated["tables"])
    assert after and not after & before["pseudonyms"]  # not one pseudonym of the old key is left
    # each is the new key's pseudonym of the identifier the vault holds
    new = bytes.fromhex(NEW_KEY_HEX)
    for row in vault.where(F.col("nhs_number").isNotNull()).limit(20).collect():
        assert row.nhs_number_pseudonym == reference_pseudonym(new, "nhs_number", row.nhs_number)
        assert row.date_of_birth_pseudonym in (None, reference_pseudonym(new, "date_of_birth",
                                                                         str(row.date_of_birth)))  # fmt: skip
    numbers = vault.where(F.col("source") == "gp_registrations").select("record_id", "nhs_number")
    registrations = (
        (catalog.read("silver.gp_registrations").join(numbers, "record_id").where(F.col("nhs_number").isNotNull()))
        .limit(20)
        .collect()
    )
    expected = [reference_pseudonym(new, "nhs_number", r.nhs_number) for r in registrations]
    assert registrations and [r.nhs_number_pseudonym for r in registrations] == expected
    now = links(catalog)
    assert now.keys() == before["links"].keys()
    assert all(now[k][1] == before["links"][k][1] for k in now)  # person_ids kept
    assert all(now[k][0] != before["links"][k][0] for k in now)  # profile ids re-keyed
    logs = "\n".join(p.read_text() for p in (rotated["copy"] / "logs").glob("*.log"))
    assert "rekey: " in logs and NEW_KEY_HEX not in logs and TEST_KEY_HEX not in logs


def test_a_second_rotation_to_the_same_key_writes_nothing(rotated):
    catalog = rotated["catalog"]
    versions = {t: catalog.version(t) for t in rotated["before"]["rows"]}
    assert cli.main(["rekey", "--new-key-file", str(rotated["new_key"]), *rotated["arguments"]]) == 0
    assert {t: catalog.version(t) for t in versions} == versions


def test_after_rotation_the_new_key_ingests_what_rotation_made_and_linkage_finds_nothing_new(
    rotated, monkeypatch, capsys
):
    catalog, arguments = rotated["catalog"], rotated["arguments"]
    monkeypatch.setenv("PHM_PSEUDONYM_KEY", NEW_KEY_HEX)  # the new key is now the configured one
    # The latest GP registrations re-delivered (a trailing blank line: the same rows, another checksum).
    landing = rotated["copy"] / "landing" / "gp_registrations"
    latest = sorted(p for p in landing.iterdir() if p.is_dir())[-1]
    [delivered] = list(latest.glob("*.csv"))
    delivered.write_text(delivered.read_text() + "\n")
    vault_before = catalog.version(IDENTITY.name)
    pseudonyms = all_pseudonyms(catalog, rotated["tables"])
    assert cli.main(["run", "ingest", *arguments]) == 0
    assert catalog.version(IDENTITY.name) == vault_before + 1  # the period was loaded again, with the new key
    assert all_pseudonyms(catalog, rotated["tables"]) == pseudonyms

    # Linkage has not seen this vault yet: rotating again must wait for it.
    third = Path(rotated["copy"]) / "third.key"
    third.write_text(THIRD_KEY_HEX)
    versions = {t: catalog.version(t) for t in rotated["before"]["rows"]}
    capsys.readouterr()
    assert cli.main(["rekey", "--new-key-file", str(third), *arguments]) == 2
    assert "run `phm run link` first" in capsys.readouterr().err
    assert {t: catalog.version(t) for t in versions} == versions

    linked = catalog.version(PERSON_LINK.name)
    assert cli.main(["run", "link", *arguments]) == 0
    assert catalog.version(PERSON_LINK.name) == linked  # every record already linked, with the same profile ids
