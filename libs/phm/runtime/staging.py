"""Intermediate results a job reuses: written once to its staging folder and read back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession

from phm.runtime.spark import job_described, session_settings


def stage(
    spark: SparkSession, df: DataFrame, path: Path, partition_by: tuple[str, ...] = (), open_files: int = 0
) -> DataFrame:
    """Write once and read back, so every later use sees the same rows without recomputing them
    (partitioned, so that readers of one partition value read only its files).

    `open_files` > 0: a task writes the rows of up to that many partition values each to its own open file as
    they come, instead of sorting all its rows by partition first (`spark.sql.maxConcurrentOutputFileWriters`;
    beyond it Spark sorts the rest). For tasks whose rows fall in few partitions: ingest's landed rows by source
    sorted 35m rows and spilled 16 GB at 1m people (docs/ingest.md). The setting is the session's while the
    write runs: call it when no other partitioned write is running."""
    writers = {"spark.sql.maxConcurrentOutputFileWriters": str(open_files)} if open_files else {}
    with session_settings(spark, writers), job_described(spark, f"stage {path.name}"):
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(str(path))
    return spark.read.parquet(str(path))


@contextmanager
def splink_tables_removed(spark: SparkSession) -> Iterator[None]:
    """Removes, when the block ends, the tables Splink wrote in it. Splink's Spark backend breaks lineage by
    writing each intermediate table as Parquet in the context's checkpoint directory (`__splink__<name>_<id>`)
    and never deletes them: 2-3 GB a link run at 1m people, kept by every run until the disk fills. Only a
    local (file:) checkpoint directory is cleaned, as the jobs' own staging is; tables that were there before
    the block (another run's) are left alone."""
    before = set(_splink_tables(spark))
    try:
        yield
    finally:
        for path in set(_splink_tables(spark)) - before:
            shutil.rmtree(path, ignore_errors=True)


def _splink_tables(spark: SparkSession) -> list[Path]:
    directory = spark.sparkContext.getCheckpointDir()
    location = urlparse(directory or "")
    if not directory or location.scheme not in ("", "file") or not Path(location.path).is_dir():
        return []
    return [p for p in Path(location.path).iterdir() if p.name.startswith("__splink__")]
