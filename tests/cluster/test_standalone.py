"""A real Spark standalone cluster on 127.0.0.1: master + one worker from the installed pyspark.

A job is submitted with `spark-submit --master spark://127.0.0.1:PORT`, the
packaged library on --py-files and Delta's jars on --jars, exactly as a
platform team would; the test then reads its Delta output and ledger row.
Both daemons are stopped whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phm.config import load_config
from phm.runtime.catalog import Catalog
from phm.runtime.spark import local_jars
from phm.tables import JOB_RUNS, QOF_PREVALENCE

from ..conftest import REPO, TEST_CONFIG, test_overrides

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPARK_HOME = Path(__import__("pyspark").__file__).parent
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: daemon exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{log.name}: no {text!r} after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def start_daemon(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group, so stop() reaches the JVM it execs
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cluster_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_WORKER_DIR=str(tmp / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return env


@contextmanager
def standalone_cluster_running(tmp: Path) -> Iterator[str]:
    """A master and one worker on 127.0.0.1; both stopped on exit, however the block ends."""
    env = cluster_env(tmp)
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    master = start_daemon(
        ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"],
        tmp / "master.log",
        env,
    )
    worker = None
    try:
        wait_for(tmp / "master.log", "I have been elected leader", master)
        worker = start_daemon(
            ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
             "--webui-port", "0"],
            tmp / "worker.log",
            env,
        )  # fmt: skip
        wait_for(tmp / "worker.log", "Successfully registered with master", worker)
        yield url
    finally:
        if worker is not None:
            stop(worker)
        stop(master)


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory) -> Iterator[str]:
    with standalone_cluster_running(tmp_path_factory.mktemp("cluster")) as url:
        yield url


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The packaged library, as `make package` builds it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    [built] = out.glob("phm-*.whl")
    return built


def test_spark_submit_to_standalone_cluster_writes_delta_and_ledger(standalone_cluster, wheel, tmp_path, spark):
    config = load_config(str(TEST_CONFIG), test_overrides(tmp_path))
    overrides = [arg for override in test_overrides(tmp_path) for arg in ("--set", override)]
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master", standalone_cluster,
        "--deploy-mode", "client",
        "--driver-memory", "1g",
        "--executor-memory", "1g",
        "--jars", ",".join(local_jars(config)),
        "--py-files", str(wheel),
        str(REPO / "jobs" / "load_reference.py"),
        "--config", str(TEST_CONFIG),
        *overrides,
    ]  # fmt: skip
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
    assert run["spark_master"] == standalone_cluster
    assert run["output_versions"] == {QOF_PREVALENCE.name: 0}
    assert {r["_run_id"] for r in table.select("_run_id").distinct().collect()} == {run["run_id"]}


def port_open(url: str) -> bool:
    host, port = url.removeprefix("spark://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def test_daemons_stop_even_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="test failed mid-way"):
        with standalone_cluster_running(tmp_path) as url:
            assert port_open(url)
            raise RuntimeError("test failed mid-way")
    assert not port_open(url)
