"""gold.observations: every BP, HbA1c, BMI, smoking-status and QRISK3 reading (and statin issue and learning
disability health check) from GP events, with the latest flagged.

Definitions: configs/codelists/observations.yaml (QOF v46 clusters BP_COD,
IFCCHBAM_COD, BMIVAL_COD and the smoking clusters; plausible ranges after the
QOF and OpenSAFELY conventions). A reading outside its plausible range is
kept with `plausible` false and is never the latest value; the latest is the
most recent plausible reading on or before the reference date (ties: the
higher record id, so the choice is stable).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from phm.frames import literal_frame
from phm.person.definitions import SNOMED, Observations


def observation_codes(spark, definitions: Observations) -> DataFrame:
    """(code, observation, category, unit, low, high): one row per SNOMED concept that carries a reading."""
    rows = []
    for name, spec in definitions.observations.items():
        low, high = spec.plausible or (None, None)
        rows += [(code, name, None, spec.unit, low, high) for code in spec.snomed]
        rows += [(code, name, category, None, None, None) for code, category in spec.categories.items()]
    return literal_frame(
        spark, rows, "code string, observation string, category string, unit string, low double, high double"
    )


def observations(events: DataFrame, definitions: Observations, as_of: str) -> DataFrame:
    codes = F.broadcast(observation_codes(events.sparkSession, definitions))
    readings = (
        events.where((F.col("code_system") == SNOMED) & (F.col("event_date") <= F.lit(as_of).cast("date")))
        .select("person_id", "source", "record_id", "event_date", "code", "value", "value2")
        .join(codes, "code")
    )
    in_range = (F.col("low").isNull() | (F.col("value") >= F.col("low"))) & (
        F.col("high").isNull() | (F.col("value") <= F.col("high"))
    )
    plausible = F.when(F.col("category").isNotNull(), F.lit(True)).otherwise(
        F.col("value").isNotNull() & F.coalesce(in_range, F.lit(False))
    )
    latest_first = Window.partitionBy("person_id", "observation").orderBy(
        F.col("plausible").desc(), F.col("event_date").desc(), F.col("record_id").desc()
    )
    return (
        readings.withColumn("plausible", plausible)
        .withColumn("is_latest", F.col("plausible") & (F.row_number().over(latest_first) == 1))
        .select(
            "person_id",
            "observation",
            "event_date",
            "value",
            "value2",
            "category",
            "unit",
            "plausible",
            "is_latest",
            "source",
            "record_id",
        )
    )
