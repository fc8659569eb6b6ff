"""MLflow tracking for jobs: one experiment per kind of work, runs tagged with the platform's run id.

Only counts, settings and pseudonymised or aggregate artifacts are logged
(never an identifier: the leak tests search MLflow too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import mlflow

from phm.config import PhmConfig

# MLflow sets its loggers to INFO when imported and announces its database migrations on every first use;
# its download progress bars would fill job consoles and logs.
logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def experiment_name(config: PhmConfig, kind: str) -> str:
    return f"{config.mlflow.experiment_prefix}-{kind}"


def use_experiment(config: PhmConfig, kind: str) -> str:
    """Point MLflow at the configured store and the `kind` experiment (created if new); its id."""
    uri = config.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(config, kind)
    if mlflow.get_experiment_by_name(name) is None:
        if uri.startswith(("http://", "https://")):  # a tracking server stores (and serves) the artifacts
            mlflow.create_experiment(name)
        else:
            artifacts = config.resolve(config.mlflow.artifact_location)
            location = artifacts if "://" in artifacts else Path(os.path.abspath(artifacts)).as_uri()
            mlflow.create_experiment(name, artifact_location=f"{location}/{name}")
    return mlflow.set_experiment(name).experiment_id


def run_for(config: PhmConfig, kind: str, run_id: str) -> str | None:
    """The MLflow run id of a platform run (tag phm.run_id), if it was tracked."""
    experiment = use_experiment(config, kind)
    found = mlflow.search_runs([experiment], filter_string=f"tags.`phm.run_id` = '{run_id}'", output_format="list")
    return found[0].info.run_id if found else None


@contextmanager
def tracked_run(config: PhmConfig, kind: str, run_id: str) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run in the `kind` experiment, named and tagged with the platform run id."""
    use_experiment(config, kind)
    with mlflow.start_run(run_name=run_id, tags={"phm.run_id": run_id, "phm.environment": config.environment}) as run:
        yield run


def end_interrupted_runs(config: PhmConfig, platform_run_ids: list[str]) -> int:
    """Mark the MLflow runs of platform runs that died (kill -9) as KILLED: they cannot end themselves and
    would show as running for ever. The number marked."""
    client = mlflow.MlflowClient(config.tracking_uri)
    prefix = experiment_name(config, "")
    experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith(prefix)]
    marked = 0
    for run_id in platform_run_ids if experiments else []:
        for run in client.search_runs(experiments, filter_string=f"tags.`phm.run_id` = '{run_id}'"):
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="KILLED")
                marked += 1
    return marked


def pinned_requirements(*distributions: str) -> list[str]:
    """`name==version` of each installed distribution, for a logged model's pip requirements: pinned to what
    trained it, so serving loads the same libraries. Given explicitly because MLflow's inference imports the
    model in a subprocess (~10 s a model) and misses what the model imports lazily (lightgbm, econml)."""
    return [f"{name}=={version(name)}" for name in distributions]
