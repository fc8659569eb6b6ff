"""Read delivered files as they are: every line (CSV) or row (Parquet) as text, with its position.

Python reads each file whole in a Spark task (mapInArrow over a frame of
files, one file at a time), so line numbers are exact, splits each line on
commas, checks its fields against the file's header and hands the JVM the
rows in `landed_rows`' form, as Arrow batches. Lines without a quote
character (nearly all) are split and checked a batch at a time by Arrow's
compute functions; only lines with a quote are parsed by Python's csv
module, and a file that is not UTF-8 throughout is read line by line. A line
with the wrong number of fields, broken quoting, bytes that are not UTF-8 or
a field longer than `max_field_chars` is kept with its raw text and the
reason (ingest quarantines it); a bad line never stops the file. Blank lines
(whitespace only) are not rows. Parquet values are turned into text (ISO
dates) so every source lands in bronze the same way. Empty fields are null.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from phm.ingest.landing import LandedFile
from phm.tables import LANDED_ROWS

BATCH_ROWS = 200_000
FILE_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("period", T.StringType(), False),
        T.StructField("file", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("checksum", T.StringType(), False),
        T.StructField("format", T.StringType(), False),
        T.StructField("width", T.IntegerType(), False),  # the header's column count
    ]
)
# bronze.landed_rows' columns, every one nullable as Arrow batches declare them (the catalog checks the rest)
ROW_SCHEMA = T.StructType([T.StructField(f.name, f.dataType, True) for f in LANDED_ROWS.schema.fields])
_ARROW_SCHEMA = to_arrow_schema(ROW_SCHEMA)
_NO_TEXT = pa.scalar(None, pa.string())


def _undecodable_lines(data: bytes) -> Iterator[tuple[int, str, list[str] | None, str | None]]:
    """(line number, text, values if parsed here, error) for every non-blank line after the header of a file
    that is not UTF-8 throughout: each line decoded on its own, a line that does not decode kept with the
    reason."""
    lines = data.split(b"\n")
    for number in range(2, len(lines) + 1):
        try:
            line = lines[number - 1].decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            text = lines[number - 1].decode("utf-8", errors="replace").rstrip("\r")
            yield number, text, None, f"not UTF-8 (byte {exc.start})"
            continue
        if line.strip():
            yield _parsed(number, line) if '"' in line else (number, line, None, None)


def _parsed(number: int, line: str) -> tuple[int, str, list[str] | None, str | None]:
    """A line with a quote character, parsed by the csv module (strictly: broken quoting is an error)."""
    try:
        return number, line, next(csv.reader([line], strict=True)), None
    except (csv.Error, StopIteration) as exc:
        return number, line, None, f"bad quoting ({exc})"


def _parquet_rows(path: str) -> Iterator[tuple[int, None, list[str | None], None]]:
    frame = pq.read_table(path).to_pandas(date_as_object=True)
    as_text = [[None if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[c]]
               for c in frame.columns]  # fmt: skip
    for i, values in enumerate(zip(*as_text, strict=True)):
        yield i + 1, None, list(values), None


def _checked(
    numbers: pa.Array, text: pa.Array, fields: pa.ListArray, read_errors: pa.Array, width: int, max_field_chars: int
) -> dict[str, pa.Array]:
    """Rows' fields checked against the header by Arrow's compute functions, a batch at a time: the values
    (empty ones null), or, for a malformed row, its raw text and why: its read error (null fields), else the
    wrong number of fields, else a field longer than `max_field_chars`. `fields` must be fresh (not a slice):
    its offsets start at 0 and cover its values."""
    size = len(numbers)
    counts = pc.fill_null(pc.list_value_length(fields), width).to_numpy(zero_copy_only=False)
    flat = fields.values
    too_long = np.zeros(size, dtype=bool)
    owners = pc.list_parent_indices(fields).to_numpy(zero_copy_only=False)
    longer = pc.fill_null(pc.greater(pc.utf8_length(flat), max_field_chars), False)
    too_long[owners[longer.to_numpy(zero_copy_only=False)]] = True
    unread = pc.is_valid(read_errors).to_numpy(zero_copy_only=False)
    wrong = counts != width
    malformed = unread | wrong | too_long
    errors = read_errors
    if (malformed & ~unread).any():
        reasons = np.array(read_errors.to_pylist(), dtype=object)
        reasons[too_long & ~unread & ~wrong] = f"a field longer than {max_field_chars} characters"
        for i in np.flatnonzero(wrong & ~unread):
            reasons[i] = f"{counts[i]} fields where the header has {width}"
        errors = pa.array(reasons, pa.string())
    nulled = pc.if_else(pc.equal(flat, ""), _NO_TEXT, flat)
    return {
        "line_number": numbers,
        "values": pa.ListArray.from_arrays(fields.offsets, nulled, mask=pa.array(malformed)),
        "raw_line": pc.if_else(pa.array(malformed), text, _NO_TEXT),
        "parse_error": errors,
    }


def _one_by_one(rows, width: int, max_field_chars: int) -> dict[str, pa.Array]:
    """Rows read one at a time (quoted or undecodable lines, Parquet rows: (line number, text, values, error),
    values None for a line to split here), checked as every other row."""
    numbers, text, fields, errors = [], [], [], []
    for number, line, parsed, error in rows:
        numbers.append(number)
        text.append(line)
        fields.append(None if error is not None else parsed if parsed is not None else line.split(","))
        errors.append(error)
    return _checked(
        pa.array(numbers, pa.int64()),
        pa.array(text, pa.string()),
        pa.array(fields, pa.list_(pa.string())),
        pa.array(errors, pa.string()),
        width,
        max_field_chars,
    )


def _decoded_csv(text: str, width: int, max_field_chars: int) -> Iterator[dict[str, pa.Array]]:
    """A UTF-8 CSV file's rows after its header, BATCH_ROWS lines at a time."""
    lines = text.split("\n")
    for start in range(1, len(lines), BATCH_ROWS):
        chunk = pc.utf8_rtrim(pa.array(lines[start : start + BATCH_ROWS], pa.string()), characters="\r")
        numbers = pa.array(np.arange(start + 1, start + 1 + len(chunk), dtype=np.int64))
        kept = pc.invert(pc.equal(pc.utf8_trim_whitespace(chunk), ""))
        quoted = pc.match_substring(chunk, '"')
        plain = pc.and_(kept, pc.invert(quoted))
        unquoted = chunk.filter(plain)  # (nearly all lines): split by Arrow
        unread = pa.nulls(len(unquoted), pa.string())
        yield _checked(numbers.filter(plain), unquoted, pc.split_pattern(unquoted, ","), unread, width, max_field_chars)
        special = pc.and_(kept, quoted)
        if pc.any(special).as_py():
            lines_quoted = zip(numbers.filter(special).to_pylist(), chunk.filter(special).to_pylist(), strict=True)
            yield _one_by_one([_parsed(number, line) for number, line in lines_quoted], width, max_field_chars)


