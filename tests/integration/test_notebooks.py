"""notebooks/: each runs top to bottom in its own kernel on the refreshed tiny ICS (as a user runs it on the
`make run` sample), its own checks pass and its outputs carry no canary identifier; the committed notebooks hold
no outputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from phm.config import CONFIG_ENV_VAR
from phm.governance.leaks import text_leak_hits

from ..conftest import REPO, TEST_CONFIG

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == {"linkage_quality_review", "risk_model_review", "population_profile"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_hold_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.fixture(scope="module")
def sample_config(refreshed, tmp_path_factory) -> Path:
    """A config file for the kernels: configs/test.yaml with the refreshed sample's overrides."""
    arguments = refreshed[2]
    settings: dict = {"inherits": str(TEST_CONFIG)}
    for override in (value for flag, value in itertools.pairwise(arguments) if flag == "--set"):
        key, value = override.split("=", 1)
        *parents, leaf = key.split(".")
        node = settings
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    path = tmp_path_factory.mktemp("notebooks") / "sample.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom_on_the_sample(path, sample_config, canaries, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV_VAR, str(sample_config))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("checks passed" in o.get("text", "") for o in outputs), "the notebook's checks ran"
    texts = [o.get("text", "") + "".join(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
             for o in outputs]  # fmt: skip
    assert text_leak_hits("\n".join(texts), canaries) == []
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook drew its charts"
