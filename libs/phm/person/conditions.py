"""Condition registers from coded events: gold.conditions, person x condition current at a date.

Definitions: the code lists in configs/codelists/conditions/ (each names its
source: QOF v46 business rules, ICD-10, Payne 2020 for the Cambridge
Multimorbidity Score conditions). Rules, as QOF applies them:
- "ever": a code recorded on or before the date, unless a "resolved" code
  was recorded after the latest diagnosis code (then the condition is
  resolved, as QOF's *RES_COD clusters work);
- "within_years": the latest code within that many years before the date;
- min_age: the person is at least that old at the date (register ages).
GP events (SNOMED CT) and hospital spells (ICD-10 primary diagnosis) both
count: hospital coding finds conditions the GP record lacks. Only what is
dated on or before `as_of` is used, so the same function serves any index
date without looking ahead.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.frames import literal_frame
from phm.person.codes import CONDITION, INCLUDE, RESOLVED
from phm.person.definitions import CodeList

EVENT_KEY = ("source", "record_id")
# The date column of the *_by_date functions: each row is for the date it carries.
AS_OF = "as_of"


def as_of_dates(spark, dates: list[date | str]) -> DataFrame:
    """The dates frame (one as_of column) the *_by_date functions take; ISO strings or dates."""
    days = [d if isinstance(d, date) else date.fromisoformat(d) for d in dates]
    return literal_frame(spark, [(d,) for d in days], f"{AS_OF} date")


def condition_codes(coded: DataFrame) -> DataFrame:
    """Every coded event that belongs to a condition: person_id, source, record_id, event_date, condition, entry,
    from gold.coded_events' rows (phm.person.codes.coded_events)."""
    return coded.where(F.col("family") == CONDITION).select(
        "person_id", *EVENT_KEY, "event_date", F.col("codelist").alias("condition"), "entry"
    )


def conditions_at(codes: DataFrame, ages: DataFrame, codelists: dict[str, CodeList], as_of: str) -> DataFrame:
    """Current conditions at `as_of`: person_id, condition, first_recorded, first_source, last_recorded, records,
    sources. `codes` from condition_codes; `ages` has person_id and age (at `as_of`)."""
    date = F.lit(as_of).cast("date")
    dates = as_of_dates(codes.sparkSession, [as_of])
    return conditions_by_date(codes, ages.withColumn(AS_OF, date), codelists, dates).drop(AS_OF)


def _of_diagnoses(column: Column) -> Column:
    """`column` on a diagnosis code's row, null on any other (which the aggregates then pass over)."""
    return F.when(F.col("entry") == INCLUDE, column)


def conditions_by_date(
    codes: DataFrame, ages: DataFrame, codelists: dict[str, CodeList], dates: DataFrame
) -> DataFrame:
    """conditions_at at each date of `dates` (an as_of column) in one query: `ages` has a row per person and date
    (person_id, as_of, age), and each current condition carries its date (person_id, as_of, condition, ...).
    One pass over the codes whatever the number of dates, where a query per date repeats every scan, shuffle
    and broadcast (the features' three index dates: docs/bench.md)."""
    date = F.col(AS_OF)
    known = codes.crossJoin(F.broadcast(dates.select(AS_OF))).where(F.col("event_date") <= date)
    keys = ["person_id", AS_OF, "condition"]
    # Diagnoses and resolutions summed in one aggregation: two (and a join of them) read and matched every coded
    # event twice, about 20 task-seconds a pass at 1m people (docs/bench.md). min_by passes over the rows its
    # ordering is null in, and collect_set and the counts over null values.
    figures = (
        known.groupBy(*keys)
        .agg(
            F.min(_of_diagnoses(F.col("event_date"))).alias("first_recorded"),
            F.min_by("source", _of_diagnoses(F.struct("event_date", "source"))).alias("first_source"),
            F.max(_of_diagnoses(F.col("event_date"))).alias("last_recorded"),
            F.count(_of_diagnoses(F.lit(1))).alias("records"),
            F.array_sort(F.collect_set(_of_diagnoses(F.col("source")))).alias("sources"),
            F.max(F.when(F.col("entry") == RESOLVED, F.col("event_date"))).alias("_resolved"),
        )
        .where(F.col("records") > 0)
    )
    rules = literal_frame(
        codes.sparkSession,
        [(c.name, c.years if c.rule == "within_years" else None, c.min_age) for c in codelists.values()],
        "condition string, _years int, _min_age int",
    )
    current = (
        figures.join(F.broadcast(rules), "condition")
        .join(ages.select("person_id", AS_OF, F.col("age").alias("_age")), ["person_id", AS_OF], "left")
        .where(F.col("_resolved").isNull() | (F.col("_resolved") <= F.col("last_recorded")))
        .where(F.col("_years").isNull() | (F.col("last_recorded") > F.add_months(date, -12 * F.col("_years"))))
        .where(F.col("_min_age").isNull() | (F.col("_age") >= F.col("_min_age")))
    )
    return current.select(
        "person_id", AS_OF, "condition", "first_recorded", "first_source", "last_recorded", "records", "sources"
    )
