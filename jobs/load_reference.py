"""Load the public reference data shipped in configs/reference into silver tables."""

import logging

from phm.errors import SchemaMismatchError
from phm.reference.qof import RAW_COLUMNS, is_imd_decile_row, standardise_qof_prevalence
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.tables import QOF_PREVALENCE

log = logging.getLogger("phm.jobs.load_reference")

SPEC = JobSpec(
    name="load_reference",
    description="QOF prevalence by IMD decile (calibration and expected-prevalence reference)",
    outputs=(QOF_PREVALENCE.name,),
)


def run(ctx: JobContext) -> None:
    path = ctx.config.resolve(ctx.config.reference.qof_prevalence_csv)
    raw = ctx.spark.read.csv(path, header=True, inferSchema=False, enforceSchema=False)
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise SchemaMismatchError(f"{path}: missing columns {missing}; present {raw.columns}")
    ctx.rows_in = raw.count()
    outside_deciles = raw.where(~is_imd_decile_row()).count()
    log.info(
        "QOF reference: %d of %d rows have no IMD decile (e.g. Wales) and are left out", outside_deciles, ctx.rows_in
    )
    ctx.catalog.overwrite(QOF_PREVALENCE.name, standardise_qof_prevalence(raw))


if __name__ == "__main__":
    main_for(SPEC.name)
