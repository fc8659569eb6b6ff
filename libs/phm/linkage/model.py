"""The Splink model: comparisons, blocking rules, training and the saved JSON.

Comparisons follow the realities of NHS identifiers (FACTS.md "Linkage
realities"; Splink's guidance on names, dates and postcodes):
- NHS number: equal and valid / one digit different (or equal but failing the
  check digit) or two transposed (Damerau-Levenshtein 1) / different;
- forename: equal (term-frequency adjusted: SMITH and JOHN prove less than
  rarer names) / a shared formal name (nicknames) / forename and surname
  swapped between fields / Jaro-Winkler >= 0.92 and >= 0.80 / different;
- surname: equal (term-frequency adjusted) / one side's surname among the
  other's known surnames (a change of name) / swapped with the forename /
  Jaro-Winkler >= 0.92, >= 0.80;
- date of birth: equal / day and month swapped / one character different
  (Damerau-Levenshtein on yyyy-MM-dd) / within a month (a day out across a
  month's end, 12-30 against 12-29, is two characters) / within a year /
  different;
- sex: equal / different (U counts as missing);
- postcode: equal / same sector / same district / different.

Blocking rules for prediction are each an equality on identifiers specific
enough that a block holds a handful of people at any population size, so the
number of comparisons grows about linearly with the population (the job
reports comparisons per rule before predicting). Training: u by random
sampling, m by EM over three blocking rules that each leave different
comparisons free to be estimated, on a seeded sample of profiles.

Training runs on Splink's DuckDB backend in the driver, prediction on Spark.
The sample is bounded (`linkage.training_profiles`), and Splink's u sampling
and EM iterations are a few seconds of DuckDB against minutes of small Spark
jobs (189 s at 200,000 profiles on 2 cores). Every comparison is written in
SQL both dialects run alike (tested level by level), and the trained m and u
values are carried into the Spark settings that score every profile.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from splink import DuckDBAPI, Linker, SettingsCreator, SparkAPI, block_on

from phm.errors import UserError

log = logging.getLogger(__name__)

UNIQUE_ID = "profile_id"
# Columns the model reads (profiles.profiles() makes them).
MODEL_COLUMNS = (
    UNIQUE_ID,
    "nhs_number",
    "nhs_number_valid",
    "forename",
    "forename_forms",
    "surname",
    "surnames",
    "date_of_birth",
    "sex",
    "postcode",
    "postcode_sector",
    "postcode_district",
)

# Comparisons whose exact-match level is term-frequency adjusted (see comparisons()).
TF_COLUMNS = ("forename", "surname", "postcode")

# Each prediction blocking rule pairs profiles equal (and not null) on all of its columns.
PREDICTION_BLOCKING_KEYS = (
    ("nhs_number",),
    ("date_of_birth", "surname"),
    ("date_of_birth", "forename"),
    ("date_of_birth", "postcode_sector"),
    ("forename", "surname", "postcode_district"),
)
PREDICTION_BLOCKING_RULES = tuple(block_on(*columns) for columns in PREDICTION_BLOCKING_KEYS)
TRAINING_BLOCKING_RULES = (
    block_on("nhs_number"),  # frees names, date of birth, sex and postcode
    block_on("date_of_birth", "postcode_district"),  # frees NHS number, names and sex
    block_on("forename", "surname"),  # frees NHS number, date of birth, sex and postcode
)
# For the prior (probability two random profiles match): equal valid NHS number and date of birth.
DETERMINISTIC_RULE = "l.nhs_number = r.nhs_number AND l.nhs_number_valid AND l.date_of_birth = r.date_of_birth"


def comparable(profiles: DataFrame) -> DataFrame:
    """Profiles the model can score: some identifier besides the NHS number (number-only profiles,
    e.g. GP clinical events, are attached by their number after clustering, or stay alone)."""
    return profiles.where(~number_only()).select(*MODEL_COLUMNS)


def number_only() -> Column:
    """The profile carries an NHS number and nothing else to compare."""
    others = ("forename", "surname", "date_of_birth", "postcode")
    return F.col("nhs_number").isNotNull() & F.expr(" AND ".join(f"{name} IS NULL" for name in others))


class ModelFileError(UserError):
    """The saved linkage model cannot be read."""


def comparisons() -> list[cl.CustomComparison]:
    dob_swapped = (
        "year(date_of_birth_l) = year(date_of_birth_r) AND month(date_of_birth_l) = day(date_of_birth_r) "
        "AND day(date_of_birth_l) = month(date_of_birth_r)"
    )
    dob_one_character = "damerau_levenshtein(cast(date_of_birth_l AS string), cast(date_of_birth_r AS string)) <= 1"
    return [
        cl.CustomComparison(
            output_column_name="nhs_number",
            comparison_description="NHS number",
            comparison_levels=[
                cll.NullLevel("nhs_number"),
                cll.CustomLevel("nhs_number_l = nhs_number_r AND nhs_number_valid_l", "Exact match, valid number"),
                cll.DamerauLevenshteinLevel("nhs_number", 1),
                cll.ElseLevel(),
            ],
        ),
        _name_comparison("forename", "forename_forms", "Shares a formal name (nickname)", other="surname"),
        _name_comparison("surname", "surnames", "Among the other's known surnames", other="forename"),
        cl.CustomComparison(
            output_column_name="date_of_birth",
            comparison_description="Date of birth",
            comparison_levels=[
                cll.NullLevel("date_of_birth"),
                cll.ExactMatchLevel("date_of_birth"),
                cll.CustomLevel(dob_swapped, "Day and month swapped"),
                cll.CustomLevel(dob_one_character, "One character different"),
                cll.AbsoluteDateDifferenceLevel(
                    "date_of_birth", input_is_string=False, threshold=31, metric="day"
                ).configure(label_for_charts="Within a month"),
                cll.AbsoluteDateDifferenceLevel(
                    "date_of_birth", input_is_string=False, threshold=366, metric="day"
                ).configure(label_for_charts="Within a year"),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="sex",
            comparison_description="Sex",
            comparison_levels=[cll.NullLevel("sex"), cll.ExactMatchLevel("sex"), cll.ElseLevel()],
        ),
        cl.CustomComparison(
            output_column_name="postcode",
            comparison_description="Postcode",
            comparison_levels=[
                cll.NullLevel("postcode"),
                cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
                cll.ExactMatchLevel("postcode_sector").configure(label_for_charts="Same sector"),
                cll.ExactMatchLevel("postcode_district").configure(label_for_charts="Same district"),
                cll.ElseLevel(),
            ],
        ),
    ]


def _name_comparison(column: str, alternatives: str, alternative_label: str, other: str) -> cl.CustomComparison:
    # Both names must have changed places: one name equal to the other field alone is a coincidence (JAMES JAMES).
    swapped = f"{column}_l = {other}_r AND {other}_l = {column}_r"
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description=column.capitalize(),
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column, term_frequency_adjustments=True),
            cll.ArrayIntersectLevel(alternatives, 1).configure(label_for_charts=alternative_label),
            cll.CustomLevel(swapped, "Swapped with the other name field"),
            cll.JaroWinklerLevel(column, 0.92),
            cll.JaroWinklerLevel(column, 0.8),
            cll.ElseLevel(),
        ],
    )


def settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",  # profiles are already pooled across sources (see docs/linkage.md)
        unique_id_column_name=UNIQUE_ID,
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=list(PREDICTION_BLOCKING_RULES),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


@dataclass(frozen=True)
class TrainingPlan:
    sample_profiles: int
    u_max_pairs: float
    seed: int
    deterministic_recall: float = 0.8


def spark_api(spark: SparkSession) -> SparkAPI:
    # Splink breaks lineage by writing parquet under the session's checkpoint directory.
    return SparkAPI(spark_session=spark, break_lineage_method="parquet")


def duckdb_api() -> DuckDBAPI:
    """An in-memory DuckDB on one thread: Splink's seeded u sampling is reproducible only single-threaded, and
    the driver's other core keeps the Spark session responsive."""
    connection = duckdb.connect(":memory:")
    connection.execute("SET threads TO 1")
    return DuckDBAPI(connection)


