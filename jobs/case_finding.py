"""Case-finding cohorts: `phm run case_finding`.

Reads gold.segments, gold.observations and gold.events; for every cohort in cohorts.definitions
(configs/cohorts/*.yaml: a population, a rule and a priority in Spark SQL over the cohort columns, with the
source of its clinical definition) writes mart.cohort_<name>: its people (pseudonyms only) with their PCN,
practice, rank in their PCN's list and the evidence the spec names; and mart.cohort_summary: cohort sizes per
PCN, disclosure-controlled for publication. A cohort added as a file is picked up without code. Re-identifying
a list for a practice goes through the audited vault (issue 11), never through this table.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import functions as F

from phm.cohorts.case_finding import cohort_columns, cohort_members, cohort_summary, cohort_table, load_cohort_specs
from phm.errors import UserError
from phm.governance.disclosure import disclosure_control
from phm.person.definitions import load_person_model_definitions
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.tables import COHORT_SUMMARY, EVENTS, OBSERVATIONS, SEGMENTS

log = logging.getLogger("phm.jobs.case_finding")


def cohort_columns_at(catalog, config, reference_date):
    """The cohort columns of every living person of gold.segments at the reference date."""
    segments = catalog.read(SEGMENTS.name).where(F.col("reference_date") == reference_date)
    observation_names = list(load_person_model_definitions(config).observations.observations)
    return cohort_columns(
        segments, catalog.read(OBSERVATIONS.name), catalog.read(EVENTS.name), reference_date,
        config.cohorts.lookback_months, observation_names,
    )  # fmt: skip


def cohort_tables(config) -> tuple[str, ...]:
    """mart.cohort_<name> of every cohort defined (declared here, so the runner knows them before the run)."""
    specs = load_cohort_specs(config.resolve(config.cohorts.definitions))
    return tuple(cohort_table(spec).name for spec, _ in specs.values())


SPEC = JobSpec(
    name="case_finding",
    description="configs/cohorts/*.yaml over gold.segments, observations and events -> mart.cohort_<name> per PCN "
    "and mart.cohort_summary (disclosure-controlled)",
    outputs=(COHORT_SUMMARY.name,),
    outputs_for=cohort_tables,
    depends_on=("segment",),
)


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    specs = load_cohort_specs(config.resolve(config.cohorts.definitions))
    tables = {name: cohort_table(spec) for name, (spec, _) in specs.items()}
    for needed in (SEGMENTS.name, OBSERVATIONS.name, EVENTS.name):
        if not catalog.exists(needed):
            raise UserError(f"case_finding: {needed} does not exist; run `phm run segment` first")
    if ctx.unchanged_since_last_success((SEGMENTS.name, OBSERVATIONS.name, EVENTS.name), SPEC.outputs_of(config)):
        log.info("case_finding: the person model and the cohort definitions are unchanged; nothing to do")
        ctx.rows_out = 0
        return
    segments = catalog.read(SEGMENTS.name)
    reference_date = segments.agg(F.max("reference_date")).first()[0]
    if reference_date is None:
        raise UserError("case_finding: gold.segments is empty; run `phm run segment` on a loaded population")
    columns = cohort_columns_at(catalog, config, reference_date).cache()
    summaries = []
    for name, (spec, path) in sorted(specs.items()):
        members = cohort_members(columns, spec, path)
        catalog.overwrite(tables[name].name, members, replace_where=f"reference_date = '{reference_date}'")
        summaries.append(cohort_summary(catalog.read(tables[name].name).where(
            F.col("reference_date") == reference_date), columns, spec).toPandas())  # fmt: skip
    columns.unpersist()
    counts = pd.concat(summaries, ignore_index=True)
    counts["per_1000"] = 1000 * counts["people"] / counts["population"].where(counts["population"] > 0)
    rules = config.profiling.disclosure
    published = disclosure_control(
        counts[counts["pcn_code"] != "all"], counts=("people", "population"), dependent=("per_1000",),
        sets=("cohort",), max_suppressed=rules.max_suppressed, rounding_base=rules.rounding_base,
    )  # fmt: skip
    totals = disclosure_control(
        counts[counts["pcn_code"] == "all"], counts=("people", "population"), dependent=("per_1000",), sets=(),
        max_suppressed=rules.max_suppressed, rounding_base=rules.rounding_base,
    )  # fmt: skip
    frame = pd.concat([published, totals], ignore_index=True).assign(reference_date=reference_date)
    frame = frame[COHORT_SUMMARY.schema.names]
    catalog.overwrite(
        COHORT_SUMMARY.name,
        catalog.from_pandas(COHORT_SUMMARY.name, frame),
        replace_where=f"reference_date = '{reference_date}'",
    )
    for row in counts[counts["pcn_code"] == "all"].itertuples():
        log.info("case_finding: %s: %d of %d people (%.1f per 1,000) at %s", row.cohort, row.people, row.population,
                 row.per_1000 or 0.0, reference_date)  # fmt: skip


if __name__ == "__main__":
    main_for(SPEC.name)
