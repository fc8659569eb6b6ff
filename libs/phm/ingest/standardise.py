"""Bronze rows of one source -> canonical, typed, cleaned columns (identifiers still in clear: see pseudonymise).

Cleaning follows the NHS Data Dictionary formats: NHS numbers as 10 digits
(spaces and dashes removed), postcodes upper case with one space before the
inward code, names upper case with runs of spaces collapsed, codes upper
case without dots or spaces (ICD-10 `S72.2` -> `S722`). Text that does not
convert to the column's type becomes null, with the text kept beside it
(`_raw_<column>`) so the `parses` rule can tell a bad value from a missing one.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.ingest.contracts import STATIC_PERIOD, ColumnSpec, SourceContract
from phm.ingest.reader import field_of

ISO_DATE = "yyyy-MM-dd"
META_COLUMNS = ("source", "period", "file", "line_number", "checksum", "parse_error", "raw_line")


def raw_column(name: str) -> str:
    return f"_raw_{name}"


def clean_text(column: Column, how: str | None) -> Column:
    text = F.trim(column)
    if how == "upper":
        text = F.upper(text)
    elif how == "code":
        text = F.upper(F.regexp_replace(text, r"[\s.]", ""))
    elif how == "name":
        text = F.upper(F.regexp_replace(text, r"\s+", " "))
    elif how == "postcode":
        text = _postcode(F.upper(F.regexp_replace(text, r"\s", "")))
    elif how == "nhs_number":
        text = F.regexp_replace(text, r"[\s-]", "")
    return F.when(text != "", text)


def _postcode(compact: Column) -> Column:
    """'qa12xy' / 'QA1 2XY' -> 'QA1 2XY' (outward, space, three-character inward code)."""
    length = F.length(compact)
    return F.when(
        length.between(5, 7),
        F.concat(compact.substr(F.lit(1), length - 3), F.lit(" "), compact.substr(length - 2, F.lit(3))),
    ).otherwise(F.when(compact != "", compact))


def typed(column: Column, spec: ColumnSpec, date_format: str | None) -> Column:
    text = clean_text(column, spec.clean)
    if spec.recode:
        mapping = F.create_map(*[F.lit(x) for pair in spec.recode.items() for x in pair])
        text = F.coalesce(mapping[text], text)  # unmapped values stay visible to value-set rules
    if spec.type == "date":
        return F.try_to_date(text, date_format or ISO_DATE)
    if spec.type in ("int", "double"):
        return text.try_cast(spec.type)
    return text


def standardise(bronze: DataFrame, contract: SourceContract, headers: dict[str, tuple[str, ...]]) -> DataFrame:
    """One source's bronze rows (phm.ingest.reader.landed_rows' form; `headers`: file -> its columns, for the
    source's files) -> metadata, `_period_start/_end`, canonical columns and raw text of typed ones."""
    date_format = contract.date_format if contract.format == "csv" else ISO_DATE
    columns: list[Column] = [F.col(c) for c in META_COLUMNS]
    for name, spec in contract.columns.items():
        raw = field_of(spec.source_column, headers)
        columns.append(typed(raw, spec, date_format).alias(name))
        if spec.type != "string":
            columns.append(F.when(F.trim(raw) != "", F.trim(raw)).alias(raw_column(name)))
    start = F.when(F.col("period") != STATIC_PERIOD, F.to_date(F.concat(F.col("period"), F.lit("-01"))))
    columns += [start.alias("_period_start"), F.last_day(start).alias("_period_end")]
    return bronze.where(F.col("source") == contract.source).select(*columns)
