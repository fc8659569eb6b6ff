"""Source extracts in the shapes suppliers deliver, with the generator's injected defects applied.

Each source has its own format: CSV with ISO dates (GP registrations, GP
events, outpatients, community and mental health contacts, the programme
register, deaths), a SUS-like inpatient CSV with its own column names, coded
sex and dd/MM/yyyy dates, a council's social care CSV keyed by its own client
reference with dd-MM-yyyy dates, and A&E as typed Parquet. Defects
(truth/injected_defects) are applied where they make sense for the format:
a malformed date only in text files, an unknown code only where a code
column exists; exact duplicates everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

FUTURE_YEARS = 3
UNKNOWN_CODE = "ZZZ99"
ETHNICITY_LABELS = {
    "white": "White",
    "asian": "Asian or Asian British",
    "black": "Black or Black British",
    "mixed": "Mixed",
    "other": "Other ethnic group",
}


@dataclass(frozen=True)
class ExtractFormat:
    """How one source is delivered."""

    source: str
    file_format: str  # csv or parquet
    date_pattern: str | None  # for text dates; None for typed Parquet dates
    has_code: bool
    build: Callable[[DataFrame, Callable[[Column], Column], Column], DataFrame]


def applicable_defect(fmt: ExtractFormat) -> Column:
    """The record's injected defect, or null where this source's format cannot carry it."""
    defect = F.col("defect")
    unusable = ((defect == "malformed_date") & F.lit(fmt.date_pattern is None)) | (
        (defect == "unknown_code") & F.lit(not fmt.has_code)
    )
    return F.when(unusable, F.lit(None)).otherwise(defect)


def render(records: DataFrame, fmt: ExtractFormat) -> DataFrame:
    """Records of one source -> the supplier's columns plus `period`, with defects applied and duplicates added."""
    rows = records.where(F.col("source") == fmt.source).withColumn("defect", applicable_defect(fmt))
    shifted = F.when(F.col("defect") == "future_date", F.add_months("event_date", 12 * FUTURE_YEARS)).otherwise(
        F.col("event_date")
    )

    def as_text(column: Column) -> Column:
        return F.date_format(column, fmt.date_pattern) if fmt.date_pattern else column

    event_date = F.when(F.col("defect") == "malformed_date", _malformed(fmt.date_pattern)).otherwise(as_text(shifted))
    code = F.when(F.col("defect") == "unknown_code", F.lit(UNKNOWN_CODE)).otherwise(F.col("code"))
    built = fmt.build(rows.withColumn("code", code), as_text, event_date)
    duplicates = built.where(F.col("_defect") == "exact_duplicate")
    return built.unionByName(duplicates).drop("_defect")


def _malformed(pattern: str | None) -> Column:
    """A date no calendar has (30 February) in the source's own pattern."""
    if pattern and pattern.startswith("dd"):
        return F.concat(F.lit("30/02/"), F.year("event_date").cast("string"))
    return F.concat(F.year("event_date").cast("string"), F.lit("-02-30"))


def _gp_registrations(rows: DataFrame, as_text, event_date) -> DataFrame:
    labels = F.create_map(*[F.lit(x) for pair in ETHNICITY_LABELS.items() for x in pair])
    return rows.select(
        "period",
        "record_id",
        F.col("kind").alias("record_type"),
        "nhs_number",
        "forename",
        "surname",
        as_text(F.col("date_of_birth")).alias("date_of_birth"),
        "sex",
        labels[F.col("ethnicity")].alias("ethnicity"),
        "postcode",
        "practice_code",
        event_date.alias("effective_date"),
        F.col("defect").alias("_defect"),
    )


def _gp_events(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        "record_id",
        "nhs_number",
        "practice_code",
        event_date.alias("event_date"),
        F.col("code").alias("snomed_code"),
        F.col("value").cast("string").alias("value"),
        F.col("value2").cast("string").alias("value2"),
        F.col("defect").alias("_defect"),
    )


def _inpatient(rows: DataFrame, as_text, event_date) -> DataFrame:
    emergency = F.col("kind") == "emergency"
    return rows.select(
        "period",
        F.col("record_id").alias("SpellID"),
        F.col("nhs_number").alias("NHSNumber"),
        F.col("forename").alias("Forename"),
        F.col("surname").alias("Surname"),
        as_text(F.col("date_of_birth")).alias("DOB"),
        F.when(F.col("sex") == "M", "1").when(F.col("sex") == "F", "2").otherwise("9").alias("Gender"),
        F.col("postcode").alias("Postcode"),
        F.col("practice_code").alias("GPPractice"),
        event_date.alias("AdmissionDate"),
        as_text(F.date_add("event_date", F.col("los_days"))).alias("DischargeDate"),
        F.col("method").alias("AdmissionMethod"),
        F.when(~emergency & (F.col("los_days") == 0), "2").otherwise("1").alias("PatientClassification"),
        F.when(emergency, F.col("code")).alias("PrimaryDiagnosis"),
        F.when(~emergency, F.col("code")).alias("PrimaryProcedure"),
        F.col("defect").alias("_defect"),
    )


