"""gold.features from the month's changes: the rows of the index dates it already holds are kept for the persons
whose data did not change, and only the new dates (the scoring date, each month) and the changed persons are
built (phm.features.build).

A row at an index date reads a person's events dated before the end of that date's follow-up (features before
the date, the label in the follow-up; observations, conditions and scores are made of events too) and the
person's attributes at the date (age from gold.person's age at its reference date, sex, ethnicity, IMD,
practice, PCN; phm.segmentation.segments.people_on). So a kept row is the row a whole build would write unless
the person gained or lost an event dated before then, or their population row at the date (present, age,
attributes) is not the one written: those persons are built again at every kept date. The test: the kept rows
with the changed persons' rebuilt equal the whole build (tests/unit/test_risk.py).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.features.build import ATTRIBUTES

KEYS = ["person_id", "index_date"]


def changed_persons(event_changes: DataFrame, previous: DataFrame, people: DataFrame, follow_up_end: date) -> DataFrame:
    """person_id of each person whose rows at the kept index dates may differ from `previous` (gold.features as
    written, at those dates only): an event added or removed (`event_changes`: gold.events rows, either kind)
    dated before `follow_up_end` (the latest kept date's), or their population row at a kept date (`people`:
    phm.features.build.population at those dates, now) not as `previous` has it."""
    by_events = event_changes.where(F.col("event_date") < F.lit(follow_up_end)).select("person_id")
    attributes = [F.col("age").cast("double").alias("age"), *ATTRIBUTES, F.col("imd_decile").cast("double")]
    now = people.select(*KEYS, *attributes)
    then = previous.select(*KEYS, *attributes)
    by_population = now.exceptAll(then).unionByName(then.exceptAll(now)).select("person_id")
    return by_events.unionByName(by_population).distinct()


def for_persons(frame: DataFrame, persons: DataFrame) -> DataFrame:
    """The rows of `frame` whose person_id is one of `persons` (sent whole to every task: a month's few)."""
    return frame.join(F.broadcast(persons), "person_id", "left_semi")


def refreshed_features(previous: DataFrame, changed: DataFrame, rebuilt: DataFrame, new_dates: DataFrame) -> DataFrame:
    """gold.features: `previous`'s rows (the kept dates) less the `changed` persons', with `rebuilt` (those persons
    at the kept dates) and `new_dates` (everyone at the dates `previous` does not hold)."""
    kept = previous.join(F.broadcast(changed), "person_id", "left_anti").select(*new_dates.columns)
    return kept.unionByName(rebuilt).unionByName(new_dates)


def kept_dates(held: list[tuple[date, str]], planned: list[tuple[date, str]]) -> list[tuple[date, str]]:
    """The (index date, split) of the plan that gold.features already holds with the same split."""
    return [pair for pair in planned if pair in set(held)]
