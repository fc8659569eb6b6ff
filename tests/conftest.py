"""Shared fixtures: one SparkSession for the whole suite, built by the platform's own factory.

The session uses configs/test.yaml (2 shuffle partitions and 1 Delta snapshot
partition: test frames are tiny, so more partitions only add task overhead;
UI off: nothing looks at it and it takes a port; UTC: dates mean the same on
every machine), with every output path under pytest's temporary directory so
tests never touch the checkout's warehouse.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phm.config import PhmConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "configs" / "test.yaml"
OUTPUT_PATHS = ("landing", "truth", "warehouse", "reports", "logs", "checkpoints")
# The suite's pseudonymisation key (tests of key files and errors configure another variable).
TEST_KEY_HEX = "5e" * 32
os.environ["PHM_PSEUDONYM_KEY"] = TEST_KEY_HEX


def test_overrides(base: Path) -> list[str]:
    """--set overrides that keep the repository as root but send every output under `base`."""
    return (
        [f"paths.root={REPO}"]
        + [f"paths.{key}={base / key}" for key in OUTPUT_PATHS]
        + [
            f"linkage.model={base / 'models' / 'linkage.json'}",
            f"mlflow.tracking_uri=sqlite:///{base / 'mlflow.db'}",
            f"mlflow.artifact_location={base / 'mlartifacts'}",
            f"reidentification.output={base / 'restricted'}",
        ]
    )


test_overrides.__test__ = False  # a helper, not a test


def cli_arguments(base: Path, *extra: str) -> list[str]:
    """`phm` CLI arguments for configs/test.yaml with every output under `base` (and `extra` overrides)."""
    return ["--config", str(TEST_CONFIG), *[a for o in [*test_overrides(base), *extra] for a in ("--set", o)]]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phm")


@pytest.fixture(scope="session")
def config(session_dir: Path) -> PhmConfig:
    return load_config(str(TEST_CONFIG), test_overrides(session_dir))


@pytest.fixture(scope="session")
def spark(config: PhmConfig):
    from phm.runtime.spark import get_spark

    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def fresh_config(tmp_path: Path, spark) -> PhmConfig:
    """A config whose warehouse, logs and other outputs are empty and private to one test."""
    return load_config(str(TEST_CONFIG), test_overrides(tmp_path))
