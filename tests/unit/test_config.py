"""Config: layering, overrides, and one-line errors that name the key and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phm.config import load_config
from phm.errors import ConfigError

from ..conftest import REPO, TEST_CONFIG


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def overlay(tmp_path: Path, body: str) -> str:
    """A config file that inherits the repo's test.yaml and adds `body`."""
    return write(tmp_path / "overlay.yaml", f"inherits: {TEST_CONFIG}\npaths:\n  root: {REPO}\n{body}")


def test_overlay_inherits_base_and_overrides_it():
    config = load_config(str(TEST_CONFIG), [f"paths.root={REPO}"])
    assert config.environment == "test"
    assert config.spark.shuffle_partitions == 2  # test.yaml
    assert config.spark.app_name == "phm"  # base.yaml
    assert config.jvm.delta_coordinates == [
        "io.delta:delta-spark_4.2_2.13:4.4.0",
        "io.delta:delta-storage:4.4.0",
    ]


def test_set_overrides_are_typed_and_win_over_files():
    config = load_config(
        str(TEST_CONFIG),
        [f"paths.root={REPO}", "spark.shuffle_partitions=3", "spark.ui_enabled=true", "spark.conf.spark.x.y=1"],
    )
    assert config.spark.shuffle_partitions == 3
    assert config.spark.ui_enabled is True
    assert config.spark.conf == {"spark.x.y": "1"}


def test_relative_paths_resolve_under_root_and_uris_are_kept(tmp_path):
    config = load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "paths.warehouse=s3a://bucket/wh"])
    assert config.resolve(config.paths.landing) == str(REPO / "landing")
    assert config.resolve(config.paths.warehouse) == "s3a://bucket/wh"
    assert config.tracking_uri == f"sqlite:///{REPO}/mlruns/mlflow.db"


def digest_with(*overrides: str) -> str:
    return load_config(str(TEST_CONFIG), [f"paths.root={REPO}", *overrides]).digest()


def test_digest_is_stable_and_changes_with_the_config():
    assert digest_with() == digest_with()
    assert digest_with("linkage.threshold=0.95") != digest_with()


@pytest.mark.parametrize(
    "override",
    [
        "spark.driver_memory=12g",
        "spark.shuffle_partitions=5",
        "spark.java_options=[]",
        "spark.master=spark://127.0.0.1:7077",
        "spark.conf.spark.executor.memory=4g",
        "spark.conf.spark.sql.adaptive.skewJoin.enabled=false",
        "paths.logs=/elsewhere/logs",
        "refresh.exclude=[generate]",
        "refresh.stages=[ingest, link]",
        "maintenance.vacuum_every_days=1",
    ],
)
def test_digest_leaves_out_how_and_where_a_run_works(override):
    # A run setting changes no output: with it in the digest, every stage ran again and the models retrained.
    assert digest_with(override) == digest_with()


@pytest.mark.parametrize(
    "override",
    [
        "spark.conf.spark.sql.session.timeZone=Europe/London",
        "spark.conf.spark.sql.ansi.enabled=false",
        "spark.conf.spark.executor.memoryish=4g",  # a tuning entry's name is matched whole, not as a prefix
        "paths.warehouse=/elsewhere/warehouse",
        "risk.retrain_every_months=1",
    ],
)
def test_digest_keeps_what_can_change_an_output(override):
    assert digest_with(override) != digest_with()


def test_digest_covers_the_definition_files_the_config_points_at(tmp_path):
    codelists = tmp_path / "codelists"
    shutil.copytree(REPO / "configs" / "codelists", codelists)
    config = load_config(str(TEST_CONFIG), [f"paths.root={REPO}", f"person_model.codelists={codelists}"])
    before = config.digest()
    asthma = codelists / "conditions" / "asthma.yaml"
    asthma.write_text(asthma.read_text().replace('"195967001"', '"195967001", "233678006"'))
    assert config.digest() != before


