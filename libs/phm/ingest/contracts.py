"""Source contracts: one YAML file per source under configs/sources/ (see README there).

A contract says how a supplier delivers (file glob, CSV or Parquet, date
format), how its columns map to the canonical schema (name, type, recoding,
which columns are direct identifiers), the record key, and the rules the
rows must pass, each with an action: `fail` (stop the run, write nothing),
`quarantine` (the row goes to silver.quarantine with the rule and reason)
or `warn` (kept and counted). Loading validates everything strictly and
names the file and key of any mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyspark.sql import types as T

from phm.errors import ConfigError
from phm.tables import TableSpec, register

CANONICAL_TYPES = {"string": T.StringType(), "date": T.DateType(), "int": T.IntegerType(), "double": T.DoubleType()}
# Direct identifiers: they go to vault.identity and are replaced in silver by keyed pseudonyms.
IDENTIFIER_KINDS = ("nhs_number", "forename", "surname", "date_of_birth", "postcode", "address", "local_id")
CHECKS = (
    "not_null",  # the value is present
    "parses",  # text present in the extract converts to the column's type (date format, number)
    "regex",  # the value matches `pattern`
    "check_digit",  # NHS number modulus-11 check digit
    "in_set",  # the value is one of `values` or of another source's column (`values_from: source.column`)
    "between",  # min <= value <= max
    "not_future",  # a date no later than the last day of the delivery period
    "in_period",  # a date inside the delivery period (the month the file was delivered for)
    "age_between",  # a date of birth giving an age (at the end of the period) between min and max
    "unique",  # `columns` identify one row: second and later copies fail
)
STATIC_PERIOD = "static"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One canonical column: where it comes from in the supplier's file and what it is."""

    source_column: str = Field(alias="from")
    type: Literal["string", "date", "int", "double"] = "string"
    required: bool = Field(False, description="The supplier's file must have this column (else the run fails).")
    identifier: Literal[IDENTIFIER_KINDS] | None = None  # type: ignore[valid-type]
    recode: dict[str, str] | None = Field(None, description="Supplier value -> canonical value (others: null).")
    clean: Literal["upper", "code", "name", "postcode", "nhs_number"] | None = None


class RuleSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    check: Literal[CHECKS]  # type: ignore[valid-type]
    column: str | None = None
    columns: list[str] | None = None
    pattern: str | None = None
    values: list[str] | None = None
    values_from: str | None = Field(None, pattern=r"^[a-z_]+\.[a-z_]+$")
    min: float | None = None
    max: float | None = None
    action: Literal["fail", "quarantine", "warn"]
    reason: str

    @model_validator(mode="after")
    def _arguments(self) -> RuleSpec:
        need = {
            "regex": ("pattern",),
            "between": ("min", "max"),
            "age_between": ("min", "max"),
            "unique": ("columns",),
        }.get(self.check, ())
        missing = [a for a in need if getattr(self, a) is None]
        if self.check == "in_set" and (self.values is None) == (self.values_from is None):
            missing.append("exactly one of values / values_from")
        if self.check != "unique" and self.column is None:
            missing.append("column")
        if missing:
            raise ValueError(f"rule {self.name} ({self.check}) needs {', '.join(missing)}")
        return self


