"""Every table the platform writes: name, schema, grain and purpose, declared once.

Names are `layer.name`. Layers: bronze (as delivered), silver (validated,
standardised, pseudonymised), vault (restricted identifiers), gold (the
linked person model), mart (published aggregates), ops (platform
operations). Every table also carries the audit column `_run_id`, the run
that wrote the row, added by the catalogue on write.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from phm.errors import UnknownTableError

LAYERS = ("bronze", "silver", "vault", "gold", "mart", "ops")
RUN_ID_COLUMN = "_run_id"


@dataclass(frozen=True)
class TableSpec:
    """A table's contract: its columns (without the audit column), grain and keys."""

    name: str
    schema: T.StructType
    grain: str
    description: str
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    # Columns Delta keeps file statistics (min, max, nulls) of, for data skipping; None: Delta's default, the
    # first 32 columns; (): none at all. Large tables whose other columns no reader filters on (pseudonyms,
    # free text) name theirs: collecting statistics of every column cost about a third of writing such a table.
    stats_columns: tuple[str, ...] | None = None
    # Wide tables whose further columns follow from configuration (gold.features: one per condition and
    # window) declare their fixed columns and the one type every further column has.
    further_columns_type: T.DataType | None = None
    # Delta records each version's inserted and deleted rows (the change data feed), for readers that
    # process only what changed since the version they last read.
    change_feed: bool = False
    # Updates and deletes mark the rows they replace in a deletion vector instead of rewriting every file that
    # holds one (tables a refresh changes a few rows of in place).
    deletion_vectors: bool = False
    # Rows with the same values of these columns are written to the same file (hash-partitioned by them, each
    # file sorted by the partition columns, then these): readers that aggregate by them (per person) then find
    # each key's rows in one task, so Spark's partial aggregation leaves one row per key rather than one per
    # key and task. Overwrites and appends only; a merge leaves the files it does not rewrite as they are.
    cluster_by: tuple[str, ...] = ()

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def schema_with_audit(self) -> T.StructType:
        return T.StructType([*self.schema.fields, T.StructField(RUN_ID_COLUMN, T.StringType(), False)])


JOB_RUNS = TableSpec(
    name="ops.job_runs",
    grain="one row per job run (a refresh and each stage it runs are separate runs)",
    description="The run ledger: what ran, with which config, what it read and wrote, and how it ended.",
    keys=("run_id",),
    schema=T.StructType(
        [
            T.StructField("run_id", T.StringType(), False),
            T.StructField("job", T.StringType(), False),
            T.StructField("parent_run_id", T.StringType(), True),
            T.StructField("environment", T.StringType(), False),
            T.StructField("config_digest", T.StringType(), False),
            T.StructField("phm_version", T.StringType(), False),
            T.StructField("spark_master", T.StringType(), True),
            T.StructField("status", T.StringType(), False),
            T.StructField("started_at", T.TimestampType(), False),
            T.StructField("ended_at", T.TimestampType(), True),
            T.StructField("input_versions", T.MapType(T.StringType(), T.LongType()), True),
            T.StructField("output_versions", T.MapType(T.StringType(), T.LongType()), True),
            T.StructField("rows_in", T.LongType(), True),
            T.StructField("rows_out", T.LongType(), True),
            T.StructField("rows_quarantined", T.LongType(), True),
            T.StructField("error", T.StringType(), True),
        ]
    ),
)

QOF_PREVALENCE = TableSpec(
    name="silver.reference_qof_prevalence",
    grain="one row per QOF register per IMD 2019 decile (England, 2019/20)",
    description=(
        "Recorded prevalence of each QOF register by IMD decile: the calibration target of the "
        "synthetic population and the expected prevalence for undiagnosed-gap profiling."
    ),
    keys=("register", "imd_decile"),
    schema=T.StructType(
        [
            T.StructField("register", T.StringType(), False),
            T.StructField("imd_decile", T.IntegerType(), False),
            T.StructField("register_count", T.DoubleType(), False),
            T.StructField("list_size", T.DoubleType(), False),
            T.StructField("prevalence", T.DoubleType(), False),
            T.StructField("ratio_to_england", T.DoubleType(), False),
        ]
    ),
)

_LOAD_FIELDS = [
    T.StructField("source", T.StringType(), False),
    T.StructField("period", T.StringType(), False),
    T.StructField("file", T.StringType(), False),
]

LANDED_ROWS = TableSpec(
    name="bronze.landed_rows",
    grain="one row per delivered line (CSV) or row (Parquet) of every loaded landing file",
    description=(
        "Every row exactly as delivered: the supplier's text, in the order of the file's header (its column "
        "names: ops.ingest_files.columns), with load metadata; lines that could not be parsed keep their raw "
        "text and the parse error. Restricted: holds identifiers."
    ),
    keys=("source", "file", "line_number"),
    partition_by=("source", "period"),
    stats_columns=("file", "line_number"),  # finding a quarantined row's raw line
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("line_number", T.LongType(), False),
            T.StructField("checksum", T.StringType(), False),
            T.StructField("values", T.ArrayType(T.StringType()), True),
            T.StructField("raw_line", T.StringType(), True),
            T.StructField("parse_error", T.StringType(), True),
        ]
    ),
)

INGEST_FILES = TableSpec(
    name="ops.ingest_files",
    grain="one row per landing file currently loaded (a re-delivered period replaces its files' rows)",
    description=(
        "What ingest has loaded: file checksum, the file's columns (the names of bronze.landed_rows' values) "
        "and its accounting (rows in = accepted + quarantined)."
    ),
    keys=("source", "period", "file"),
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("checksum", T.StringType(), False),
            T.StructField("size_bytes", T.LongType(), False),
            T.StructField("columns", T.ArrayType(T.StringType()), True),  # header (CSV) or schema names (Parquet)
            T.StructField("rows_in", T.LongType(), False),
            T.StructField("rows_accepted", T.LongType(), False),
            T.StructField("rows_quarantined", T.LongType(), False),
            T.StructField("rows_warned", T.LongType(), False),
            T.StructField("loaded_at", T.TimestampType(), False),
        ]
    ),
)

QUARANTINE = TableSpec(
    name="silver.quarantine",
    grain="one row per rejected input row (the raw line stays in bronze.landed_rows: source, file, line_number)",
    description="Rows kept out of silver, with every rule they failed and why. Holds no identifiers.",
    keys=("source", "file", "line_number"),
    schema=T.StructType(
        [
            *_LOAD_FIELDS,
            T.StructField("line_number", T.LongType(), False),
            T.StructField("record_id", T.StringType(), True),
            T.StructField("rule", T.StringType(), False),
            T.StructField("failed_rules", T.ArrayType(T.StringType()), False),
            T.StructField("reason", T.StringType(), False),
        ]
    ),
)

