"""gold.features: one row per person x index date, from data dated strictly before the index date.

Features (each a double; see docs/risk.md):
- demographics at the index date: age, female, imd_decile;
- condition_<name>: the condition is current the day before the index date
  (phm.person.conditions.conditions_at, the same rules as gold.conditions),
  long_term_conditions, cms_score (Cambridge Multimorbidity Score, Payne 2020)
  and efi_score / efi_deficits (electronic frailty index, Clegg 2016; 65+),
  social_care_running;
- latest_<observation>: the latest plausible reading before the index date;
  <observation>_<category> for categorical ones (smoking status);
- per window of w months before the index date: counts of emergency and
  elective admissions, outpatient, A&E, GP, community and mental health
  contacts, emergency admissions for ambulatory care sensitive conditions
  (NHS Outcomes Framework 2.3.i) and falls, bed days and cost
  (<name>_<w>m); trends: the yearly rate in the shortest window less that in
  the longest (<name>_trend); days_since_emergency_admission.
Label: 1 if an emergency admission is dated in the follow-up from the index
date (index date included), else 0 (also for deaths without one); null on the
scoring date. Population at an index date: persons seen in any source before
it, not dead before it.

The predictors of the Nuffield Trust / King's Fund combined predictive model
and of NHS England's PARR++ (prior emergency use, conditions, age, sex,
deprivation) are all here; which a model uses is its spec's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.features.index_dates import SCORE, IndexPlan
from phm.frames import literal_frame
from phm.person.conditions import AS_OF, condition_codes, conditions_by_date
from phm.person.definitions import CodeList, Observations, PersonModelDefinitions
from phm.segmentation.definitions import Segmentation
from phm.segmentation.scores import cms_by_date, efi_deficits_by_date, electronic_frailty_index
from phm.segmentation.segments import people_on, social_care_running_by_date
from phm.tables import FEATURES, RUN_ID_COLUMN

# What each activity feature counts, as a test on a gold.events row.
ACTIVITY: dict[str, Callable[[], Column]] = {
    "emergency_admissions": lambda: F.col("emergency"),
    "elective_admissions": lambda: F.col("activity").isin("elective_admission", "day_case"),
    "outpatient_attendances": lambda: F.col("activity") == "outpatient_attendance",
    "ae_attendances": lambda: F.col("activity") == "ae_attendance",
    "gp_consultations": lambda: F.col("activity") == "gp_consultation",
    "community_contacts": lambda: F.col("activity") == "community_contact",
    "mental_health_contacts": lambda: F.col("activity") == "mental_health_contact",
    "housing_cases": lambda: F.col("activity") == "housing_case",
    "acsc_emergency_admissions": lambda: F.col("emergency") & F.col("acsc"),
    "falls": lambda: F.col("fall"),
}
TRENDS = ("emergency_admissions", "ae_attendances", "gp_consultations", "cost")
ATTRIBUTES = ("age_group", "sex", "ethnicity", "imd_quintile", "practice_code", "pcn_code")
FAR_FUTURE = "9999-12-31"


def feature_columns(columns: list[str]) -> list[str]:
    """The feature columns of gold.features: every column beyond the declared ones."""
    declared = set(FEATURES.schema.fieldNames()) | {RUN_ID_COLUMN}
    return [c for c in columns if c not in declared]


def age_group(age: Column) -> Column:
    """Broad age groups for subgroup reporting (the bands of NHS England's risk stratification guidance)."""
    return (
        F.when(age.isNull(), None)
        .when(age < 18, "0-17")
        .when(age < 45, "18-44")
        .when(age < 65, "45-64")
        .when(age < 75, "65-74")
        .when(age < 85, "75-84")
        .otherwise("85+")
    )


def index_frame(spark, dates: list[tuple[date, str]]) -> DataFrame:
    """(index_date, split) rows of `dates` (IndexPlan.dates, or some of them)."""
    return literal_frame(spark, dates, "index_date date, split string")


def population(person: DataFrame, events: DataFrame, index: DataFrame) -> DataFrame:
    """person_id, index_date, split, age, sex, ... for persons seen before each index date and not dead before it
    (phm.segmentation.segments.people_on the day before)."""
    return (
        people_on(person, events, index.withColumn("as_of", F.date_sub(F.col("index_date"), 1)))
        .withColumn("age_group", age_group(F.col("age")))
        .select("person_id", "index_date", "split", "age", *ATTRIBUTES, "imd_decile")
    )


def _window_cost(first: Column, before: Column) -> Column:
    """The cost falling in [first, before): a contact's cost if dated in it, a running service's daily cost
    for its days in it (only days before `before` count, so a later end date tells nothing)."""
    is_span = F.col("daily_cost").isNotNull()
    span_start = F.greatest(F.col("event_date"), first)
    span_end = F.least(F.coalesce(F.col("end_date"), F.lit(FAR_FUTURE).cast("date")), F.date_sub(before, 1))
    span_days = F.greatest(F.datediff(span_end, span_start) + 1, F.lit(0))
    in_window = (F.col("event_date") >= first) & (F.col("event_date") < before)
    return F.when(is_span, F.col("daily_cost") * span_days).when(in_window, F.coalesce(F.col("cost"), F.lit(0.0)))


def activity(events: DataFrame, index: DataFrame, plan: IndexPlan) -> DataFrame:
    """Counts, bed days and cost per window before each index date, trends, and the label after it."""
    idx = F.col("index_date")
    longest = F.add_months(idx, -max(plan.windows))
    follow_up_end = F.add_months(idx, plan.follow_up_months)
    reaches_window = (F.col("event_date") >= longest) | (
        F.col("daily_cost").isNotNull() & (F.coalesce(F.col("end_date"), F.lit(FAR_FUTURE).cast("date")) >= longest)
    )
    relevant = (
        events.select(
            "person_id", "event_date", "end_date", "activity", "emergency", "acsc", "fall", "cost", "daily_cost",
            "length_of_stay",
        )
        .crossJoin(F.broadcast(index.select("index_date")))
        .where((F.col("event_date") < follow_up_end) & reaches_window)
    )  # fmt: skip
    measures: list[Column] = []
    for months in plan.windows:
        first = F.add_months(idx, -months)
        in_window = (F.col("event_date") >= first) & (F.col("event_date") < idx)
        for name, test in ACTIVITY.items():
            measures.append(F.count(F.when(in_window & test(), 1)).cast("double").alias(f"{name}_{months}m"))
        admitted = in_window & F.col("length_of_stay").isNotNull()
        measures.append(F.sum(F.when(admitted, F.col("length_of_stay"))).cast("double").alias(f"bed_days_{months}m"))
        measures.append(F.round(F.sum(_window_cost(first, idx)), 2).alias(f"cost_{months}m"))
    last_emergency = F.max(F.when(F.col("emergency") & (F.col("event_date") < idx), F.col("event_date")))
    measures.append(F.datediff(idx, last_emergency).cast("double").alias("days_since_emergency_admission"))
    in_follow_up = F.col("emergency") & (F.col("event_date") >= idx) & (F.col("event_date") < follow_up_end)
    measures.append(F.max(F.when(in_follow_up, 1).otherwise(0)).cast("int").alias("label"))
    return relevant.groupBy("person_id", "index_date").agg(*measures)


def trends(plan: IndexPlan) -> list[Column]:
    """Yearly rate in the shortest window less that in the longest: rising (>0) or falling use."""
    if len(plan.windows) < 2:
        return []
    short, long = plan.windows[0], plan.windows[-1]
    return [
        F.round(F.col(f"{name}_{short}m") * 12 / short - F.col(f"{name}_{long}m") * 12 / long, 4).alias(f"{name}_trend")
        for name in TRENDS
    ]


def conditions_and_scores(
    coded: DataFrame,
    events: DataFrame,
    ages: DataFrame,
    codelists: dict[str, CodeList],
    segmentation: Segmentation,
    index_dates: list[tuple[date, str]],
) -> DataFrame:
    """Per index date: condition flags, long-term conditions, CMS, eFI and social care the day before it (every
    index date in one query: phm.person.conditions.conditions_by_date), from gold.coded_events' rows (`coded`)
    and gold.events' social care."""
    long_term = [name for name, c in codelists.items() if c.long_term_condition]
    efi = segmentation.electronic_frailty_index
    dates = literal_frame(
        coded.sparkSession,
        [(index_date, index_date - timedelta(days=1)) for index_date, _ in index_dates],
        f"index_date date, {AS_OF} date",
    )
    keys = ["person_id", AS_OF]
    ages_then = ages.select("person_id", "index_date", "age").join(F.broadcast(dates), "index_date")
    current = conditions_by_date(condition_codes(coded), ages_then, codelists, dates)
    flags = current.groupBy(*keys).agg(
        *[F.max(F.when(F.col("condition") == name, 1.0)).alias(f"condition_{name}") for name in sorted(codelists)],
        F.count(F.when(F.col("condition").isin(long_term), 1)).cast("double").alias("long_term_conditions"),
    )
    running = social_care_running_by_date(events, dates)
    frailty = electronic_frailty_index(
        efi_deficits_by_date(coded, current, running, efi, dates), ages_then.select(*keys, "age"), efi
    )
    return (
        ages_then.select(*keys, "index_date")
        .join(flags, keys, "left")
        .join(cms_by_date(current, segmentation.cambridge_multimorbidity_score), keys, "left")
        .join(frailty.select(*keys, "efi_score", F.col("efi_deficits").cast("double")), keys, "left")
        .join(running.select(*keys, F.lit(1.0).alias("social_care_running")).distinct(), keys, "left")
        .drop(AS_OF)
    )


def latest_observations(observations: DataFrame, index: DataFrame, definitions: Observations) -> DataFrame:
    """latest_<name> (value) and <name>_<category> (1 if the latest category) before each index date."""
    readings = (
        observations.where(F.col("plausible"))
        .crossJoin(F.broadcast(index.select("index_date")))
        .where(F.col("event_date") < F.col("index_date"))
        .groupBy("person_id", "index_date", "observation")
        .agg(F.max_by(F.struct("value", "category"), F.struct("event_date", "record_id")).alias("_latest"))
    )
    columns = []
    for name, spec in sorted(definitions.observations.items()):
        this = F.col("observation") == name
        if spec.categories:
            for category in sorted(set(spec.categories.values())):
                is_category = (F.col("_latest.category") == category).cast("double")
                columns.append(F.max(F.when(this, is_category)).alias(f"{name}_{category}"))
        else:
            columns.append(F.max(F.when(this, F.col("_latest.value"))).alias(f"latest_{name}"))
    return readings.groupBy("person_id", "index_date").agg(*columns)


def build_features(
    person: DataFrame,
    events: DataFrame,
    coded: DataFrame,
    observations: DataFrame,
    definitions: PersonModelDefinitions,
    segmentation: Segmentation,
    plan: IndexPlan,
    dates: list[tuple[date, str]] | None = None,
) -> DataFrame:
    """gold.features rows at `dates` (default: every date of `plan`) from gold.person, gold.events,
    gold.coded_events (`coded`) and gold.observations."""
    dates = plan.dates if dates is None else dates
    codelists = definitions.conditions
    index = index_frame(person.sparkSession, dates)
    people = population(person, events, index)
    counts = activity(events, index, plan)
    clinical = conditions_and_scores(coded, events, people, codelists, segmentation, dates)
    latest = latest_observations(observations, index, definitions.observations)
    keys = ["person_id", "index_date"]
    joined = people.join(counts, keys, "left").join(clinical, keys, "left").join(latest, keys, "left")
    condition_columns = [f"condition_{name}" for name in sorted(codelists)]
    window_columns = [f"{name}_{w}m" for w in plan.windows for name in (*ACTIVITY, "bed_days", "cost")]
    observation_columns = [c for c in latest.columns if c not in keys]
    # Absent from a part means none: no condition, no contact, no score points (observations and eFI stay null).
    filled = joined.fillna(
        0.0, subset=[*condition_columns, "long_term_conditions", "cms_score", "social_care_running", *window_columns]
    )
    label = F.when(F.col("split") == SCORE, F.lit(None)).otherwise(F.coalesce(F.col("label"), F.lit(0)))
    return filled.select(
        *keys,
        "split",
        label.cast("int").alias("label"),
        *ATTRIBUTES,
        F.col("age").cast("double").alias("age"),
        F.when(F.col("sex").isNotNull(), (F.col("sex") == "F").cast("double")).alias("female"),
        F.col("imd_decile").cast("double").alias("imd_decile"),
        *condition_columns,
        "long_term_conditions",
        "cms_score",
        "efi_score",
        "efi_deficits",
        "social_care_running",
        *observation_columns,
        *window_columns,
        *trends(plan),
        "days_since_emergency_admission",
    )
