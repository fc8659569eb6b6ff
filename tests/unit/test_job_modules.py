"""Job modules run as scripts under spark-submit, with jobs/ first on sys.path: a module named like a standard
library module (profile.py, say) would shadow it for pyspark itself and break every submitted job."""

from __future__ import annotations

import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_no_job_module_shadows_a_standard_library_module():
    names = {path.stem for path in JOBS.glob("*.py")}
    assert names and not names & set(sys.stdlib_module_names)
