"""Population profiles and inequalities: `phm run profile` (module not named profile.py: run as a script, it
 would shadow the standard library's profile module that pyspark imports).

Reads gold.segments (living people at the reference date, with their conditions, activity and cost) and
gold.person (IMD decile), and writes, for the reference date:
- mart.population_profile: by tier (system, place, PCN) and by age band, sex, ethnicity and IMD quintile,
  people, recorded prevalence of each condition, emergency admissions and A&E attendances per 1,000 and
  cost per head, crude and age-standardised (ESP 2013) with 95% intervals;
- mart.inequalities: the slope and relative index of inequality of each measure across IMD deciles, for
  the system and each place;
- mart.expected_prevalence: recorded against expected prevalence per area (age-sex indirect
  standardisation) and, for conditions with a national undiagnosed share, the undiagnosed gap.
All are published tables: disclosure control (profiling.disclosure) is applied before they are written.
Definitions and sources: phm.profiling.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.governance.disclosure import disclosure_control
from phm.person.definitions import load_codelists
from phm.profiling.expected import expected_prevalence
from phm.profiling.profiles import UNKNOWN, band_counts, inequalities, profile
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.tables import EXPECTED_PREVALENCE, INEQUALITIES, PERSON, POPULATION_PROFILE, SEGMENTS

log = logging.getLogger("phm.jobs.profile")

SPEC = JobSpec(
    name="profile",
    description="gold.segments -> mart.population_profile (crude and ESP 2013 standardised) and mart.inequalities "
    "(SII / RII across IMD deciles) and mart.expected_prevalence (the undiagnosed gap), disclosure-controlled",
    outputs=(POPULATION_PROFILE.name, INEQUALITIES.name, EXPECTED_PREVALENCE.name),
    depends_on=("segment",),
)
PROFILE_VALUES = ("value", "ci_low", "ci_high", "standardised_value", "standardised_ci_low", "standardised_ci_high")
EXPECTED_VALUES = (
    "recorded_prevalence", "expected_recorded", "ratio", "ratio_ci_low", "ratio_ci_high", "expected_cases",
    "expected_prevalence", "undiagnosed_gap",
)  # fmt: skip


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    settings = config.profiling
    for needed in (SEGMENTS.name, PERSON.name):
        if not catalog.exists(needed):
            raise UserError(f"profile: {needed} does not exist; run `phm run segment` first")
    if ctx.unchanged_since_last_success((SEGMENTS.name, PERSON.name), SPEC.outputs):
        log.info("profile: gold.segments is unchanged since the last profile; nothing to do")
        ctx.rows_out = 0
        return
    segments = catalog.read(SEGMENTS.name)
    reference_date = segments.agg(F.max("reference_date")).first()[0]
    if reference_date is None:
        raise UserError("profile: gold.segments is empty; run `phm run segment` on a loaded population")
    segments = segments.where(F.col("reference_date") == reference_date)
    no_age = segments.where(F.col("age").isNull()).count()
    if no_age:
        log.warning("profile: %d living people have no age and are left out of the profiles", no_age)
    conditions = sorted(load_codelists(f"{config.resolve(config.person_model.codelists)}/conditions"))
    unknown = sorted(set(settings.undiagnosed) - set(conditions))
    if unknown:
        raise UserError(f"profile: profiling.undiagnosed names unknown condition(s) {', '.join(unknown)}; use the "
                        "names of the code lists in person_model.codelists")  # fmt: skip
    counts = band_counts(segments, catalog.read(PERSON.name), conditions, settings.system_code)
    rules = settings.disclosure
    published = disclosure_control(
        profile(counts, conditions),
        counts=("numerator", "denominator"),
        dependent=PROFILE_VALUES,
        sets=(("tier", "area_code", "breakdown", "measure"), ("tier", "breakdown", "group", "measure")),
        max_suppressed=rules.max_suppressed,
        rounding_base=rules.rounding_base,
    )
    gradients = inequalities(counts, conditions, settings.simulations, settings.seed)
    gradients = disclosure_control(
        gradients, counts=("people",), dependent=(), sets=(), max_suppressed=rules.max_suppressed,
        rounding_base=rules.rounding_base,
    ).drop(columns="suppressed")  # fmt: skip
    expected = disclosure_control(
        expected_prevalence(counts, conditions, settings.undiagnosed), counts=("people", "recorded"),
        dependent=EXPECTED_VALUES, sets=("tier", "condition"), max_suppressed=rules.max_suppressed,
        rounding_base=rules.rounding_base,
    )  # fmt: skip
    where = f"reference_date = '{reference_date}'"
    for spec, frame in ((POPULATION_PROFILE, published), (INEQUALITIES, gradients), (EXPECTED_PREVALENCE, expected)):
        frame = frame.assign(reference_date=pd.Timestamp(reference_date).date())
        catalog.overwrite(spec.name, catalog.from_pandas(spec.name, frame), where)
    system = published[(published["tier"] == "system") & (published["breakdown"] == "all")].set_index("measure")
    log.info(
        "profile: %s people at %s; emergency admissions %.0f per 1,000 (standardised %.0f); %d of %d published "
        "rows suppressed",
        system.loc["people", "numerator"], reference_date, system.loc["emergency_admissions", "value"],
        system.loc["emergency_admissions", "standardised_value"], published["suppressed"].notna().sum(),
        len(published),
    )  # fmt: skip
    for row in expected[(expected["tier"] == "system") & expected["undiagnosed_share"].notna()].itertuples():
        pcns = expected[(expected["tier"] == "pcn") & (expected["condition"] == row.condition)]
        lowest = pcns[pcns["area_code"] != UNKNOWN].nsmallest(1, "ratio")
        log.info("profile: %s recorded %.1f%%, expected %.1f%% (undiagnosed share %.0f%%): gap %.0f people; lowest "
                 "PCN recorded / expected %s", row.condition, row.recorded_prevalence, row.expected_prevalence,
                 100 * row.undiagnosed_share, row.undiagnosed_gap,
                 f"{lowest['ratio'].iloc[0]:.2f}" if len(lowest) else "n/a")  # fmt: skip
    for row in gradients[gradients["tier"] == "system"].itertuples():
        if row.measure in ("emergency_admissions", "cost") or row.measure.startswith("prevalence:diabetes"):
            log.info("profile: %s SII %+.2f %s (95%% CI %+.2f to %+.2f), RII %+.2f", row.measure, row.sii, row.unit,
                     row.sii_ci_low, row.sii_ci_high, row.rii)  # fmt: skip


if __name__ == "__main__":
    main_for(SPEC.name)
