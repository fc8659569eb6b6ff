"""The one SparkSession factory.

Every job, test and notebook gets its session here, so Delta, the jars, the
time zone and the machine-sized defaults are the same everywhere. Under
`spark-submit` the master given on the command line wins over the config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

from phm.config import PhmConfig
from phm.errors import MissingJarError

log = logging.getLogger(__name__)

FETCH_JARS_COMMAND = "make jars"
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


def splink_jar() -> str:
    """Splink's similarity UDF jar, shipped inside the splink wheel."""
    from splink.backends.spark import similarity_jar_location

    return similarity_jar_location()


UDF_JAR = resources.files("phm.runtime") / "jars" / "phm-udf.jar"


def udf_jar() -> str:
    """Our own Spark functions (jvm/src, compiled by `make jars` into the package). From a zipped package (the
    wheel on spark-submit's --py-files, which the driver imports) the jar is copied out once, under a name
    that changes with its contents, since spark.jars takes files."""
    if not UDF_JAR.is_file():
        raise MissingJarError(f"missing JVM jar: {UDF_JAR}; build it with `{FETCH_JARS_COMMAND}` (javac, from jvm/src)")
    if isinstance(UDF_JAR, Path):
        return str(UDF_JAR)
    content = UDF_JAR.read_bytes()
    copy = Path(tempfile.gettempdir()) / f"phm-udf-{hashlib.sha256(content).hexdigest()[:16]}.jar"
    if not copy.is_file():
        staged = copy.with_suffix(f".{os.getpid()}")
        staged.write_bytes(content)
        staged.replace(copy)  # atomic: a concurrent driver sees the whole jar or none
    return str(copy)


def packaged_jars() -> list[str]:
    """The jars that come inside Python packages (Splink's similarity functions, ours): on spark.jars whichever
    way Delta's jars are delivered."""
    return [splink_jar(), udf_jar()]


def local_jars(config: PhmConfig) -> list[str]:
    """Absolute paths of every jar for spark.jars; MissingJarError names the fetch command."""
    jar_dir = Path(config.resolve(config.paths.jars))
    jars = [jar_dir / name for name in config.jvm.delta_jar_names]
    missing = [str(j) for j in jars if not j.is_file()]
    if missing:
        raise MissingJarError(
            f"missing JVM jar(s): {', '.join(missing)}; fetch them with `{FETCH_JARS_COMMAND}` "
            f"(Maven, from jvm/pom.xml) or set paths.jars to the folder that holds them"
        )
    return [str(j) for j in jars] + packaged_jars()


def session_conf(config: PhmConfig) -> dict[str, str]:
    """Every Spark setting the factory applies, as plain strings (also used to build spark-submit args)."""
    spark = config.spark
    conf = {
        "spark.app.name": spark.app_name,
        "spark.driver.memory": spark.driver_memory,
        "spark.driver.maxResultSize": spark.max_result_size,
        "spark.driver.extraJavaOptions": " ".join(
            [f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}", *spark.java_options]
        ),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # Dates and timestamps mean the same on every machine and in every test.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": str(spark.adaptive_enabled).lower(),
        # Spark 4.1+ lets a union of children hash-partitioned alike claim that partitioning, so a join above it
        # reads the children partition by partition; with adaptive execution their partition counts can differ
        # at run time, and the job fails ("Can't zip RDDs with unequal numbers of partitions: List(32, 16)":
        # link's clusters in a 1m refresh, where new and known profiles' clusters are unioned, then joined).
        "spark.sql.unionOutputPartitioning": "false",
        "spark.databricks.delta.snapshotPartitions": str(spark.delta_snapshot_partitions),
        "spark.ui.enabled": str(spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": str(spark.console_progress).lower(),
        # Keep Spark's scratch space out of /tmp defaults shared with other users.
        "spark.sql.warehouse.dir": config.resolve(os.path.join(config.paths.checkpoints, "spark-warehouse")),
    }
    if spark.java_options:
        conf["spark.executor.extraJavaOptions"] = " ".join(spark.java_options)
    if not spark.codegen:
        conf["spark.sql.codegen.wholeStage"] = "false"
        conf["spark.sql.codegen.factoryMode"] = "NO_CODEGEN"  # expressions interpreted, not compiled
    if spark.jar_delivery == "packages":
        conf["spark.jars.packages"] = ",".join(config.jvm.delta_coordinates)
        conf["spark.jars"] = ",".join(packaged_jars())
    else:
        conf["spark.jars"] = ",".join(local_jars(config))
    conf.update(spark.conf)
    return conf


def get_spark(config: PhmConfig) -> SparkSession:
    """The active session if there is one (tests, notebooks, spark-submit), else a new one from config."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Python workers must run this interpreter (with phm and its dependencies), not whatever
    # `python3` is first on PATH; PySpark reads the variable when the context starts. A cluster
    # whose nodes keep Python elsewhere sets PYSPARK_PYTHON before submitting.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    # A master set by spark-submit (or PYSPARK_SUBMIT_ARGS) takes precedence.
    if not os.environ.get("SPARK_ENV_LOADED") and "--master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master(config.spark.master)
    for key, value in session_conf(config).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.spark.log_level)
    checkpoints = config.resolve(config.paths.checkpoints)
    session.sparkContext.setCheckpointDir(checkpoints)
    log.info("spark session: master=%s version=%s", session.sparkContext.master, session.version)
    return session


JOB_DESCRIPTION = "spark.job.description"


@contextmanager
def job_described(spark: SparkSession, description: str) -> Iterator[None]:
    """The Spark jobs and SQL executions this thread starts inside the block carry `description` (Spark's UI,
    its event log, bench/eventlog.py) in place of PySpark's call site, which for a write is only
    "save at NativeMethodAccessorImpl.java:0". The description before the block comes back after it. Names
    tables and steps only, never data."""
    context = spark.sparkContext
    before = context.getLocalProperty(JOB_DESCRIPTION)
    context.setJobDescription(description)
    try:
        yield
    finally:
        context.setLocalProperty(JOB_DESCRIPTION, before)  # None removes it


@contextmanager
def session_settings(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Set Spark session settings inside the block, putting back what each was before (or unsetting it)."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
