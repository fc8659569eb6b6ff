"""The warehouse writer lock: where it lives, re-entrancy within a process, the holder named to others.
(Another process waiting or failing: tests/integration/test_reliability.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from phm.runtime.lock import LOCK_FILE, holds_lock, lock_path, warehouse_lock


def test_the_lock_lives_in_a_local_warehouse_and_object_stores_have_none(tmp_path):
    assert lock_path(str(tmp_path)) == tmp_path / LOCK_FILE
    assert lock_path(f"file://{tmp_path}") == tmp_path / LOCK_FILE
    assert lock_path("s3a://bucket/warehouse") is None


def test_a_process_takes_its_own_lock_again_and_releases_it_with_the_outermost_block(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    with warehouse_lock(warehouse, "refresh-1") as outer:
        assert outer and holds_lock(warehouse)
        with warehouse_lock(warehouse, "stage-1") as inner:
            assert not inner and holds_lock(warehouse)
        assert holds_lock(warehouse)
        holder = json.loads(Path(lock_path(warehouse)).read_text())
        assert holder["holder"] == "refresh-1" and {"pid", "host", "since"} <= set(holder)
    assert not holds_lock(warehouse)
    with warehouse_lock(warehouse, "refresh-2") as again:  # released: taken afresh
        assert again


def test_an_object_store_warehouse_is_not_locked(tmp_path, caplog):
    with warehouse_lock("s3a://bucket/warehouse", "refresh-1") as taken:
        assert not taken
    assert "not on a local file system" in caplog.text