IDENTITY = TableSpec(
    name="vault.identity",
    grain="one row per accepted identity-bearing source record",
    description=(
        "Restricted: each record's direct identifiers (standardised) beside their keyed pseudonyms, for "
        "linkage and audited re-identification only."
    ),
    keys=("source", "record_id"),
    partition_by=("source", "period"),
    stats_columns=("record_id", "key_id"),  # ingest's check of the key reads key_id from statistics
    change_feed=True,  # linkage reads only the records added or removed since its last run
    schema=T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("period", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
            T.StructField("key_id", T.StringType(), False),
            T.StructField("nhs_number", T.StringType(), True),
            T.StructField("forename", T.StringType(), True),
            T.StructField("surname", T.StringType(), True),
            T.StructField("date_of_birth", T.DateType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("postcode", T.StringType(), True),
            T.StructField("address", T.StringType(), True),
            T.StructField("local_id", T.StringType(), True),
            T.StructField("event_date", T.DateType(), True),
            T.StructField("nhs_number_pseudonym", T.StringType(), True),
            T.StructField("forename_pseudonym", T.StringType(), True),
            T.StructField("surname_pseudonym", T.StringType(), True),
            T.StructField("date_of_birth_pseudonym", T.StringType(), True),
            T.StructField("postcode_pseudonym", T.StringType(), True),
            T.StructField("address_pseudonym", T.StringType(), True),
            T.StructField("local_id_pseudonym", T.StringType(), True),
        ]
    ),
)

DATA_QUALITY = TableSpec(
    name="mart.data_quality",
    grain="one row per source x period x rule (and per schema-drift finding) of each loaded period",
    description=(
        "How many rows failed each rule and what was done (fail / quarantine / warn); replaced per period "
        "on re-delivery, so refreshes can be compared (Great Expectations' own results: the run's Data Docs)."
    ),
    keys=("source", "period", "rule"),
    schema=T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("period", T.StringType(), False),
            T.StructField("rule", T.StringType(), False),
            T.StructField("check", T.StringType(), False),
            T.StructField("column", T.StringType(), True),
            T.StructField("action", T.StringType(), False),
            T.StructField("rows_checked", T.LongType(), False),
            T.StructField("failing_rows", T.LongType(), False),
            T.StructField("detail", T.StringType(), True),
        ]
    ),
)

IDENTITY_PROFILES = TableSpec(
    name="vault.identity_profiles",
    grain="one row per distinct identity profile (combination of identifiers) of vault.identity's records",
    description=(
        "Restricted: what linkage compares, each profile's identifiers and the comparison columns derived from "
        "them, with its records counted by source; kept by `link` so a refresh profiles only the records that "
        "changed."
    ),
    keys=("profile_id",),
    stats_columns=(),  # rewritten whole by every link run and read whole: no reader filters it (keys are hashes)
    schema=T.StructType(
        [
            T.StructField("profile_id", T.StringType(), False),
            T.StructField("nhs_number", T.StringType(), True),
            T.StructField("nhs_number_valid", T.BooleanType(), True),
            T.StructField("forename", T.StringType(), True),
            T.StructField("surname", T.StringType(), True),
            T.StructField("date_of_birth", T.DateType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("postcode", T.StringType(), True),
            T.StructField("postcode_sector", T.StringType(), True),
            T.StructField("postcode_district", T.StringType(), True),
            T.StructField("forename_forms", T.ArrayType(T.StringType()), True),
            T.StructField("surnames", T.ArrayType(T.StringType()), True),
            T.StructField("records_by_source", T.MapType(T.StringType(), T.LongType()), False),
            T.StructField("record_count", T.LongType(), False),
            T.StructField("gp_record_count", T.LongType(), False),
            T.StructField("sources", T.ArrayType(T.StringType()), False),
        ]
    ),
)

LINKAGE_PROFILES = TableSpec(
    name="silver.linkage_profiles",
    grain="one row per distinct identity profile (combination of identifiers) seen by linkage",
    description=(
        "Linkage state: each profile's person_id, how it linked and the linkage run that gave it that link "
        "(a refresh that leaves a profile's person, method and probability as they were keeps the earlier "
        "run's id). The profile id is a hash of keyed pseudonyms, so this holds no identifier; the next "
        "refresh keeps person_ids stable from it."
    ),
    keys=("profile_id",),
    stats_columns=(),  # as vault.identity_profiles: rewritten and read whole
    schema=T.StructType(
        [
            T.StructField("profile_id", T.StringType(), False),
            T.StructField("person_id", T.StringType(), False),
            T.StructField("record_count", T.LongType(), False),
            T.StructField("sources", T.ArrayType(T.StringType()), False),
            T.StructField("link_method", T.StringType(), False),
            T.StructField("match_probability", T.DoubleType(), True),
            T.StructField("linkage_run_id", T.StringType(), False),
        ]
    ),
)

PERSON_LINK = TableSpec(
    name="silver.person_link",
    grain="one row per accepted identity-bearing source record",
    description=(
        "Which person each source record belongs to, the match probability of its profile's strongest "
        "link, how it linked (deterministic, probabilistic, identical_identifiers, unlinked) and the linkage "
        "run that gave its profile that link (silver.linkage_profiles'). A refresh changes in place only the "
        "records added or removed and those of profiles it linked anew."
    ),
    keys=("source", "record_id"),
    partition_by=("source",),
    deletion_vectors=True,  # a refresh relinks the records of a few profiles in place
    change_feed=True,  # the person model follows the records relinked, added and removed since it last read
    schema=T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("period", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
            T.StructField("profile_id", T.StringType(), False),
            T.StructField("person_id", T.StringType(), False),
            T.StructField("match_probability", T.DoubleType(), True),
            T.StructField("link_method", T.StringType(), False),
            T.StructField("linkage_run_id", T.StringType(), False),
        ]
    ),
)

PERSON_ID_HISTORY = TableSpec(
    name="silver.person_id_history",
    grain="one row per person_id change of a linkage run (merge, move or split), appended",
    description=(
        "Every change to the person_id of records already linked: merged into another person, records "
        "moved to another existing person, or split off to a new one; never silent."
    ),
    keys=("linkage_run_id", "person_id_from", "person_id_to"),
    schema=T.StructType(
        [
            T.StructField("linkage_run_id", T.StringType(), False),
            T.StructField("event", T.StringType(), False),
            T.StructField("person_id_from", T.StringType(), False),
            T.StructField("person_id_to", T.StringType(), False),
            T.StructField("records", T.LongType(), False),
            T.StructField("profiles", T.LongType(), False),
            T.StructField("recorded_at", T.TimestampType(), False),
        ]
    ),
)