def test_unknown_key_names_the_key_the_file_and_the_valid_keys(tmp_path):
    path = overlay(tmp_path, "spark:\n  shufle_partitions: 4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith("config error: spark.shufle_partitions: unknown key")
    assert path in message
    assert "valid keys under spark:" in message and "shuffle_partitions" in message
    assert "\n" not in message


def test_unknown_top_level_key_from_set_names_the_override():
    with pytest.raises(ConfigError, match=r"sprak: unknown key \(in --set sprak.master=x\)"):
        load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "sprak.master=x"])


def test_wrong_type_names_the_key_the_value_and_the_fix(tmp_path):
    path = overlay(tmp_path, "spark:\n  shuffle_partitions: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "spark.shuffle_partitions: input should be a valid integer" in message
    assert "'lots'" in message and "fix the value" in message


def test_booleans_must_be_booleans_not_strings(tmp_path):
    path = overlay(tmp_path, "spark:\n  ui_enabled: 'yes'\n")
    with pytest.raises(ConfigError, match=r"spark.ui_enabled: input should be a valid boolean"):
        load_config(path)


def test_memory_sizes_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"spark.driver_memory: string should match pattern"):
        load_config(overlay(tmp_path, "spark:\n  driver_memory: lots\n"))


def test_missing_config_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"no config file at {missing}"):
        load_config(str(missing))


def test_missing_inherited_file_names_both(tmp_path):
    path = write(tmp_path / "child.yaml", "inherits: parent.yaml\n")
    with pytest.raises(ConfigError, match=r"parent.yaml \(inherited by .*child.yaml\)"):
        load_config(path)


def test_inheritance_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "inherits: b.yaml\n")
    write(tmp_path / "b.yaml", "inherits: a.yaml\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "spark:\n  master: [local\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        load_config(path)


def test_missing_input_path_names_the_key_and_the_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "reference.qof_prevalence_csv=missing/qof.csv"])
    message = str(caught.value)
    assert message.startswith("config error: reference.qof_prevalence_csv: no file at ")
    assert str(REPO / "missing" / "qof.csv") in message


def test_malformed_override_is_an_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(str(TEST_CONFIG), ["spark.master"])


