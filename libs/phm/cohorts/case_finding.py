"""Case-finding cohorts declared in YAML (configs/cohorts/*.yaml), over one row of columns per living person.

A cohort is a `population` and a `rule`, both Spark SQL over COHORT_COLUMNS, and a `priority` (Spark SQL
order expressions) by which each PCN's list is ranked; every spec names the `source` of its clinical
definition. Readings are given as arrays so that thresholds and windows stay in the rules, e.g. two raised
blood pressures in a year: `size(filter(bp, r -> (r.systolic >= 140 OR r.diastolic >= 90) AND
r.event_date > add_months(reference_date, -12))) >= 2`. A cohort that names a condition in
`finds_undiagnosed` is scored against the truth store by `evaluate_case_finding` (precision: members who
truly have it; recall: of the people who have it undiagnosed, the share the cohort finds); one with a `truth`
rule (Spark SQL over the truth store's person table, e.g. true CVD risk and statin start) is scored the same way
against the people the rule selects.

Besides the named readings, every observation of configs/codelists/observations.yaml is in two maps keyed by
its name: `readings[name]`, its plausible readings in the lookback (newest first), and `latest[name]`, its
latest plausible reading on or before the reference date (null if none), each a struct of event_date, value,
value2 and category; so a user adds a cohort on a new observation (e.g. QRISK3, statin issues) without code.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from phm.config import StrictModel, load_definitions_folder
from phm.person.definitions import Name
from phm.rules import sql_condition
from phm.tables import TableSpec, register

# The person's gold.segments columns a cohort may use (besides those built here).
SEGMENT_COLUMNS = (
    "age", "age_band", "sex", "ethnicity", "imd_quintile", "practice_code", "pcn_code", "segment", "conditions",
    "long_term_conditions", "cms_score", "efi_score", "efi_category", "social_care", "emergency_admissions_12m",
    "ae_attendances_12m", "high_intensity_user", "annual_cost", "housing_cases_12m",
)  # fmt: skip
# Built from gold.observations (plausible readings in the lookback) and gold.events.
READING_COLUMNS = ("reference_date", "bp", "hba1c", "latest_bmi", "smoking_status", "falls_12m", "readings", "latest")
READING = "struct<event_date:date,value:double,value2:double,category:string>"
COHORT_COLUMNS = SEGMENT_COLUMNS + READING_COLUMNS


class TruthRule(StrictModel):
    finds: Name = Field(description="A name for what the cohort should find (the evaluation's `condition`).")
    rule: str = Field(description="Spark SQL over the truth store's person table and reference_date.")


class CohortSpec(StrictModel):
    name: Name
    description: str
    source: str = Field(min_length=3, description="Where the clinical definition comes from.")
    population: str = Field("true", description="Who the cohort is drawn from (Spark SQL over COHORT_COLUMNS).")
    rule: str = Field(description="Who is in it (Spark SQL over COHORT_COLUMNS).")
    priority: list[str] = Field(default_factory=list, description="Order of each PCN's list (Spark SQL, DESC ok).")
    evidence: dict[str, str] = Field(default_factory=dict, description="name: expression shown beside each person.")
    finds_undiagnosed: str | None = Field(None, description="The condition it looks for (truth-store evaluation).")
    truth: TruthRule | None = Field(None, description="Who it should find, as a rule over the truth store.")

    @model_validator(mode="after")
    def _one_truth(self) -> CohortSpec:
        if self.finds_undiagnosed and self.truth:
            raise ValueError("a cohort is evaluated by finds_undiagnosed or by truth, not both")
        return self

    @property
    def evaluated_for(self) -> str | None:
        """What the truth-store evaluation looks for (None: not evaluated)."""
        return self.finds_undiagnosed or (self.truth.finds if self.truth else None)

    @property
    def table(self) -> str:
        return f"mart.cohort_{self.name}"


def load_cohort_specs(folder: str) -> dict[str, tuple[CohortSpec, str]]:
    return load_definitions_folder(folder, CohortSpec, "cohort definitions", "cohorts.definitions")


COHORT_SCHEMA = T.StructType(
    [
        T.StructField("reference_date", T.DateType(), False),
        T.StructField("cohort", T.StringType(), False),
        T.StructField("pcn_code", T.StringType(), True),
        T.StructField("practice_code", T.StringType(), True),
        T.StructField("person_id", T.StringType(), False),
        T.StructField("priority", T.IntegerType(), False),
        T.StructField("age_band", T.StringType(), True),
        T.StructField("sex", T.StringType(), True),
        T.StructField("evidence", T.MapType(T.StringType(), T.StringType()), True),
    ]
)


def cohort_table(spec: CohortSpec) -> TableSpec:
    """mart.cohort_<name>, declared when the cohort is (one table per cohort: PCNs get their own lists)."""
    return register(
        TableSpec(
            name=spec.table,
            grain="one row per person in the cohort at a reference date",
            description=f"Case-finding cohort {spec.name}: {spec.description} Pseudonyms only; ranked per PCN.",
            keys=("reference_date", "person_id"),
            schema=COHORT_SCHEMA,
        )
    )


def cohort_columns(
    segments: DataFrame,
    observations: DataFrame,
    events: DataFrame,
    reference_date,
    lookback_months: int,
    observation_names: list[str],
) -> DataFrame:
    """One row per living person of gold.segments: person_id, COHORT_COLUMNS. bp: array of (event_date,
    systolic, diastolic), hba1c: array of (event_date, value), plausible readings in the `lookback_months`
    to the reference date; latest_bmi and smoking_status: the latest reading; falls_12m: events flagged as
    a fall in the 12 months to the reference date; readings and latest: maps with every one of
    `observation_names` as a key (the module's docstring)."""
    ref = F.lit(reference_date).cast("date")
    known = observations.where(F.col("plausible") & (F.col("event_date") <= ref))
    recent = known.where(F.col("event_date") > F.add_months(ref, -lookback_months))
    readings = recent.groupBy("person_id").agg(
        F.collect_list(
            F.when(F.col("observation") == "blood_pressure", F.struct(
                "event_date", F.col("value").alias("systolic"), F.col("value2").alias("diastolic")))
        ).alias("bp"),
        F.collect_list(
            F.when(F.col("observation") == "hba1c", F.struct("event_date", "value"))
        ).alias("hba1c"),
    )  # fmt: skip
    latest = (
        observations.where(F.col("is_latest") & F.col("observation").isin("bmi", "smoking_status"))
        .groupBy("person_id")
        .agg(
            F.max(F.when(F.col("observation") == "bmi", F.col("value"))).alias("latest_bmi"),
            F.max(F.when(F.col("observation") == "smoking_status", F.col("category"))).alias("smoking_status"),
        )
    )
    falls = (
        events.where(F.col("fall") & (F.col("event_date") <= ref) & (F.col("event_date") > F.add_months(ref, -12)))
        .groupBy("person_id")
        .agg(F.count(F.lit(1)).cast("int").alias("falls_12m"))
    )
    by_name = _reading_maps(recent, known, sorted(observation_names))
    empty_bp = F.array().cast("array<struct<event_date:date,systolic:double,diastolic:double>>")
    empty_hba1c = F.array().cast("array<struct<event_date:date,value:double>>")
    return (
        segments.select("person_id", *SEGMENT_COLUMNS)
        .join(readings, "person_id", "left")
        .join(latest, "person_id", "left")
        .join(falls, "person_id", "left")
        .join(by_name, "person_id", "left")
        .select(
            "person_id",
            *SEGMENT_COLUMNS,
            ref.alias("reference_date"),
            F.coalesce("bp", empty_bp).alias("bp"),
            F.coalesce("hba1c", empty_hba1c).alias("hba1c"),
            "latest_bmi",
            "smoking_status",
            F.coalesce("falls_12m", F.lit(0)).alias("falls_12m"),
            F.coalesce("readings", _map_of(observation_names, lambda name: F.array().cast(f"array<{READING}>"))).alias(
                "readings"
            ),
            F.coalesce("latest", _map_of(observation_names, lambda name: F.lit(None).cast(READING))).alias("latest"),
        )
    )


def _reading_maps(recent: DataFrame, known: DataFrame, names: list[str]) -> DataFrame:
    """person_id, readings (name -> readings in the lookback, newest first), latest (name -> latest reading)."""
    reading = F.struct("event_date", "value", "value2", "category").cast(READING)
    newest_first = F.sort_array(F.collect_list(F.struct("event_date", "record_id", reading.alias("r"))), asc=False)
    lists = recent.groupBy("person_id").pivot("observation", names).agg(newest_first["r"])
    latest = (
        known.groupBy("person_id")
        .pivot("observation", names)
        .agg(F.max_by(reading, F.struct("event_date", "record_id")))
    )
    empty = F.array().cast(f"array<{READING}>")
    in_lookback = _map_of(names, lambda name: F.coalesce(F.col(f"`{name}`"), empty))
    return latest.select("person_id", _map_of(names, lambda name: F.col(f"`{name}`")).alias("latest")).join(
        lists.select("person_id", in_lookback.alias("readings")), "person_id", "full"
    )


def _map_of(names, value) -> Column:
    """A map with each name as a key and value(name) as its value."""
    return F.create_map(*[part for name in sorted(names) for part in (F.lit(name), value(name))])


def cohort_members(columns: DataFrame, spec: CohortSpec, path: str) -> DataFrame:
    """The cohort's people in COHORT_SCHEMA, ranked within their PCN by the spec's priority (then person_id,
    so the order is stable). A rule that does not parse or names another column is a ConfigError naming the
    file and key."""
    what = "the cohort columns"
    population = sql_condition(columns, f"coalesce({spec.population}, false)", f"{path}: population", what)
    rule = sql_condition(columns, f"coalesce({spec.rule}, false)", f"{path}: rule", what)
    order = [_order(columns, expression, f"{path}: priority") for expression in spec.priority]
    evidence = [(name, sql_condition(columns, expression, f"{path}: evidence.{name}", what).cast("string"))
                for name, expression in spec.evidence.items()]  # fmt: skip
    members = columns.where(population & rule)
    ranked = members.withColumn(
        "priority",
        F.row_number().over(Window.partitionBy("pcn_code").orderBy(*order, F.col("person_id"))).cast("int"),
    )
    evidence_map = F.create_map(*[x for name, value in evidence for x in (F.lit(name), value)]) if evidence else None
    return ranked.select(
        "reference_date",
        F.lit(spec.name).alias("cohort"),
        "pcn_code",
        "practice_code",
        "person_id",
        "priority",
        "age_band",
        "sex",
        (evidence_map if evidence_map is not None else F.lit(None).cast("map<string,string>")).alias("evidence"),
    )


def _order(columns: DataFrame, expression: str, key: str):
    text = expression.strip()
    descending = text.upper().endswith(" DESC")
    body = text[: -len(" DESC")] if descending else text.removesuffix(" ASC").removesuffix(" asc")
    column = sql_condition(columns, body, key, "the cohort columns")
    return column.desc_nulls_last() if descending else column.asc_nulls_last()


def cohort_summary(members: DataFrame, columns: DataFrame, spec: CohortSpec) -> DataFrame:
    """Per PCN (and 'all'): people in the cohort and in its population (before disclosure control)."""
    population = columns.where(F.expr(f"coalesce({spec.population}, false)"))
    pcn = F.coalesce(F.col("pcn_code"), F.lit("unknown")).alias("pcn_code")
    counted = members.groupBy(pcn).agg(F.count(F.lit(1)).alias("people"))
    base = population.groupBy(pcn).agg(F.count(F.lit(1)).alias("population"))
    per_pcn = base.join(counted, "pcn_code", "left").fillna(0, subset=["people"])
    total = per_pcn.agg(F.sum("population").alias("population"), F.sum("people").alias("people"))
    return per_pcn.unionByName(total.withColumn("pcn_code", F.lit("all"))).withColumn("cohort", F.lit(spec.name))


def accuracy(population: DataFrame, members: DataFrame, truly_has: DataFrame) -> dict[str, int | float | None]:
    """Precision and recall of a cohort against the truth (evaluation only). `population`: person_id of the
    cohort's population; `members`: person_id in the cohort; `truly_has`: person_id of everyone who truly
    has the condition at the reference date. The population excludes the register, so the truly-ill in it
    are the undiagnosed (or coded but missing from the register) the cohort is meant to find."""
    truth = truly_has.select("person_id").distinct().withColumn("_has", F.lit(1))
    pop = population.select("person_id").distinct().join(truth, "person_id", "left")
    found = members.select("person_id").distinct().join(pop, "person_id", "inner")
    totals = pop.agg(F.count(F.lit(1)).alias("population"), F.count("_has").alias("undiagnosed")).first()
    counts = found.agg(F.count(F.lit(1)).alias("members"), F.count("_has").alias("true_positives")).first()
    members_n, true_positives = int(counts["members"]), int(counts["true_positives"])
    population_n, undiagnosed = int(totals["population"]), int(totals["undiagnosed"])
    return {
        "members": members_n,
        "true_positives": true_positives,
        "precision": true_positives / members_n if members_n else None,
        "undiagnosed": undiagnosed,
        "found": true_positives,
        "recall": true_positives / undiagnosed if undiagnosed else None,
        "population": population_n,
        "undiagnosed_prevalence": undiagnosed / population_n if population_n else None,
    }