class SourceContract(_Strict):
    source: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    kind: Literal["activity", "reference"] = "activity"
    format: Literal["csv", "parquet"]
    files: str = Field(description="Glob of the delivered files inside landing/<source folder>/<period>/.")
    folder: str | None = Field(None, description="Landing folder (default: the source name).")
    date_format: str | None = Field(None, description="Spark datetime pattern of text dates (CSV sources).")
    record_id: str = Field(description="Canonical column that identifies a record of this source.")
    event_date: str | None = Field(None, description="Canonical date column placing the record in time.")
    extra_columns: Literal["warn", "fail"] = "warn"
    columns: dict[str, ColumnSpec]
    rules: list[RuleSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SourceContract:
        names = set(self.columns)
        used = [self.record_id] + ([self.event_date] if self.event_date else [])
        for rule in self.rules:
            used += [rule.column] if rule.column else []
            used += rule.columns or []
        unknown = sorted({c for c in used if c not in names})
        if unknown:
            raise ValueError(f"columns {unknown} are used but not declared under columns")
        if self.format == "csv" and any(c.type == "date" for c in self.columns.values()) and not self.date_format:
            raise ValueError("a CSV source with date columns needs date_format")
        if len({r.name for r in self.rules}) != len(self.rules):
            raise ValueError("rule names must be unique within a source")
        return self

    @property
    def landing_folder(self) -> str:
        return self.folder or self.source

    @property
    def identifiers(self) -> dict[str, str]:
        """Identifier kind -> canonical column."""
        return {spec.identifier: name for name, spec in self.columns.items() if spec.identifier}

    @property
    def required_source_columns(self) -> list[str]:
        return [c.source_column for c in self.columns.values() if c.required]

    @property
    def silver_table(self) -> str:
        return f"silver.{self.source}"


def load_contracts(folder: str | Path) -> dict[str, SourceContract]:
    """Every contract in `folder` (*.yaml), by source name, reference sources first; tables registered."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no source contracts (*.yaml) in {folder}; set ingest.sources to the contracts folder")
    contracts: dict[str, SourceContract] = {}
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text())
            contract = SourceContract.model_validate(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the file") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ConfigError(f"{path}: {where}: {first['msg']}; see configs/sources/README.md") from None
        if contract.source in contracts:
            raise ConfigError(f"{path}: source {contract.source!r} is declared twice; rename one")
        if path.stem != contract.source:
            raise ConfigError(f"{path}: declares source {contract.source!r}; name the file {contract.source}.yaml")
        contracts[contract.source] = contract
    for contract in contracts.values():
        for rule in contract.rules:
            if rule.values_from:
                other, column = rule.values_from.split(".")
                if other not in contracts or column not in contracts[other].columns:
                    raise ConfigError(
                        f"{folder / (contract.source + '.yaml')}: rule {rule.name}: values_from {rule.values_from} "
                        "names no declared source column"
                    )
                if contracts[other].kind != "reference":
                    raise ConfigError(f"rule {rule.name}: values_from must name a reference source")
    for contract in contracts.values():
        register(silver_spec(contract))
    ordered = sorted(contracts.values(), key=lambda c: (c.kind != "reference", c.source))
    return {c.source: c for c in ordered}


# Columns every silver source table carries besides its canonical (non-identifying) columns.
LINEAGE_FIELDS = [
    T.StructField("period", T.StringType(), False),
    T.StructField("file", T.StringType(), False),
    T.StructField("line_number", T.LongType(), False),
]
# Non-identifying derivations kept in silver in place of the identifiers (where the source has them).
DERIVED_FIELDS = {
    "date_of_birth": [
        T.StructField("age_at_event", T.IntegerType(), True),
        T.StructField("age_band", T.StringType(), True),
    ],
    "postcode": [
        T.StructField("postcode_sector", T.StringType(), True),
        T.StructField("lsoa_code", T.StringType(), True),
        T.StructField("imd_decile", T.IntegerType(), True),
    ],
}


def pseudonym_column(kind: str) -> str:
    return f"{kind}_pseudonym"


def silver_spec(contract: SourceContract) -> TableSpec:
    """silver.<source>: canonical columns, identifiers replaced by pseudonyms and derivations."""
    fields = list(LINEAGE_FIELDS)
    for name, spec in contract.columns.items():
        if spec.identifier:
            fields.append(T.StructField(pseudonym_column(spec.identifier), T.StringType(), True))
            fields += DERIVED_FIELDS.get(spec.identifier, [])
        else:
            fields.append(T.StructField(name, CANONICAL_TYPES[spec.type], True))
    fields += [T.StructField("warnings", T.ArrayType(T.StringType()), True)]
    return TableSpec(
        name=contract.silver_table,
        grain=f"one row per accepted {contract.source} record (key {contract.record_id})",
        description=f"{contract.description}: validated, standardised and pseudonymised",
        keys=(contract.record_id,),
        partition_by=("period",),  # monthly loads replace whole partitions, never rewrite other months
        stats_columns=(contract.record_id, *([contract.event_date] if contract.event_date else [])),
        schema=T.StructType(fields),
        change_feed=True,  # the person model reads only the rows a load added or replaced since it last read
    )


def register_source_tables(config) -> None:
    """Declare the silver table of every configured source (so status and readers know them)."""
    load_contracts(config.resolve(config.ingest.sources))
