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


def _mlflow_runs_of(client: mlflow.MlflowClient, config: PhmConfig, platform_run_id: str) -> list:
    """Every MLflow run (in any of the platform's experiments) a platform run started."""
    prefix = experiment_name(config, "")
    experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith(prefix)]
    if not experiments:
        return []
    return client.search_runs(experiments, filter_string=f"tags.`phm.run_id` = '{platform_run_id}'")


def end_interrupted_runs(config: PhmConfig, platform_run_ids: list[str]) -> int:
    """Mark the MLflow runs of platform runs that died (kill -9) as KILLED: they cannot end themselves and
    would show as running for ever. The number marked."""
    client = mlflow.MlflowClient(config.tracking_uri)
    marked = 0
    for run_id in platform_run_ids:
        for run in _mlflow_runs_of(client, config, run_id):
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="KILLED")
                marked += 1
    return marked


def replaced_tag(alias: str) -> str:
    """The model version tag naming the version `alias` pointed to before it was moved to this one."""
    return f"phm.replaced.{alias}"


NO_VERSION = "none"


def move_alias(client: mlflow.MlflowClient, registered_model: str, alias: str, version: str) -> None:
    """Point `alias` at `version`, having first written on the version which one the alias left: so that
    `undo_registrations` can put the alias back if the run that moved it fails or is killed."""
    try:
        previous = client.get_model_version_by_alias(registered_model, alias).version
    except mlflow.exceptions.MlflowException:  # the alias is new
        previous = NO_VERSION
    client.set_model_version_tag(registered_model, version, replaced_tag(alias), str(previous))
    client.set_registered_model_alias(registered_model, alias, version)


def undo_registrations(config: PhmConfig, platform_run_ids: list[str]) -> list[str]:
    """Take back what failed or killed platform runs did to the model registry, as their tables are put back:
    each alias that points at a version they registered goes back to the version it pointed to before (or is
    removed if it is new), and the versions are deleted. Otherwise a killed training run's model would stay
    `champion` (and be scored with) although its run was rolled back, and the rerun would be measured against
    it. The versions taken back, as 'name vN'. (The registry never reuses a number: the rerun's is the next.)"""
    client = mlflow.MlflowClient(config.tracking_uri)
    undone = []
    for run_id in platform_run_ids:
        for run in _mlflow_runs_of(client, config, run_id):
            for found in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
                registered = client.get_model_version(found.name, found.version)  # (a search leaves out aliases)
                for alias in registered.aliases:
                    previous = registered.tags.get(replaced_tag(alias), NO_VERSION)
                    if previous != NO_VERSION and _version_exists(client, registered.name, previous):
                        client.set_registered_model_alias(registered.name, alias, previous)
                    else:
                        client.delete_registered_model_alias(registered.name, alias)
                client.delete_model_version(registered.name, registered.version)
                undone.append(f"{registered.name} v{registered.version}")
    return undone


def _version_exists(client: mlflow.MlflowClient, registered_model: str, version: str) -> bool:
    try:
        client.get_model_version(registered_model, version)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def pinned_requirements(*distributions: str) -> list[str]:
    """`name==version` of each installed distribution, for a logged model's pip requirements: pinned to what
    trained it, so serving loads the same libraries. Given explicitly because MLflow's inference imports the
    model in a subprocess (~10 s a model) and misses what the model imports lazily (lightgbm, econml)."""
    return [f"{name}=={version(name)}" for name in distributions]
