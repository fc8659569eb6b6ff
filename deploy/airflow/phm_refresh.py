"""Apache Airflow DAG: the population refresh, one task per stage, each submitted to the cluster with spark-submit.

Copy this file and pipeline.json beside it into the Airflow DAG folder. The tasks and their dependencies are
the platform's job registry, written to pipeline.json by `phm jobs --json` (tests/integration/test_airflow.py
loads this DAG with Airflow and checks it against the registry, so a new stage cannot be forgotten here).

Each task runs `spark-submit <PHM_HOME>/jobs/<stage>.py --config <PHM_CONFIG>` through the Spark connection
`spark_phm` (its host is the master, e.g. spark://master:7077 or yarn), with the packaged library on
--py-files and Delta from Maven Central, as README "Submitting to a cluster" does by hand. Settings come
from the environment of the Airflow workers:

    PHM_HOME      the checkout (or unpacked release) holding jobs/ and configs/   (default /opt/phm)
    PHM_CONFIG    the environment's config, relative to PHM_HOME               (default configs/cluster.yaml)
    PHM_WHEEL     the library wheel from `make package`       (default PHM_HOME/dist/phm-<version>-py3-none-any.whl)
    PHM_EXCLUDE   stages not to run, comma-separated                           (default generate: real extracts
                  arrive in landing/; leave out the evaluate_* stages too, which read the synthetic truth store)
    PHM_SCHEDULE  a cron expression                                            (default 02:00 on the 5th: monthly
                  extracts are in by then)

One refresh at a time and one stage at a time (`max_active_runs=1`, `max_active_tasks=1`): every stage writes
the same warehouse, which takes one writer (phm's writer lock would refuse a second). A failed task can simply
be retried or cleared: a stage whose inputs have not changed since it last succeeded writes nothing, and a
stage killed mid-write is put back by the next run to take the warehouse's lock (docs/trust.md).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG

PIPELINE = json.loads(Path(__file__).with_name("pipeline.json").read_text())
HOME = os.environ.get("PHM_HOME", "/opt/phm")
CONFIG = os.environ.get("PHM_CONFIG", "configs/cluster.yaml")
WHEEL = os.environ.get("PHM_WHEEL", f"{HOME}/{PIPELINE['spark_submit']['wheel']}")
EXCLUDE = {name.strip() for name in os.environ.get("PHM_EXCLUDE", "generate").split(",") if name.strip()}
SCHEDULE = os.environ.get("PHM_SCHEDULE", "0 2 5 * *")


def stages_to_run(pipeline: dict, exclude: set[str]) -> dict[str, list[str]]:
    """Each scheduled stage not excluded -> the stages it waits for: its dependencies, with an excluded one
    replaced by that one's own (so leaving out `generate` makes `ingest` a first task)."""
    stages = {s["name"]: s for s in pipeline["stages"] if s["scheduled"]}

    def upstream(name: str) -> set[str]:
        found: set[str] = set()
        for parent in stages[name]["depends_on"]:
            found |= upstream(parent) if parent in exclude else {parent}
        return found

    return {name: sorted(upstream(name)) for name in stages if name not in exclude}


with DAG(
    dag_id="phm_refresh",
    description="PHM population refresh: ingest, link, person model, segmentation, risk, impactability, profiles",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["phm"],
) as dag:
    scripts = {s["name"]: s["script"] for s in PIPELINE["stages"]}
    plan = stages_to_run(PIPELINE, EXCLUDE)
    tasks = {
        name: SparkSubmitOperator(
            task_id=name,
            conn_id="spark_phm",
            application=f"{HOME}/{scripts[name]}",
            application_args=["--config", f"{HOME}/{CONFIG}", "--set", f"paths.root={HOME}"],
            py_files=WHEEL,
            packages=PIPELINE["spark_submit"]["packages"],  # Delta's coordinates, from the platform's config
            name=f"phm-{name}",
        )
        for name in plan
    }
    for name, parents in plan.items():
        for parent in parents:
            tasks[parent] >> tasks[name]
