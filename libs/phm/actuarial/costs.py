"""Cost per person by segment, age-sex band and segment x age group, and how concentrated cost is.

Cost is gold.segments' annual cost: every contact's cost in the 12 months to the date at the configured unit
costs (configs/unit_costs.yaml), social care packages and placements by their days. Per person: the mean
over the living people of a group, with a normal 95% interval (the groups are large and the mean's sampling
distribution near normal even though cost is skewed). Concentration: the share of all cost spent on the
costliest 1% ... 100% of people (the "top 1 / 5 / 20%" of NHS PHM cost profiling) and the Gini coefficient.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.features.build import age_group

BREAKDOWNS = {  # breakdown -> the columns it groups by (the rest are 'all')
    "all": (),
    "segment": ("segment",),
    "age_sex": ("age_band", "sex"),
    "segment_age_group": ("segment", "age_group"),
}
GROUP_COLUMNS = ("segment", "age_band", "age_group", "sex")
Z95 = 1.959963984540054


def cost_sums(history: DataFrame) -> pd.DataFrame:
    """Per date x segment x age band x age group x sex: people, cost, cost squared, emergency admissions."""
    return (
        history.withColumn("age_group", age_group(F.col("age")))
        .fillna("unknown", subset=["age_band", "age_group", "sex"])
        .groupBy("reference_date", *GROUP_COLUMNS)
        .agg(
            F.count(F.lit(1)).alias("people"),
            F.sum("annual_cost").alias("cost"),
            F.sum(F.col("annual_cost") * F.col("annual_cost")).alias("cost_squared"),
            F.sum("emergency_admissions_12m").alias("emergency_admissions"),
        )
        .toPandas()
    )


def cost_breakdown(sums: pd.DataFrame) -> pd.DataFrame:
    """One row per date x breakdown x group: people, total cost, cost per person (95% interval), shares of the
    people and of the cost, emergency admissions and their rate per 1,000."""
    frames = []
    for breakdown, columns in BREAKDOWNS.items():
        keys = ["reference_date", *columns]
        grouped = sums.groupby(keys, dropna=False)[["people", "cost", "cost_squared", "emergency_admissions"]].sum()
        grouped = grouped.reset_index()
        for column in GROUP_COLUMNS:
            if column not in columns:
                grouped[column] = "all"
        grouped["breakdown"] = breakdown
        frames.append(grouped)
    table = pd.concat(frames, ignore_index=True)
    totals = table[table["breakdown"] == "all"].set_index("reference_date")
    n = table["people"].astype(float)
    mean = table["cost"] / n
    variance = (table["cost_squared"] / n - mean**2).clip(lower=0) * n / (n - 1).clip(lower=1)
    half = Z95 * np.sqrt(variance / n)
    return table.assign(
        total_cost=table["cost"].round(2),
        cost_per_person=mean.round(2),
        cost_ci_low=(mean - half).clip(lower=0).round(2),
        cost_ci_high=(mean + half).round(2),
        share_of_people=n / table["reference_date"].map(totals["people"]),
        share_of_cost=table["cost"] / table["reference_date"].map(totals["cost"]),
        emergency_admissions_per_1000=1000 * table["emergency_admissions"] / n,
    ).drop(columns=["cost", "cost_squared"])


def annual_costs(history: DataFrame, as_of) -> np.ndarray:
    """Every living person's annual cost at `as_of`, as an array (one double per person: 8 MB per million)."""
    rows = history.where(F.col("reference_date") == F.lit(as_of)).select("annual_cost").toPandas()
    return rows["annual_cost"].to_numpy(dtype=float)


def cost_concentration(costs: np.ndarray) -> pd.DataFrame:
    """top_percent 1..100 -> people (the costliest ceil(n x p / 100)) and their share of all cost; and the Gini
    coefficient of cost (0: everyone costs the same; 1: one person costs everything)."""
    ordered = np.sort(np.asarray(costs, dtype=float))[::-1]
    n, total = len(ordered), ordered.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(ordered)])
    percents = np.arange(1, 101)
    people = np.ceil(n * percents / 100 - 1e-9).astype(int)
    share = cumulative[people] / total if total > 0 else np.full(len(percents), np.nan)
    ascending = ordered[::-1]
    ranks = np.arange(1, n + 1)
    gini = float((2 * (ranks * ascending).sum() / (n * total)) - (n + 1) / n) if total > 0 else float("nan")
    return pd.DataFrame({"top_percent": percents, "people": people, "cost_share": share, "gini": gini})
