"""The sample population refreshed once for the whole suite (as `make run` does it, through the CLI) and shared
by every module that checks what a refresh wrote."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from phm import cli
from phm.config import PhmConfig, load_config
from phm.governance.leaks import Canary
from phm.runtime.catalog import Catalog
from phm.tables import PERSON_LINK

from ..conftest import TEST_CONFIG, test_overrides

STAGES = [
    "load_reference", "generate", "ingest", "link", "evaluate_linkage", "build_person_model", "evaluate_person_model",
    "segment", "features", "train_risk", "evaluate_risk", "score", "evaluate_programme", "train_impactability",
    "target", "evaluate_impactability", "profile", "case_finding", "evaluate_case_finding", "actuarial", "report",
    "maintain",
]  # fmt: skip


# The first monthly delivery ends here: the shared sample is refreshed in two instalments, as an ICS refreshes.
FIRST_UNTIL = "2026-01"
FIRST_STAGES = ["load_reference", "generate", "ingest", "link"]


@pytest.fixture(scope="session")
def sample_arguments(tmp_path_factory) -> tuple:
    """(base folder, overrides, CLI arguments) of the shared sample."""
    base = tmp_path_factory.mktemp("sample")
    overrides = [*test_overrides(base), "synthetic.canaries=8"]
    return base, overrides, ["--config", str(TEST_CONFIG), *[a for o in overrides for a in ("--set", o)]]


@pytest.fixture(scope="session")
def first_instalment(sample_arguments, spark) -> dict:
    """The extracts up to January delivered, ingested and linked by the CLI refresh; what linkage wrote then
    (the links, the linkage run and the trained model), for the tests of what the second delivery changed."""
    base, overrides, arguments = sample_arguments
    first = ["--set", f"synthetic.until={FIRST_UNTIL}", "--set", f"refresh.stages=[{','.join(FIRST_STAGES)}]"]
    assert cli.main(["refresh", *arguments, *first]) == 0
    config = load_config(str(TEST_CONFIG), overrides)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    links = catalog.read(PERSON_LINK.name)
    return {
        "links": {(r.source, r.record_id): r.person_id for r in links.collect()},
        "run": links.first().linkage_run_id,
        "model": (base / "models" / "linkage.json").read_text(),
    }


@pytest.fixture(scope="session")
def refreshed(sample_arguments, first_instalment, spark):
    """The CLI refresh of every stage once the rest of the extracts arrive: (exit code, base folder, CLI arguments,
    config)."""
    base, overrides, arguments = sample_arguments
    code = cli.main(["refresh", *arguments])
    return code, base, arguments, load_config(str(TEST_CONFIG), overrides)


@pytest.fixture(scope="session")
def sample(refreshed, spark):
    code, _, _, config = refreshed
    assert code == 0
    return config, Catalog(spark, config.resolve(config.paths.warehouse))


@pytest.fixture(scope="session")
def canaries(refreshed, spark) -> list[Canary]:
    """The synthetic ICS's canary people (truth store), whose identifiers must appear only in the vault."""
    config = refreshed[3]
    people = spark.read.parquet(config.resolve(config.paths.truth) + "/canaries").collect()
    found = [Canary(p.nhs_number, p.forename, p.surname, p.date_of_birth.isoformat(),
                    tuple(x for x in (p.postcode, p.new_postcode) if x)) for p in people]  # fmt: skip
    assert len(found) == 8
    return found


@pytest.fixture(scope="session")
def largest_cohort(sample) -> str:
    """The case-finding mart (mart.cohort_<name>) with the most people in the refreshed sample."""
    _, catalog = sample
    sizes = {name: catalog.read(name).count() for name in catalog.existing_tables()
             if name.startswith("mart.cohort_") and name != "mart.cohort_summary"}  # fmt: skip
    return max(sizes, key=sizes.get)


@dataclass(frozen=True)
class SampleCopy:
    """A copy of the refreshed sample's warehouse, landing and linkage model (its truth store shared), for tests
    that change it."""

    folder: Path
    arguments: list[str]  # the CLI's --config and --set arguments for the copy
    config: PhmConfig
    catalog: Catalog


def copy_of_sample(refreshed, spark, folder: Path) -> SampleCopy:
    _, base, _, _ = refreshed
    for name in ("warehouse", "landing", "models"):
        shutil.copytree(base / name, folder / name)
    overrides = [*test_overrides(folder), f"paths.truth={base / 'truth'}"]
    arguments = ["--config", str(TEST_CONFIG), *[a for o in overrides for a in ("--set", o)]]
    config = load_config(str(TEST_CONFIG), overrides)
    return SampleCopy(folder, arguments, config, Catalog(spark, config.resolve(config.paths.warehouse)))
