"""Table maintenance (`phm run maintain`, the refresh's last stage): compaction and vacuum of the warehouse.

Why: a monthly refresh appends and changes rows in place (bronze, vault.identity, silver.person_link, the
ledger), which leaves each table a few more small files every run, and each file read costs a task and a
footer read. And every overwrite or in-place change keeps the files of the version before it (Delta's time
travel), so without a vacuum the warehouse grows by every rewritten table each refresh.

- Compaction (Delta OPTIMIZE, bin-packing) rewrites only the files below `small_file_mb`, in partitions holding
  two or more of them, into files of about `target_file_mb`; it runs on a table once `compact_min_files` such
  files have gathered, and not on a table whose latest write replaced it whole (that write laid its files out,
  and the next such write replaces them).
- Vacuum (Delta VACUUM) deletes the files no version of the last `vacuum_retention_hours` needs, every
  `vacuum_every_days`; a table younger than the retention has nothing to delete and is not listed.
Neither changes a row: readers that compare table versions to decide whether to recompute treat these commits
as no change (`Catalog.data_unchanged`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from phm.config import MaintenanceConfig
from phm.errors import UserError
from phm.runtime.catalog import Catalog

log = logging.getLogger(__name__)

COMPACT, VACUUM = "compact", "vacuum"
MB = 1024 * 1024
# Delta refuses a shorter retention unless its safety check is turned off (a reader or writer may still need the
# files of a version that old).
DELTA_MIN_RETENTION_HOURS = 168
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"


@dataclass(frozen=True)
class Layout:
    """A table's current files: how many, their bytes, and the small ones compaction could join."""

    files: int
    bytes: int
    joinable_small_files: int


def layout(files: list[tuple[str, int]], small_file_bytes: int) -> Layout:
    """The layout of (partition, size) files: small files count as joinable only in a partition with two or more
    (compaction does not join files across partitions)."""
    small_by_partition = Counter(partition for partition, size in files if size < small_file_bytes)
    joinable = sum(count for count in small_by_partition.values() if count >= 2)
    return Layout(len(files), sum(size for _, size in files), joinable)


def rewritten_whole(commit: dict) -> bool:
    """The commit replaced every row of the table (an overwrite without replaceWhere)."""
    parameters = commit.get("operationParameters") or {}
    overwrite = commit.get("operation") == "WRITE" and parameters.get("mode") == "Overwrite"
    return overwrite and not parameters.get("predicate")


def vacuum_due(settings: MaintenanceConfig, last_vacuum: datetime | None, now: datetime) -> bool:
    if settings.vacuum_retention_hours is None:
        return False
    return last_vacuum is None or now - last_vacuum >= timedelta(days=settings.vacuum_every_days)


def check_retention(settings: MaintenanceConfig, retention_check_enabled: bool) -> None:
    """A retention Delta would refuse is a configuration error, named before any table is touched."""
    hours = settings.vacuum_retention_hours
    if hours is not None and hours < DELTA_MIN_RETENTION_HOURS and retention_check_enabled:
        raise UserError(
            f"maintain: maintenance.vacuum_retention_hours={hours:g} is below Delta's {DELTA_MIN_RETENTION_HOURS}-hour "
            f"minimum; set it to {DELTA_MIN_RETENTION_HOURS} or more (or, knowing no reader needs older versions, "
            f"set spark.conf {RETENTION_CHECK_CONF}=false)"
        )


def maintain_tables(
    catalog: Catalog, names: list[str], settings: MaintenanceConfig, vacuum: bool, now: datetime
) -> list[dict]:
    """Compact, and when `vacuum` vacuum, each named table; one row per action taken (ops.table_maintenance's
    columns but the run id)."""
    small, target = int(settings.small_file_mb * MB), int(settings.target_file_mb * MB)
    rows: list[dict] = []
    for name in names:
        before = layout(catalog.files(name), small)
        if before.joinable_small_files >= settings.compact_min_files and not rewritten_whole(
            catalog.last_data_operation(name)
        ):
            started = time.monotonic()
            catalog.compact(name, small, target)
            after = layout(catalog.files(name), small)
            rows.append(_row(name, COMPACT, before, after, 0, time.monotonic() - started, now))
            log.info("maintain: compacted %s: %d files (%.1f MB) -> %d", name, before.files, before.bytes / MB,
                     after.files)  # fmt: skip
            before = after
        if vacuum and _older_than(catalog, name, settings.vacuum_retention_hours, now):
            started = time.monotonic()
            deleted = catalog.vacuum(name, settings.vacuum_retention_hours, settings.listing_parallelism)
            rows.append(_row(name, VACUUM, before, before, deleted, time.monotonic() - started, now))
            if deleted:
                log.info("maintain: vacuumed %s: %d files deleted", name, deleted)
    return rows


def _older_than(catalog: Catalog, name: str, hours: float, now: datetime) -> bool:
    """The table was created more than `hours` ago (or its first commit's log entry is gone): only then can a
    file of it be older than the retention."""
    created = catalog.created_at(name)
    return created is None or now - created > timedelta(hours=hours)


def _row(name: str, action: str, before: Layout, after: Layout, deleted: int, seconds: float, now: datetime) -> dict:
    return {
        "table_name": name,
        "action": action,
        "files_before": before.files,
        "files_after": after.files,
        "bytes_before": before.bytes,
        "bytes_after": after.bytes,
        "files_deleted": deleted,
        "seconds": round(seconds, 3),
        "done_at": now,
    }
