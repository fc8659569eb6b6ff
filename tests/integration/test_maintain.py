"""`phm run maintain`: compaction of tables written a little at a time, vacuum on its schedule, and readers that
see no change in either."""

from __future__ import annotations

import pytest

from phm.config import load_config
from phm.errors import UserError
from phm.runtime.catalog import Catalog
from phm.runtime.jobs import discover_jobs, pipeline_order, run_job
from phm.tables import JOB_RUNS, TABLE_MAINTENANCE

from ..conftest import TEST_CONFIG, test_overrides
from .test_catalog import WIDGETS, content, widgets
from .test_jobs import GADGETS, make_job

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


def config_with(tmp_path, *settings):
    return load_config(str(TEST_CONFIG), [*test_overrides(tmp_path), "maintenance.compact_min_files=3", *settings])


def done(catalog: Catalog, run_id: str | None = None) -> dict[tuple[str, str], tuple]:
    """What maintenance did (of one run), by table and action: files before, after and deleted."""
    rows = [r for r in catalog.read(TABLE_MAINTENANCE.name).collect() if run_id in (None, r.run_id)]
    return {(r.table_name, r.action): (r.files_before, r.files_after, r.files_deleted) for r in rows}


def test_maintain_runs_after_every_other_stage_of_the_refresh():
    assert pipeline_order(discover_jobs())[-1] == "maintain"


def test_maintain_compacts_what_was_appended_not_what_was_rewritten_whole_and_readers_have_nothing_to_redo(
    spark, tmp_path
):
    config = config_with(tmp_path)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    for widget in range(1, 5):  # four appends: four small files
        rows = widgets(spark, [(widget, "red")])
        run_job(make_job("append", lambda ctx, r=rows: ctx.catalog.append(WIDGETS.name, r), (WIDGETS.name,)),
                config, spark)  # fmt: skip

    def copy(ctx):  # a reader that recomputes only when its input changed
        if ctx.unchanged_since_last_success((WIDGETS.name,), (GADGETS.name,)):
            ctx.rows_out = 0
            return
        ctx.catalog.overwrite(GADGETS.name, ctx.catalog.read(WIDGETS.name).repartition(4))  # 4 files, written whole

    reader = make_job("copy", copy, outputs=(GADGETS.name,))
    assert run_job(reader, config, spark).rows_out == 4
    widgets_before = content(catalog.read(WIDGETS.name))
    versions = {name: catalog.version(name) for name in (WIDGETS.name, GADGETS.name)}

    maintain = discover_jobs()["maintain"]
    run_job(maintain, config, spark)
    actions = done(catalog)
    assert actions[(WIDGETS.name, "compact")] == (4, 1, 0)
    assert (JOB_RUNS.name, "compact") in actions  # the ledger gains a file with every run
    assert (GADGETS.name, "compact") not in actions  # its one write laid its files out; the next replaces them
    assert not any(action == "vacuum" for _, action in actions)  # every table is younger than the retention
    assert catalog.version(WIDGETS.name) == versions[WIDGETS.name] + 1
    assert content(catalog.read(WIDGETS.name)) == widgets_before
    # the reader sees the same rows: nothing to redo, nothing written
    assert run_job(reader, config, spark).rows_out == 0
    assert catalog.version(GADGETS.name) == versions[GADGETS.name]
    # nothing more to do but the ledger, which gains files with every run (ops tables record runs, data does not)
    second = run_job(maintain, config, spark).run_id
    assert list(done(catalog, second)) == [(JOB_RUNS.name, "compact")]
    assert catalog.version(WIDGETS.name) == versions[WIDGETS.name] + 1


def test_maintain_vacuums_every_table_on_its_schedule_and_refuses_a_retention_delta_would(spark, tmp_path):
    config = config_with(tmp_path, "maintenance.vacuum_retention_hours=0")
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    for colour in ("red", "blue"):  # the first write's file is not needed by the second version
        rows = widgets(spark, [(1, colour)]).repartition(1)
        run_job(make_job("rewrite", lambda ctx, r=rows: ctx.catalog.overwrite(WIDGETS.name, r), (WIDGETS.name,)),
                config, spark)  # fmt: skip
    maintain = discover_jobs()["maintain"]
    with pytest.raises(UserError, match="maintenance.vacuum_retention_hours=0 is below Delta's 168-hour minimum"):
        run_job(maintain, config, spark)
    spark.conf.set(RETENTION_CHECK, "false")
    try:
        run_job(maintain, config, spark)
        actions = done(catalog)
        assert actions[(WIDGETS.name, "vacuum")] == (1, 1, 1)
        assert (JOB_RUNS.name, "vacuum") in actions  # every table is checked, each recorded
        assert content(catalog.read(WIDGETS.name)) == [(1, "blue")]
        # the next pass is due in vacuum_every_days: the next run vacuums nothing
        later = run_job(maintain, config, spark).run_id
        assert not any(action == "vacuum" for (_, action) in done(catalog, later))
    finally:
        spark.conf.unset(RETENTION_CHECK)
