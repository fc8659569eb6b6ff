"""Every table the platform writes: name, schema, grain and purpose, declared once.

Names are `layer.name`. Layers: bronze (as delivered), silver (validated,
standardised, pseudonymised), vault (restricted identifiers), gold (the
linked person model), mart (published aggregates), ops (platform
operations). Every table also carries the audit column `_run_id`, the run
that wrote the row, added by the catalogue on write.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from phm.errors import UnknownTableError

LAYERS = ("bronze", "silver", "vault", "gold", "mart", "ops")
RUN_ID_COLUMN = "_run_id"


@dataclass(frozen=True)
class TableSpec:
    """A table's contract: its columns (without the audit column), grain and keys."""

    name: str
    schema: T.StructType
    grain: str
    description: str
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def schema_with_audit(self) -> T.StructType:
        return T.StructType([*self.schema.fields, T.StructField(RUN_ID_COLUMN, T.StringType(), False)])


JOB_RUNS = TableSpec(
    name="ops.job_runs",
    grain="one row per job run (a refresh and each stage it runs are separate runs)",
    description="The run ledger: what ran, with which config, what it read and wrote, and how it ended.",
    keys=("run_id",),
    schema=T.StructType(
        [
            T.StructField("run_id", T.StringType(), False),
            T.StructField("job", T.StringType(), False),
            T.StructField("parent_run_id", T.StringType(), True),
            T.StructField("environment", T.StringType(), False),
            T.StructField("config_digest", T.StringType(), False),
            T.StructField("phm_version", T.StringType(), False),
            T.StructField("spark_master", T.StringType(), True),
            T.StructField("status", T.StringType(), False),
            T.StructField("started_at", T.TimestampType(), False),
            T.StructField("ended_at", T.TimestampType(), True),
            T.StructField("input_versions", T.MapType(T.StringType(), T.LongType()), True),
            T.StructField("output_versions", T.MapType(T.StringType(), T.LongType()), True),
            T.StructField("rows_in", T.LongType(), True),
            T.StructField("rows_out", T.LongType(), True),
            T.StructField("rows_quarantined", T.LongType(), True),
            T.StructField("error", T.StringType(), True),
        ]
    ),
)

QOF_PREVALENCE = TableSpec(
    name="silver.reference_qof_prevalence",
    grain="one row per QOF register per IMD 2019 decile (England, 2019/20)",
    description=(
        "Recorded prevalence of each QOF register by IMD decile: the calibration target of the "
        "synthetic population and the expected prevalence for undiagnosed-gap profiling."
    ),
    keys=("register", "imd_decile"),
    schema=T.StructType(
        [
            T.StructField("register", T.StringType(), False),
            T.StructField("imd_decile", T.IntegerType(), False),
            T.StructField("register_count", T.DoubleType(), False),
            T.StructField("list_size", T.DoubleType(), False),
            T.StructField("prevalence", T.DoubleType(), False),
            T.StructField("ratio_to_england", T.DoubleType(), False),
        ]
    ),
)

_LOAD_FIELDS = [
    T.StructField("source", T.StringType(), False),
    T.StructField("period", T.StringType(), False),
    T.StructField("file", T.StringType(), False),
]

LANDED_ROWS = TableSpec(
    name="bronze.landed_rows",
    grain="one row per delivered line (CSV) or row (Parquet) of every loaded landing file",
    description=(
        "Every row exactly as delivered (the supplier's column names and text), with load metadata; lines "
        "that could not be parsed keep their raw text and the parse error. Restricted: holds identifiers."
    ),
    keys=("source", "file", "line_number"),
    partition_by=("source", "period"),
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("line_number", T.LongType(), False),
            T.StructField("checksum", T.StringType(), False),
            T.StructField("fields", T.MapType(T.StringType(), T.StringType()), True),
            T.StructField("raw_line", T.StringType(), True),
            T.StructField("parse_error", T.StringType(), True),
        ]
    ),
)

