"""Read delivered files as they are: every line (CSV) or row (Parquet) as text, with its position.

Runs in Spark tasks (mapInPandas over a frame of files), one file at a time,
so line numbers are exact and a bad line never stops the file: a line with
the wrong number of fields, broken quoting or bytes that are not UTF-8 is
kept with its raw text and a parse error (ingest quarantines it). Blank
lines are not rows. Parquet values are turned into text (ISO dates) so every
source lands in bronze the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from phm.ingest.landing import LandedFile
from phm.tables import LANDED_ROWS

BATCH_ROWS = 50_000
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


def parse_csv_line(line: bytes, header: list[str]) -> tuple[dict[str, str | None] | None, str | None, str | None]:
    """(fields by column, raw line if unparseable, parse error) for one physical CSV line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, line.decode("utf-8", errors="replace"), f"not UTF-8 (byte {exc.start})"
    if '"' in text:
        try:
            values = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as exc:
            return None, text, f"bad quoting ({exc})"
    else:
        values = text.split(",")
    if len(values) != len(header):
        return None, text, f"{len(values)} fields where the header has {len(header)}"
    return {h: (v if v != "" else None) for h, v in zip(header, values, strict=True)}, None, None


def _csv_rows(path: str) -> Iterator[tuple[int, dict | None, str | None, str | None]]:
    with open(path, "rb") as handle:
        header_line = handle.readline().rstrip(b"\r\n").decode("utf-8", errors="replace").lstrip("\ufeff")
        header = [c.strip().strip('"') for c in header_line.split(",")]
        for number, line in enumerate(handle, start=2):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            fields, raw, error = parse_csv_line(line, header)
            yield number, fields, raw, error


def _parquet_rows(path: str) -> Iterator[tuple[int, dict | None, str | None, str | None]]:
    table = pq.read_table(path)
    frame = table.to_pandas(date_as_object=True)
    as_text = {c: frame[c].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
               for c in frame.columns}  # fmt: skip
    columns = list(frame.columns)
    for i in range(len(frame)):
        yield i + 1, {c: as_text[c].iat[i] for c in columns}, None, None


def read_files(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: files in, bronze rows (LANDED_ROWS without the audit column) out."""
    for files in batches:
        for f in files.itertuples(index=False):
            rows = _parquet_rows(f.path) if f.format == "parquet" else _csv_rows(f.path)
            buffer: list[tuple] = []
            for number, fields, raw, error in rows:
                buffer.append((f.source, f.period, f.file, number, f.checksum, fields, raw, error))
                if len(buffer) >= BATCH_ROWS:
                    yield _frame(buffer)
                    buffer = []
            if buffer:
                yield _frame(buffer)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[f.name for f in LANDED_ROWS.schema.fields])


def landed_rows(spark: SparkSession, files: list[LandedFile], formats: dict[str, str], parallelism: int) -> DataFrame:
    """Every row of `files` as bronze rows, read in parallel (one file per task at a time)."""
    frame = pd.DataFrame(
        [(f.source, f.period, f.file, f.path, f.checksum, formats[f.source]) for f in files],
        columns=FILE_SCHEMA.fieldNames(),
    )
    listing = spark.createDataFrame(frame, FILE_SCHEMA)
    partitions = max(1, min(len(files), parallelism))
    return listing.repartition(partitions).mapInPandas(read_files, LANDED_ROWS.schema)
