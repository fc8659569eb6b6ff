"""Which tables maintenance compacts and when it vacuums (phm.runtime.maintenance)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from phm.config import MaintenanceConfig
from phm.errors import UserError
from phm.runtime.maintenance import Layout, check_retention, layout, rewritten_whole, vacuum_due

MB = 1024 * 1024


def test_small_files_are_joinable_only_beside_another_small_file_of_their_partition():
    files = [
        ('{"source": "ae"}', 1 * MB), ('{"source": "ae"}', 2 * MB), ('{"source": "ae"}', 200 * MB),
        ('{"source": "gp"}', 1 * MB),  # alone in its partition: nothing to join it with
        ('{"source": "op"}', 3 * MB), ('{"source": "op"}', 4 * MB), ('{"source": "op"}', 5 * MB),
    ]  # fmt: skip
    assert layout(files, small_file_bytes=32 * MB) == Layout(files=7, bytes=216 * MB, joinable_small_files=5)
    assert layout([], 32 * MB) == Layout(0, 0, 0)


def test_only_an_overwrite_of_every_row_counts_as_rewritten_whole():
    assert rewritten_whole({"operation": "WRITE", "operationParameters": {"mode": "Overwrite", "partitionBy": "[]"}})
    replace_where = {"mode": "Overwrite", "predicate": '["(period = 2026-01)"]'}
    assert not rewritten_whole({"operation": "WRITE", "operationParameters": replace_where})
    assert not rewritten_whole({"operation": "WRITE", "operationParameters": {"mode": "Append"}})
    assert not rewritten_whole({"operation": "MERGE", "operationParameters": {"predicate": "..."}})
    assert not rewritten_whole({})  # a commit whose log entry is gone


def test_a_vacuum_is_due_every_vacuum_every_days_and_never_without_a_retention():
    now = datetime(2026, 12, 4, 12)
    settings = MaintenanceConfig(vacuum_retention_hours=720, vacuum_every_days=7)
    assert vacuum_due(settings, None, now)
    assert not vacuum_due(settings, now - timedelta(days=6, hours=23), now)
    assert vacuum_due(settings, now - timedelta(days=7), now)
    assert not vacuum_due(MaintenanceConfig(vacuum_retention_hours=None), None, now)


def test_a_retention_delta_would_refuse_is_a_user_error_unless_its_check_is_off():
    short = MaintenanceConfig(vacuum_retention_hours=24)
    with pytest.raises(UserError, match="vacuum_retention_hours=24 is below Delta's 168-hour minimum"):
        check_retention(short, retention_check_enabled=True)
    check_retention(short, retention_check_enabled=False)
    check_retention(MaintenanceConfig(vacuum_retention_hours=168), retention_check_enabled=True)
    check_retention(MaintenanceConfig(vacuum_retention_hours=None), retention_check_enabled=True)
