"""Population profiles by tier and group, and their inequality gradients.

Every living person of gold.segments at the reference date is counted once per tier (system, place, PCN:
their own area) and once per breakdown (all, age band, sex, ethnicity, IMD quintile; IMD decile for the
inequality gradients). Measures: people; recorded prevalence of each condition (percent; gold.segments'
conditions); emergency admissions and A&E attendances in the last 12 months (per 1,000 people); annual
cost per head (pounds). Prevalence and activity are given crude, with Wilson / exact Poisson intervals,
and directly standardised to the European Standard Population 2013 with Dobson intervals
(phm.profiling.standardise, which names its sources); cost per head is crude with a normal interval.

Spark counts people and events per tier x area x breakdown x group x ESP age band (one pass, exploded);
the arithmetic runs on that small aggregate in pandas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.profiling.inequalities import slope_index
from phm.profiling.standardise import (
    ESP2013,
    ESP_BANDS,
    directly_standardised,
    rate_interval,
    wilson_interval,
)

SYSTEM = "system"
TIERS = {SYSTEM: None, "place": "place_code", "pcn": "pcn_code"}
BREAKDOWNS = ("all", "age_band", "sex", "ethnicity", "imd_quintile")
DECILE = "imd_decile"
UNKNOWN = "unknown"
ACTIVITY = {"emergency_admissions": "emergency_admissions_12m", "ae_attendances": "ae_attendances_12m"}
PERCENT, PER_1000, POUNDS = "percent", "per 1,000", "pounds per head"
Z95 = 1.959963984540054


def band_counts(segments: DataFrame, person: DataFrame, conditions: Sequence[str], system_code: str) -> pd.DataFrame:
    """People, events and cost per tier x area_code x breakdown x group x esp_band, with one `cond:<name>`
    column per condition (people with it), as a pandas frame (small: areas x groups x 19 bands)."""
    people = segments.join(person.select("person_id", DECILE), "person_id", "left")
    area = {tier: F.lit(system_code) if column is None else F.coalesce(F.col(column), F.lit(UNKNOWN))
            for tier, column in TIERS.items()}  # fmt: skip
    tiers = F.array(*[F.struct(F.lit(tier).alias("tier"), area[tier].alias("area_code")) for tier in TIERS])
    groups = F.array(
        *[
            F.struct(
                F.lit(name).alias("breakdown"),
                (F.lit("all") if name == "all" else F.coalesce(F.col(name).cast("string"), F.lit(UNKNOWN))).alias(
                    "group"
                ),
            )
            for name in (*BREAKDOWNS, DECILE)
        ]
    )
    # greatest / least skip nulls, so a person without an age is kept null explicitly (and left out)
    band = F.when(F.col("age").isNotNull(), F.least(F.greatest(F.floor(F.col("age") / 5), F.lit(0)),
                                                     F.lit(ESP_BANDS - 1)).cast("int"))  # fmt: skip
    exploded = people.select(
        F.explode(tiers).alias("t"),
        F.explode(groups).alias("g"),
        band.alias("esp_band"),
        "conditions",
        "annual_cost",
        *ACTIVITY.values(),
    ).where(F.col("esp_band").isNotNull())
    keys = [F.col("t.tier").alias("tier"), F.col("t.area_code").alias("area_code"),
            F.col("g.breakdown").alias("breakdown"), F.col("g.group").alias("group"), "esp_band"]  # fmt: skip
    aggregates = [
        F.count(F.lit(1)).alias("people"),
        F.sum("annual_cost").alias("cost"),
        F.sum(F.col("annual_cost") * F.col("annual_cost")).alias("cost_squared"),
        *[F.sum(column).alias(measure) for measure, column in ACTIVITY.items()],
        *[F.sum(F.array_contains("conditions", name).cast("int")).alias(f"cond:{name}") for name in conditions],
    ]
    return exploded.groupBy(*keys).agg(*aggregates).toPandas()


KEYS = ["tier", "area_code", "breakdown", "group"]


def _standardised(events: np.ndarray, people: np.ndarray, weights: np.ndarray, scale: float, where: np.ndarray) -> dict:
    dsr, low, high, _ = directly_standardised(events, people, weights)
    return {name: np.where(where, scale * value, np.nan) for name, value in
            (("standardised_value", dsr), ("standardised_ci_low", low), ("standardised_ci_high", high))}  # fmt: skip


def profile(counts: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """One row per tier x area x breakdown x group x measure (mart.population_profile before disclosure
    control): numerator, denominator, crude value and interval, standardised value and interval. Every group's
    figures are computed at once, from a groups x age bands array per measure."""
    weights = np.asarray(ESP2013, dtype=float)
    shown = counts[counts["breakdown"] != DECILE]
    measures = [c for c in shown.columns if c not in (*KEYS, "esp_band")]
    cube = (
        shown.groupby([*KEYS, "esp_band"], sort=True)[measures]
        .sum()
        .unstack("esp_band", fill_value=0)
        .reindex(columns=pd.MultiIndex.from_product([measures, range(ESP_BANDS)]), fill_value=0)
    )

    def bands(measure: str) -> np.ndarray:  # groups x ESP bands
        return cube[measure].to_numpy(dtype=float)

    people = bands("people")
    n = people.sum(axis=1)
    # within one age band there is nothing to standardise
    standardise = np.asarray(cube.index.get_level_values("breakdown") != "age_band")

    def rate(measure: str, unit: str, scale: float, events: np.ndarray, interval) -> dict:
        x = events.sum(axis=1)
        low, high = interval(x, n)
        return {"measure": measure, "unit": unit, "numerator": x.astype(int), "denominator": n.astype(int),
                "value": scale * x / n, "ci_low": scale * low, "ci_high": scale * high,
                **_standardised(events, people, weights, scale, standardise)}  # fmt: skip

    parts = [{"measure": "people", "unit": "people", "numerator": n.astype(int)}]
    parts += [rate(f"prevalence:{c}", PERCENT, 100, bands(f"cond:{c}"), wilson_interval) for c in conditions]
    parts += [rate(measure, PER_1000, 1000, bands(measure), rate_interval) for measure in ACTIVITY]
    mean = bands("cost").sum(axis=1) / n
    sd = np.sqrt(np.maximum(bands("cost_squared").sum(axis=1) / n - mean * mean, 0.0) * n / np.maximum(n - 1, 1))
    half = Z95 * sd / np.sqrt(n)
    parts.append({"measure": "cost", "unit": POUNDS, "denominator": n.astype(int), "value": mean,
                  "ci_low": mean - half, "ci_high": mean + half})  # fmt: skip
    keys = cube.index.to_frame(index=False)
    frames = [keys.assign(_group=range(len(keys)), _measure=order, **part) for order, part in enumerate(parts)]
    rows = pd.concat(frames, ignore_index=True).sort_values(["_group", "_measure"], kind="stable")
    return rows.drop(columns=["_group", "_measure"]).reset_index(drop=True)


def inequalities(counts: pd.DataFrame, conditions: Sequence[str], simulations: int, seed: int) -> pd.DataFrame:
    """SII and RII across IMD deciles of every profile measure, per system and place (PCNs are too small
    for ten deciles): age-standardised prevalence and activity, crude cost per head."""
    weights = np.asarray(ESP2013, dtype=float)
    deciles = counts[(counts["breakdown"] == DECILE) & (counts["group"] != UNKNOWN) & (counts["tier"] != "pcn")]
    rows = []
    for (tier, area_code), cells in deciles.groupby(["tier", "area_code"], sort=True):
        by_decile = {
            int(decile): group.groupby("esp_band").sum(numeric_only=True).reindex(range(ESP_BANDS), fill_value=0)
            for decile, group in cells.groupby("group")
        }
        numbers = np.array(sorted(by_decile), dtype=float)
        people = np.array([by_decile[d]["people"].sum() for d in sorted(by_decile)], dtype=float)
        measures = [(f"prevalence:{name}", f"cond:{name}", PERCENT, 100.0) for name in conditions]
        measures += [(measure, measure, PER_1000, 1000.0) for measure in ACTIVITY]
        for measure, column, unit, scale in measures:
            standardised = [
                directly_standardised(by_decile[d][column], by_decile[d]["people"], weights) for d in sorted(by_decile)
            ]
            value = scale * np.array([s[0] for s in standardised])
            error = scale * np.array([s[3] for s in standardised])
            rows.append(_inequality(tier, area_code, measure, unit, True, numbers, people, value, error,
                                    simulations, seed))  # fmt: skip
        cost = np.array([by_decile[d]["cost"].sum() for d in sorted(by_decile)])
        squares = np.array([by_decile[d]["cost_squared"].sum() for d in sorted(by_decile)])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = cost / people
            error = np.sqrt(np.maximum(squares / people - mean * mean, 0.0) / people)
        cost_row = _inequality(tier, area_code, "cost", POUNDS, False, numbers, people, mean, error, simulations, seed)
        rows.append(cost_row)
    return pd.DataFrame(rows)


def _inequality(tier, area_code, measure, unit, standardised, deciles, people, value, error, simulations, seed) -> dict:
    result = slope_index(deciles, people, value, error, simulations=simulations, seed=seed)
    return {"tier": tier, "area_code": area_code, "measure": measure, "unit": unit, "standardised": standardised,
            "people": int(people.sum()), "deciles": result.deciles, "mean": result.mean, "sii": result.sii,
            "sii_ci_low": result.sii_low, "sii_ci_high": result.sii_high, "rii": result.rii,
            "rii_ci_low": result.rii_low, "rii_ci_high": result.rii_high}  # fmt: skip
