"""A real Spark standalone cluster on 127.0.0.1: a master and two workers from the installed pyspark.

A job is submitted with `spark-submit --master spark://127.0.0.1:PORT`, the
packaged library on --py-files and Delta's jars on --jars, exactly as a
platform team would; the test then reads its Delta output and ledger row, and
sees that both workers ran an executor for it. The daemons are stopped
whatever happens (phm.runtime.standalone).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from phm.config import load_config
from phm.runtime.catalog import Catalog
from phm.runtime.spark import local_jars
from phm.runtime.standalone import (
    StandaloneCluster,
    build_wheel,
    cluster_env,
    port_open,
    spark_submit,
    standalone_cluster_running,
)
from phm.tables import JOB_RUNS, QOF_PREVALENCE

from ..conftest import REPO, TEST_CONFIG, test_overrides

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory) -> Iterator[StandaloneCluster]:
    """A master and two one-core workers, as the benchmark's cluster mode runs them."""
    with standalone_cluster_running(tmp_path_factory.mktemp("cluster"), workers=2, memory="1g") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("dist"))


def test_spark_submit_to_standalone_cluster_writes_delta_and_ledger(standalone_cluster, wheel, tmp_path, spark):
    config = load_config(str(TEST_CONFIG), test_overrides(tmp_path))
    overrides = [arg for override in test_overrides(tmp_path) for arg in ("--set", override)]
    command = spark_submit(standalone_cluster.url, REPO / "jobs" / "load_reference.py",
                           ["--config", str(TEST_CONFIG), *overrides], local_jars(config), wheel)  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, env=cluster_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]

    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    table = catalog.read(QOF_PREVALENCE.name)
    assert table.count() == 210
    [run] = catalog.read(JOB_RUNS.name).collect()
    assert run["job"] == "load_reference"
    assert run["status"] == "succeeded"
    assert run["spark_master"] == standalone_cluster.url
    # The driver asked for executors on both workers (one core each), and each ran one for this job.
    assert standalone_cluster.applications_on(0) & standalone_cluster.applications_on(1)
    assert run["output_versions"] == {QOF_PREVALENCE.name: 0}
    assert {r["_run_id"] for r in table.select("_run_id").distinct().collect()} == {run["run_id"]}


def test_daemons_stop_even_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="test failed mid-way"):
        with standalone_cluster_running(tmp_path) as cluster:
            url = cluster.url
            assert port_open(url)
            raise RuntimeError("test failed mid-way")
    assert not port_open(url)
