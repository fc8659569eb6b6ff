"""The population's segments at a series of past dates, the moves between them, and the aggregates the
actuarial model is fitted on.

Segments at an earlier date are built exactly as gold.segments is at the reference date
(phm.segmentation.segments.segments_by_date: the persons living and seen by then, conditions current then, the
12 months of activity before it), one date every `step_months` back from the reference date while the
history still holds `min_history_months` before it. Between two consecutive dates a person either moves to
a segment (possibly the same), dies (a death recorded in between), or is lost (neither: not seen again,
which the sources here cannot tell from a move away; kept as its own state so that every person is
accounted for). Persons seen for the first time between two dates are entrants (births, people moving in).
The cost of a step is every contact's cost in the 12 months to its end date (gold.segments' annual cost),
for the decedents too (their last months of care).
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.features.build import age_group
from phm.frames import literal_frame
from phm.person.conditions import AS_OF, as_of_dates
from phm.person.definitions import CodeList
from phm.segmentation.definitions import Segmentation
from phm.segmentation.segments import activity_in_year_by_date, people_on, segments_by_date, year_before

DIED, LOST = "died", "lost"
HISTORY_COLUMNS = (
    "person_id", "reference_date", "age", "age_band", "sex", "segment", "segment_order", "emergency_admissions_12m",
    "emergency_cost_12m", "annual_cost",
)  # fmt: skip


def month_end(year: int, month: int) -> date:
    """The last day of a month (month may run past 12 or below 1)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    following = date(year + month // 12, month % 12 + 1, 1)
    return following - timedelta(days=1)


def history_dates(reference_date: date, history_start: date, step_months: int, min_history_months: int) -> list[date]:
    """Month ends every `step_months` back from the reference date (its month's end), oldest first, each with at
    least `min_history_months` of history before it (from `history_start`, the first day of the first period)."""
    earliest = month_end(history_start.year, history_start.month + min_history_months - 1)
    dates, k = [], 0
    while True:
        current = month_end(reference_date.year, reference_date.month - k * step_months)
        if current < earliest:
            return sorted(dates)
        dates.append(current)
        k += 1


def emergency_cost_in_year(events: DataFrame, dates: DataFrame) -> DataFrame:
    """person_id, as_of, emergency_cost_12m: the cost of emergency admissions dated in the 12 months to each
    date of `dates` (an as_of column)."""
    first, last = year_before(F.col(AS_OF))
    return (
        events.where(F.col("emergency"))
        .crossJoin(F.broadcast(dates.select(AS_OF)))
        .where(F.col("event_date").between(first, last))
        .groupBy("person_id", AS_OF)
        .agg(F.round(F.sum(F.coalesce(F.col("cost"), F.lit(0.0))), 2).alias("emergency_cost_12m"))
    )


def step_dates(spark, dates: list[date]) -> DataFrame:
    """(from_date, to_date) of each step between consecutive dates."""
    return literal_frame(spark, list(pairwise(dates)), "from_date date, to_date date")


def segment_history(
    person: DataFrame,
    events: DataFrame,
    coded: DataFrame,
    codelists: dict[str, CodeList],
    segmentation: Segmentation,
    dates: list[date],
    latest: DataFrame | None = None,
) -> DataFrame:
    """gold.segment_history: one row per living person x date, segment and the 12 months' activity and cost
    (every date in one query), from gold.person, gold.events and gold.coded_events (`coded`). `latest`:
    gold.segments at the last date, when it is current (the segment stage built it from these rows and
    definitions), taken rather than built again: the same rows but for the persons not yet seen in any source,
    whom the history leaves out at every date (people_on)."""
    frame = as_of_dates(person.sparkSession, dates)
    costs = emergency_cost_in_year(events, frame).withColumnRenamed(AS_OF, "reference_date")
    if latest is None:
        segments = segments_by_date(person, events, coded, codelists, segmentation, dates)
    else:
        seen = people_on(person, events, as_of_dates(person.sparkSession, dates[-1:])).select("person_id")
        segments = (
            latest.where(F.col("reference_date") == F.lit(dates[-1]))
            .join(seen, "person_id", "left_semi")
            .select(*[c for c in HISTORY_COLUMNS if c != "emergency_cost_12m"])
        )
        if len(dates) > 1:
            earlier = segments_by_date(person, events, coded, codelists, segmentation, dates[:-1])
            segments = earlier.select(*segments.columns).unionByName(segments)
    return (
        segments.join(costs, ["person_id", "reference_date"], "left")
        .fillna({"emergency_cost_12m": 0.0})
        .select(*HISTORY_COLUMNS)
    )


def transitions(history: DataFrame, events: DataFrame, dates: list[date]) -> DataFrame:
    """One row per person living at a date that has a next one: from_date, to_date, age, age_group and segment
    at the start, to_state (the segment at the end, died or lost) and the step's activity (12 months to its end):
    cost, emergency admissions and their cost."""
    deaths = events.where(F.col("activity") == "death").groupBy("person_id").agg(F.min("event_date").alias("_died"))
    steps = step_dates(events.sparkSession, dates)
    before = history.join(F.broadcast(steps), F.col("reference_date") == F.col("from_date")).select(
        "from_date", "to_date", "person_id", "age", "sex", F.col("segment").alias("from_segment")
    )
    after = history.select("person_id", F.col("reference_date").alias("to_date"), F.col("segment").alias("_to_segment"))
    ends = steps.select(F.col("to_date").alias(AS_OF))
    activity = (
        activity_in_year_by_date(events, ends)
        .join(emergency_cost_in_year(events, ends), ["person_id", AS_OF], "left")
        .withColumnRenamed(AS_OF, "to_date")
    )
    died = F.col("_died").isNotNull() & (F.col("_died") > F.col("from_date")) & (F.col("_died") <= F.col("to_date"))
    return (
        before.join(after, ["person_id", "to_date"], "left")
        .join(deaths, "person_id", "left")
        .join(activity, ["person_id", "to_date"], "left")
        .select(
            "from_date",
            "to_date",
            "person_id",
            "age",
            age_group(F.col("age")).alias("age_group"),
            "sex",
            "from_segment",
            F.when(F.col("_to_segment").isNotNull(), F.col("_to_segment"))
            .when(died, F.lit(DIED))
            .otherwise(F.lit(LOST))
            .alias("to_state"),
            F.coalesce(F.col("annual_cost"), F.lit(0.0)).alias("step_cost"),
            F.coalesce(F.col("emergency_admissions_12m"), F.lit(0)).alias("step_emergency_admissions"),
            F.coalesce(F.col("emergency_cost_12m"), F.lit(0.0)).alias("step_emergency_cost"),
        )
    )


def _sums(prefix: str = "") -> list:
    return [
        F.count(F.lit(1)).alias("people"),
        F.sum(f"{prefix}cost").alias("cost"),
        F.sum(F.col(f"{prefix}cost") * F.col(f"{prefix}cost")).alias("cost_squared"),
        F.sum(f"{prefix}emergency_admissions").alias("emergency_admissions"),
        F.sum(f"{prefix}emergency_cost").alias("emergency_cost"),
    ]


def move_counts(moves: DataFrame) -> pd.DataFrame:
    """Per from_date x age_group x from_segment x to_state: people and the sums of their step's activity."""
    return (
        moves.groupBy("from_date", "to_date", "age_group", "from_segment", "to_state").agg(*_sums("step_")).toPandas()
    )


def state_counts(history: DataFrame) -> pd.DataFrame:
    """Per date x single year of age x segment (persons without an age left out): people and the sums of their
    12 months' activity, from which the model's starting state and its living costs come."""
    return (
        history.where(F.col("age").isNotNull())
        .withColumnRenamed("annual_cost", "cost")
        .withColumnRenamed("emergency_admissions_12m", "emergency_admissions")
        .withColumnRenamed("emergency_cost_12m", "emergency_cost")
        .groupBy("reference_date", "age", "segment")
        .agg(*_sums())
        .toPandas()
    )


def entrant_counts(history: DataFrame, dates: list[date]) -> pd.DataFrame:
    """Per step (to_date) x age x segment at its end: persons living at the end of a step not living at its start."""
    if len(dates) < 2:
        return pd.DataFrame(columns=["from_date", "to_date", "age", "segment", "people"])
    ends = step_dates(history.sparkSession, dates)
    living_before = history.select("person_id", F.col("reference_date").alias("from_date"))
    entrants = (
        history.where(F.col("age").isNotNull())
        .join(F.broadcast(ends), F.col("reference_date") == F.col("to_date"))
        .join(living_before, ["person_id", "from_date"], "left_anti")
        .groupBy("from_date", "to_date", "age", "segment")
        .agg(F.count(F.lit(1)).alias("people"))
    )
    return entrants.toPandas()
