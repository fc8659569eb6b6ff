"""gold.events: every activity row of every source on one timeline, joined to person_id, with its cost and flags.

Sources: unit costs from configs/unit_costs.yaml (old NHS reference costs,
FACTS.md); admission methods from the NHS Data Dictionary (11-13 elective,
2x emergency, 31-32 maternity, 81-83 other: non-elective but not emergency);
ambulatory care sensitive conditions from NHS Outcomes Framework 2.3.i and
falls from ICD-10 W00-W19 / S72.0-S72.2 (configs/codelists/flags/).

Costs:
- emergency (and other non-elective) admission: the admission cost plus an
  excess bed day for each day beyond the trim point; a fall admission at 65+
  costs the fall admission figure instead; elective: the day-case cost when
  the patient classification is 2 (day case), else the elective cost plus
  excess bed days;
- A&E, outpatient, community and mental health contacts: one unit cost each;
  GP events: a consultation cost for consultation codes, nothing for readings
  and diagnosis codes (they are recorded in a consultation);
- social care: a package or placement is one event from its start record to
  its end record: the earliest end of the same person and service on or
  after the start (an end that would close several overlapping packages
  closes the latest started). Its daily cost is the weekly cost / 7 (or the
  configured unit cost when the record has none) and `cost` is the daily cost
  x its days up to the end or the reference date. An end record with no
  start is kept as its own event. A record without its date is dated by the
  first day of the month it was delivered in.
- housing cases (the council's homelessness duties and temporary
  accommodation): no NHS cost; the need type is the setting.
GP registrations are demographics, not activity: they are in gold.person.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from phm.errors import UserError
from phm.frames import first_in_each
from phm.person.codes import INCLUDE, match_codes
from phm.person.definitions import ICD10, SNOMED, PersonModelDefinitions, UnitCosts
from phm.tables import EVENTS

Builder = Callable[[DataFrame, str, UnitCosts, str], DataFrame]
FLAGS = ("emergency", "acsc", "fall")
SOCIAL_CARE_SERVICES = ("home_care", "residential_home", "nursing_home")
# The columns each source's builder produces (gold.events without person_id and the flags added later).
EVENT_FIELDS = [(f.name, f.dataType) for f in EVENTS.schema.fields if f.name not in ("person_id", *FLAGS)]


def _shape(frame: DataFrame, record_id: str, **columns: Column) -> DataFrame:
    """The common event columns: those given, the record id and period, nulls for the rest (and any extra
    column given, such as person_id)."""
    given = {"record_id": F.col(record_id).cast("string"), "period": F.col("period"), **columns}
    known = {name for name, _ in EVENT_FIELDS}
    return frame.select(
        *[(given[name] if name in given else F.lit(None)).cast(kind).alias(name) for name, kind in EVENT_FIELDS],
        *[column.alias(name) for name, column in given.items() if name not in known],
    )


def _age(frame: DataFrame) -> Column:
    return F.col("age_at_event") if "age_at_event" in frame.columns else F.lit(None)


def _inpatient(frame: DataFrame, record_id: str, costs: UnitCosts, reference_date: str) -> DataFrame:
    method = F.col("admission_method")
    elective = method.isin("11", "12", "13")
    emergency = method.startswith("2")
    day_case = elective & (F.col("patient_classification") == "2")
    stay = F.datediff(F.col("discharge_date"), F.col("admission_date"))
    excess = F.greatest(F.coalesce(stay, F.lit(0)) - costs.excess_bed_days_after, F.lit(0)) * costs.excess_bed_day
    cost = (
        F.when(day_case, F.lit(costs.day_case))
        .when(elective, costs.elective_admission + excess)
        .otherwise(costs.emergency_admission + excess)
    )
    activity = (
        F.when(day_case, "day_case")
        .when(elective, "elective_admission")
        .when(emergency, "emergency_admission")
        .when(method.startswith("3"), "maternity_admission")
        .otherwise("other_admission")
    )
    has_diagnosis = F.col("primary_diagnosis").isNotNull()
    return _shape(
        frame,
        record_id,
        service=F.lit("acute"),
        activity=activity,
        setting=F.lit("inpatient"),
        event_date=F.col("admission_date"),
        end_date=F.col("discharge_date"),
        code_system=F.when(has_diagnosis, F.lit(ICD10)),
        code=F.col("primary_diagnosis"),
        procedure_code=F.col("primary_procedure"),
        admission_method=method,
        length_of_stay=stay,
        age_at_event=_age(frame),
        cost=cost,
    )


def _contact(service: str, activity: str, date: str, unit_cost: str | float, setting: str | None = None) -> Builder:
    def build(frame: DataFrame, record_id: str, costs: UnitCosts, reference_date: str) -> DataFrame:
        return _shape(
            frame,
            record_id,
            service=F.lit(service),
            activity=F.lit(activity),
            setting=F.col(setting) if setting else F.lit(None),
            event_date=F.col(date),
            age_at_event=_age(frame),
            cost=F.lit(getattr(costs, unit_cost) if isinstance(unit_cost, str) else unit_cost),
        )

    return build


def _gp_events(frame: DataFrame, record_id: str, costs: UnitCosts, reference_date: str) -> DataFrame:
    consultation = F.col("snomed_code").isin(*costs.gp_consultation_snomed)
    return _shape(
        frame,
        record_id,
        service=F.lit("gp"),
        activity=F.when(consultation, "gp_consultation").otherwise("gp_record"),
        setting=F.col("practice_code"),
        event_date=F.col("event_date"),
        code_system=F.lit(SNOMED),
        code=F.col("snomed_code"),
        value=F.col("value"),
        value2=F.col("value2"),
        cost=F.when(consultation, F.lit(costs.gp_consultation)).otherwise(F.lit(0.0)),
    )


def _social_care(frame: DataFrame, record_id: str, costs: UnitCosts, reference_date: str) -> DataFrame:
    """Start records become packages (ended by their end record); unpaired end records stay as events."""
    service = F.col("service_type")
    fallback_weekly = (
        F.when(service == "nursing_home", F.lit(costs.care_home_nursing_week))
        .when(service == "residential_home", F.lit(costs.care_home_residential_week))
        .otherwise(F.coalesce(F.col("hours_per_week"), F.lit(0.0)) * costs.home_care_hour)
    )
    daily = F.coalesce(F.col("weekly_cost"), fallback_weekly) / 7
    # The contract lets a record's own date be missing; the month it was delivered in stands in for it.
    delivered = F.to_date(F.concat(F.col("period"), F.lit("-01")))
    frame = frame.withColumn("start_date", F.coalesce("start_date", delivered)).withColumn(
        "end_date", F.when(F.lower("record_type") == "end", F.coalesce("end_date", delivered))
    )
    starts = frame.where(F.lower("record_type") == "start")
    ends = frame.where(F.lower("record_type") == "end").select(
        F.col("person_id").alias("_person"),
        F.col("service_type").alias("_service"),
        F.col("end_date").alias("_end"),
        F.col(record_id).cast("string").alias("_end_record"),
    )
    paired = starts.join(
        ends,
        (F.col("person_id") == F.col("_person"))
        & (service == F.col("_service"))
        & (F.col("_end") >= F.col("start_date")),
        "left",
    )
    # One end closes one package: an end that is the first for several overlapping starts closes the latest.
    latest_start = Window.partitionBy(F.col("_end_record")).orderBy(F.col("start_date").desc(), F.col(record_id).desc())
    packages = (
        first_in_each(paired, record_id, [F.col("_end").asc_nulls_last(), F.col("_end_record")])
        .withColumn("_closes", F.col("_end_record").isNull() | (F.row_number().over(latest_start) == 1))
        .withColumn("_end", F.when(F.col("_closes"), F.col("_end")))
        .withColumn("_end_record", F.when(F.col("_closes"), F.col("_end_record")))
    )
    until = F.least(F.coalesce(F.col("_end"), F.lit(reference_date).cast("date")), F.lit(reference_date).cast("date"))
    package_events = _shape(
        packages,
        record_id,
        person_id=F.col("person_id"),
        service=F.lit("social_care"),
        activity=F.when(service.isin("residential_home", "nursing_home"), "care_home_placement").otherwise(
            "care_package"
        ),
        setting=service,
        event_date=F.col("start_date"),
        end_date=F.col("_end"),
        value=F.col("hours_per_week"),
        value2=F.col("weekly_cost"),
        age_at_event=_age(packages),
        daily_cost=daily,
        cost=daily * F.greatest(F.datediff(until, F.col("start_date")) + 1, F.lit(0)),
    )
    used_ends = packages.where(F.col("_end_record").isNotNull()).select(F.col("_end_record").alias("record_id"))
    unpaired = frame.where(F.lower("record_type") == "end").join(
        used_ends, F.col(record_id).cast("string") == F.col("record_id"), "left_anti"
    )
    unpaired_events = _shape(
        unpaired,
        record_id,
        person_id=F.col("person_id"),
        service=F.lit("social_care"),
        activity=F.lit("care_end_without_start"),
        setting=service,
        event_date=F.col("end_date"),
        age_at_event=_age(unpaired),
        cost=F.lit(0.0),
    )
    return package_events.unionByName(unpaired_events, allowMissingColumns=True)


BUILDERS: dict[str, Builder] = {
    "inpatient": _inpatient,
    "ae": _contact("ae", "ae_attendance", "arrival_date", "ae_attendance"),
    "outpatient": _contact(
        "acute", "outpatient_attendance", "appointment_date", "outpatient_attendance", "treatment_function_code"
    ),
    "community": _contact("community", "community_contact", "contact_date", "community_contact", "service"),
    "mental_health": _contact(
        "mental_health", "mental_health_contact", "contact_date", "mental_health_contact", "team_type"
    ),
    "gp_events": _gp_events,
    "social_care": _social_care,
    "deaths": _contact("deaths", "death", "date_of_death", 0.0),
    "programme": _contact("programme", "programme_referral", "referral_date", 0.0, "outcome"),
    "housing": _contact("housing", "housing_case", "approach_date", 0.0, "need_type"),
}
# Sources that arrive with person_id already attached (their builder pairs records of one person).
NEEDS_PERSON = {"social_care"}
# Sources whose events are not each one row's own: a social care package pairs a start record with an end record
# delivered months later, and an open package's cost runs to the reference date. A refresh that changes gold.events
# in place rebuilds these whole (every other source's events follow their rows).
REBUILT_WHOLE = ("social_care",)


def build_events(
    silver: dict[str, DataFrame],
    record_ids: dict[str, str],
    links: DataFrame,
    definitions: PersonModelDefinitions,
    reference_date: str,
) -> DataFrame:
    """gold.events columns (person_id null where a record has no person_link row: the caller must check).

    `silver` holds the silver table of each activity source present (keys of BUILDERS), `record_ids` each
    source's record id column, `links` silver.person_link.
    """
    person = links.select("source", "record_id", "person_id")
    parts = []
    for source, frame in sorted(silver.items()):
        build = BUILDERS[source]
        record_id = record_ids[source]
        if source in NEEDS_PERSON:
            linked = frame.withColumn("_record_id", F.col(record_id).cast("string")).join(
                person.where(F.col("source") == source).select(F.col("record_id").alias("_record_id"), "person_id"),
                "_record_id",
                "left",
            )
            shaped = build(linked, record_id, definitions.unit_costs, reference_date)
        else:
            shaped = build(frame, record_id, definitions.unit_costs, reference_date).join(
                person.where(F.col("source") == source).drop("source"), "record_id", "left"
            )
        parts.append(shaped.withColumn("source", F.lit(source)))
    events = parts[0]
    for part in parts[1:]:
        events = events.unionByName(part)
    return with_flags(events, definitions)


def with_flags(events: DataFrame, definitions: PersonModelDefinitions) -> DataFrame:
    """emergency; acsc (emergency admissions for an ambulatory care sensitive condition); fall (admissions for a
    fall, with the fall admission cost at 65+)."""
    flags = definitions.flags
    admissions = events.where(F.col("setting") == "inpatient")
    matched = (
        match_codes(admissions, [flags["acsc"], flags["fall"]], keep=("source", "record_id"))
        .where(F.col("entry") == INCLUDE)
        .groupBy("source", "record_id")
        .agg(
            F.max(F.col("codelist") == "acsc").alias("_acsc"),
            F.max(F.col("codelist") == "fall").alias("_fall"),
        )
    )
    emergency = F.col("activity") == "emergency_admission"
    fall = F.coalesce(F.col("_fall"), F.lit(False)) & F.col("activity").endswith("admission")
    fall_cost = definitions.unit_costs.fall_admission_65_plus
    return (
        events.join(matched, ["source", "record_id"], "left")
        .withColumn("emergency", emergency)
        .withColumn("acsc", emergency & F.coalesce(F.col("_acsc"), F.lit(False)))
        .withColumn("fall", fall)
        .withColumn(
            "cost",
            F.when(fall & emergency & (F.col("age_at_event") >= 65), F.lit(fall_cost)).otherwise(F.col("cost")),
        )
        .drop("_acsc", "_fall")
    )


def history_span(person: DataFrame, events: DataFrame, job: str, first_period: str | None = None) -> tuple[date, date]:
    """(reference date, first day of the first loaded period) of the person model; a UserError naming `job`
    if it is empty. `first_period` (yyyy-MM), when the caller knows it (from the files' statistics:
    Catalog.least_value), spares a scan of the events' periods."""
    reference_date = person.agg(F.max("reference_date")).first()[0]
    first_period = first_period or events.agg(F.min("period")).first()[0]
    if reference_date is None or first_period is None:
        raise UserError(f"{job}: gold.person or gold.events is empty; load and link some extracts first")
    return reference_date, date(int(first_period[:4]), int(first_period[5:7]), 1)
