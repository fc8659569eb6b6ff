"""deploy/airflow/: the refresh DAG, loaded by Apache Airflow itself (its DagBag, in the Airflow environment
`make airflow` builds beside the project's), has one spark-submit task per scheduled stage with the job
registry's dependencies; leaving a stage out joins its dependents to its own dependencies; pipeline.json is
what `phm jobs --json` prints now."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from phm import cli
from phm.runtime.jobs import discover_jobs

from ..conftest import REPO

pytestmark = pytest.mark.slow
DAGS = REPO / "deploy" / "airflow"
AIRFLOW_PYTHON = REPO / ".phm" / "airflow" / "bin" / "python"

LOAD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "operators": sorted({type(t).__name__ for t in dag.tasks}),
        "applications": {t.task_id: t.application for t in dag.tasks},
        "arguments": {t.task_id: list(t.application_args) for t in dag.tasks},
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "catchup": dag.catchup,
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""


def loaded(exclude: str) -> dict:
    """The DAG as Airflow parses it, with PHM_EXCLUDE set to `exclude`."""
    assert AIRFLOW_PYTHON.is_file(), "no Airflow environment: run `make airflow` (make test does)"
    env = {**os.environ, "PHM_EXCLUDE": exclude, "PHM_HOME": "/opt/phm", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env["AIRFLOW_HOME"] = str(REPO / ".phm" / "airflow" / "home")
    done = subprocess.run([str(AIRFLOW_PYTHON), "-c", LOAD, str(DAGS)], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    return found["dags"]["phm_refresh"]


def test_pipeline_json_is_the_job_registry(capsys):
    assert cli.main(["jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((DAGS / "pipeline.json").read_text()), (
        "deploy/airflow/pipeline.json is out of date: `phm jobs --json > deploy/airflow/pipeline.json`"
    )


def test_the_dag_has_a_task_per_scheduled_stage_with_the_registry_dependencies():
    jobs = discover_jobs()
    scheduled = {name: sorted(job.spec.depends_on) for name, job in jobs.items() if job.spec.scheduled}
    dag = loaded(exclude="")
    assert dag["upstream"] == scheduled
    assert dag["operators"] == ["SparkSubmitOperator"]
    assert dag["applications"] == {name: f"/opt/phm/jobs/{jobs[name].script}" for name in scheduled}
    assert dag["arguments"]["link"] == ["--config", "/opt/phm/configs/cluster.yaml", "--set", "paths.root=/opt/phm"]
    # one refresh, and one stage, at a time: the warehouse takes one writer
    assert (dag["max_active_runs"], dag["max_active_tasks"], dag["catchup"]) == (1, 1, False)
    assert "rekey" not in dag["upstream"]  # on demand only


def test_a_stage_left_out_hands_its_dependents_to_its_own_dependencies():
    dag = loaded(exclude="generate,evaluate_linkage")
    scheduled = {name: sorted(job.spec.depends_on) for name, job in discover_jobs().items() if job.spec.scheduled}
    assert "generate" not in dag["upstream"] and "evaluate_linkage" not in dag["upstream"]
    assert dag["upstream"]["ingest"] == []  # generate had no dependencies of its own
    assert dag["upstream"]["report"] == sorted({*scheduled["report"]} - {"evaluate_linkage"} | {"link"})
    unchanged = {n: u for n, u in scheduled.items() if n not in ("generate", "evaluate_linkage", "ingest", "report")}
    assert {n: dag["upstream"][n] for n in unchanged} == unchanged