PERSON = TableSpec(
    name="gold.person",
    grain="one row per linked person",
    description=(
        "The person index: age and age band at the reference date (the end of the latest loaded period), "
        "sex, ethnicity, current GP practice, PCN and place, LSOA and IMD, from the best available values "
        "(the latest GP registration record first, then any source). No direct identifier."
    ),
    keys=("person_id",),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("age", T.IntegerType(), True),
            T.StructField("age_band", T.StringType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("ethnicity", T.StringType(), True),
            T.StructField("practice_code", T.StringType(), True),
            T.StructField("pcn_code", T.StringType(), True),
            T.StructField("place_code", T.StringType(), True),
            T.StructField("lsoa_code", T.StringType(), True),
            T.StructField("imd_decile", T.IntegerType(), True),
            T.StructField("imd_quintile", T.IntegerType(), True),
            T.StructField("gp_registered", T.BooleanType(), False),
            T.StructField("deceased", T.BooleanType(), False),
            T.StructField("death_period", T.StringType(), True),
            T.StructField("records", T.LongType(), False),
            T.StructField("sources", T.ArrayType(T.StringType()), False),
        ]
    ),
)

LINKAGE_QUALITY = TableSpec(
    name="mart.linkage_quality",
    grain="one row per linkage run x measure x group (no truth: what a real ICS can see)",
    description=(
        "Each linkage run's quality without truth: match-weight distribution, cluster-size distribution, "
        "records and unlinked records per source, link methods, comparisons per blocking rule."
    ),
    keys=("linkage_run_id", "measure", "group_value"),
    schema=T.StructType(
        [
            T.StructField("linkage_run_id", T.StringType(), False),
            T.StructField("measure", T.StringType(), False),
            T.StructField("group_value", T.StringType(), False),
            T.StructField("value", T.DoubleType(), False),
        ]
    ),
)

LINKAGE_EVALUATION = TableSpec(
    name="mart.linkage_evaluation",
    grain="one row per evaluated linkage run x method (the model, the NHS-number baseline) x scope x group",
    description=(
        "Linkage measured against the synthetic truth store (evaluation only): pairwise precision, recall "
        "and F1, missed links, split and falsely merged persons, overall and by source, ethnicity, age "
        "band and IMD quintile, beside the NHS-number-only baseline on the same records."
    ),
    keys=("linkage_run_id", "method", "scope", "group_value"),
    schema=T.StructType(
        [
            T.StructField("linkage_run_id", T.StringType(), False),
            T.StructField("method", T.StringType(), False),
            T.StructField("scope", T.StringType(), False),
            T.StructField("group_value", T.StringType(), True),
            *[
                T.StructField(n, T.LongType(), True)
                for n in ("records", "persons", "true_pairs", "predicted_pairs", "true_positive_pairs")
            ],
            *[T.StructField(n, T.DoubleType(), True) for n in ("precision", "recall", "f1")],
            T.StructField("missed_link_records", T.LongType(), True),
            T.StructField("missed_link_rate", T.DoubleType(), True),
            T.StructField("split_persons", T.LongType(), True),
            T.StructField("falsely_merged_persons", T.LongType(), True),
            T.StructField("false_merge_rate", T.DoubleType(), True),
        ]
    ),
)

# Layers that hold direct identifiers; everything else must hold pseudonyms only (leak tests search it).
EVENTS = TableSpec(
    name="gold.events",
    grain="one row per activity record of every source (a social care package: its start record, with its end)",
    description=(
        "The person timeline: every contact with every service (GP, acute, A&E, outpatient, community, mental "
        "health, social care, programme, death) with its date, codes, admission method, length of stay, cost "
        "from the unit-cost table and flags (emergency, ACSC, fall). Pseudonymous: keyed by person_id."
    ),
    keys=("source", "record_id"),
    partition_by=("service",),
    # features, actuarial, segment and case finding aggregate the timeline per person: at 1m features took
    # 159-168 s on clustered files against 196.5 s, actuarial 121 s against 163 s (docs/bench.md)
    cluster_by=("person_id",),
    deletion_vectors=True,  # a refresh replaces, removes and relinks the events of the records that changed
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("source", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
            T.StructField("period", T.StringType(), True),
            T.StructField("service", T.StringType(), False),
            T.StructField("activity", T.StringType(), False),
            T.StructField("setting", T.StringType(), True),
            T.StructField("event_date", T.DateType(), False),
            T.StructField("end_date", T.DateType(), True),
            T.StructField("code_system", T.StringType(), True),
            T.StructField("code", T.StringType(), True),
            T.StructField("procedure_code", T.StringType(), True),
            T.StructField("value", T.DoubleType(), True),
            T.StructField("value2", T.DoubleType(), True),
            T.StructField("admission_method", T.StringType(), True),
            T.StructField("length_of_stay", T.IntegerType(), True),
            T.StructField("age_at_event", T.IntegerType(), True),
            T.StructField("cost", T.DoubleType(), True),
            T.StructField("daily_cost", T.DoubleType(), True),
            T.StructField("emergency", T.BooleanType(), False),
            T.StructField("acsc", T.BooleanType(), False),
            T.StructField("fall", T.BooleanType(), False),
        ]
    ),
)

CODED_EVENTS = TableSpec(
    name="gold.coded_events",
    grain="one row per gold.events row x condition or eFI deficit code list it belongs to (and what the code means)",
    description=(
        "The timeline's coded events matched once to the code lists the later stages read: the conditions' "
        "(configs/codelists/conditions/: diagnosis or resolved codes) and the electronic frailty index's deficits "
        "(person_model.segmentation), family saying which. Features, segments and the actuarial history date "
        "these few rows instead of matching the whole timeline again (docs/person_model.md)."
    ),
    keys=("source", "record_id", "family", "codelist", "entry"),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("source", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
            T.StructField("event_date", T.DateType(), False),
            T.StructField("family", T.StringType(), False),
            T.StructField("codelist", T.StringType(), False),
            T.StructField("entry", T.StringType(), False),
        ]
    ),
)

CONDITIONS = TableSpec(
    name="gold.conditions",
    grain="one row per person x condition current at the reference date",
    description=(
        "Condition registers from the code lists (configs/codelists/conditions/): first and last recorded "
        "date, the source that recorded it first, how many records and which sources; resolved conditions "
        "and those outside a rule's window or age are left out."
    ),
    keys=("person_id", "condition"),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("condition", T.StringType(), False),
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("first_recorded", T.DateType(), False),
            T.StructField("first_source", T.StringType(), False),
            T.StructField("last_recorded", T.DateType(), False),
            T.StructField("records", T.LongType(), False),
            T.StructField("sources", T.ArrayType(T.StringType()), False),
        ]
    ),
)

OBSERVATIONS = TableSpec(
    name="gold.observations",
    grain="one row per reading (GP event) of a configured observation, on or before the reference date",
    description=(
        "Blood pressure (value systolic, value2 diastolic), HbA1c, BMI and smoking status (category): every "
        "reading, implausible ones kept and flagged, the latest plausible reading per person flagged is_latest."
    ),
    keys=("source", "record_id", "observation"),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("observation", T.StringType(), False),
            T.StructField("event_date", T.DateType(), False),
            T.StructField("value", T.DoubleType(), True),
            T.StructField("value2", T.DoubleType(), True),
            T.StructField("category", T.StringType(), True),
            T.StructField("unit", T.StringType(), True),
            T.StructField("plausible", T.BooleanType(), False),
            T.StructField("is_latest", T.BooleanType(), False),
            T.StructField("source", T.StringType(), False),
            T.StructField("record_id", T.StringType(), False),
        ]
    ),
)

