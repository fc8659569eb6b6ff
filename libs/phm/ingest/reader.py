"""Read delivered files as they are: every line (CSV) or row (Parquet) as text, with its position.

Python reads each file whole in a Spark task (mapInPandas over a frame of
files, one file at a time), so line numbers are exact, and hands the JVM
only the text of each line; splitting on commas and counting fields against
the file's header happen in Spark SQL (the map of column names to values
that bronze keeps is built when bronze is written: `with_fields`). Only
lines with a quote character are parsed by Python's csv module. A line with
the wrong number of fields, broken quoting or bytes that are not UTF-8 is
kept with its raw text and a parse error (ingest quarantines it); a bad line
never stops the file. Blank lines are not rows. Parquet values are turned
into text (ISO dates) so every source lands in bronze the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from phm.ingest.landing import LandedFile

BATCH_ROWS = 200_000
FILE_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("period", T.StringType(), False),
        T.StructField("file", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("checksum", T.StringType(), False),
        T.StructField("format", T.StringType(), False),
    ]
)
LINE_SCHEMA = T.StructType(
    [
        T.StructField("file", T.StringType(), False),
        T.StructField("line_number", T.LongType(), False),
        T.StructField("text", T.StringType(), True),  # the line (CSV); null for Parquet rows
        T.StructField("values", T.ArrayType(T.StringType()), True),  # parsed here: quoted lines, Parquet rows
        T.StructField("read_error", T.StringType(), True),
    ]
)


def csv_lines(data: bytes) -> Iterator[tuple[int, str, list[str] | None, str | None]]:
    """(line number, text, values if parsed here, error) for every non-blank line after the header."""
    try:
        text = data.decode("utf-8")
        lines: list[str] | list[bytes] = text.split("\n")
        decoded = True
    except UnicodeDecodeError:
        lines = data.split(b"\n")
        decoded = False
    for number in range(2, len(lines) + 1):
        line = lines[number - 1]
        if not decoded:
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, line.decode("utf-8", errors="replace").rstrip("\r"), None, f"not UTF-8 (byte {exc.start})"
                continue
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if '"' in line:
            try:
                yield number, line, next(csv.reader([line], strict=True)), None
            except (csv.Error, StopIteration) as exc:
                yield number, line, None, f"bad quoting ({exc})"
            continue
        yield number, line, None, None


def _parquet_rows(path: str) -> Iterator[tuple[int, None, list[str | None], None]]:
    frame = pq.read_table(path).to_pandas(date_as_object=True)
    as_text = [[None if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[c]]
               for c in frame.columns]  # fmt: skip
    for i, values in enumerate(zip(*as_text, strict=True)):
        yield i + 1, None, list(values), None


def read_files(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: files in, LINE_SCHEMA rows out."""
    columns = LINE_SCHEMA.fieldNames()
    for files in batches:
        for f in files.itertuples(index=False):
            if f.format == "parquet":
                rows: Iterator[tuple] = _parquet_rows(f.path)
            else:
                with open(f.path, "rb") as handle:
                    rows = csv_lines(handle.read())
            buffer: list[tuple] = []
            for row in rows:
                buffer.append((f.file, *row))
                if len(buffer) >= BATCH_ROWS:
                    yield pd.DataFrame(buffer, columns=columns)
                    buffer = []
            if buffer:
                yield pd.DataFrame(buffer, columns=columns)


def landed_rows(
    spark: SparkSession, files: list[LandedFile], formats: dict[str, str], parallelism: int, max_field_chars: int
) -> DataFrame:
    """Every row of `files`, read in parallel, as bronze rows with `values` (the fields in the file's column
    order, LandedFile.columns; null for a malformed line) where LANDED_ROWS has the `fields` map (`with_fields`
    makes it). A line with a field longer than `max_field_chars` is malformed (kept, with its error, for
    quarantine). Staged so, not as maps: a map repeats every column name in every row, and reading seven fields
    of GP events' 25m rows took 17.9 s from maps against 6.1 s from arrays (docs/ingest.md)."""
    listing = spark.createDataFrame(
        [(f.source, f.period, f.file, f.path, f.checksum, formats[f.source]) for f in files], FILE_SCHEMA
    )
    headers = spark.createDataFrame(
        [(f.file, f.source, f.period, f.checksum, list(f.columns)) for f in files],
        "file string, source string, period string, checksum string, header array<string>",
    )
    lines = listing.repartition(max(1, min(len(files), parallelism))).mapInPandas(read_files, LINE_SCHEMA)
    rows = lines.join(F.broadcast(headers), "file")
    values = F.coalesce(F.col("values"), F.split(F.col("text"), ",", -1))
    error = F.coalesce(
        F.col("read_error"),
        F.when(
            F.size(values) != F.size("header"),
            F.format_string("%d fields where the header has %d", F.size(values), F.size("header")),
        ).when(
            F.exists(values, lambda v: F.length(v) > max_field_chars),
            F.lit(f"a field longer than {max_field_chars} characters"),
        ),
    )
    return rows.select(
        "source",
        "period",
        "file",
        "line_number",
        "checksum",
        F.when(error.isNull(), F.transform(values, lambda v: F.when(v != "", v))).alias("values"),
        F.when(error.isNotNull(), F.col("text")).alias("raw_line"),
        error.alias("parse_error"),
    )


def with_fields(rows: DataFrame, files: list[LandedFile]) -> DataFrame:
    """`landed_rows`' rows as LANDED_ROWS rows: each row's values keyed by its file's column names."""
    headers = rows.sparkSession.createDataFrame(
        [(f.file, list(f.columns)) for f in files], "file string, header array<string>"
    )
    fields = F.when(F.col("values").isNotNull(), F.map_from_arrays(F.col("header"), F.col("values")))
    return rows.join(F.broadcast(headers), "file").select(
        "source", "period", "file", "line_number", "checksum", fields.alias("fields"), "raw_line", "parse_error"
    )


def field_of(column: str, headers: dict[str, tuple[str, ...]]) -> Column:
    """A column's value in `landed_rows`' rows of the files in `headers` (file -> its columns); null in a file
    without the column. Files with the same header share one expression (usually a source has one header)."""
    by_header: dict[tuple[str, ...], list[str]] = {}
    for file, header in sorted(headers.items()):
        by_header.setdefault(tuple(header), []).append(file)

    def value(header: tuple[str, ...]) -> Column:
        return F.get(F.col("values"), header.index(column)) if column in header else F.lit(None).cast("string")

    if len(by_header) == 1:
        return value(next(iter(by_header)))
    chosen = F.when(F.lit(False), F.lit(None).cast("string"))
    for header, files in by_header.items():
        chosen = chosen.when(F.col("file").isin(files), value(header))
    return chosen
