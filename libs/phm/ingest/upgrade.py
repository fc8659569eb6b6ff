"""Ingest's tables as an earlier version wrote them, brought to the current layout (once, by the next load).

Until 2026-12-07 bronze.landed_rows kept each row's fields as a map of column name to text, and
ops.ingest_files had no `columns`. Bronze now keeps the values in the order of the file's header, which
ops.ingest_files keeps once per file: a map repeated every column name in every row, and at 1m people
bronze's write took 0.68 of the task time without it (docs/bench.md). A map's values are in its keys'
order (Spark keeps a map's entries as two arrays, in the order map_from_arrays was given the header), so
the values are the map's values and the file's header its keys. A file none of whose rows was parsed (a
header only, or every line malformed) takes its header from landing if the same file (by checksum) is
still there, else keeps none: its rows have no values to name.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

OLD_FIELDS = "fields"


def bronze_is_old(columns: list[str]) -> bool:
    """bronze.landed_rows' columns are those of the map layout."""
    return OLD_FIELDS in columns


def bronze_values(old_bronze: DataFrame) -> DataFrame:
    """The old bronze rows with `values` (the map's values, in the header's order) in place of `fields`."""
    return old_bronze.withColumn("values", F.map_values(OLD_FIELDS)).drop(OLD_FIELDS)


def files_with_columns(files: DataFrame, old_bronze: DataFrame | None, landed: DataFrame) -> DataFrame:
    """ops.ingest_files' rows with each file's `columns`: the keys of its rows' maps in the old bronze (every
    row of a file has the same keys; found by a hash aggregate, no sort), else the header of the file as it is
    in landing now if its checksum is the one loaded (landed: file, checksum, columns), else null."""
    keys = ["source", "period", "file"]
    delivered = landed.select("file", "checksum", F.col("columns").alias("_delivered"))
    with_delivered = files.join(delivered, ["file", "checksum"], "left")
    if old_bronze is None:
        return with_delivered.withColumnRenamed("_delivered", "columns")
    headers = (
        old_bronze.where(F.col(OLD_FIELDS).isNotNull())
        .select(*keys, F.map_keys(OLD_FIELDS).alias("_kept"))
        .distinct()
        .dropDuplicates(keys)  # a file's rows share one header; this only guards the join against repeats
    )
    joined = with_delivered.join(headers, keys, "left")
    return joined.withColumn("columns", F.coalesce("_kept", "_delivered")).drop("_kept", "_delivered")
