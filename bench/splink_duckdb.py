"""Side by side (`make bench`): the same linkage input and model through Splink on Spark and on DuckDB.

After the benchmark's link stage: reads its warehouse's vault.identity with Spark, builds the profiles the link
stage compares (phm.linkage.profiles), and runs Splink's predict and its clustering at linkage.threshold, with
the link stage's saved model, twice on the same machine: on the Spark session (as the link stage does) and on
an in-memory DuckDB fed the same profiles as Arrow (every core). Each backend's clusters get the platform's
attachment of number-only profiles (which Splink cannot score) and are measured against the truth store by the
evaluation evaluate_linkage uses. This is Splink alone, without the link stage's deterministic pass, NHS number
conflict veto and stable person_ids. Prints one JSON line.

    python bench/splink_duckdb.py --config configs/bench.yaml --set KEY=VALUE ...
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import duckdb
from splink import DuckDBAPI, Linker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from pyspark.sql import functions as F

    from phm.config import load_config
    from phm.ingest.contracts import register_source_tables
    from phm.linkage import model as linkage_model
    from phm.linkage.evaluation import labelled, metrics
    from phm.linkage.linking import attach_number_only
    from phm.linkage.profiles import linkage_records, profiles
    from phm.runtime.catalog import Catalog
    from phm.runtime.spark import get_spark
    from phm.runtime.staging import splink_tables_removed, stage
    from phm.tables import IDENTITY
    from phm_jobs.evaluate_linkage import _with_band_labels
    from phm_jobs.link import read_nicknames

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    register_source_tables(config)
    spark = get_spark(config)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    threshold = config.linkage.threshold
    model = linkage_model.load_model(Path(config.resolve(config.linkage.model)))
    staging = Path(config.resolve(config.paths.checkpoints)) / "side_by_side"
    # Its staging and the tables Splink writes (2-3 GB at 1m people) go when it ends.
    with splink_tables_removed(spark):
        try:
            records = stage(spark, linkage_records(catalog.read(IDENTITY.name)), staging / "records")
            profile = stage(spark, profiles(records, read_nicknames(spark, config.resolve(config.linkage.nicknames))),
                            staging / "profiles")  # fmt: skip
            alone = profile.where(linkage_model.number_only()).select(
                "profile_id", F.col("profile_id").alias("cluster_id")
            )
            truth = Path(config.resolve(config.paths.truth))
            record_truth = spark.read.parquet(str(truth / "record_person"))
            people = _with_band_labels(spark.read.parquet(str(truth / "person")), config)

            def quality(clusters) -> dict:
                attached = attach_number_only(clusters.unionByName(alone), profile)
                links = records.join(attached, "profile_id").select(
                    "source", "record_id", F.col("cluster_id").alias("person_id")
                )
                row = metrics(labelled(links, record_truth, people)).first()
                return {k: row[k] for k in ("precision", "recall", "f1", "false_merge_rate", "missed_link_rate")}

            profiles_in_all = profile.count()
            out: dict = {"profiles": profiles_in_all, "comparable_profiles": profiles_in_all - alone.count()}

            started = time.monotonic()
            linker = linkage_model.linker_for(spark, profile, model)
            scored = linker.inference.predict(threshold_match_probability=threshold)
            predicted = time.monotonic()
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                scored, threshold_match_probability=threshold
            )
            spark_clusters = stage(
                spark, clusters.as_spark_dataframe().select("profile_id", "cluster_id"), staging / "spark"
            )
            out["spark"] = {"predict_seconds": round(predicted - started, 1),
                            "cluster_seconds": round(time.monotonic() - predicted, 1),
                            "pairs_above_threshold": scored.as_spark_dataframe().count(),
                            **quality(spark_clusters)}  # fmt: skip

            started = time.monotonic()
            rows = linkage_model.comparable(profile).toArrow()
            exported = time.monotonic()
            connection = duckdb.connect(":memory:")  # DuckDB's default: a thread per core
            duck = Linker(DuckDBAPI(connection).register(rows), linkage_model.in_dialect(model, "duckdb"),
                          log_level=logging.WARNING)  # fmt: skip
            scored = duck.inference.predict(threshold_match_probability=threshold)
            predicted = time.monotonic()
            clusters = duck.clustering.cluster_pairwise_predictions_at_threshold(scored, threshold)
            assigned = clusters.as_pandas_dataframe()[[linkage_model.UNIQUE_ID, "cluster_id"]].astype(str)
            clustered = time.monotonic()
            pairs = connection.execute(f"SELECT count(*) FROM {scored.physical_name}").fetchone()[0]
            out["duckdb"] = {"profiles_to_arrow_seconds": round(exported - started, 1),
                             "predict_seconds": round(predicted - exported, 1),
                             "cluster_seconds": round(clustered - predicted, 1), "pairs_above_threshold": int(pairs),
                             **quality(spark.createDataFrame(assigned))}  # fmt: skip
            for backend in ("spark", "duckdb"):
                out[backend]["predict_and_cluster_seconds"] = round(
                    out[backend]["predict_seconds"] + out[backend]["cluster_seconds"], 1
                )
            print(json.dumps(out))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    main()
