"""Intermediate results a job reuses: written once to its staging folder and read back."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

OPEN_WRITERS_CONF = "spark.sql.maxConcurrentOutputFileWriters"


def stage(
    spark: SparkSession, df: DataFrame, path: Path, partition_by: tuple[str, ...] = (), open_writers: int = 0
) -> DataFrame:
    """Write once and read back, so every later use sees the same rows without recomputing them
    (partitioned, so that readers of one partition value read only its files).

    With `open_writers`, each task keeps up to that many partitions' files open and writes its rows as they
    come; otherwise Spark sorts a task's rows by partition before writing. Worth it for a few partition
    values over many rows (each open file buffers a row group: Parquet shrinks them to fit the heap)."""
    earlier = spark.conf.get(OPEN_WRITERS_CONF)
    if open_writers:
        spark.conf.set(OPEN_WRITERS_CONF, str(open_writers))
    try:
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(str(path))
    finally:
        spark.conf.set(OPEN_WRITERS_CONF, earlier)
    return spark.read.parquet(str(path))