def _ae(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        F.col("record_id").alias("attendance_id"),
        "nhs_number",
        "forename",
        "surname",
        "date_of_birth",
        "sex",
        "postcode",
        "practice_code",
        event_date.alias("arrival_date"),
        F.col("defect").alias("_defect"),
    )


def _outpatient(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        F.col("record_id").alias("appointment_id"),
        "nhs_number",
        as_text(F.col("date_of_birth")).alias("date_of_birth"),
        "sex",
        "postcode",
        "practice_code",
        event_date.alias("appointment_date"),
        F.col("code").alias("treatment_function_code"),
        F.col("defect").alias("_defect"),
    )


def _deaths(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        "record_id",
        "nhs_number",
        "forename",
        "surname",
        as_text(F.col("date_of_birth")).alias("date_of_birth"),
        "sex",
        "postcode",
        event_date.alias("date_of_death"),
        F.col("defect").alias("_defect"),
    )


def _community(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        F.col("record_id").alias("contact_id"),
        "nhs_number",
        as_text(F.col("date_of_birth")).alias("date_of_birth"),
        "sex",
        "postcode",
        "practice_code",
        event_date.alias("contact_date"),
        F.col("code").alias("service"),
        F.col("defect").alias("_defect"),
    )


def _mental_health(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        F.col("record_id").alias("contact_id"),
        "nhs_number",
        as_text(F.col("date_of_birth")).alias("date_of_birth"),
        "sex",
        "postcode",
        event_date.alias("contact_date"),
        F.col("code").alias("team_type"),
        F.col("defect").alias("_defect"),
    )


def _social_care(rows: DataFrame, as_text, event_date) -> DataFrame:
    """A council's case system: its own client reference, names, dd-MM-yyyy dates, packages started and ended."""
    is_end = F.col("kind") == "care_end"
    return rows.select(
        "period",
        F.col("record_id").alias("EventRef"),
        F.col("local_id").alias("ClientRef"),
        F.col("nhs_number").alias("NHSNo"),
        F.col("forename").alias("FirstName"),
        F.col("surname").alias("LastName"),
        as_text(F.col("date_of_birth")).alias("DateOfBirth"),
        F.when(F.col("sex") == "M", "Male").when(F.col("sex") == "F", "Female").otherwise("Unknown").alias("Gender"),
        F.col("postcode").alias("Postcode"),
        F.when(is_end, "End").otherwise("Start").alias("RecordType"),
        F.col("code").alias("ServiceType"),
        F.when(is_end, F.lit(None)).otherwise(event_date).alias("StartDate"),
        F.when(is_end, event_date).alias("EndDate"),
        F.col("value").cast("string").alias("HoursPerWeek"),
        F.col("value2").cast("string").alias("WeeklyCost"),
        F.col("defect").alias("_defect"),
    )


def _programme(rows: DataFrame, as_text, event_date) -> DataFrame:
    return rows.select(
        "period",
        F.col("record_id").alias("referral_id"),
        "nhs_number",
        "practice_code",
        event_date.alias("referral_date"),
        F.col("code").alias("outcome"),
        F.col("defect").alias("_defect"),
    )


EXTRACT_FORMATS = {
    f.source: f
    for f in (
        ExtractFormat("gp_registrations", "csv", "yyyy-MM-dd", False, _gp_registrations),
        ExtractFormat("gp_events", "csv", "yyyy-MM-dd", True, _gp_events),
        ExtractFormat("inpatient", "csv", "dd/MM/yyyy", True, _inpatient),
        ExtractFormat("ae", "parquet", None, False, _ae),
        ExtractFormat("outpatient", "csv", "yyyy-MM-dd", True, _outpatient),
        ExtractFormat("deaths", "csv", "yyyy-MM-dd", False, _deaths),
        ExtractFormat("community", "csv", "yyyy-MM-dd", True, _community),
        ExtractFormat("mental_health", "csv", "yyyy-MM-dd", True, _mental_health),
        ExtractFormat("social_care", "csv", "dd-MM-yyyy", True, _social_care),
        ExtractFormat("programme", "csv", "yyyy-MM-dd", False, _programme),
    )
}


def injected_defects(records: DataFrame) -> DataFrame:
    """Truth: (source, period, record_id, defect) for every defect that reached an extract."""
    parts = [
        records.where(F.col("source") == fmt.source)
        .select("source", "period", "record_id", applicable_defect(fmt).alias("defect"))
        .where(F.col("defect").isNotNull())
        for fmt in EXTRACT_FORMATS.values()
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out
