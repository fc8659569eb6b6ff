"""What a notebook in notebooks/ starts with: the config, a SparkSession and the warehouse's catalog.

The config is the one the CLI would use: $PHM_CONFIG if set (the tests point it at their refreshed sample),
else configs/local.yaml of the checkout the notebook sits in, with the checkout as its root, so a notebook
opened from notebooks/ reads the warehouse that `make run` wrote.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from phm.config import CONFIG_ENV_VAR, DEFAULT_CONFIG, PhmConfig, load_config
from phm.errors import UserError
from phm.runtime.catalog import Catalog


def checkout_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding the default config (the checkout)."""
    for folder in (start, *start.parents):
        if (folder / DEFAULT_CONFIG).is_file():
            return folder
    raise UserError(
        f"no {DEFAULT_CONFIG} at or above {start}; start the notebook inside the checkout or set {CONFIG_ENV_VAR}"
    )


def open_warehouse(config_file: str | None = None) -> tuple[PhmConfig, SparkSession, Catalog]:
    from phm.runtime.spark import get_spark

    logging.getLogger("py4j").setLevel(logging.WARNING)
    if config_file or os.environ.get(CONFIG_ENV_VAR):
        config = load_config(config_file)
    else:
        root = checkout_root(Path.cwd().resolve())
        config = load_config(str(root / DEFAULT_CONFIG), [f"paths.root={root}"])
    spark = get_spark(config)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    if not catalog.exists("gold.segments"):
        raise UserError(f"the warehouse {catalog.warehouse} has no refreshed population; run `make run` first")
    return config, spark, catalog
