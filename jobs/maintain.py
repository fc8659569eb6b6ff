"""Table maintenance: `phm run maintain`, the refresh's last stage.

Compacts the small files of tables written a little at a time and, every
`maintenance.vacuum_every_days`, deletes the files no version of the last
`maintenance.vacuum_retention_hours` needs (phm.runtime.maintenance). No row
of any table changes; what was done goes to ops.table_maintenance, written
only when something was (a refresh with nothing new writes no table version).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark.sql import functions as F

from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.maintenance import (
    RETENTION_CHECK_CONF,
    VACUUM,
    check_retention,
    maintain_tables,
    vacuum_due,
)
from phm.runtime.script import main_for
from phm.tables import TABLE_MAINTENANCE

log = logging.getLogger("phm.jobs.maintain")

SPEC = JobSpec(
    name="maintain",
    description="every table: small files compacted, files no version of the retention needs vacuumed",
    outputs=(TABLE_MAINTENANCE.name,),
    # After every stage of the refresh (these are the stages no other stage depends on).
    depends_on=("report", "evaluate_risk", "evaluate_impactability", "evaluate_person_model"),
)


def run(ctx: JobContext) -> None:
    settings, catalog = ctx.config.maintenance, ctx.catalog
    check_retention(settings, ctx.spark.conf.get(RETENTION_CHECK_CONF, "true").lower() != "false")
    now = datetime.now(UTC).replace(tzinfo=None)
    vacuum = vacuum_due(settings, _last_vacuum(ctx), now)
    rows = maintain_tables(catalog, catalog.existing_tables(), settings, vacuum, now)
    acted = [r for r in rows if r["action"] != VACUUM or r["files_deleted"]]
    log.info("maintain: %d table(s) compacted or vacuumed%s", len(acted),
             f" ({len(rows) - len(acted)} more checked for a vacuum)" if vacuum else "; no vacuum due")  # fmt: skip
    if rows:
        done = [{"run_id": ctx.run_id, **row} for row in rows]
        catalog.append(TABLE_MAINTENANCE.name, ctx.spark.createDataFrame(done, TABLE_MAINTENANCE.schema))


def _last_vacuum(ctx: JobContext) -> datetime | None:
    if not ctx.catalog.exists(TABLE_MAINTENANCE.name):
        return None
    done = ctx.catalog.read(TABLE_MAINTENANCE.name).where(F.col("action") == VACUUM).agg(F.max("done_at"))
    return done.first()[0]


if __name__ == "__main__":
    main_for(SPEC.name)
