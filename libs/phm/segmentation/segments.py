"""gold.segments: one row per living person at the reference date, with Bridges to Health segment and scores.

Bridges to Health: Lynn J, Straube BM, Bell KM, Jencks SF, Kambic RT.
Using population segmentation to provide better health care for all: the
"Bridges to Health" model. Milbank Q 2007;85(2):185-208, as adapted for NHS
population health management (FACTS.md): each person goes to the single
highest-need segment, in the configured priority order. The rules
(configs/segmentation.yaml) combine current conditions, eFI category,
running social care, emergency admissions and A&E attendances in the last
12 months, age and the number of long-term conditions. High-intensity use:
NHS England's High Intensity Use programme (5+ A&E attendances in a year).
Annual cost: every contact's cost in the 12 months to the reference date;
social care packages and placements by their days in that window.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.frames import literal_frame
from phm.ingest.outputs import age_band
from phm.person.conditions import AS_OF, as_of_dates, condition_codes, conditions_by_date
from phm.person.definitions import CodeList
from phm.segmentation.definitions import Criteria, Segmentation
from phm.segmentation.scores import cms_by_date, efi_deficits_by_date, efi_rank, electronic_frailty_index
from phm.tables import SEGMENT_PERSON_ATTRIBUTES


def people_on(person: DataFrame, events: DataFrame, dates: DataFrame) -> DataFrame:
    """gold.person crossed with `dates` (a frame with an `as_of` date column, kept with its other columns): the
    persons seen in any source on or before each date and not dead by it, with their age and age band then
    (the age at gold.person's reference date less the whole years between; the not yet born are left out)."""
    seen = events.groupBy("person_id").agg(
        F.min("event_date").alias("_first_seen"),
        F.min(F.when(F.col("activity") == "death", F.col("event_date"))).alias("_died"),
    )
    years_back = F.floor(F.months_between(F.col("reference_date"), F.col("as_of")) / 12)
    return (
        person.join(seen, "person_id")
        .crossJoin(F.broadcast(dates))
        .where(F.col("_first_seen") <= F.col("as_of"))
        .where(F.col("_died").isNull() | (F.col("_died") > F.col("as_of")))
        .withColumn("age", (F.col("age") - years_back).cast("int"))
        .where(F.col("age").isNull() | (F.col("age") >= 0))
        .withColumn("age_band", age_band(F.col("age")))
        .drop("_first_seen", "_died")
    )


def year_before(as_of: str | Column) -> tuple[Column, Column]:
    """(first day, last day) of the 12 months ending on `as_of` (a date or a date column)."""
    end = as_of if isinstance(as_of, Column) else F.lit(as_of).cast("date")
    return F.date_add(F.add_months(end, -12), 1), end


def activity_in_year(events: DataFrame, as_of: str) -> DataFrame:
    """person_id, emergency_admissions_12m, ae_attendances_12m, annual_cost (spans pro rata to their days),
    housing_cases_12m (approaches to the council's housing service)."""
    return activity_in_year_by_date(events, as_of_dates(events.sparkSession, [as_of])).drop(AS_OF)


def activity_in_year_by_date(events: DataFrame, dates: DataFrame) -> DataFrame:
    """activity_in_year at each date of `dates` (an as_of column): person_id, as_of, ..."""
    first, last = year_before(F.col(AS_OF))
    span_start = F.greatest(F.col("event_date"), first)
    span_end = F.least(F.coalesce(F.col("end_date"), last), last)
    span_days = F.greatest(F.datediff(span_end, span_start) + 1, F.lit(0))
    is_span = F.col("daily_cost").isNotNull()
    in_year = F.col("event_date").between(first, last)
    cost = F.when(is_span, F.col("daily_cost") * span_days).when(in_year, F.col("cost")).otherwise(F.lit(0.0))
    return (
        events.crossJoin(F.broadcast(dates.select(AS_OF)))
        .where((is_span & (F.col("event_date") <= last)) | in_year)
        .groupBy("person_id", AS_OF)
        .agg(
            F.count(F.when(in_year & F.col("emergency"), 1)).cast("int").alias("emergency_admissions_12m"),
            F.count(F.when(in_year & (F.col("activity") == "ae_attendance"), 1))
            .cast("int")
            .alias("ae_attendances_12m"),
            F.round(F.sum(cost), 2).alias("annual_cost"),
            F.count(F.when(in_year & (F.col("activity") == "housing_case"), 1)).cast("int").alias("housing_cases_12m"),
        )
    )


def social_care_running(events: DataFrame, as_of: str) -> DataFrame:
    """person_id, service: social care packages and placements running on `as_of`."""
    return social_care_running_by_date(events, as_of_dates(events.sparkSession, [as_of])).drop(AS_OF)


def social_care_running_by_date(events: DataFrame, dates: DataFrame) -> DataFrame:
    """person_id, as_of, service: social_care_running at each date of `dates` (an as_of column)."""
    day = F.col(AS_OF)
    running = (F.col("event_date") <= day) & (F.col("end_date").isNull() | (F.col("end_date") >= day))
    return (
        events.where((F.col("service") == "social_care") & F.col("daily_cost").isNotNull())
        .crossJoin(F.broadcast(dates.select(AS_OF)))
        .where(running)
        .select("person_id", AS_OF, F.col("setting").alias("service"))
        .distinct()
    )


def _holds(criteria: Criteria) -> Column:
    tests: list[Column] = [F.lit(True)]
    if criteria.conditions:
        tests.append(F.arrays_overlap(F.col("conditions"), F.array(*[F.lit(c) for c in criteria.conditions])))
    if criteria.social_care:
        tests.append(F.arrays_overlap(F.col("social_care"), F.array(*[F.lit(s) for s in criteria.social_care])))
    if criteria.efi_category_at_least:
        tests.append(
            F.coalesce(efi_rank(F.col("efi_category")) >= efi_rank(F.lit(criteria.efi_category_at_least)), F.lit(False))
        )
    for column, minimum in (
        ("emergency_admissions_12m", criteria.emergency_admissions_12m),
        ("ae_attendances_12m", criteria.ae_attendances_12m),
        ("long_term_conditions", criteria.long_term_conditions),
        ("age", criteria.age_at_least),
    ):
        if minimum is not None:
            tests.append(F.coalesce(F.col(column) >= minimum, F.lit(False)))
    if criteria.age_below is not None:
        tests.append(F.coalesce(F.col("age") < criteria.age_below, F.lit(False)))
    held = tests[0]
    for test in tests[1:]:
        held = held & test
    return held


def bridges_segment(people: DataFrame, segmentation: Segmentation) -> DataFrame:
    """Adds segment, segment_label and segment_order (1 = highest need) from the columns the rules read."""
    segments = segmentation.bridges_to_health.segments
    chosen: Column = F.lit(None).cast("int")
    for order in range(len(segments), 0, -1):  # the first segment whose rule holds wins
        rule = segments[order - 1].any
        holds = _holds(rule[0])
        for alternative in rule[1:]:
            holds = holds | _holds(alternative)
        chosen = F.when(holds, F.lit(order)).otherwise(chosen)
    names = F.array(*[F.lit(s.name) for s in segments])
    labels = F.array(*[F.lit(s.label) for s in segments])
    return (
        people.withColumn("segment_order", chosen)
        .withColumn("segment", F.element_at(names, F.col("segment_order")))
        .withColumn("segment_label", F.element_at(labels, F.col("segment_order")))
    )


def build_segments(
    person: DataFrame,
    conditions: DataFrame,
    events: DataFrame,
    coded: DataFrame,
    codelists: dict[str, CodeList],
    segmentation: Segmentation,
    as_of: str,
) -> DataFrame:
    """gold.segments rows for the living persons of gold.person, at `as_of` (the reference date), from
    gold.conditions, gold.events and gold.coded_events."""
    day = F.lit(as_of).cast("date")
    dated = [frame.withColumn(AS_OF, day) for frame in (person, conditions)]
    dates = as_of_dates(person.sparkSession, [as_of])
    return build_segments_by_date(*dated, events, coded, codelists, segmentation, dates)


def build_segments_by_date(
    person: DataFrame,
    conditions: DataFrame,
    events: DataFrame,
    coded: DataFrame,
    codelists: dict[str, CodeList],
    segmentation: Segmentation,
    dates: DataFrame,
) -> DataFrame:
    """build_segments at each date of `dates` (an as_of column) in one query: `person` and `conditions` carry
    the date each row is for (people_on's and conditions_by_date's rows); reference_date is that date."""
    spark = person.sparkSession
    keys = ["person_id", AS_OF]
    living = person.where(~F.col("deceased")).select(*keys, *SEGMENT_PERSON_ATTRIBUTES)
    long_term = literal_frame(
        spark,
        [(name, codelist.long_term_condition) for name, codelist in codelists.items()],
        "condition string, _ltc boolean",
    )
    held = (
        conditions.join(F.broadcast(long_term), "condition")
        .groupBy(*keys)
        .agg(
            F.array_sort(F.collect_list("condition")).alias("conditions"),
            F.count(F.when(F.col("_ltc"), 1)).cast("int").alias("long_term_conditions"),
        )
    )
    running = social_care_running_by_date(events, dates)
    efi = segmentation.electronic_frailty_index
    frailty = electronic_frailty_index(
        efi_deficits_by_date(coded, conditions, running, efi, dates), living.select(*keys, "age"), efi
    )
    people = (
        living.join(held, keys, "left")
        .join(cms_by_date(conditions, segmentation.cambridge_multimorbidity_score), keys, "left")
        .join(frailty, keys, "left")
        .join(activity_in_year_by_date(events, dates), keys, "left")
        .join(
            running.groupBy(*keys).agg(F.array_sort(F.collect_set("service")).alias("social_care")),
            keys,
            "left",
        )
        .fillna(
            {
                "long_term_conditions": 0,
                "cms_score": 0.0,
                "emergency_admissions_12m": 0,
                "ae_attendances_12m": 0,
                "annual_cost": 0.0,
                "housing_cases_12m": 0,
            }
        )
        .withColumn("conditions", F.coalesce(F.col("conditions"), F.array().cast("array<string>")))
        .withColumn("social_care", F.coalesce(F.col("social_care"), F.array().cast("array<string>")))
        .withColumn(
            "high_intensity_user",
            F.col("ae_attendances_12m") >= segmentation.high_intensity_use.ae_attendances_12m,
        )
    )
    return bridges_segment(people, segmentation).withColumnRenamed(AS_OF, "reference_date")


def segments_by_date(
    person: DataFrame,
    events: DataFrame,
    coded: DataFrame,
    codelists: dict[str, CodeList],
    segmentation: Segmentation,
    dates: list[date],
) -> DataFrame:
    """gold.segments rows as they would have been on each of the earlier `dates` (reference_date says which),
    in one query: the persons living and seen by then, their age then, the conditions current then (from
    gold.coded_events' rows) and their activity in the 12 months to it. Practice, PCN and place stay the latest
    known."""
    frame = as_of_dates(person.sparkSession, dates)
    people = people_on(person, events, frame).withColumn("deceased", F.lit(False))
    current = conditions_by_date(condition_codes(coded), people.select("person_id", AS_OF, "age"), codelists, frame)
    return build_segments_by_date(people, current, events, coded, codelists, segmentation, frame)
