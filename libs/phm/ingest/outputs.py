"""From a source's evaluated rows to what ingest writes: silver, vault, quarantine, file accounting.

Silver keeps no direct identifier: each is replaced by its keyed pseudonym
and, for dates of birth and postcodes, by non-identifying derivations (age
at the event and a 5-year age band; postcode sector, LSOA and IMD decile
from the postcode directory). Age bands follow the ONS 5-year bands
(0-4 ... 85-89, 90+).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.ingest.contracts import IDENTIFIER_KINDS, SourceContract, pseudonym_column, silver_spec
from phm.ingest.pseudonymise import pseudonym
from phm.ingest.rules import CompiledRule, first_quarantine_rule, quarantine_reason
from phm.tables import IDENTITY, QUARANTINE

OLDEST_BAND = 90


def age_band(age: Column) -> Column:
    low = F.least(F.floor(age / 5) * 5, F.lit(OLDEST_BAND)).cast("int")
    return (
        F.when(age.isNull() | (age < 0), None)
        .when(low >= OLDEST_BAND, F.lit(f"{OLDEST_BAND}+"))
        .otherwise(F.concat(F.lpad(low.cast("string"), 2, "0"), F.lit("-"), F.lpad((low + 4).cast("string"), 2, "0")))
    )


def to_silver(
    accepted: DataFrame,
    contract: SourceContract,
    postcode_lsoa: DataFrame | None,
    lsoa_imd: DataFrame | None,
) -> DataFrame:
    """Accepted, pseudonymised rows (the key columns of pseudonymise.with_key must be present)."""
    identifiers = contract.identifiers
    frame = accepted
    if "postcode" in identifiers:
        postcode = F.col(identifiers["postcode"])
        frame = frame.withColumn("postcode_sector", F.regexp_extract(postcode, r"^(\S+ [0-9])", 1))
        frame = frame.withColumn("postcode_sector", F.when(F.col("postcode_sector") != "", F.col("postcode_sector")))
        if postcode_lsoa is not None:
            lookup = postcode_lsoa.select(F.col("postcode").alias("_pc"), "lsoa_code")
            frame = frame.join(F.broadcast(lookup), postcode == F.col("_pc"), "left").drop("_pc")
        else:
            frame = frame.withColumn("lsoa_code", F.lit(None).cast("string"))
        if lsoa_imd is not None:
            deciles = lsoa_imd.select(F.col("lsoa_code").alias("_lsoa"), "imd_decile")
            frame = frame.join(F.broadcast(deciles), F.col("lsoa_code") == F.col("_lsoa"), "left").drop("_lsoa")
        else:
            frame = frame.withColumn("imd_decile", F.lit(None).cast("int"))
    if "date_of_birth" in identifiers:
        at = F.col(contract.event_date) if contract.event_date else F.col("_period_end")
        age = F.floor(F.months_between(F.coalesce(at, F.col("_period_end")), F.col(identifiers["date_of_birth"])) / 12)
        frame = frame.withColumn("age_at_event", age.cast("int")).withColumn(
            "age_band", age_band(F.col("age_at_event"))
        )
    for kind, column in identifiers.items():
        frame = frame.withColumn(pseudonym_column(kind), pseudonym(kind, F.col(column)))
    frame = frame.withColumn("warnings", F.when(F.size("_warnings") > 0, F.col("_warnings")))
    return frame.select(*silver_spec(contract).schema.fieldNames())


def to_vault(accepted: DataFrame, contract: SourceContract, key_id: str) -> DataFrame | None:
    """vault.identity rows of an identity-bearing source (None for sources without identifiers)."""
    identifiers = contract.identifiers
    if not identifiers:
        return None
    columns: list[Column] = [
        F.lit(contract.source).alias("source"),
        F.col("period"),
        F.col(contract.record_id).alias("record_id"),
        F.lit(key_id).alias("key_id"),
    ]
    for kind in IDENTIFIER_KINDS:
        column = identifiers.get(kind)
        value = F.col(column) if column else F.lit(None)
        columns.append(value.cast("date" if kind == "date_of_birth" else "string").alias(kind))
    sex = "sex" if "sex" in contract.columns else None
    columns.append((F.col(sex) if sex else F.lit(None)).cast("string").alias("sex"))
    event = F.col(contract.event_date) if contract.event_date else F.lit(None)
    columns.append(event.cast("date").alias("event_date"))
    for kind in IDENTIFIER_KINDS:
        column = identifiers.get(kind)
        value = pseudonym(kind, F.col(column)) if column else F.lit(None).cast("string")
        columns.append(value.alias(pseudonym_column(kind)))
    return accepted.where(F.col(contract.record_id).isNotNull()).select(*columns).select(*IDENTITY.schema.fieldNames())


def to_quarantine(
    rejected: DataFrame, contract: SourceContract, rules: list[CompiledRule], id_first: bool
) -> DataFrame:
    """silver.quarantine rows: where the row came from, its record id if readable, its failed rules and why.

    A malformed line's record id is read from its first field when the source's files start with it.
    """
    record_id = F.col(contract.record_id).cast("string")
    if id_first:
        first_field = F.regexp_extract(F.col("raw_line"), r"^([^,]*)", 1)
        record_id = F.coalesce(record_id, F.when(first_field != "", first_field))
    return rejected.select(
        F.lit(contract.source).alias("source"),
        "period",
        "file",
        "line_number",
        record_id.alias("record_id"),
        first_quarantine_rule(rules).alias("rule"),
        F.col("_failed").alias("failed_rules"),
        quarantine_reason(rules).alias("reason"),
    ).select(*QUARANTINE.schema.fieldNames())


def file_accounting(flagged: DataFrame) -> DataFrame:
    """Per file: rows in, accepted, quarantined, warned (a row failing a `fail` rule stops the run first)."""
    outcome = F.col("_outcome")
    return flagged.groupBy("source", "period", "file", "checksum").agg(
        F.count(F.lit(1)).alias("rows_in"),
        F.sum((outcome == "accept").cast("long")).alias("rows_accepted"),
        F.sum((outcome == "quarantine").cast("long")).alias("rows_quarantined"),
        F.sum(((outcome == "accept") & (F.size("_warnings") > 0)).cast("long")).alias("rows_warned"),
    )
