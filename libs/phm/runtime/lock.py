"""One writer at a time per warehouse.

Every job run and refresh holds an exclusive lock on `<warehouse>/_phm/writer.lock`
while it runs. A second process that wants to write the same warehouse waits up
to `refresh.lock_wait_seconds` and then stops with a message naming the holder;
nothing of it has been written. The lock is an `flock`, so the operating system
releases it when its holder exits in any way, kill -9 included: a crashed run
never leaves a stale lock behind, and whoever takes the lock next knows that any
run the ledger still calls `running` is dead (see `phm.runtime.recovery`).

Within one process the lock is re-entrant (a refresh holds it and each of its
stages takes it again). `flock` works on local and NFSv4 file systems; a
warehouse on an object store (s3a://, abfss://) is not locked here: run one
refresh at a time from the scheduler (Airflow's `max_active_runs=1`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from phm.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = "_phm/writer.lock"
POLL_SECONDS = 0.5


class WarehouseBusyError(UserError):
    """Another process is writing the warehouse."""


_held: dict[str, tuple[IO[str], int]] = {}  # lock path -> (open file, depth) for this process


def lock_path(warehouse: str) -> Path | None:
    """The lock file of a warehouse on a local file system, or None for a URI with another scheme."""
    if "://" in warehouse and not warehouse.startswith("file:"):
        return None
    return Path(warehouse.removeprefix("file://").removeprefix("file:")) / LOCK_FILE


def holds_lock(warehouse: str) -> bool:
    """True if this process holds the warehouse's writer lock."""
    path = lock_path(warehouse)
    return path is not None and str(path) in _held


@contextmanager
def warehouse_lock(warehouse: str, holder: str, wait_seconds: float = 0.0) -> Iterator[bool]:
    """Hold the warehouse's writer lock inside the block; yields True when this call took it (the outermost
    holder in this process), False when this process already held it."""
    path = lock_path(warehouse)
    if path is None:
        log.warning("warehouse %s is not on a local file system: not locked; run one refresh at a time", warehouse)
        yield False
        return
    key = str(path)
    if key in _held:
        handle, depth = _held[key]
        _held[key] = (handle, depth + 1)
        try:
            yield False
        finally:
            handle, depth = _held[key]
            _held[key] = (handle, depth - 1)
        return
    handle = _acquire(path, holder, wait_seconds)
    _held[key] = (handle, 1)
    try:
        yield True
    finally:
        del _held[key]
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _acquire(path: Path, holder: str, wait_seconds: float) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    deadline = time.monotonic() + wait_seconds
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                current = _describe_holder(handle)
                handle.close()
                raise WarehouseBusyError(
                    f"warehouse {path.parent.parent} is being written by another run ({current}); nothing was "
                    f"written by this one. Wait for that run to finish (`phm status` lists runs), or set "
                    f"refresh.lock_wait_seconds to wait for it"
                ) from None
            if not waited:
                log.info("warehouse is being written by another run (%s); waiting", _describe_holder(handle))
                waited = True
            time.sleep(POLL_SECONDS)
    handle.seek(0)
    handle.truncate()
    # Who holds it, for the message another process shows (no identifiers: a run id, a process, a host).
    details = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
               "since": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    handle.write(json.dumps(details))
    handle.flush()
    return handle


def _describe_holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        details = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        details = {}
    if not details:
        return "holder unknown"
    return f"{details.get('holder')}, pid {details.get('pid')} on {details.get('host')} since {details.get('since')}"
