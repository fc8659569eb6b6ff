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
        T.StructField("width", T.IntegerType(), False),  # the header's column count
    ]
)
ROW_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), True),
        T.StructField("period", T.StringType(), True),
        T.StructField("file", T.StringType(), True),
        T.StructField("line_number", T.LongType(), True),
        T.StructField("checksum", T.StringType(), True),
        T.StructField("values", T.ArrayType(T.StringType()), True),  # in the header's order; null if malformed
        T.StructField("raw_line", T.StringType(), True),  # a malformed line's text
        T.StructField("parse_error", T.StringType(), True),
    ]
)
_ARROW_SCHEMA = pa.schema(
    [(f.name, pa.list_(pa.string()) if f.name == "values" else pa.int64() if f.name == "line_number" else pa.string())
     for f in ROW_SCHEMA.fields]
)  # fmt: skip
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


def _wrong_width(count: int, width: int) -> str:
    return f"{count} fields where the header has {width}"


def _too_long(max_field_chars: int) -> str:
    return f"a field longer than {max_field_chars} characters"


def _checked(values: list[str | None], width: int, max_field_chars: int) -> tuple[list[str | None] | None, str | None]:
    """A row's values (empty ones null) or, if malformed, None and why: what `_plain_lines` does a batch at a
    time, for the rows read one by one (quoted or undecodable lines, Parquet rows)."""
    if len(values) != width:
        return None, _wrong_width(len(values), width)
    if any(v is not None and len(v) > max_field_chars for v in values):
        return None, _too_long(max_field_chars)
    return [v if v != "" else None for v in values], None


def _plain_lines(text: pa.Array, numbers: pa.Array, width: int, max_field_chars: int) -> dict[str, pa.Array]:
    """Lines without a quote character, split on commas and checked (as `_checked`) by Arrow's compute
    functions: values (empty ones null), or the raw line and why it is malformed."""
    fields = pc.split_pattern(text, ",")
    counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    flat = fields.values  # fresh from split_pattern: offsets start at 0 and cover `flat` exactly
    too_long = np.zeros(len(text), dtype=bool)
    owners = pc.list_parent_indices(fields).to_numpy(zero_copy_only=False)
    too_long[owners[pc.greater(pc.utf8_length(flat), max_field_chars).to_numpy(zero_copy_only=False)]] = True
    wrong = counts != width
    malformed = wrong | too_long
    errors: pa.Array = pa.nulls(len(text), pa.string())
    if malformed.any():
        reasons = np.full(len(text), None, dtype=object)
        reasons[too_long] = _too_long(max_field_chars)
        for i in np.flatnonzero(wrong):  # the field count first, as _checked
            reasons[i] = _wrong_width(int(counts[i]), width)
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
    values None for a line to split here), checked one by one."""
    numbers, values, raw, errors = [], [], [], []
    for number, text, parsed, error in rows:
        kept = None
        if error is None:
            kept, error = _checked(parsed if parsed is not None else text.split(","), width, max_field_chars)
        numbers.append(number)
        values.append(kept)
        raw.append(text if error is not None else None)
        errors.append(error)
    return {
        "line_number": pa.array(numbers, pa.int64()),
        "values": pa.array(values, pa.list_(pa.string())),
        "raw_line": pa.array(raw, pa.string()),
        "parse_error": pa.array(errors, pa.string()),
    }


def _decoded_csv(text: str, width: int, max_field_chars: int) -> Iterator[dict[str, pa.Array]]:
    """A UTF-8 CSV file's rows after its header, BATCH_ROWS lines at a time."""
    lines = text.split("\n")
    for start in range(1, len(lines), BATCH_ROWS):
        chunk = pc.utf8_rtrim(pa.array(lines[start : start + BATCH_ROWS], pa.string()), characters="\r")
        numbers = pa.array(np.arange(start + 1, start + 1 + len(chunk), dtype=np.int64))
        kept = pc.invert(pc.equal(pc.utf8_trim_whitespace(chunk), ""))
        quoted = pc.match_substring(chunk, '"')
        plain = pc.and_(kept, pc.invert(quoted))
        yield _plain_lines(chunk.filter(plain), numbers.filter(plain), width, max_field_chars)
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
