"""Multimorbidity and frailty scores at a reference date.

- Cambridge Multimorbidity Score: Payne RA, Mendonca SC, Elliott MN et al.
  Development and validation of the Cambridge Multimorbidity Score. CMAJ
  2020;192(5):E107-E114. General outcome weights (configs/segmentation.yaml):
  the sum of the weights of the person's current conditions; a weight shared
  by several conditions (anxiety/depression) counts once; cancer only if
  first recorded in the last 5 years.
- Electronic Frailty Index: Clegg A, Bates C, Young J et al. Development and
  validation of an electronic frailty index using routine primary care
  electronic health record data. Age Ageing 2016;45(3):353-360. 36 equally
  weighted deficits; score = deficits present / 36 (deficits that no source
  can measure stay in the denominator, as published); categories fit <= 0.12,
  mild <= 0.24, moderate <= 0.36, severe above; ages 65+ only.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.frames import literal_frame
from phm.person.codes import CONDITION, FRAILTY_DEFICIT, INCLUDE
from phm.person.conditions import AS_OF, as_of_dates
from phm.person.definitions import CodeList
from phm.segmentation.definitions import EFI_CATEGORIES, CambridgeMultimorbidityScore, ElectronicFrailtyIndex


def cambridge_multimorbidity_score(conditions: DataFrame, cms: CambridgeMultimorbidityScore, as_of: str) -> DataFrame:
    """person_id, cms_score for everyone with at least one weighted condition (others score 0)."""
    return cms_by_date(conditions.withColumn(AS_OF, F.lit(as_of).cast("date")), cms).drop(AS_OF)


def cms_by_date(conditions: DataFrame, cms: CambridgeMultimorbidityScore) -> DataFrame:
    """person_id, as_of, cms_score: cambridge_multimorbidity_score at each date of conditions_by_date's rows."""
    rows = [
        (condition, index, entry.weight, entry.first_recorded_within_years)
        for index, entry in enumerate(cms.weights)
        for condition in entry.conditions
    ]
    entries = literal_frame(conditions.sparkSession, rows, "condition string, entry int, weight double, years int")
    recent = F.col("years").isNull() | (F.col("first_recorded") > F.add_months(F.col(AS_OF), -12 * F.col("years")))
    return (
        conditions.join(F.broadcast(entries), "condition")
        .where(recent)
        .select("person_id", AS_OF, "entry", "weight")
        .distinct()
        .groupBy("person_id", AS_OF)
        .agg(F.round(F.sum("weight"), 2).alias("cms_score"))
    )


def efi_code_lists(efi: ElectronicFrailtyIndex) -> list[CodeList]:
    """The eFI deficits recognised by their codes, each as a code list named after it."""
    return [
        CodeList(name=name, description=name, version="efi", source=efi.source, snomed=d.snomed, icd10=d.icd10)
        for name, d in efi.deficits.items()
        if d.snomed or d.icd10
    ]


def coded_event_families(conditions: dict[str, CodeList], efi: ElectronicFrailtyIndex) -> dict[str, list[CodeList]]:
    """The code lists gold.coded_events matches the timeline to (phm.person.codes.coded_events): the conditions'
    and the eFI deficits'."""
    return {CONDITION: list(conditions.values()), FRAILTY_DEFICIT: efi_code_lists(efi)}


def efi_deficits(
    coded: DataFrame, conditions: DataFrame, social_care_running: DataFrame, efi: ElectronicFrailtyIndex, as_of: str
) -> DataFrame:
    """person_id, deficit: each eFI deficit present at `as_of` (from current conditions, codes ever recorded
    before it, or social care services running on it). `coded`: gold.coded_events' rows."""
    dates = as_of_dates(coded.sparkSession, [as_of])
    dated = [frame.withColumn(AS_OF, F.lit(as_of).cast("date")) for frame in (conditions, social_care_running)]
    return efi_deficits_by_date(coded, *dated, efi, dates).drop(AS_OF)


def efi_deficits_by_date(
    coded: DataFrame,
    conditions: DataFrame,
    social_care_running: DataFrame,
    efi: ElectronicFrailtyIndex,
    dates: DataFrame,
) -> DataFrame:
    """person_id, as_of, deficit: efi_deficits at each date of `dates` (an as_of column), from
    conditions_by_date's and social_care_running_by_date's rows for those dates and gold.coded_events' rows
    (the events already matched to the deficits' codes, here only dated)."""
    spark = coded.sparkSession
    by_condition = literal_frame(
        spark,
        [(c, name) for name, d in efi.deficits.items() for c in d.conditions],
        "condition string, deficit string",
    )
    from_conditions = conditions.join(F.broadcast(by_condition), "condition").select("person_id", AS_OF, "deficit")
    from_codes = (
        coded.where((F.col("family") == FRAILTY_DEFICIT) & (F.col("entry") == INCLUDE))
        .crossJoin(F.broadcast(dates.select(AS_OF)))
        .where(F.col("event_date") <= F.col(AS_OF))
        .select("person_id", AS_OF, F.col("codelist").alias("deficit"))
    )
    by_service = literal_frame(
        spark,
        [(s, name) for name, d in efi.deficits.items() for s in d.social_care],
        "service string, deficit string",
    )
    from_care = social_care_running.join(F.broadcast(by_service), "service").select("person_id", AS_OF, "deficit")
    return from_conditions.unionByName(from_codes).unionByName(from_care).distinct()


def efi_category(score: Column, efi: ElectronicFrailtyIndex) -> Column:
    bounds = efi.categories
    return (
        F.when(score.isNull(), None)
        .when(score <= bounds["fit"], "fit")
        .when(score <= bounds["mild"], "mild")
        .when(score <= bounds["moderate"], "moderate")
        .otherwise("severe")
    )


def efi_rank(category: Column) -> Column:
    """fit 0, mild 1, moderate 2, severe 3 (null stays null)."""
    return F.array_position(F.array(*[F.lit(c) for c in EFI_CATEGORIES]), category) - 1


def electronic_frailty_index(deficits: DataFrame, ages: DataFrame, efi: ElectronicFrailtyIndex) -> DataFrame:
    """person_id, efi_deficits, efi_score, efi_category for everyone aged min_age+ in `ages` (person_id, age).
    With an `as_of` column in both frames (efi_deficits_by_date's rows; ages at each date), one row per person
    and date."""
    keys = ["person_id", *([AS_OF] if AS_OF in deficits.columns else [])]
    counts = deficits.groupBy(*keys).agg(F.count(F.lit(1)).alias("efi_deficits"))
    eligible = ages.where(F.col("age") >= efi.min_age).select(*keys)
    scored = eligible.join(counts, keys, "left").withColumn(
        "efi_deficits", F.coalesce(F.col("efi_deficits"), F.lit(0)).cast("int")
    )
    score = F.round(F.col("efi_deficits") / len(efi.deficits), 4)
    return scored.withColumn("efi_score", score).withColumn("efi_category", efi_category(F.col("efi_score"), efi))