# gold.person's attributes that gold.segments carries, so profiles need no join.
SEGMENT_PERSON_ATTRIBUTES = (
    "age", "age_band", "sex", "ethnicity", "imd_quintile", "practice_code", "pcn_code", "place_code",
)  # fmt: skip

SEGMENTS = TableSpec(
    name="gold.segments",
    grain="one row per living person at the reference date",
    description=(
        "Bridges to Health segment (the single highest-need one), current conditions and the number of "
        "long-term conditions, Cambridge Multimorbidity Score, electronic frailty index (65+), social care "
        "running, emergency admissions and A&E attendances in the last 12 months, high-intensity use, "
        "annual cost and housing cases (homelessness duties, temporary accommodation) in the last 12 months; "
        "with the person's age, sex, ethnicity, IMD quintile, practice, PCN and place."
    ),
    keys=("person_id",),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("reference_date", T.DateType(), False),
            *[PERSON.schema[name] for name in SEGMENT_PERSON_ATTRIBUTES],
            T.StructField("segment", T.StringType(), False),
            T.StructField("segment_label", T.StringType(), False),
            T.StructField("segment_order", T.IntegerType(), False),
            T.StructField("conditions", T.ArrayType(T.StringType()), False),
            T.StructField("long_term_conditions", T.IntegerType(), False),
            T.StructField("cms_score", T.DoubleType(), False),
            T.StructField("efi_deficits", T.IntegerType(), True),
            T.StructField("efi_score", T.DoubleType(), True),
            T.StructField("efi_category", T.StringType(), True),
            T.StructField("social_care", T.ArrayType(T.StringType()), False),
            T.StructField("emergency_admissions_12m", T.IntegerType(), False),
            T.StructField("ae_attendances_12m", T.IntegerType(), False),
            T.StructField("high_intensity_user", T.BooleanType(), False),
            T.StructField("annual_cost", T.DoubleType(), False),
            T.StructField("housing_cases_12m", T.IntegerType(), False),
        ]
    ),
)

CONDITION_ASCERTAINMENT = TableSpec(
    name="mart.condition_ascertainment",
    grain="one row per evaluated reference date x condition x IMD quintile (and 'all')",
    description=(
        "Recorded prevalence (gold.conditions over living persons) beside true prevalence (the synthetic "
        "truth store: evaluation only; true_coded: true cases the GP has coded by then), and the ratio of recorded to "
        "true cases, overall and by IMD quintile."
    ),
    keys=("reference_date", "condition", "imd_quintile"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("condition", T.StringType(), False),
            T.StructField("imd_quintile", T.StringType(), False),
            T.StructField("persons", T.LongType(), False),
            T.StructField("recorded", T.LongType(), False),
            T.StructField("recorded_prevalence", T.DoubleType(), True),
            T.StructField("true_persons", T.LongType(), False),
            T.StructField("true_cases", T.LongType(), False),
            T.StructField("true_coded", T.LongType(), False),
            T.StructField("true_prevalence", T.DoubleType(), True),
            T.StructField("recorded_to_true", T.DoubleType(), True),
        ]
    ),
)

RISK_SPLITS = ("train", "validation", "score")

FEATURES = TableSpec(
    name="gold.features",
    grain="one row per person x index date (training, validation and scoring dates)",
    description=(
        "Risk model features at each index date, from data dated strictly before it (age, sex, IMD, "
        "conditions, CMS, eFI, latest observations, contacts, bed days and costs by service over the "
        "configured windows, trends), the label (an emergency admission in the follow-up from the index date; "
        "null on the scoring date), the split, and the attributes subgroups are reported by. Further columns: "
        "one double per feature, named by what it counts (e.g. emergency_admissions_12m, condition_copd)."
    ),
    keys=("person_id", "index_date"),
    # A refresh that keeps the training and validation rows replaces the scoring date's files alone.
    partition_by=("split",),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("index_date", T.DateType(), False),
            T.StructField("split", T.StringType(), False),
            T.StructField("label", T.IntegerType(), True),
            T.StructField("age_group", T.StringType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("ethnicity", T.StringType(), True),
            T.StructField("imd_quintile", T.IntegerType(), True),
            T.StructField("practice_code", T.StringType(), True),
            T.StructField("pcn_code", T.StringType(), True),
        ]
    ),
    further_columns_type=T.DoubleType(),
)

# The measures of a model on a set of people (phm.models.metrics): discrimination, calibration, top-k.
PERFORMANCE_MEASURES = (
    "auc", "auprc", "brier", "calibration_slope", "calibration_intercept", "mean_predicted", "observed_rate",
    "ppv_top1", "sensitivity_top1", "ppv_top5", "sensitivity_top5", "ppv_top10", "sensitivity_top10",
)  # fmt: skip

RISK_MODEL_PERFORMANCE = TableSpec(
    name="mart.risk_model_performance",
    grain="one row per trained model version x subgroup (and 'all') on its validation index date",
    description=(
        "Each trained risk model's validation performance, overall and by IMD quintile, ethnicity, sex and "
        "age band: AUC, AUPRC, Brier score, calibration slope and intercept, PPV and sensitivity in the top "
        "1/5/10%; flagged where a subgroup's AUC is more than the configured margin below the overall."
    ),
    keys=("model_name", "model_version", "grouping", "group_value"),
    schema=T.StructType(
        [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("mlflow_run_id", T.StringType(), False),
            T.StructField("index_date", T.DateType(), False),
            T.StructField("grouping", T.StringType(), False),
            T.StructField("group_value", T.StringType(), False),
            T.StructField("persons", T.LongType(), False),
            T.StructField("events", T.LongType(), False),
            *[T.StructField(name, T.DoubleType(), True) for name in PERFORMANCE_MEASURES],
            T.StructField("flagged", T.BooleanType(), False),
        ]
    ),
)

RISK_TIERS = ("high", "emerging", "low")

RISK_SCORES = TableSpec(
    name="gold.risk_scores",
    grain="one row per living person x scored model (its champion version) at the scoring index date",
    description=(
        "Each person's probability of an emergency admission in the follow-up from the scoring date, from the "
        "model's champion version (mlflow.pyfunc.spark_udf), its percentile in the scored population and tier "
        "(high / emerging / low by the configured percentile cut-offs)."
    ),
    keys=("person_id", "model_name"),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("index_date", T.DateType(), False),
            T.StructField("probability", T.DoubleType(), False),
            T.StructField("percentile", T.DoubleType(), False),
            T.StructField("tier", T.StringType(), False),
        ]
    ),
)

