"""What `phm status` reports: every table's version, rows and writer, and the latest runs (those in progress, or
left behind by a process that died, from their run markers; the rest from the ledger)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from phm.runtime.catalog import Catalog
from phm.runtime.ledger import Ledger
from phm.tables import JOB_RUNS

RUN_FIELDS = ("run_id", "job", "parent_run_id", "status", "started_at", "ended_at", "rows_out", "error")


def collect_status(catalog: Catalog, recent_runs: int = 40) -> dict[str, Any]:
    tables = [
        {
            "name": info.name,
            "version": info.version,
            "rows": info.rows,
            "run_id": info.run_id,
            "updated_at": info.updated_at,
            "path": info.path,
            "grain": info.grain,
        }
        for info in catalog.list_tables()
    ]
    running = Ledger(catalog.spark, catalog.warehouse).left_running()
    runs: list[dict[str, Any]] = [{name: record.as_row()[name] for name in RUN_FIELDS} for record in running]
    if catalog.exists(JOB_RUNS.name):
        rows = (
            catalog.read(JOB_RUNS.name)
            .orderBy(F.col("started_at").desc(), F.col("run_id").desc())
            .select(*RUN_FIELDS)
            .limit(max(recent_runs - len(runs), 0))
            .collect()
        )
        runs += [row.asDict() for row in rows]
    return {"warehouse": catalog.warehouse, "tables": tables, "runs": runs}
