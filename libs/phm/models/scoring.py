"""Whole-population scoring with a registered model, and the segment x risk-tier matrix.

Scoring goes through mlflow.pyfunc.spark_udf, so the champion is served on
the executors exactly as it was logged (its predict_proba), at any scale; a
Spark ML champion (spark_gbt) is loaded as the pipeline it was logged as and
applied by Spark.
Tiers: percentile of the scored population (percent_rank x 100) against the
configured cut-offs (high, emerging; low below).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from phm.config import RiskTiers
from phm.governance.disclosure import disclosure_control_in_parts


def score_with_champion(features: DataFrame, registered_model: str) -> DataFrame:
    """features + probability: the positive-class probability of the registered model's champion: a
    scikit-learn model's predict_proba served through mlflow.pyfunc.spark_udf on the columns its signature
    names; a Spark ML pipeline (spark_gbt) loaded with MLflow's spark flavor and applied by Spark, whose
    pyfunc form would start a Spark session in every Python worker."""
    import mlflow

    from phm.models.registry import CHAMPION, is_spark_model
    from phm.models.training import spark_probability

    uri = f"models:/{registered_model}@{CHAMPION}"
    if is_spark_model(uri):
        return spark_probability(mlflow.spark.load_model(uri), features)
    served = serve(features, uri, "array<double>")
    return features.withColumn("probability", served.getItem(1))


def serve(features: DataFrame, model_uri: str, result_type: str) -> Column:
    """A logged model's predictions over `features` (mlflow.pyfunc.spark_udf on the columns its signature names)."""
    import mlflow

    from phm.models.registry import model_inputs

    udf = mlflow.pyfunc.spark_udf(features.sparkSession, model_uri, result_type=result_type, env_manager="local")
    return udf(F.struct(*[F.col(c) for c in model_inputs(model_uri)]))


def tier(percentile: Column, tiers: RiskTiers) -> Column:
    return F.when(percentile >= tiers.high, "high").when(percentile >= tiers.emerging, "emerging").otherwise("low")


def with_tiers(scored: DataFrame, tiers: RiskTiers) -> DataFrame:
    """Adds percentile (0-100, by model) and tier. Ties share a percentile (percent_rank)."""
    by_model = Window.partitionBy("model_name").orderBy("probability")
    percentile = F.round(F.percent_rank().over(by_model) * 100, 4)
    return scored.withColumn("percentile", percentile).withColumn("tier", tier(F.col("percentile"), tiers))


def segment_matrix(segments: DataFrame, scores: DataFrame) -> DataFrame:
    """People, annual cost, emergency admissions in the last 12 months and expected admitted people (the sum of
    probabilities) per model x segment x tier, over persons both segmented and scored."""
    return (
        segments.join(scores, "person_id")
        .groupBy("model_name", "model_version", "reference_date", "segment_order", "segment", "segment_label", "tier")
        .agg(
            F.count(F.lit(1)).alias("people"),
            F.round(F.sum("annual_cost"), 2).alias("annual_cost"),
            F.sum("emergency_admissions_12m").cast("long").alias("emergency_admissions_12m"),
            F.round(F.sum("probability"), 2).alias("expected_admitted_people"),
        )
    )


def published_segment_matrix(matrix: pd.DataFrame, max_suppressed: int, rounding_base: int) -> pd.DataFrame:
    """mart.segment_matrix made safe to publish (phm.governance.disclosure): people 1-7 hide the cell, few
    emergency admissions hide only the admissions; counts rounded to 5; secondary suppression across a
    segment's tiers (they add up to the segment's people, published in mart.actuarial_costs)."""
    parts = [(("people",), ("annual_cost", "expected_admitted_people")), (("emergency_admissions_12m",), ())]
    return disclosure_control_in_parts(matrix, parts, ("model_name", "segment"), max_suppressed, rounding_base)
