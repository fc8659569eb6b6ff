"""models/risk/<name>.yaml: what a risk model is (features, label, algorithm, search space, promotion gate)."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import Field, model_validator

from phm.config import StrictModel, load_definitions_folder
from phm.errors import ConfigError
from phm.person.definitions import Name

ALGORITHMS = ("lightgbm", "logistic_regression", "spark_gbt")
# Trained by Spark ML on the cluster (the training rows never collected to the driver) and served by Spark:
# for data that outgrows one node.
SPARK_ALGORITHMS = ("spark_gbt",)
# What a spark_gbt spec may set: GBTClassifier's own params (the columns it reads and writes are the pipeline's).
SPARK_GBT_PARAMS = ("maxIter", "maxDepth", "stepSize", "subsamplingRate", "minInstancesPerNode", "minInfoGain",
                    "maxBins", "featureSubsetStrategy", "minWeightFractionPerNode", "maxMemoryInMB", "cacheNodeIds",
                    "checkpointInterval")  # fmt: skip


class SearchDimension(StrictModel):
    type: Literal["int", "float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchDimension:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Search(StrictModel):
    """An optuna search on a seeded, stratified 20% of the training rows held out (never the validation date)."""

    trials: int = Field(ge=1, le=500)
    space: dict[str, SearchDimension] = Field(min_length=1)


class Gate(StrictModel):
    """When a candidate becomes champion: it passes every threshold and beats the champion on the same data."""

    min_auc: float = Field(0.6, ge=0.5, le=1.0)
    calibration_slope: tuple[float, float] = (0.8, 1.2)
    min_improvement: float = Field(0.0, ge=0.0, description="AUC gain over the champion on the same validation data.")
    subgroup_auc_margin: float = Field(0.03, gt=0.0, description="Flag a subgroup this far below the overall AUC.")


class ModelSpec(StrictModel):
    name: Name
    description: str
    algorithm: Literal["lightgbm", "logistic_regression", "spark_gbt"]
    features: list[str] = Field(min_length=1, description="Feature names or glob patterns over gold.features.")
    exclude: list[str] = Field(default_factory=list, description="Patterns removed from what `features` matched.")
    params: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None
    score: bool = Field(True, description="Score the population with this model's champion.")
    gate: Gate = Gate()

    @model_validator(mode="after")
    def _spark_params(self) -> ModelSpec:
        if not self.trains_on_spark:
            return self
        if self.search is not None:
            raise ValueError(f"algorithm {self.algorithm} has no search; set its params (e.g. maxIter, maxDepth)")
        unknown = sorted(set(self.params) - set(SPARK_GBT_PARAMS))
        if unknown:
            raise ValueError(f"params {unknown} are not GBTClassifier's; it takes {', '.join(SPARK_GBT_PARAMS)}")
        return self

    @property
    def trains_on_spark(self) -> bool:
        return self.algorithm in SPARK_ALGORITHMS

    @property
    def registered_model(self) -> str:
        return f"phm_{self.name}"

    def select_features(self, available: list[str], path: str) -> list[str]:
        return select_columns(self.features, self.exclude, available, path)


def select_columns(features: list[str], exclude: list[str], available: list[str], path: str) -> list[str]:
    """The columns `features` names (names or globs) less `exclude`, in the table's order; ConfigError for a
    pattern matching none."""
    chosen: list[str] = []
    for pattern in features:
        matched = fnmatch.filter(available, pattern)
        if not matched:
            raise ConfigError(
                f"config error: {path}: features: {pattern!r} matches no column of gold.features; "
                f"columns: {', '.join(available)}"
            )
        chosen += [m for m in matched if m not in chosen]
    excluded = {c for pattern in exclude for c in fnmatch.filter(chosen, pattern)}
    order = {name: i for i, name in enumerate(available)}
    return sorted((c for c in chosen if c not in excluded), key=order.__getitem__)


def load_model_specs(folder: str) -> dict[str, tuple[ModelSpec, str]]:
    """Every *.yaml in `folder`: name -> (spec, path); a file must be named after the model it declares."""
    return load_definitions_folder(folder, ModelSpec, "model specs", "risk.models")
