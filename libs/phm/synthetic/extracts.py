"""Source extracts in the shapes suppliers deliver, with the generator's injected defects applied.

Each source has its own format: CSV with ISO dates (GP registrations, GP
events, outpatients, community and mental health contacts, the programme
register, deaths), a SUS-like inpatient CSV with its own column names, coded
sex and dd/MM/yyyy dates, a council's social care CSV keyed by its own client
reference with dd-MM-yyyy dates, the council's housing cases keyed by its own
applicant reference with no NHS number, and A&E as typed Parquet. Defects
(truth/injected_defects) are applied where they make sense for the format:
a malformed date only in text files, an unknown code only where a code
column exists; exact duplicates everywhere; and, to the delivered text of
CSV files, truncated lines, stray delimiters and text in numeric columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.synthetic.calibration import DefectCalibration

FUTURE_YEARS = 3
UNKNOWN_CODE = "ZZZ99"
LINE_DEFECTS = ("truncated_line", "stray_delimiter", "wrong_type")
WRONG_TYPE_COLUMNS = {"gp_events": "value", "social_care": "WeeklyCost"}  # numeric columns that get text
WRONG_TYPE_TEXT = "see notes"
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
    # A future date is years after the month it was delivered in (history delivered with the first month
    # is moved from that month, so the date really is in the future of its extract).
    period_start = F.to_date(F.concat(F.col("period"), F.lit("-01")))
    future = F.add_months(F.greatest(F.col("event_date"), period_start), 12 * FUTURE_YEARS)
    shifted = F.when(F.col("defect") == "future_date", future).otherwise(F.col("event_date"))

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


def _housing(rows: DataFrame, as_text, event_date) -> DataFrame:
    """A council's housing case system: its own applicant reference, no NHS number, dd/MM/yyyy dates."""
    return rows.select(
        "period",
        F.col("record_id").alias("CaseRef"),
        F.col("local_id").alias("ApplicantRef"),
        F.col("forename").alias("Forename"),
        F.col("surname").alias("Surname"),
        as_text(F.col("date_of_birth")).alias("DOB"),
        F.when(F.col("sex") == "M", "M").when(F.col("sex") == "F", "F").otherwise("X").alias("Sex"),
        F.col("postcode").alias("LastSettledPostcode"),
        F.col("code").alias("NeedType"),
        event_date.alias("ApproachDate"),
        F.col("defect").alias("_defect"),
    )


def _plain(
    id_column: str, fields: tuple[str, ...], date_column: str, code_column: str | None = None, values: bool = False
) -> Callable[[DataFrame, Callable[[Column], Column], Column], DataFrame]:
    """A source whose extract is the record id, some identity fields, the event date and perhaps a code."""

    def build(rows: DataFrame, as_text: Callable[[Column], Column], event_date: Column) -> DataFrame:
        columns: list[Column | str] = ["period", F.col("record_id").alias(id_column)]
        columns += [as_text(F.col(f)).alias(f) if f == "date_of_birth" else f for f in fields]
        columns.append(event_date.alias(date_column))
        if code_column:
            columns.append(F.col("code").alias(code_column))
        if values:
            columns += [F.col("value").cast("string").alias("value"), F.col("value2").cast("string").alias("value2")]
        return rows.select(*columns, F.col("defect").alias("_defect"))

    return build


DEMOGRAPHICS = ("nhs_number", "date_of_birth", "sex", "postcode")
NAMED = ("nhs_number", "forename", "surname", "date_of_birth", "sex", "postcode")

EXTRACT_FORMATS = {
    f.source: f
    for f in (
        ExtractFormat("gp_registrations", "csv", "yyyy-MM-dd", False, _gp_registrations),
        ExtractFormat(
            "gp_events",
            "csv",
            "yyyy-MM-dd",
            True,
            _plain("record_id", ("nhs_number", "practice_code"), "event_date", "snomed_code", values=True),
        ),
        ExtractFormat("inpatient", "csv", "dd/MM/yyyy", True, _inpatient),
        ExtractFormat("ae", "parquet", None, False, _plain("attendance_id", (*NAMED, "practice_code"), "arrival_date")),
        ExtractFormat(
            "outpatient",
            "csv",
            "yyyy-MM-dd",
            True,
            _plain("appointment_id", (*DEMOGRAPHICS, "practice_code"), "appointment_date", "treatment_function_code"),
        ),
        ExtractFormat("deaths", "csv", "yyyy-MM-dd", False, _plain("record_id", NAMED, "date_of_death")),
        ExtractFormat(
            "community",
            "csv",
            "yyyy-MM-dd",
            True,
            _plain("contact_id", (*DEMOGRAPHICS, "practice_code"), "contact_date", "service"),
        ),
        ExtractFormat(
            "mental_health", "csv", "yyyy-MM-dd", True, _plain("contact_id", DEMOGRAPHICS, "contact_date", "team_type")
        ),
        ExtractFormat("social_care", "csv", "dd-MM-yyyy", True, _social_care),
        ExtractFormat("housing", "csv", "dd/MM/yyyy", True, _housing),
        ExtractFormat(
            "programme",
            "csv",
            "yyyy-MM-dd",
            False,
            _plain("referral_id", ("nhs_number", "practice_code"), "referral_date", "outcome"),
        ),
    )
}


