"""Rotating the pseudonymisation key: every pseudonym made with the old key replaced by the new key's.

A pseudonym is HMAC-SHA-256(key, "kind:value") of a standardised identifier
(phm.ingest.pseudonymise), and vault.identity holds every accepted record's
identifiers beside their pseudonyms. So the vault alone gives the mapping of
every old pseudonym to the new one of the same value, computed in one pass
with both keys' padded halves present (neither key is ever a value of a
column or appears in a plan). Profile ids (linkage) are hashes of a record's
pseudonyms, so the vault gives their old -> new mapping too.

Rotation rewrites vault.identity (new pseudonyms, new key id), each pseudonym
column of every silver source table through the mapping, and the profile ids
of vault.identity_profiles, silver.linkage_profiles and silver.person_link,
keeping every person_id.
Afterwards the warehouse holds exactly what ingesting the same extracts with
the new key would have made, so linkage finds nothing new. A pseudonym or
profile id with no mapping means a table was not made from the vault it sits
beside: rotation stops before writing anything (the job checks).
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.ingest.contracts import IDENTIFIER_KINDS, pseudonym_column
from phm.ingest.pseudonymise import KEY_COLUMNS, NEW_KEY_COLUMNS, pseudonym
from phm.linkage.profiles import profile_id
from phm.tables import IDENTITY

OLD_PREFIX = "_old_"
STALE = "_stale"  # the row's stored pseudonyms are not the old key's: the old key given is not the vault's
OLD_PROFILE, NEW_PROFILE = "old_profile_id", "new_profile_id"
UNMAPPED = "_unmapped"


def rekeyed_identity(identity: DataFrame, new_key_id: str) -> DataFrame:
    """vault.identity rows (joined with both keys' pad columns: pseudonymise.with_key with KEY_COLUMNS and
    NEW_KEY_COLUMNS) with every pseudonym made by the new key and `key_id` the new key's; beside them each old
    pseudonym as `_old_<column>`, the old profile id, and `_stale`: a stored pseudonym the old key did not make.
    """
    old = [F.col(pseudonym_column(kind)).alias(OLD_PREFIX + pseudonym_column(kind)) for kind in IDENTIFIER_KINDS]
    made_by_old_key = [
        F.col(pseudonym_column(kind)).eqNullSafe(pseudonym(kind, F.col(kind), KEY_COLUMNS)) for kind in IDENTIFIER_KINDS
    ]
    stale = ~reduce(lambda a, b: a & b, made_by_old_key)
    rekeyed = {pseudonym_column(kind): pseudonym(kind, F.col(kind), NEW_KEY_COLUMNS) for kind in IDENTIFIER_KINDS}
    columns = [
        F.lit(new_key_id).alias(name) if name == "key_id" else rekeyed.get(name, F.col(name)).alias(name)
        for name in IDENTITY.schema.fieldNames()
    ]
    return identity.select(*columns, *old, profile_id(identity).alias(OLD_PROFILE), stale.alias(STALE))


def pseudonym_mapping(rekeyed: DataFrame) -> DataFrame:
    """(kind, old, new): every pseudonym the vault holds, under the old key and the new."""
    parts = [
        rekeyed.select(
            F.lit(kind).alias("kind"),
            F.col(OLD_PREFIX + pseudonym_column(kind)).alias("old"),
            F.col(pseudonym_column(kind)).alias("new"),
        ).where(F.col("old").isNotNull())
        for kind in IDENTIFIER_KINDS
    ]
    return reduce(DataFrame.unionByName, parts).distinct()


def profile_mapping(rekeyed: DataFrame) -> DataFrame:
    """(old_profile_id, new_profile_id) of every profile the vault's records make."""
    return rekeyed.select(OLD_PROFILE, profile_id(rekeyed).alias(NEW_PROFILE)).distinct()


def rekey_columns(table: DataFrame, kinds: dict[str, str], mapping: DataFrame) -> DataFrame:
    """`table` with each pseudonym column (column -> identifier kind) through the mapping, and `_unmapped`:
    a non-null pseudonym of the old key that the mapping does not hold."""
    original = table.columns
    unmapped = F.lit(False)
    for column, kind in kinds.items():
        new = f"_new_{column}"
        lookup = mapping.where(F.col("kind") == kind).select(F.col("old").alias(column), F.col("new").alias(new))
        table = table.join(lookup, column, "left")
        unmapped = unmapped | (F.col(column).isNotNull() & F.col(new).isNull())
    columns = [F.col(f"_new_{c}").alias(c) if c in kinds else F.col(c) for c in original]
    return table.select(*columns, unmapped.alias(UNMAPPED))


def rekey_profiles(table: DataFrame, mapping: DataFrame) -> DataFrame:
    """`table` with `profile_id` through the profile mapping (every other column kept, person_id included), and
    `_unmapped`: a profile id the mapping does not hold."""
    lookup = mapping.select(F.col(OLD_PROFILE).alias("profile_id"), F.col(NEW_PROFILE).alias("_new_profile_id"))
    joined = table.join(lookup, "profile_id", "left")
    columns = [F.col("_new_profile_id").alias(c) if c == "profile_id" else F.col(c) for c in table.columns]
    return joined.select(*columns, F.col("_new_profile_id").isNull().alias(UNMAPPED))
