"""The synthetic ICS in Spark: people, activity records, source extracts and truth, as DataFrames.

Generation is per block of people (`synthetic.people_per_block`), each block
seeded by (seed, block, stream): spark.range(blocks) -> mapInPandas for
people; one aggregate over the whole population (the mean emergency factor
of each age group x IMD quintile cell) so activity meets its published
rates; then applyInPandas per block for every record. Nothing loops over
people on the driver. This module only builds DataFrames; jobs/generate.py
writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pandas as pd
import pyarrow as pa
from dateutil.relativedelta import relativedelta
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from phm.errors import ConfigError
from phm.synthetic.activity import (
    FACTOR_BUCKET_WIDTH,
    emergency_divisors,
    person_factors,
    true_admission_probability,
)
from phm.synthetic.calibration import Calibration
from phm.synthetic.geography import build_geography
from phm.synthetic.population import (
    PopulationPlan,
    condition_logits,
    generate_block,
    nhs_number_capacity,
    people_schema,
)
from phm.synthetic.programme import adopting_practices, assign_programme
from phm.synthetic.records import RECORD_SCHEMA, block_records

FACTOR_SCHEMA = T.StructType(
    [
        T.StructField("true_person_id", T.StringType(), False),
        T.StructField("emergency_age_group", T.IntegerType(), False),
        T.StructField("imd_quintile", T.IntegerType(), False),
        T.StructField("emergency_factor", T.DoubleType(), False),
        T.StructField("exposure_years", T.DoubleType(), False),
        T.StructField("ae_high_intensity_flag", T.BooleanType(), False),
        T.StructField("smoker", T.BooleanType(), False),
        T.StructField("cvd_risk_10y", T.DoubleType(), True),
        T.StructField("qrisk_recorded_on", T.DateType(), True),
        T.StructField("qrisk_score", T.DoubleType(), True),
        T.StructField("statin_started_on", T.DateType(), True),
    ]
)


PROGRAMME_SCHEMA = T.StructType(
    [
        T.StructField("true_person_id", T.StringType(), False),
        T.StructField("practice_adopted_flag", T.BooleanType(), False),
        T.StructField("eligible_flag", T.BooleanType(), False),
        T.StructField("referred_on", T.DateType(), True),
        T.StructField("enrolled_flag", T.BooleanType(), False),
        T.StructField("declined_flag", T.BooleanType(), False),
        T.StructField("true_relative_effect", T.DoubleType(), False),
        T.StructField("p_emergency_12m_untreated", T.DoubleType(), False),
        T.StructField("p_emergency_12m_treated", T.DoubleType(), False),
        T.StructField("true_effect", T.DoubleType(), False),
    ]
)


def history_start(reference_date: date, months: int) -> date:
    """First day of the first monthly period of a window that ends on reference_date."""
    return reference_date.replace(day=1) - relativedelta(months=months - 1)


def periods(start: date, reference_date: date) -> list[str]:
    out, month = [], start.replace(day=1)
    while month <= reference_date:
        out.append(month.strftime("%Y-%m"))
        month += relativedelta(months=1)
    return out


def make_plan(
    seed: int,
    population: int,
    people_per_block: int,
    reference_date: date,
    history_months: int,
    calibration: Calibration,
    qof: pd.DataFrame,
) -> PopulationPlan:
    capacity = nhs_number_capacity(calibration.identifiers.nhs_number_prefixes)
    if population > capacity:
        raise ConfigError(
            f"config error: synthetic.population: {population:,} people need more NHS numbers than prefixes "
            f"{calibration.identifiers.nhs_number_prefixes} hold ({capacity:,}); add a prefix to "
            "identifiers.nhs_number_prefixes in the calibration file (999 is the test range)"
        )
    start = history_start(reference_date, history_months)
    names, logits = condition_logits(calibration, qof, (reference_date - start).days / 365.25)
    geography = build_geography(population, calibration.geography, seed)
    return PopulationPlan(
        seed=seed,
        population=population,
        block_size=people_per_block,
        history_start=start,
        reference_date=reference_date,
        calibration=calibration,
        geography=geography,
        condition_names=names,
        condition_logits=logits,
        adopting_practices=adopting_practices(
            geography.practices["practice_code"].to_numpy(), calibration.programme.adoption_share_of_practices, seed
        ),
    )


def generate_people(spark: SparkSession, plan: PopulationPlan) -> DataFrame:
    """Truth: one row per person (wide: onset_<condition> and diagnosed_<condition> dates)."""
    schema = people_schema(plan.condition_names)

    def people_of(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for block in batch["id"]:
                yield generate_block(int(block), plan)

    slices = max(1, min(plan.blocks, spark.sparkContext.defaultParallelism * 4))
    return spark.range(0, plan.blocks, numPartitions=slices).mapInPandas(people_of, schema)


def generate_factors(people: DataFrame, plan: PopulationPlan) -> DataFrame:
    """Truth: each person's emergency factor and activity traits (FACTOR_SCHEMA). with_cell_rates reads them
    twice, so stage them first (else every block's factors are drawn twice)."""

    def factors_of(frame: pd.DataFrame) -> pd.DataFrame:
        return person_factors(frame.sort_values("person_index"), plan)

    return people.groupBy("block").applyInPandas(factors_of, FACTOR_SCHEMA)


def with_cell_rates(factors: DataFrame, plan: PopulationPlan) -> DataFrame:
    """generate_factors' rows with their cell's mean factor and rate divisor (from one aggregate over the whole
    population) and the true 12-month admission probability."""
    cell = ["emergency_age_group", "imd_quintile"]
    histogram = (
        factors.withColumn("bucket", F.floor(F.log("emergency_factor") / FACTOR_BUCKET_WIDTH))
        .groupBy(*cell, "bucket")
        .agg(
            F.count("*").alias("people"),
            F.sum("emergency_factor").alias("factor_sum"),
            F.sum("exposure_years").alias("years"),
            F.sum(F.col("emergency_factor") * F.col("exposure_years")).alias("weighted_factor_sum"),
        )
        .toPandas()
    )
    cells = factors.sparkSession.createDataFrame(
        emergency_divisors(histogram, plan).merge(
            histogram.groupby(cell, as_index=False)[["people", "factor_sum"]]
            .sum()
            .assign(cell_mean_factor=lambda c: c["factor_sum"] / c["people"])[[*cell, "cell_mean_factor"]],
            on=cell,
        ),
        "emergency_age_group int, imd_quintile int, cell_rate_divisor double, cell_mean_factor double",
    )
    return _with_true_probability(factors.join(F.broadcast(cells), cell), plan)


def generate_programme(people: DataFrame, factors: DataFrame, plan: PopulationPlan) -> DataFrame:
    """Truth: each person's place in the historical programme and its true effect on them."""
    person_columns = people_schema(plan.condition_names).fieldNames()
    joined = people.join(factors.select("true_person_id", "p_emergency_12m"), "true_person_id")

    def programme_of(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("person_index").reset_index(drop=True)
        return assign_programme(frame[person_columns], frame[["p_emergency_12m"]], plan)

    return joined.groupBy("block").applyInPandas(programme_of, PROGRAMME_SCHEMA)


def generate_records(people: DataFrame, factors: DataFrame, programme: DataFrame, plan: PopulationPlan) -> DataFrame:
    """Every row of every source extract, with its true person, corruptions and injected defect."""
    person_columns = people_schema(plan.condition_names).fieldNames()
    factor_columns = [*FACTOR_SCHEMA.fieldNames(), "cell_mean_factor", "cell_rate_divisor"]
    programme_columns = PROGRAMME_SCHEMA.fieldNames()
    joined = people.join(factors.select(*factor_columns), "true_person_id").join(programme, "true_person_id")

    def records_of(block: pa.Table) -> pa.Table:
        frame = block.to_pandas().sort_values("person_index").reset_index(drop=True)
        return block_records(frame[person_columns], frame[factor_columns], plan, frame[programme_columns])

    # Arrow both ways: the records leave as the Arrow block_records builds, where pandas' hand-over checked every
    # value for nulls again (a 10k block 2.7 s -> 1.7 s alone; the step 4% faster at 300k, within the noise, as
    # the JVM's half of each task, Arrow to rows to Parquet, is the same).
    return joined.groupBy("block").applyInArrow(records_of, RECORD_SCHEMA)


def _with_true_probability(factors: DataFrame, plan: PopulationPlan) -> DataFrame:
    schema = T.StructType([*factors.schema.fields, T.StructField("p_emergency_12m", T.DoubleType(), False)])

    def add(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            batch["p_emergency_12m"] = true_admission_probability(batch, plan)
            yield batch

    return factors.mapInPandas(add, schema)