def line_defect_of(record_id: str, rates: DefectCalibration) -> str | None:
    """The text damage a record's delivered line gets, from its id (uniform: ids are 64-bit hashes)."""
    position = int(record_id[:8], 16) / 2**32
    edge = 0.0
    for kind in LINE_DEFECTS:
        edge += getattr(rates, kind)
        if position < edge:
            return kind
    return None


def line_defect_share(rates: DefectCalibration) -> float:
    """The share of lines given any text damage."""
    return sum(getattr(rates, kind) for kind in LINE_DEFECTS)


def line_defect_id_bound(rates: DefectCalibration) -> str:
    """Lines whose record id's first 8 hex digits sort below this may be damaged (line_defect_of decides);
    every other line is not, which a string comparison tells without parsing the id (ids are lowercase hex)."""
    bound = math.ceil(line_defect_share(rates) * 2**32) + 1
    return format(bound, "08x") if bound < 2**32 else "g"  # "g" sorts after every hex digit


def applicable_line_defect(fmt: ExtractFormat, rates: DefectCalibration) -> Column:
    """Spark twin of line_defect_of, null where the source's format cannot carry the damage."""
    position = F.conv(F.substring("record_id", 1, 8), 16, 10).cast("double") / 2**32
    kind = F.lit(None).cast("string")
    edge = line_defect_share(rates)
    for name in reversed(LINE_DEFECTS):
        kind = F.when(position < edge, F.lit(name)).otherwise(kind)
        edge -= getattr(rates, name)
    if fmt.file_format != "csv":
        return F.lit(None).cast("string")
    if fmt.source not in WRONG_TYPE_COLUMNS:
        kind = F.when(kind == "wrong_type", F.lit(None)).otherwise(kind)
    return kind


def damage_line(line: str, kind: str, header: list[str], source: str) -> str:
    """A delivered CSV line as it arrives damaged (the record id, the first field, always survives)."""
    fields = line.split(",")
    if kind == "truncated_line":
        return line[: max(len(line) // 2, len(fields[0]) + 1)]
    if kind == "stray_delimiter" and len(fields) > 2:
        middle = len(fields[2]) // 2
        fields[2] = fields[2][:middle] + "," + fields[2][middle:]
        return ",".join(fields)
    if kind == "wrong_type" and source in WRONG_TYPE_COLUMNS:
        column = header.index(WRONG_TYPE_COLUMNS[source])
        if column < len(fields):
            fields[column] = WRONG_TYPE_TEXT
        return ",".join(fields)
    return line


def injected_defects(records: DataFrame, rates: DefectCalibration) -> DataFrame:
    """Truth: (source, period, record_id, defect) for every defect that reached an extract: a record's own
    defect and its line's text damage, each where its source's format can carry it.

    One pass over records: the few that can carry either (a record defect, or an id below the line damage
    bound) are kept first, so the per-source choice runs on them alone (a query per source and kind read
    every record 22 times: 65 s at 1m people; one pass choosing on every record took 137 s)."""
    candidates = records.where(
        F.col("defect").isNotNull() | (F.substring("record_id", 1, 8) < F.lit(line_defect_id_bound(rates)))
    )

    def by_source(defect_of: Callable[[ExtractFormat], Column]) -> Column:
        out = F.lit(None).cast("string")
        for fmt in EXTRACT_FORMATS.values():
            out = F.when(F.col("source") == fmt.source, defect_of(fmt)).otherwise(out)
        return out

    defects = F.array(by_source(applicable_defect), by_source(partial(applicable_line_defect, rates=rates)))
    return candidates.select("source", "period", "record_id", F.explode(defects).alias("defect")).where(
        F.col("defect").isNotNull()
    )
