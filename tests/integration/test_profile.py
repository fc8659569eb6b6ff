"""Profiles and inequalities on the refreshed tiny ICS: everyone counted, every published number disclosure-safe."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

from phm.tables import EXPECTED_PREVALENCE, INEQUALITIES, PERSON, POPULATION_PROFILE, SEGMENTS

pytestmark = pytest.mark.slow


def test_the_profile_counts_everyone_and_publishes_only_safe_numbers(sample):
    config, catalog = sample
    rules = config.profiling.disclosure
    profile = catalog.read(POPULATION_PROFILE.name).toPandas()
    living = catalog.read(SEGMENTS.name).where(F.col("age").isNotNull()).count()
    people = profile[profile["measure"] == "people"]
    system = people[(people["tier"] == "system") & (people["breakdown"] == "all")]["numerator"].item()
    assert abs(system - living) <= rules.rounding_base / 2
    for tier in ("place", "pcn"):  # every person in exactly one area of each tier: the published areas, within
        # rounding, and the suppressed (1 to 7 if primary; any size if secondary) add up to everyone
        areas = people[(people["tier"] == tier) & (people["breakdown"] == "all")]
        shown = areas["numerator"].dropna()
        primary, secondary = (areas["suppressed"] == "primary").sum(), (areas["suppressed"] == "secondary").sum()
        rest = living - shown.sum()
        assert rest >= primary - len(shown) * rules.rounding_base / 2
        if not secondary:
            assert rest <= primary * rules.max_suppressed + len(shown) * rules.rounding_base / 2
        assert secondary != 1 or primary >= 1  # a secondary cell only ever stands beside a primary one
    for column in ("numerator", "denominator"):
        counts = profile[column].dropna()
        assert (counts % rules.rounding_base == 0).all(), column
    hidden = profile[profile["suppressed"].notna()]
    assert len(hidden) and hidden[["numerator", "denominator", "value", "standardised_value"]].isna().all().all()
    # a set of cells adding up to a published total with exactly one suppressed cell has no other non-zero cell
    # left to suppress (the rest are zeros, so the total is that cell and suppressed with it)
    groups = profile[profile["breakdown"] != "all"].groupby(["tier", "area_code", "breakdown", "measure"])
    for key, cells in groups:
        if cells["suppressed"].notna().sum() == 1:
            assert (cells[cells["suppressed"].isna()]["numerator"].fillna(0) == 0).all(), key
    shown = profile[profile["suppressed"].isna() & profile["value"].notna()]
    assert (shown["ci_low"] <= shown["value"]).all() and (shown["value"] <= shown["ci_high"]).all()
    prevalence = shown[shown["measure"].str.startswith("prevalence:")]
    assert prevalence["value"].between(0, 100).all() and len(prevalence)


def test_inequality_gradients_cover_every_measure_for_the_system(sample):
    _, catalog = sample
    gradients = catalog.read(INEQUALITIES.name).where("tier = 'system'").toPandas()
    profiled = set(catalog.read(POPULATION_PROFILE.name).select("measure").distinct().toPandas()["measure"])
    assert set(gradients["measure"]) == profiled - {"people"}
    living = catalog.read(SEGMENTS.name).where("age IS NOT NULL").join(catalog.read(PERSON.name), "person_id")
    deciles = living.where("imd_decile IS NOT NULL").select("imd_decile").distinct().count()
    emergency = gradients[gradients["measure"] == "emergency_admissions"].iloc[0]
    assert emergency["deciles"] == deciles
    if deciles >= 3:
        assert emergency["sii_ci_low"] <= emergency["sii"] <= emergency["sii_ci_high"]
        assert emergency["rii"] == pytest.approx(emergency["sii"] / emergency["mean"])
    else:  # no gradient to fit (the tiny ICS may sit in one or two deciles): nulls, not numbers
        assert pd.isna(emergency["sii"]) and pd.isna(emergency["rii"])


def test_expected_prevalence_recovers_the_system_total_and_its_undiagnosed_gap(sample):
    config, catalog = sample
    rules, shares = config.profiling.disclosure, config.profiling.undiagnosed
    expected = catalog.read(EXPECTED_PREVALENCE.name).toPandas()
    conditions = set(catalog.read(POPULATION_PROFILE.name).where("measure LIKE 'prevalence:%'")
                     .select(F.substring_index("measure", ":", -1)).distinct().toPandas().iloc[:, 0])  # fmt: skip
    assert set(expected["condition"]) == conditions and set(expected["tier"]) == {"system", "place", "pcn"}
    system = expected[(expected["tier"] == "system") & expected["suppressed"].isna()].set_index("condition")
    assert len(system) and (system["ratio"] - 1).abs().max() < 1e-9  # the system is its own standard
    for name, share in shares.items():
        if name in system.index:
            row = system.loc[name]  # recorded rounded to 5; expected from the unrounded count
            assert row["expected_cases"] * (1 - share) == pytest.approx(row["recorded"], abs=rules.rounding_base / 2)
            assert row["undiagnosed_gap"] == pytest.approx(row["expected_cases"] * share, abs=rules.rounding_base)
    assert expected[~expected["condition"].isin(list(shares))]["undiagnosed_gap"].isna().all()
    hidden = expected[expected["suppressed"].notna()]
    assert hidden[["recorded", "ratio", "undiagnosed_gap"]].isna().all().all()
