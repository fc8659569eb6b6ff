"""A Spark standalone cluster on 127.0.0.1 from the installed PySpark, and spark-submit command lines for it.

The cluster test (tests/cluster/) and the benchmark's cluster mode (`bench/bench.py --cluster`) run the
platform's job scripts on a real master and workers with `spark-submit`, as a platform team submits them:
the packaged library on --py-files, Delta's jars on --jars. The daemons are started in their own process
groups and stopped however the block that uses them ends.
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
from dataclasses import dataclass
from pathlib import Path

SPARK_HOME = Path(__import__("pyspark").__file__).parent
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class StandaloneCluster:
    """A running cluster: its master URL and the daemons' processes (for their memory and for stopping)."""

    url: str
    master: subprocess.Popen
    workers: tuple[subprocess.Popen, ...]
    scratch: Path

    @property
    def pids(self) -> list[int]:
        return [self.master.pid, *(w.pid for w in self.workers)]

    def applications_on(self, worker: int) -> set[str]:
        """Ids of the applications a worker has run an executor for (its work directory's folders)."""
        return {p.name for p in (self.scratch / f"work-{worker}").glob("app-*")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(url: str) -> bool:
    host, port = url.removeprefix("spark://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def cluster_env(scratch: Path) -> dict[str, str]:
    """The environment of the daemons and of spark-submit: this PySpark, this interpreter on every executor."""
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_WORKER_DIR=str(scratch / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return env


def _wait_for(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: daemon exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{log.name}: no {text!r} after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def _start_daemon(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so _stop() reaches the JVM it execs and its executors
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def standalone_cluster_running(
    scratch: Path, workers: int = 1, cores: int = 1, memory: str = "2g"
) -> Iterator[StandaloneCluster]:
    """A master and `workers` workers (each offering `cores` cores and `memory`) on 127.0.0.1, logging under
    `scratch`; every daemon is stopped on exit, however the block ends."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = cluster_env(scratch)
    url = f"spark://127.0.0.1:{free_port()}"
    master_log = scratch / "master.log"
    master = _start_daemon(
        ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
         "--webui-port", "0"],
        master_log,
        env,
    )  # fmt: skip
    started: list[subprocess.Popen] = []
    try:
        _wait_for(master_log, "I have been elected leader", master)
        for number in range(workers):
            log = scratch / f"worker-{number}.log"
            worker = _start_daemon(
                ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores),
                 "--memory", memory, "--webui-port", "0", "--work-dir", str(scratch / f"work-{number}")],
                log,
                env,
            )  # fmt: skip
            started.append(worker)
            _wait_for(log, "Successfully registered with master", worker)
        yield StandaloneCluster(url, master, tuple(started), scratch)
    finally:
        for worker in started:
            _stop(worker)
        _stop(master)


def spark_submit(
    url: str,
    script: Path,
    arguments: list[str],
    jars: list[str],
    py_files: Path,
    driver_memory: str = "1g",
    executor_memory: str = "1g",
) -> list[str]:
    """The spark-submit command line of one job script on the cluster at `url` (client deploy mode: the driver
    runs here, the executors on the workers)."""
    return [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master", url,
        "--deploy-mode", "client",
        "--driver-memory", driver_memory,
        "--executor-memory", executor_memory,
        "--jars", ",".join(jars),
        "--py-files", str(py_files),
        str(script),
        *arguments,
    ]  # fmt: skip


def build_wheel(repo: Path, out: Path) -> Path:
    """The packaged library, as `make package` builds it (pure Python: executors import it from the zip)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(repo)],
        check=True,
        timeout=300,
    )  # fmt: skip
    [built] = out.glob("phm-*.whl")
    return built