INGEST_FILES = TableSpec(
    name="ops.ingest_files",
    grain="one row per landing file currently loaded (a re-delivered period replaces its files' rows)",
    description="What ingest has loaded: file checksum and the file's accounting (rows in = accepted + quarantined).",
    keys=("source", "period", "file"),
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("checksum", T.StringType(), False),
            T.StructField("size_bytes", T.LongType(), False),
            T.StructField("rows_in", T.LongType(), False),
            T.StructField("rows_accepted", T.LongType(), False),
            T.StructField("rows_quarantined", T.LongType(), False),
            T.StructField("rows_warned", T.LongType(), False),
            T.StructField("loaded_at", T.TimestampType(), False),
        ]
    ),
)

QUARANTINE = TableSpec(
    name="silver.quarantine",
    grain="one row per rejected input row (the raw line stays in bronze.landed_rows: source, file, line_number)",
    description="Rows kept out of silver, with every rule they failed and why. Holds no identifiers.",
    keys=("source", "file", "line_number"),
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("line_number", T.LongType(), False),
            T.StructField("record_id", T.StringType(), True),
            T.StructField("rule", T.StringType(), False),
            T.StructField("failed_rules", T.ArrayType(T.StringType()), False),
            T.StructField("reason", T.StringType(), False),
        ]
    ),
)

IDENTITY = TableSpec(
    name="vault.identity",
    grain="one row per accepted identity-bearing source record",
    description=(
        "Restricted: each record's direct identifiers (standardised) beside their keyed pseudonyms, for "
        "linkage and audited re-identification only."
    ),
    keys=("source", "record_id"),
    partition_by=("source", "period"),
    schema=T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("period", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
            T.StructField("key_id", T.StringType(), False),
            T.StructField("nhs_number", T.StringType(), True),
            T.StructField("forename", T.StringType(), True),
            T.StructField("surname", T.StringType(), True),
            T.StructField("date_of_birth", T.DateType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("postcode", T.StringType(), True),
            T.StructField("address", T.StringType(), True),
            T.StructField("local_id", T.StringType(), True),
            T.StructField("event_date", T.DateType(), True),
            T.StructField("nhs_number_pseudonym", T.StringType(), True),
            T.StructField("forename_pseudonym", T.StringType(), True),
            T.StructField("surname_pseudonym", T.StringType(), True),
            T.StructField("date_of_birth_pseudonym", T.StringType(), True),
            T.StructField("postcode_pseudonym", T.StringType(), True),
            T.StructField("address_pseudonym", T.StringType(), True),
            T.StructField("local_id_pseudonym", T.StringType(), True),
        ]
    ),
)

DATA_QUALITY = TableSpec(
    name="mart.data_quality",
    grain="one row per source x period x rule (and per schema-drift finding) of each loaded period",
    description=(
        "How many rows failed each rule and what was done (fail / quarantine / warn); replaced per period "
        "on re-delivery, so refreshes can be compared (Great Expectations' own results: the run's Data Docs)."
    ),
    keys=("source", "period", "rule"),
    schema=T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("period", T.StringType(), False),
            T.StructField("rule", T.StringType(), False),
            T.StructField("check", T.StringType(), False),
            T.StructField("column", T.StringType(), True),
            T.StructField("action", T.StringType(), False),
            T.StructField("rows_checked", T.LongType(), False),
            T.StructField("failing_rows", T.LongType(), False),
            T.StructField("detail", T.StringType(), True),
        ]
    ),
)

# Layers that hold direct identifiers; everything else must hold pseudonyms only (leak tests search it).
RESTRICTED_LAYERS = ("bronze", "vault")

_REGISTRY: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    """Declare a table; its layer must be one of LAYERS and its name unique."""
    layer, _, entity = spec.name.partition(".")
    if layer not in LAYERS or not entity or "." in entity:
        raise ValueError(f"table name {spec.name!r} must be <layer>.<name> with layer one of {LAYERS}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"table {spec.name} is declared twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> TableSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTableError(
            f"unknown table {name!r}; declared tables: {', '.join(sorted(_REGISTRY))} "
            "(declare new tables in phm.tables)"
        ) from None


def all_specs() -> list[TableSpec]:
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


for _spec in (JOB_RUNS, QOF_PREVALENCE, LANDED_ROWS, INGEST_FILES, QUARANTINE, IDENTITY, DATA_QUALITY):
    register(_spec)
