"""Intermediate results a job reuses: written once to its staging folder and read back."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession


def stage(spark: SparkSession, df: DataFrame, path: Path, partition_by: tuple[str, ...] = ()) -> DataFrame:
    """Write once and read back, so every later use sees the same rows without recomputing them
    (partitioned, so that readers of one partition value read only its files)."""
    df.write.mode("overwrite").partitionBy(*partition_by).parquet(str(path))
    return spark.read.parquet(str(path))