def train(spark: SparkSession, profiles: DataFrame, plan: TrainingPlan) -> tuple[Linker, dict[str, Any]]:
    """A model trained on a seeded sample of profiles (in DuckDB, in the driver); returns the training linker
    and the model, in Spark's dialect, as a dict."""
    total = profiles.count()
    fraction = min(1.0, plan.sample_profiles / max(total, 1))
    sample = comparable(profiles)
    if fraction < 1.0:
        sample = sample.sample(fraction=fraction, seed=plan.seed)
    # Sorted: the same rows in the same order on every machine, so the seeded sampling draws the same pairs.
    rows = sample.orderBy(UNIQUE_ID).toArrow()
    linker = Linker(duckdb_api().register(rows), settings(), log_level=logging.WARNING)
    training = linker.training
    training.estimate_probability_two_random_records_match([DETERMINISTIC_RULE], recall=plan.deterministic_recall)
    training.estimate_u_using_random_sampling(max_pairs=plan.u_max_pairs, seed=plan.seed)
    for rule in TRAINING_BLOCKING_RULES:
        training.estimate_parameters_using_expectation_maximisation(rule, estimate_without_term_frequencies=True)
    log.info("linkage model trained on %d of %d profiles", rows.num_rows, total)
    return linker, in_dialect(linker.misc.save_model_to_json(), "spark")


def in_dialect(trained: dict[str, Any], dialect: str) -> dict[str, Any]:
    """The settings for `dialect` with the trained prior and every level's m and u values."""
    model = settings().get_settings(dialect).as_dict()
    for target, source in zip(model["comparisons"], trained["comparisons"], strict=True):
        for target_level, source_level in zip(target["comparison_levels"], source["comparison_levels"], strict=True):
            labels = (target_level.get("label_for_charts"), source_level.get("label_for_charts"))
            if labels[0] != labels[1]:
                raise ValueError(f"comparison {target['output_column_name']}: levels differ between dialects {labels}")
            for key in ("m_probability", "u_probability"):
                if key in source_level:
                    target_level[key] = source_level[key]
    model["probability_two_random_records_match"] = trained["probability_two_random_records_match"]
    return model


def save_model(model: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(model, indent=2, sort_keys=True))
    tmp.replace(path)  # a crash never leaves half a model


def load_model(path: Path) -> dict[str, Any]:
    try:
        model = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path}: cannot read the linkage model ({exc}); retrain with --set linkage.retrain=true"
        ) from exc
    if model.get("unique_id_column_name") != UNIQUE_ID or "comparisons" not in model:
        raise ModelFileError(f"{path}: not a linkage model of this platform; retrain with --set linkage.retrain=true")
    return model


def linker_for(spark: SparkSession, profiles: DataFrame, model: dict[str, Any]) -> Linker:
    """A linker over every profile with a trained model (term frequencies come from these profiles)."""
    api = spark_api(spark)
    return Linker(api.register(comparable(profiles)), model, log_level=logging.WARNING)