def test_spark_conf_keys_must_be_spark_settings():
    with pytest.raises(ConfigError, match=r"spark.conf: value error, keys must start with 'spark.'"):
        load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.conf.hadoop.x=1"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "load_reference", "--set", "spark.shufle_partitions=2"], "spark.shufle_partitions: unknown key"),
        (["refresh", "--set", "spark.shuffle_partitions=many"], "spark.shuffle_partitions: input should be"),
        (["status", "--config", "no/such.yaml"], "no config file at no/such.yaml"),
        (["run", "no_such_job", "--set", "paths.root=."], "unknown job 'no_such_job'"),
    ],
)
def test_cli_user_errors_print_one_line_and_exit_2(args, expected):
    result = subprocess.run([sys.executable, "-m", "phm", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("phm: ") and expected in lines[0]


def test_missing_jar_names_the_fetch_command(tmp_path):
    from phm.errors import MissingJarError
    from phm.runtime.spark import local_jars, session_conf, udf_jar

    config = load_config(str(TEST_CONFIG), [f"paths.root={REPO}", f"paths.jars={tmp_path}"])
    with pytest.raises(MissingJarError) as caught:
        local_jars(config)
    assert str(tmp_path / "delta-spark_4.2_2.13-4.4.0.jar") in str(caught.value)
    assert "`make jars`" in str(caught.value)
    packaged = load_config(str(TEST_CONFIG), [f"paths.root={REPO}", f"paths.jars={tmp_path}",
                                             "spark.jar_delivery=packages"])  # fmt: skip
    conf = session_conf(packaged)  # needs no fetched jars: the cluster resolves the coordinates
    assert conf["spark.jars.packages"] == "io.delta:delta-spark_4.2_2.13:4.4.0,io.delta:delta-storage:4.4.0"
    assert conf["spark.jars"].split(",")[-1] == udf_jar()  # ours travel with the package
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_missing_udf_jar_names_the_build_command(monkeypatch, tmp_path):
    from phm.errors import MissingJarError
    from phm.runtime import spark

    monkeypatch.setattr(spark, "UDF_JAR", tmp_path / "phm-udf.jar")
    with pytest.raises(MissingJarError, match=r"phm-udf\.jar; build it with `make jars` \(javac, from jvm/src\)"):
        spark.local_jars(load_config(str(TEST_CONFIG), [f"paths.root={REPO}"]))


def test_udf_jar_from_a_zipped_package_is_copied_out(tmp_path):
    # The wheel on spark-submit's --py-files is what the driver imports: spark.jars needs the jar as a file.
    from phm.runtime.spark import udf_jar

    archive = shutil.make_archive(str(tmp_path / "phm"), "zip", REPO / "libs", "phm")
    script = f"import sys; sys.path.insert(0, {archive!r}); import phm.runtime.spark as s; print(s.udf_jar())"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the copy goes (tempfile.gettempdir)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    copied = Path(result.stdout.strip())
    assert copied.parent == tmp_path and copied.name.startswith("phm-udf-")
    assert copied.read_bytes() == Path(udf_jar()).read_bytes()


def test_the_driver_may_collect_what_the_config_allows(spark):
    from phm.runtime.spark import session_conf

    assert session_conf(load_config(str(TEST_CONFIG), [f"paths.root={REPO}"]))["spark.driver.maxResultSize"] == "4g"
    smaller = load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.max_result_size=512m"])
    assert session_conf(smaller)["spark.driver.maxResultSize"] == "512m"
    assert spark.conf.get("spark.driver.maxResultSize") == "4g"  # the suite's session (configs/test.yaml)
    with pytest.raises(ConfigError, match=r"spark.max_result_size: string should match pattern"):
        load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.max_result_size=unlimited"])


def test_java_options_reach_the_driver_and_executors_after_phm_own(spark, config):
    from phm.runtime.spark import LOG4J_CONFIG, session_conf

    conf = session_conf(
        load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.java_options=['-Xss4m', '-XX:+UseG1GC']"])
    )
    assert (
        conf["spark.driver.extraJavaOptions"] == f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG} -Xss4m -XX:+UseG1GC"
    )
    assert conf["spark.executor.extraJavaOptions"] == "-Xss4m -XX:+UseG1GC"
    none = session_conf(load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.java_options=[]"]))
    assert none["spark.driver.extraJavaOptions"] == f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    assert "spark.executor.extraJavaOptions" not in none
    # the suite's JVM was started with base.yaml's parallel collector (G1's beans are "G1 Young Generation", ...)
    management = spark._jvm.java.lang.management.ManagementFactory
    beans = management.getGarbageCollectorMXBeans()
    assert sorted(bean.getName() for bean in beans) == ["PS MarkSweep", "PS Scavenge"]
    # ... and with every JVM option the configuration it was started from gives
    assert set(config.spark.java_options) <= set(management.getRuntimeMXBean().getInputArguments())


def test_codegen_off_interprets_expressions_and_whole_stages(spark):
    from phm.runtime.spark import session_conf

    compiled = session_conf(load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.codegen=true"]))
    assert "spark.sql.codegen.wholeStage" not in compiled and "spark.sql.codegen.factoryMode" not in compiled
    interpreted = session_conf(load_config(str(TEST_CONFIG), [f"paths.root={REPO}", "spark.codegen=false"]))
    assert interpreted["spark.sql.codegen.wholeStage"] == "false"
    assert interpreted["spark.sql.codegen.factoryMode"] == "NO_CODEGEN"
    # the suite's session is built so (configs/test.yaml), and its plans have no whole-stage code
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "false"
    plan = spark.range(3).selectExpr("id * 2 AS x")._jdf.queryExecution().executedPlan()
    assert plan.getClass().getSimpleName() == "ProjectExec"  # compiled, it would be a WholeStageCodegenExec