def _rows_of(file: dict, max_field_chars: int) -> Iterator[dict[str, pa.Array]]:
    width = file["width"]
    if file["format"] == "parquet":
        rows = _parquet_rows(file["path"])
    else:
        with open(file["path"], "rb") as handle:
            data = handle.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            rows = _undecodable_lines(data)
        else:
            yield from _decoded_csv(text, width, max_field_chars)
            return
    while batch := [row for _, row in zip(range(BATCH_ROWS), rows, strict=False)]:
        yield _one_by_one(batch, width, max_field_chars)


def read_files(batches: Iterator[pa.RecordBatch], max_field_chars: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: files (FILE_SCHEMA) in, their rows (ROW_SCHEMA) out."""
    for files in batches:
        for file in files.to_pylist():
            for columns in _rows_of(file, max_field_chars):
                size = len(columns["line_number"])
                if size:
                    constant = {k: pa.repeat(pa.scalar(file[k], pa.string()), size)
                                for k in ("source", "period", "file", "checksum")}  # fmt: skip
                    yield pa.RecordBatch.from_pydict({**constant, **columns}, schema=_ARROW_SCHEMA)


def landed_rows(
    spark: SparkSession, files: list[LandedFile], formats: dict[str, str], parallelism: int, max_field_chars: int
) -> DataFrame:
    """Every row of `files`, read in parallel, as LANDED_ROWS rows: `values` in the file's column order
    (LandedFile.columns, kept once per file in ops.ingest_files), null for a malformed line. A line with a field
    longer than `max_field_chars` is malformed (kept, with its error, for quarantine). Values, not a map of
    column name to value: a map repeats every column name in every row, and reading seven fields of GP events'
    25m rows took 17.9 s from maps against 6.1 s from arrays (docs/ingest.md). Split and checked in Python with
    Arrow rather than in Spark SQL, where each line's text crossed to the JVM to be split there and a lambda over
    its fields (evaluated outside generated code) nulled the empty ones: the 36-month 1m landing (35.3m lines)
    read and staged in 67.3 s against 111.4 s (medians of three alternated runs, docs/ingest.md)."""
    listing = spark.createDataFrame(
        [(f.source, f.period, f.file, f.path, f.checksum, formats[f.source], len(f.columns)) for f in files],
        FILE_SCHEMA,
    )
    reader = partial(read_files, max_field_chars=max_field_chars)
    return listing.repartition(max(1, min(len(files), parallelism))).mapInArrow(reader, ROW_SCHEMA)


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
