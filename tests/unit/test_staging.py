"""phm.runtime.staging: staged rows read back unchanged; open writers write partitions without a sort."""

from __future__ import annotations

import re

from pyspark.sql import functions as F

from phm.runtime.staging import OPEN_WRITERS_CONF, stage


def _last_write_sorted(spark) -> bool:
    """Whether the session's last query plan has a Sort node (the status store keeps each query's plan)."""
    executions = spark._jsparkSession.sharedState().statusStore().executionsList()
    plan = executions.apply(executions.size() - 1).physicalPlanDescription()
    assert "InsertIntoHadoopFsRelationCommand" in plan
    return re.search(r"\bSort \(\d+\)", plan) is not None


def _rows(df):
    return sorted(tuple(r) for r in df.select("id", "source", "value").collect())


def test_open_writers_write_each_partition_unsorted_and_restore_the_setting(spark, tmp_path):
    frame = spark.range(300).select(
        "id", F.concat(F.lit("s"), (F.col("id") % 3).cast("string")).alias("source"), (F.col("id") * 2).alias("value")
    )
    before = spark.conf.get(OPEN_WRITERS_CONF)

    staged = stage(spark, frame.repartition(2), tmp_path / "open", partition_by=("source",), open_writers=3)
    assert not _last_write_sorted(spark)
    assert spark.conf.get(OPEN_WRITERS_CONF) == before
    sorted_staged = stage(spark, frame.repartition(2), tmp_path / "sorted", partition_by=("source",))
    assert _last_write_sorted(spark)  # Spark's default, which open writers avoid

    assert _rows(staged) == _rows(sorted_staged) == _rows(frame)
    assert sorted(p.name for p in (tmp_path / "open").glob("source=*")) == ["source=s0", "source=s1", "source=s2"]
    # Partition pruning: one source's rows come from its folder alone.
    one = staged.where(F.col("source") == "s1")
    assert {r["id"] % 3 for r in one.collect()} == {1}
    assert "PartitionFilters: [isnotnull(source" in one._jdf.queryExecution().executedPlan().toString()


def test_the_setting_is_restored_when_the_write_fails(spark, tmp_path):
    before = spark.conf.get(OPEN_WRITERS_CONF)
    failing = spark.range(3).select(F.col("id").cast("string").alias("source"), F.raise_error("boom").alias("x"))
    try:
        stage(spark, failing, tmp_path / "failed", partition_by=("source",), open_writers=5)
    except Exception:  # noqa: BLE001 - the write's own error; the point is what happens after it
        pass
    else:
        raise AssertionError("the write should have failed")
    assert spark.conf.get(OPEN_WRITERS_CONF) == before
