"""Side by side (`make bench`): the same linkage input and trained model through Splink's DuckDB backend.

After the benchmark's link stage: reads its warehouse's vault.identity with Spark and builds the profiles the
link stage compares (phm.linkage.profiles), hands every profile to an in-memory DuckDB as Arrow (all cores),
and times Splink's predict and its clustering at linkage.threshold there, with the link stage's saved model
moved into DuckDB's dialect. The clusters are mapped back to records and measured against the truth store by
the evaluation evaluate_linkage uses. This is Splink alone: the link stage adds a deterministic pass, the NHS
number conflict veto and stable person_ids around it, so its quality is the platform's and this is Splink's.
Prints one JSON line.

    python bench/splink_duckdb.py --config configs/bench.yaml --set KEY=VALUE ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import duckdb
from splink import DuckDBAPI, Linker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from phm.config import load_config
    from phm.ingest.contracts import register_source_tables
    from phm.linkage import model as linkage_model
    from phm.linkage.evaluation import labelled, metrics
    from phm.linkage.profiles import linkage_records, profiles
    from phm.runtime.catalog import Catalog
    from phm.runtime.spark import get_spark
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
    seconds: dict[str, float] = {}

    started = time.monotonic()
    records = linkage_records(catalog.read(IDENTITY.name)).cache()
    profile = profiles(records, read_nicknames(spark, config.resolve(config.linkage.nicknames)))
    rows = profile.select(*linkage_model.MODEL_COLUMNS).toArrow()  # every profile, number-only ones included
    seconds["profiles_to_arrow"] = time.monotonic() - started

    model = linkage_model.in_dialect(linkage_model.load_model(Path(config.resolve(config.linkage.model))), "duckdb")
    connection = duckdb.connect(":memory:")  # DuckDB's default: a thread per core
    linker = Linker(DuckDBAPI(connection).register(rows), model, log_level=logging.WARNING)
    started = time.monotonic()
    predictions = linker.inference.predict(threshold_match_probability=config.linkage.threshold)
    seconds["predict"] = time.monotonic() - started
    started = time.monotonic()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=config.linkage.threshold
    )
    assigned = clusters.as_pandas_dataframe()[[linkage_model.UNIQUE_ID, "cluster_id"]]
    seconds["cluster"] = time.monotonic() - started
    pairs = connection.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchone()[0]

    clustered = spark.createDataFrame(assigned.astype(str)).withColumnRenamed("cluster_id", "person_id")
    links = records.join(clustered, linkage_model.UNIQUE_ID).select("source", "record_id", "person_id")
    truth = Path(config.resolve(config.paths.truth))
    people = _with_band_labels(spark.read.parquet(str(truth / "person")), config)
    overall = metrics(labelled(links, spark.read.parquet(str(truth / "record_person")), people)).first()
    print(json.dumps({
        "profiles": rows.num_rows, "pairs_above_threshold": int(pairs),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "predict_and_cluster_seconds": round(seconds["predict"] + seconds["cluster"], 1),
        "precision": overall.precision, "recall": overall.recall, "f1": overall.f1,
        "false_merge_rate": overall.false_merge_rate, "missed_link_rate": overall.missed_link_rate,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