SEGMENT_MATRIX = TableSpec(
    name="mart.segment_matrix",
    grain="one row per scored model x Bridges to Health segment x risk tier",
    description=(
        "The segment x risk-tier bubble matrix: people, annual cost, emergency admissions in the last 12 "
        "months and expected admissions in the next (the sum of the probabilities) per cell, from "
        "gold.segments and gold.risk_scores. Published: people 1-7 hide the cell, few admissions only the admissions, "
        "counts rounded to 5, secondary suppression across a segment's tiers (column suppressed)."
    ),
    keys=("model_name", "segment", "tier"),
    schema=T.StructType(
        [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("segment_order", T.IntegerType(), False),
            T.StructField("segment", T.StringType(), False),
            T.StructField("segment_label", T.StringType(), False),
            T.StructField("tier", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("annual_cost", T.DoubleType(), True),
            T.StructField("emergency_admissions_12m", T.LongType(), True),
            T.StructField("expected_admitted_people", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

RISK_ORACLE_EVALUATION = TableSpec(
    name="mart.risk_oracle_evaluation",
    grain="one row per evaluated model version x index date (synthetic truth store: evaluation only)",
    description=(
        "A model's AUC beside the oracle AUC of the true probabilities on the same people and outcomes, and "
        "its calibration against the true risk (slope and intercept of true on predicted log-odds, mean "
        "absolute difference over predicted-risk deciles)."
    ),
    keys=("model_name", "model_version", "index_date"),
    schema=T.StructType(
        [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("index_date", T.DateType(), False),
            T.StructField("persons", T.LongType(), False),
            T.StructField("persons_with_truth", T.LongType(), False),
            T.StructField("events", T.LongType(), False),
            T.StructField("model_auc", T.DoubleType(), True),
            T.StructField("oracle_auc", T.DoubleType(), True),
            T.StructField("auc_gap", T.DoubleType(), True),
            T.StructField("slope_vs_true_risk", T.DoubleType(), True),
            T.StructField("intercept_vs_true_risk", T.DoubleType(), True),
            T.StructField("decile_mean_abs_error", T.DoubleType(), True),
            T.StructField("mean_predicted", T.DoubleType(), True),
            T.StructField("mean_true_risk", T.DoubleType(), True),
        ]
    ),
)

RISK_ACHIEVABLE_AUC = TableSpec(
    name="mart.risk_achievable_auc",
    grain="one row per validation index date x history length (synthetic truth store: evaluation only)",
    description=(
        "The best AUC any risk model can reach on the synthetic ICS's emergency admissions at the validation "
        "index date (phm.synthetic.achievable): the AUC of the Bayes predictor that knows each living person's "
        "true conditions, age, IMD cell and high-intensity flag and sees `history_months` of every contact the "
        "generator raises with its unobserved person factor, beside the oracle AUC of the same simulated "
        "outcomes, the predictor with no history and with the emergency admissions only."
    ),
    keys=("index_date", "history_months"),
    schema=T.StructType(
        [
            T.StructField("index_date", T.DateType(), False),
            T.StructField("history_months", T.IntegerType(), False),
            T.StructField("persons", T.LongType(), False),
            T.StructField("outcome_rate", T.DoubleType(), True),
            T.StructField("oracle_auc", T.DoubleType(), True),
            T.StructField("no_history_auc", T.DoubleType(), True),
            T.StructField("admissions_only_auc", T.DoubleType(), True),
            T.StructField("achievable_auc", T.DoubleType(), True),
        ]
    ),
)

PROGRAMME_TRIAL = TableSpec(
    name="gold.programme_trial",
    grain="one row per person in the emulated trial of the historical programme",
    description=(
        "The historical programme as an emulated trial (phm.impactability.cohort): people eligible at the "
        "baseline index date at a practice that referred anyone; treated if enrolled at a referral in the "
        "recruitment window; time zero (the referral, or a seeded date in the window); an emergency admission "
        "and their number in the follow-up from time zero and in the same span before; the propensity (every "
        "baseline feature) and the difference-in-differences' propensity (the characteristics); the "
        "held-out flag of the uplift models' evaluation. Baseline features are in gold.features."
    ),
    keys=("person_id",),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("baseline_date", T.DateType(), False),
            T.StructField("role", T.StringType(), False),
            T.StructField("treated", T.IntegerType(), False),
            T.StructField("time_zero", T.DateType(), False),
            T.StructField("outcome", T.IntegerType(), False),
            T.StructField("outcome_count", T.IntegerType(), False),
            T.StructField("prior", T.IntegerType(), False),
            T.StructField("prior_count", T.IntegerType(), False),
            T.StructField("propensity", T.DoubleType(), False),
            T.StructField("did_propensity", T.DoubleType(), False),
            T.StructField("held_out", T.BooleanType(), False),
            T.StructField("pcn_code", T.StringType(), True),
        ]
    ),
)

POPULATION_PROFILE = TableSpec(
    name="mart.population_profile",
    grain="one row per reference date x tier x area x breakdown x group x measure",
    description=(
        "Population profiles by tier (system, place, PCN) and by age band, sex, ethnicity and IMD quintile: "
        "people, recorded prevalence of each condition (percent), emergency admissions and A&E attendances "
        "in the last 12 months (per 1,000) and annual cost per head, crude with 95% intervals and directly "
        "standardised to the European Standard Population 2013 (Dobson intervals). Published: counts 1-7 "
        "suppressed, others rounded to 5, dependent values suppressed with them (column suppressed)."
    ),
    keys=("reference_date", "tier", "area_code", "breakdown", "group", "measure"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("tier", T.StringType(), False),
            T.StructField("area_code", T.StringType(), False),
            T.StructField("breakdown", T.StringType(), False),
            T.StructField("group", T.StringType(), False),
            T.StructField("measure", T.StringType(), False),
            T.StructField("unit", T.StringType(), False),
            T.StructField("numerator", T.LongType(), True),
            T.StructField("denominator", T.LongType(), True),
            T.StructField("value", T.DoubleType(), True),
            T.StructField("ci_low", T.DoubleType(), True),
            T.StructField("ci_high", T.DoubleType(), True),
            T.StructField("standardised_value", T.DoubleType(), True),
            T.StructField("standardised_ci_low", T.DoubleType(), True),
            T.StructField("standardised_ci_high", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

INEQUALITIES = TableSpec(
    name="mart.inequalities",
    grain="one row per reference date x tier x area x measure",
    description=(
        "Slope and relative index of inequality across IMD deciles (most minus least deprived, fitted on the "
        "deciles' ridits weighted by their people) of each profile measure, age-standardised where the profile "
        "standardises it, with 95% simulated intervals; people rounded to 5."
    ),
    keys=("reference_date", "tier", "area_code", "measure"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("tier", T.StringType(), False),
            T.StructField("area_code", T.StringType(), False),
            T.StructField("measure", T.StringType(), False),
            T.StructField("unit", T.StringType(), False),
            T.StructField("standardised", T.BooleanType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("deciles", T.IntegerType(), False),
            T.StructField("mean", T.DoubleType(), True),
            T.StructField("sii", T.DoubleType(), True),
            T.StructField("sii_ci_low", T.DoubleType(), True),
            T.StructField("sii_ci_high", T.DoubleType(), True),
            T.StructField("rii", T.DoubleType(), True),
            T.StructField("rii_ci_low", T.DoubleType(), True),
            T.StructField("rii_ci_high", T.DoubleType(), True),
        ]
    ),
)

EXPECTED_PREVALENCE = TableSpec(
    name="mart.expected_prevalence",
    grain="one row per reference date x tier x area x condition",
    description=(
        "Recorded against expected prevalence: expected recorded cases by indirect standardisation to the "
        "system's recorded prevalence by age band and sex, the ratio of recorded to expected with exact 95% "
        "limits, and where a national undiagnosed share is configured (profiling.undiagnosed), the expected "
        "true cases and the undiagnosed gap (expected less recorded). Published: counts 1-7 suppressed, others "
        "rounded to 5, secondary suppression across a tier's areas."
    ),
    keys=("reference_date", "tier", "area_code", "condition"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("tier", T.StringType(), False),
            T.StructField("area_code", T.StringType(), False),
            T.StructField("condition", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("recorded", T.LongType(), True),
            T.StructField("recorded_prevalence", T.DoubleType(), True),
            T.StructField("expected_recorded", T.DoubleType(), True),
            T.StructField("ratio", T.DoubleType(), True),
            T.StructField("ratio_ci_low", T.DoubleType(), True),
            T.StructField("ratio_ci_high", T.DoubleType(), True),
            T.StructField("undiagnosed_share", T.DoubleType(), True),
            T.StructField("expected_cases", T.DoubleType(), True),
            T.StructField("expected_prevalence", T.DoubleType(), True),
            T.StructField("undiagnosed_gap", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

COHORT_SUMMARY = TableSpec(
    name="mart.cohort_summary",
    grain="one row per reference date x cohort x PCN (and 'all')",
    description=(
        "Case-finding cohort sizes per PCN: people in the cohort and in its population, and the rate per 1,000 "
        "of the population. Published: counts 1-7 suppressed, others rounded to 5, secondary suppression "
        "across a cohort's PCNs (column suppressed)."
    ),
    keys=("reference_date", "cohort", "pcn_code"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("cohort", T.StringType(), False),
            T.StructField("pcn_code", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("population", T.LongType(), True),
            T.StructField("per_1000", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

CASE_FINDING_EVALUATION = TableSpec(
    name="mart.case_finding_evaluation",
    grain="one row per reference date x cohort that looks for an undiagnosed condition",
    description=(
        "Each undiagnosed-condition cohort against the synthetic truth store (evaluation only): members, those "
        "who truly have the condition (precision), the people living with it undiagnosed in the cohort's "
        "population and the share found (recall), beside the undiagnosed prevalence of the population (the "
        "precision of picking people at random)."
    ),
    keys=("reference_date", "cohort"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("cohort", T.StringType(), False),
            T.StructField("condition", T.StringType(), False),
            T.StructField("members", T.LongType(), False),
            T.StructField("true_positives", T.LongType(), False),
            T.StructField("precision", T.DoubleType(), True),
            T.StructField("undiagnosed", T.LongType(), False),
            T.StructField("found", T.LongType(), False),
            T.StructField("recall", T.DoubleType(), True),
            T.StructField("population", T.LongType(), False),
            T.StructField("undiagnosed_prevalence", T.DoubleType(), True),
        ]
    ),
)

PROGRAMME_EVALUATION = TableSpec(
    name="mart.programme_evaluation",
    grain="one row per estimation method of the programme's effect",
    description=(
        "The historical programme's average effect on the treated on the probability of an emergency "
        "admission in the follow-up (negative: admissions prevented), by naive difference, naive before/after, "
        "inverse probability weighting, propensity matching and weighted difference-in-differences, each with "
        "a 95% bootstrap interval and the treated and comparators it used."
    ),
    keys=("method",),
    schema=T.StructType(
        [
            T.StructField("method", T.StringType(), False),
            T.StructField("baseline_date", T.DateType(), False),
            T.StructField("follow_up_months", T.IntegerType(), False),
            T.StructField("estimate", T.DoubleType(), True),
            T.StructField("ci_low", T.DoubleType(), True),
            T.StructField("ci_high", T.DoubleType(), True),
            T.StructField("treated", T.LongType(), False),
            T.StructField("comparators", T.LongType(), False),
            T.StructField("mlflow_run_id", T.StringType(), False),
        ]
    ),
)

PROGRAMME_BALANCE = TableSpec(
    name="mart.programme_balance",
    grain="one row per baseline feature of the programme's propensity model",
    description="Standardised mean difference (treated minus comparators) of each baseline feature before "
    "weighting, after the propensity's weights (ipw, matched) and after the difference-in-differences' weights "
    "(did_ipw: the characteristics balanced, prior use left to the DiD): the balance the estimates rest on.",
    keys=("feature",),
    schema=T.StructType(
        [
            T.StructField("feature", T.StringType(), False),
            T.StructField("smd_before", T.DoubleType(), False),
            T.StructField("smd_after", T.DoubleType(), False),
            T.StructField("smd_after_did", T.DoubleType(), False),
        ]
    ),
)

UPLIFT_MODEL_PERFORMANCE = TableSpec(
    name="mart.uplift_model_performance",
    grain="one row per trained uplift model version",
    description="Each uplift model version's Qini coefficient on the held-out people of the programme trial "
    "(comparators weighted by the propensity's odds), the people and treated it was measured on, and whether "
    "it was promoted to champion (and why).",
    keys=("model_name", "model_version"),
    schema=T.StructType(
        [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("mlflow_run_id", T.StringType(), False),
            T.StructField("learner", T.StringType(), False),
            T.StructField("held_out_people", T.LongType(), False),
            T.StructField("held_out_treated", T.LongType(), False),
            T.StructField("qini", T.DoubleType(), True),
            T.StructField("promoted", T.BooleanType(), False),
            T.StructField("reason", T.StringType(), False),
        ]
    ),
)

INTERVENTION_TARGETS = TableSpec(
    name="mart.intervention_targets",
    grain="one row per person chosen for the intervention (per PCN, up to its capacity)",
    description=(
        "Whom each PCN's care coordinators should take on: among the eligible and amenable, after the "
        "exclusions, the people with the most expected emergency admissions avoided (risk x relative uplift), "
        "up to the PCN's capacity; with their risk, predicted benefit and its model uncertainty, and the "
        "expected admissions and cost avoided. Pseudonymous: person_id only."
    ),
    keys=("person_id",),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("pcn_code", T.StringType(), True),
            T.StructField("practice_code", T.StringType(), True),
            T.StructField("rank_in_pcn", T.IntegerType(), False),
            T.StructField("index_date", T.DateType(), False),
            T.StructField("risk", T.DoubleType(), False),
            T.StructField("benefit", T.DoubleType(), False),
            T.StructField("untreated_risk", T.DoubleType(), False),
            T.StructField("relative_benefit", T.DoubleType(), False),
            T.StructField("expected_admissions_avoided", T.DoubleType(), False),
            T.StructField("expected_admissions_avoided_sd", T.DoubleType(), False),
            T.StructField("expected_cost_avoided", T.DoubleType(), False),
            T.StructField("risk_model", T.StringType(), False),
            T.StructField("uplift_model", T.StringType(), False),
        ]
    ),
)

INTERVENTION_SUMMARY = TableSpec(
    name="mart.intervention_summary",
    grain="one row per PCN",
    description=(
        "Per PCN: capacity, candidates (eligible, amenable, not excluded), people excluded by each rule, people "
        "chosen, and the expected emergency admissions and cost avoided with a 95% interval (model spread "
        "across the uplift model's bags, taken as fully correlated, plus the outcomes' own variance); beside it "
        "the expected admissions avoided had the same capacity gone to the highest risk instead."
    ),
    keys=("pcn_code",),
    schema=T.StructType(
        [
            T.StructField("pcn_code", T.StringType(), False),
            T.StructField("capacity", T.IntegerType(), False),
            T.StructField("candidates", T.LongType(), False),
            T.StructField("excluded", T.MapType(T.StringType(), T.LongType()), False),
            T.StructField("chosen", T.LongType(), False),
            T.StructField("expected_admissions_avoided", T.DoubleType(), False),
            T.StructField("admissions_avoided_low", T.DoubleType(), False),
            T.StructField("admissions_avoided_high", T.DoubleType(), False),
            T.StructField("expected_cost_avoided", T.DoubleType(), False),
            T.StructField("cost_avoided_low", T.DoubleType(), False),
            T.StructField("cost_avoided_high", T.DoubleType(), False),
            T.StructField("expected_admissions_avoided_by_risk_only", T.DoubleType(), False),
        ]
    ),
)

IMPACTABILITY_ORACLE_EVALUATION = TableSpec(
    name="mart.impactability_oracle_evaluation",
    grain="one row per measure x subject (synthetic truth store: evaluation only)",
    description=(
        "Impactability against the truth: each programme estimate beside the true average effect on the "
        "treated (bias, whether its interval covers it); each uplift champion's Qini beside the oracle's "
        "(ranking by true benefit) on the same held-out people and the correlation of predicted with true "
        "benefit; the true admissions avoided by targeting on uplift and on risk alone at the same capacity."
    ),
    keys=("measure", "subject"),
    schema=T.StructType(
        [
            T.StructField("measure", T.StringType(), False),
            T.StructField("subject", T.StringType(), False),
            T.StructField("value", T.DoubleType(), True),
            T.StructField("truth", T.DoubleType(), True),
            T.StructField("ratio_or_gap", T.DoubleType(), True),
            T.StructField("ci_low", T.DoubleType(), True),
            T.StructField("ci_high", T.DoubleType(), True),
            T.StructField("covered", T.BooleanType(), True),
            T.StructField("people", T.LongType(), True),
        ]
    ),
)

AUDIT = TableSpec(
    name="vault.audit",
    grain="one row per re-identification request, granted or refused (appended, never rewritten)",
    description=(
        "Restricted: who asked (operating-system account) and when, with which roles, for which cohort and "
        "PCN, for what purpose; whether it was granted and why, how many people were identified and where "
        "the list was written. No identity is recorded here."
    ),
    keys=("request_id",),
    schema=T.StructType(
        [
            T.StructField("request_id", T.StringType(), False),
            T.StructField("requested_at", T.TimestampType(), False),
            T.StructField("user", T.StringType(), False),
            T.StructField("roles", T.ArrayType(T.StringType()), False),
            T.StructField("cohort", T.StringType(), False),
            T.StructField("pcn_code", T.StringType(), True),
            T.StructField("purpose", T.StringType(), False),
            T.StructField("granted", T.BooleanType(), False),
            T.StructField("reason", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("output", T.StringType(), True),
        ]
    ),
)

RESTRICTED_LAYERS = ("bronze", "vault")

_REGISTRY: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    """Declare a table; its layer must be one of LAYERS and its name unique."""
    layer, _, entity = spec.name.partition(".")
    if layer not in LAYERS or not entity or "." in entity:
        raise ValueError(f"table name {spec.name!r} must be <layer>.<name> with layer one of {LAYERS}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"table {spec.name} is declared twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> TableSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTableError(
            f"unknown table {name!r}; declared tables: {', '.join(sorted(_REGISTRY))} "
            "(declare new tables in phm.tables)"
        ) from None


SEGMENT_HISTORY = TableSpec(
    name="gold.segment_history",
    grain="one row per living person x segmentation date (every actuarial.step_months back from the reference date)",
    description=(
        "The Bridges to Health segment each person was in at each past date, built as gold.segments is (the "
        "persons living and seen by then, conditions current then, the 12 months of activity before it), with "
        "the 12 months' cost, emergency admissions and their cost: the history the actuarial model learns from."
    ),
    keys=("person_id", "reference_date"),
    schema=T.StructType(
        [
            T.StructField("person_id", T.StringType(), False),
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("age", T.IntegerType(), True),
            T.StructField("age_band", T.StringType(), True),
            T.StructField("sex", T.StringType(), True),
            T.StructField("segment", T.StringType(), False),
            T.StructField("segment_order", T.IntegerType(), False),
            T.StructField("emergency_admissions_12m", T.IntegerType(), False),
            T.StructField("emergency_cost_12m", T.DoubleType(), False),
            T.StructField("annual_cost", T.DoubleType(), False),
        ]
    ),
)

ACTUARIAL_COSTS = TableSpec(
    name="mart.actuarial_costs",
    grain="one row per segmentation date x breakdown (all, segment, age_sex, segment_age_group) x group",
    description=(
        "Cost per person (mean annual cost, normal 95% interval), total cost, shares of people and of cost, "
        "emergency admissions and their rate per 1,000, by segment, age band x sex and segment x age group. "
        "Published: counts 1-7 suppressed, others rounded to 5, secondary suppression within a breakdown; few "
        "emergency admissions hide only the admissions (suppressed says which)."
    ),
    keys=("reference_date", "breakdown", "segment", "age_band", "age_group", "sex"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("breakdown", T.StringType(), False),
            T.StructField("segment", T.StringType(), False),
            T.StructField("age_band", T.StringType(), False),
            T.StructField("age_group", T.StringType(), False),
            T.StructField("sex", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("total_cost", T.DoubleType(), True),
            T.StructField("cost_per_person", T.DoubleType(), True),
            T.StructField("cost_ci_low", T.DoubleType(), True),
            T.StructField("cost_ci_high", T.DoubleType(), True),
            T.StructField("share_of_people", T.DoubleType(), True),
            T.StructField("share_of_cost", T.DoubleType(), True),
            T.StructField("emergency_admissions", T.LongType(), True),
            T.StructField("emergency_admissions_per_1000", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

COST_CONCENTRATION = TableSpec(
    name="mart.cost_concentration",
    grain="one row per segmentation date x top percent (1 to 100)",
    description=(
        "The share of all annual cost spent on the costliest 1% ... 100% of living people (the concentration "
        "curve; top 1 / 5 / 20% in the log), and the Gini coefficient of cost; people rounded to 5, shares of "
        "groups of 7 people or fewer suppressed."
    ),
    keys=("reference_date", "top_percent"),
    schema=T.StructType(
        [
            T.StructField("reference_date", T.DateType(), False),
            T.StructField("top_percent", T.IntegerType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("cost_share", T.DoubleType(), True),
            T.StructField("gini", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

SEGMENT_TRANSITIONS = TableSpec(
    name="mart.segment_transitions",
    grain="one row per step (from_date, to_date) x age group (and 'all') x segment at the start x state at the end",
    description=(
        "The segment transition matrix from history: of the people in a segment at one date, how many were in "
        "each segment at the next, died or were lost (not seen again), and the share of the row; by age group "
        "at the start. Published: counts 1-7 suppressed, others rounded to 5, secondary suppression in a row."
    ),
    keys=("from_date", "to_date", "age_group", "from_segment", "to_state"),
    schema=T.StructType(
        [
            T.StructField("from_date", T.DateType(), False),
            T.StructField("to_date", T.DateType(), False),
            T.StructField("age_group", T.StringType(), False),
            T.StructField("from_segment", T.StringType(), False),
            T.StructField("to_state", T.StringType(), False),
            T.StructField("people", T.LongType(), True),
            T.StructField("share", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

_PROJECTED = [
    T.StructField("segment", T.StringType(), False),
    T.StructField("measure", T.StringType(), False),
    T.StructField("median", T.DoubleType(), True),
    T.StructField("low", T.DoubleType(), True),
    T.StructField("high", T.DoubleType(), True),
]

ACTUARIAL_PROJECTION = TableSpec(
    name="mart.actuarial_projection",
    grain="one row per scenario (and baseline) x step x segment (each, died, all) x measure",
    description=(
        "Projected people, annual cost (constant prices) and emergency admissions per segment, from ageing, "
        "segment transitions, deaths and entrants (phm.actuarial.projection): Monte Carlo median and interval "
        "(actuarial.interval); for a scenario, its difference from the baseline draw by draw. Step 0 is the "
        "observed base date (disclosure-controlled); people rounded to 5."
    ),
    keys=("scenario", "step", "segment", "measure"),
    schema=T.StructType(
        [
            T.StructField("scenario", T.StringType(), False),
            T.StructField("base_date", T.DateType(), False),
            T.StructField("step", T.IntegerType(), False),
            T.StructField("projection_date", T.DateType(), False),
            *_PROJECTED,
            T.StructField("difference_median", T.DoubleType(), True),
            T.StructField("difference_low", T.DoubleType(), True),
            T.StructField("difference_high", T.DoubleType(), True),
            T.StructField("interval", T.DoubleType(), False),
            T.StructField("simulations", T.IntegerType(), False),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)

ACTUARIAL_BACKTEST = TableSpec(
    name="mart.actuarial_backtest",
    grain="one row per backtest step x segment (each, died, all) x measure",
    description=(
        "The projection made from an earlier base date with only what was known then, against what happened: "
        "projected median and interval, actual, error and relative error, whether the interval covered the "
        "actual, and the relative error of assuming no change (the base date's value). Actual counts are "
        "disclosure-controlled before the errors are computed."
    ),
    keys=("base_date", "step", "segment", "measure"),
    schema=T.StructType(
        [
            T.StructField("base_date", T.DateType(), False),
            T.StructField("step", T.IntegerType(), False),
            T.StructField("target_date", T.DateType(), False),
            *_PROJECTED,
            T.StructField("actual", T.DoubleType(), True),
            T.StructField("error", T.DoubleType(), True),
            T.StructField("relative_error", T.DoubleType(), True),
            T.StructField("covered", T.BooleanType(), True),
            T.StructField("no_change", T.DoubleType(), True),
            T.StructField("no_change_relative_error", T.DoubleType(), True),
            T.StructField("suppressed", T.StringType(), True),
        ]
    ),
)


TABLE_MAINTENANCE = TableSpec(
    name="ops.table_maintenance",
    grain="one row per maintain run x table x action (compact, vacuum) it took",
    description=(
        "What `phm run maintain` did to each table: files compacted (before and after, with bytes) and files "
        "vacuumed; a vacuum pass records every table it checked, so the next pass is due from its time."
    ),
    keys=("run_id", "table_name", "action"),
    schema=T.StructType(
        [
            T.StructField("run_id", T.StringType(), False),
            T.StructField("table_name", T.StringType(), False),
            T.StructField("action", T.StringType(), False),
            T.StructField("files_before", T.LongType(), False),
            T.StructField("files_after", T.LongType(), False),
            T.StructField("bytes_before", T.LongType(), False),
            T.StructField("bytes_after", T.LongType(), False),
            T.StructField("files_deleted", T.LongType(), False),
            T.StructField("seconds", T.DoubleType(), False),
            T.StructField("done_at", T.TimestampType(), False),
        ]
    ),
)


def all_specs() -> list[TableSpec]:
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


for _spec in (
    JOB_RUNS,
    TABLE_MAINTENANCE,
    QOF_PREVALENCE,
    LANDED_ROWS,
    INGEST_FILES,
    QUARANTINE,
    IDENTITY,
    DATA_QUALITY,
    IDENTITY_PROFILES,
    LINKAGE_PROFILES,
    PERSON_LINK,
    PERSON_ID_HISTORY,
    PERSON,
    LINKAGE_QUALITY,
    LINKAGE_EVALUATION,
    EVENTS,
    CODED_EVENTS,
    CONDITIONS,
    OBSERVATIONS,
    SEGMENTS,
    CONDITION_ASCERTAINMENT,
    FEATURES,
    RISK_MODEL_PERFORMANCE,
    RISK_SCORES,
    SEGMENT_MATRIX,
    PROGRAMME_TRIAL,
    PROGRAMME_EVALUATION,
    PROGRAMME_BALANCE,
    UPLIFT_MODEL_PERFORMANCE,
    INTERVENTION_TARGETS,
    INTERVENTION_SUMMARY,
    IMPACTABILITY_ORACLE_EVALUATION,
    RISK_ORACLE_EVALUATION,
    RISK_ACHIEVABLE_AUC,
    POPULATION_PROFILE,
    INEQUALITIES,
    EXPECTED_PREVALENCE,
    COHORT_SUMMARY,
    CASE_FINDING_EVALUATION,
    SEGMENT_HISTORY,
    ACTUARIAL_COSTS,
    COST_CONCENTRATION,
    SEGMENT_TRANSITIONS,
    ACTUARIAL_PROJECTION,
    ACTUARIAL_BACKTEST,
    AUDIT,
):
    register(_spec)
