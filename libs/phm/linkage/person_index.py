"""gold.person: one row per linked person from the best available values.

Best values (the order a PHM analyst would trust them):
- date of birth and sex: the most frequent value among the person's GP
  registration records, else among all their records (ties: the earlier date,
  F before M); only age and age band leave the vault;
- GP practice and registration status: the latest GP registration record
  (by effective date, then delivery); deregistered means no current practice;
- LSOA and IMD: the latest GP registration record that has them;
- ethnicity: the latest stated ethnicity in GP records ("Not stated" only if
  nothing else was ever recorded);
- death: any death registration (its month only).
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from phm.frames import as_bits, from_bits
from phm.ingest.outputs import age_band
from phm.linkage.profiles import GP_SOURCE, known_sex

DEATHS_SOURCE = "deaths"
NOT_STATED = "Not stated"


def person_index(
    profiles: DataFrame,
    links: DataFrame,
    registrations: DataFrame,
    deaths: DataFrame,
    practices: DataFrame,
    reference_date: str,
    sources: Iterable[str],
) -> DataFrame:
    """profiles: one row per linked profile (profile_id, person_id, date_of_birth, sex, record_count,
    gp_record_count, sources); links: silver.person_link, of which only GP registration and death records
    are read; the others their silver tables; sources: every source a profile may list (its `sources`, the
    person's sorted union of them).

    Every record of a profile carries the profile's identifiers, so counting values over profiles
    weighted by their records gives what counting over the records would, without joining every
    record back to the vault (31.6m records at 1m people, against 3.7m profiles).
    """
    universe = sorted(sources)
    # One shuffle of the profiles by person serves every step up to gold.person's join with the GP values:
    # Spark plans no other exchange for a grouping or window whose keys start with person_id. Per person, date
    # of birth and sex: their records (GP registration records too) and sources (1.1m rows at 1m people,
    # from 3.7m profiles). Grouped three ways with an exchange each, this took 36.7 s against 31.7 s
    # (gold.person at 1m people, docs/bench.md).
    combos = (
        profiles.repartition("person_id")
        .groupBy("person_id", "date_of_birth", known_sex(F.col("sex")).alias("sex"))
        .agg(
            F.sum("record_count").cast("long").alias("_records"),
            F.sum("gp_record_count").cast("long").alias("_gp_records"),
            F.bit_or(as_bits(F.col("sources"), universe)).alias("_bits"),
        )
    )

    def most_frequent_first(column: str) -> Column:
        """Ranks `column`'s values within the person (smallest first): most GP records, then most records of
        any source, then the smaller value; null for a missing value (min_by skips it)."""
        value = Window.partitionBy("person_id", column)
        rank = F.struct(-F.sum("_gp_records").over(value), -F.sum("_records").over(value), F.col(column))
        return F.when(F.col(column).isNotNull(), rank)

    totals = (
        combos.select(
            "*",
            most_frequent_first("date_of_birth").alias("_date_rank"),
            most_frequent_first("sex").alias("_sex_rank"),
        )
        .groupBy("person_id")
        .agg(
            F.sum("_records").alias("records"),
            from_bits(F.bit_or("_bits"), universe).alias("sources"),
            F.min_by("date_of_birth", "_date_rank").alias("date_of_birth"),
            F.min_by("sex", "_sex_rank").alias("sex"),
        )
    )

    linked = links.where(F.col("source").isin(GP_SOURCE, DEATHS_SOURCE)).select("source", "record_id", "person_id")
    gp = linked.where(F.col("source") == GP_SOURCE).join(
        registrations.select("record_id", "record_type", "ethnicity", "lsoa_code", "imd_decile", "practice_code",
                             "effective_date", "period", "line_number"),
        "record_id",
    )  # fmt: skip
    # One aggregation picks the three latest records (one shuffle of the GP records, not a window each):
    # the larger the key, the later the record (an effective date first, then the later one, delivery, line).
    latest = F.struct(
        F.col("effective_date").isNotNull(), F.col("effective_date"), F.col("period"), F.col("line_number")
    )
    stated = F.col("ethnicity") != NOT_STATED
    gp_values = gp.groupBy("person_id").agg(
        F.max_by(F.struct("record_type", "practice_code"), latest).alias("_current"),
        F.max_by(F.struct("lsoa_code", "imd_decile"), F.when(F.col("lsoa_code").isNotNull(), latest)).alias("_area"),
        F.max_by("ethnicity", F.when(F.col("ethnicity").isNotNull(), F.struct(stated, latest))).alias("ethnicity"),
    )
    registered = F.col("_current.record_type") != "deregistration"
    gp_values = gp_values.select(
        "person_id",
        registered.alias("gp_registered"),
        F.when(registered, F.col("_current.practice_code")).alias("practice_code"),
        F.col("_area.lsoa_code").alias("lsoa_code"),
        F.col("_area.imd_decile").alias("imd_decile"),
        "ethnicity",
    )
    died = (
        linked.where(F.col("source") == DEATHS_SOURCE)
        .join(deaths.select("record_id", "date_of_death"), "record_id")
        .groupBy("person_id")
        .agg(F.min("date_of_death").alias("_date_of_death"))
    )
    units = practices.select("practice_code", "pcn_code", "place_code").dropDuplicates(["practice_code"])

    reference = F.to_date(F.lit(reference_date))
    at = F.least(reference, F.coalesce(F.col("_date_of_death"), reference))
    age = F.floor(F.months_between(at, F.col("date_of_birth")) / 12).cast("int")
    return (
        totals.join(gp_values, "person_id", "left")
        .join(died, "person_id", "left")
        .join(F.broadcast(units), "practice_code", "left")
        .select(
            "person_id",
            reference.alias("reference_date"),
            F.when(age >= 0, age).alias("age"),
            age_band(F.when(age >= 0, age)).alias("age_band"),
            "sex",
            "ethnicity",
            "practice_code",
            "pcn_code",
            "place_code",
            "lsoa_code",
            F.col("imd_decile").cast("int").alias("imd_decile"),
            F.ceil(F.col("imd_decile") / 2).cast("int").alias("imd_quintile"),
            F.coalesce(F.col("gp_registered"), F.lit(False)).alias("gp_registered"),
            F.col("_date_of_death").isNotNull().alias("deceased"),
            F.date_format("_date_of_death", "yyyy-MM").alias("death_period"),
            "records",
            "sources",
        )
    )
