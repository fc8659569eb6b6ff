"""Job modules run as scripts under spark-submit, with jobs/ first on sys.path: a module named like a standard
library module (profile.py, say) would shadow it for pyspark itself and break every submitted job. A process that
runs one job finds it by its module's name first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phm.errors import UnknownJobError
from phm.runtime.jobs import discover_jobs, get_job

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_no_job_module_shadows_a_standard_library_module():
    names = {path.stem for path in JOBS.glob("*.py")}
    assert names and not names & set(sys.stdlib_module_names)


def _in_a_new_interpreter(name: str) -> dict:
    """get_job(name) in a Python of its own: the job's name and script, and which job modules were imported."""
    code = (
        "import json, sys; from phm.runtime.jobs import JOBS_PACKAGE, get_job; job = get_job(sys.argv[1]); "
        "print(json.dumps({'name': job.spec.name, 'script': job.script, "
        "'imported': sorted(m for m in sys.modules if m.startswith(JOBS_PACKAGE + '.'))}))"
    )
    done = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_running_one_job_imports_its_module_alone_when_it_is_named_after_it():
    assert _in_a_new_interpreter("ingest") == {"name": "ingest", "script": "ingest.py", "imported": ["phm_jobs.ingest"]}
    # `profile` lives in population_profile.py (a module named profile would shadow the standard library's)
    found = _in_a_new_interpreter("profile")
    assert (found["name"], found["script"]) == ("profile", "population_profile.py")
    assert len(found["imported"]) == len(list(JOBS.glob("[!_]*.py")))


def test_a_job_found_by_its_module_is_the_job_discovery_finds():
    discovered = discover_jobs()
    assert {name: get_job(name) for name in discovered} == discovered
    with pytest.raises(UnknownJobError, match="unknown job 'zz'"):
        get_job("zz")
    with pytest.raises(UnknownJobError, match="unknown job '__init__'"):
        get_job("__init__")
