"""Entry point for `spark-submit jobs/<name>.py --config FILE [--set k=v ...]`."""

from __future__ import annotations

import sys


def main_for(job_name: str) -> None:
    """Run one job as `phm run <job_name>` with this process's arguments, and exit with its code."""
    from phm.cli import main

    raise SystemExit(main(["run", job_name, *sys.argv[1:]]))
