"""Rotate the pseudonymisation key: `phm rekey --new-key-file PATH` (or `--new-key-env VAR`).

On demand only, never part of a refresh. Reads the current key (ingest.key_env /
ingest.key_file) and the new one (ingest.new_key_env / ingest.new_key_file),
and rewrites, in one run (all or nothing, like every job), vault.identity,
every silver source table's pseudonyms and the linkage tables' profile ids
(phm.governance.rekey); person_ids are kept. Nothing is written unless every
pseudonym and profile id has its new value. Afterwards point ingest.key_env or
ingest.key_file at the new key and retire the old one (docs/trust.md "Key
rotation"). Run again with the same keys, it finds the vault rotated already
and writes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.governance.rekey import (
    STALE,
    UNMAPPED,
    profile_mapping,
    pseudonym_mapping,
    rekey_columns,
    rekey_profiles,
    rekeyed_identity,
)
from phm.ingest import pseudonymise
from phm.ingest.contracts import load_contracts, pseudonym_column
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.ledger import Ledger
from phm.runtime.script import main_for
from phm.runtime.staging import stage
from phm.tables import IDENTITY, IDENTITY_PROFILES, LINKAGE_PROFILES, PERSON_LINK

log = logging.getLogger("phm.jobs.rekey")

LINKAGE_TABLES = (IDENTITY_PROFILES.name, LINKAGE_PROFILES.name, PERSON_LINK.name)


def _pseudonymised_tables(config) -> dict[str, dict[str, str]]:
    """silver.<source> -> {pseudonym column: identifier kind} for every source that carries identifiers."""
    contracts = load_contracts(config.resolve(config.ingest.sources)).values()
    return {
        c.silver_table: {pseudonym_column(kind): kind for kind in c.identifiers} for c in contracts if c.identifiers
    }


SPEC = JobSpec(
    name="rekey",
    description="rotate the pseudonymisation key: the vault, every silver pseudonym and the profile ids, re-keyed",
    outputs=(IDENTITY.name, *LINKAGE_TABLES),
    outputs_for=lambda config: tuple(_pseudonymised_tables(config)),
    scheduled=False,
)


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    old_key = pseudonymise.load_key(config.ingest.key_env, config.pseudonym_key_file)
    new_key = _new_key(config)
    old_id, new_id = pseudonymise.key_id(old_key), pseudonymise.key_id(new_key)
    if old_id == new_id:
        raise UserError("rekey: the new key is the current key; give another (`phm keygen` can make one)")
    if not catalog.exists(IDENTITY.name):
        log.info("rekey: no vault.identity yet, so no pseudonym to rotate; point ingest at the new key")
        ctx.rows_in = ctx.rows_out = 0
        return
    identity = catalog.read(IDENTITY.name)
    held = {r.key_id for r in identity.select("key_id").distinct().collect()}
    if held == {new_id}:
        log.info("rekey: vault.identity is already under key id %s; nothing to do", new_id)
        ctx.rows_in = ctx.rows_out = 0
        return
    if held != {old_id}:
        raise UserError(
            f"rekey: vault.identity holds pseudonyms of key id(s) {sorted(held)}, not of the configured key "
            f"({old_id}); configure the key the vault was built with as ingest.key_env / ingest.key_file"
        )
    linkage = [name for name in LINKAGE_TABLES if catalog.exists(name)]
    if linkage:
        _check_linked_with(ctx)

    staging = Path(config.resolve(config.paths.checkpoints)) / f"rekey-{ctx.run_id}"
    try:
        both = pseudonymise.with_key(spark, pseudonymise.with_key(spark, identity, old_key), new_key,
                                     pseudonymise.NEW_KEY_COLUMNS)  # fmt: skip
        rekeyed = stage(spark, rekeyed_identity(both, new_id), staging / "identity")
        stale = rekeyed.where(F.col(STALE)).count()
        if stale:
            raise UserError(
                f"rekey: {stale} vault.identity row(s) hold pseudonyms the configured key did not make; nothing "
                "was written. Configure the key the vault was built with"
            )
        mapping = stage(spark, pseudonym_mapping(rekeyed), staging / "pseudonyms")
        profiles = stage(spark, profile_mapping(rekeyed), staging / "profiles")
        outputs: dict[str, DataFrame] = {IDENTITY.name: rekeyed.select(*IDENTITY.schema.fieldNames())}
        for table, kinds in _pseudonymised_tables(config).items():
            if catalog.exists(table):
                outputs[table] = _checked(catalog, table, rekey_columns(catalog.read(table), kinds, mapping), staging)
        for table in linkage:
            outputs[table] = _checked(catalog, table, rekey_profiles(catalog.read(table), profiles), staging)
        for table, frame in outputs.items():  # every table checked before the first is written
            catalog.overwrite(table, frame)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.rows_in = identity.count()
    log.info("rekey: %d tables re-keyed from key id %s to %s; now point ingest.key_env / ingest.key_file at the "
             "new key", len(outputs), old_id, new_id)  # fmt: skip


def _new_key(config) -> bytes:
    ingest = config.ingest
    if ingest.new_key_env:
        if not os.environ.get(ingest.new_key_env):
            raise UserError(f"rekey: the environment variable {ingest.new_key_env} (the new key) is not set")
        return pseudonymise.load_key(ingest.new_key_env, "")
    if ingest.new_key_file:
        path = config.resolve(os.path.expanduser(ingest.new_key_file))
        if not os.path.isfile(path):
            raise UserError(f"rekey: no new key file {path}; create one with `phm keygen --set ingest.key_file=PATH`")
        return pseudonymise.load_key("", path)
    raise UserError("rekey: no key to rotate to; give `phm rekey --new-key-file PATH` (or --new-key-env VAR)")


def _check_linked_with(ctx: JobContext) -> None:
    """The linkage tables must be the last link run's over this vault's records: their profile ids are then
    exactly those the vault's records make, so every one has its new value."""
    last = Ledger(ctx.spark, ctx.catalog.warehouse).last_succeeded("link")
    if last is None or not ctx.catalog.data_unchanged(IDENTITY.name, (last.input_versions or {}).get(IDENTITY.name)):
        raise UserError(
            "rekey: vault.identity has changed since linkage last ran (or linkage never ran on it); run "
            "`phm run link` first, so every profile id in the linkage tables can be re-keyed"
        )


def _checked(catalog, table: str, rekeyed: DataFrame, staging: Path) -> DataFrame:
    """The re-keyed table, staged, with as many rows as before and every pseudonym or profile id mapped."""
    staged = stage(catalog.spark, rekeyed, staging / table)
    unmapped = staged.where(F.col(UNMAPPED)).count()
    before, after = catalog.read(table).count(), staged.count()
    if unmapped or before != after:
        raise RuntimeError(
            f"rekey: {table}: {unmapped} row(s) with a pseudonym or profile id the vault does not map, and "
            f"{before} rows before against {after} after; nothing was written (a defect: report it)"
        )
    return staged.drop(UNMAPPED)


if __name__ == "__main__":
    main_for(SPEC.name)
