"""Logging: a console handler for the CLI and one log file per run under paths.logs.

Log messages name tables, jobs, counts and run ids, never a person's
identifiers (the leak tests search these files).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PHM_LOGGER = "phm"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted, not the stream it was when `phm` started
    (a caller that redirects or captures stderr, a notebook or a test, gets the lines, not a closed stream)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_console(level: int = logging.INFO) -> None:
    """Progress lines on stderr for `phm` (idempotent)."""
    logger = logging.getLogger(PHM_LOGGER)
    logger.setLevel(level)
    if not any(getattr(h, "_phm_console", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._phm_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # py4j chatters at INFO about every gateway call.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextmanager
def run_log(log_dir: str, run_id: str) -> Iterator[str]:
    """Copy the phm logger's records to <log_dir>/<run_id>.log while the block runs."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, f"{run_id}.log")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(PHM_LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
