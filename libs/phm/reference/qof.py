"""QOF recorded prevalence by IMD 2019 decile, England 2019/20.

Source: NHS Digital, Quality and Outcomes Framework 2019-20, register counts
and list sizes by practice, aggregated to the IMD 2019 decile of each
practice (configs/reference/qof_prevalence_by_imd_decile_2019_20.csv, copied
from the project's shared calibration data). Decile 1 is the most deprived.
Prevalence is crude (register / list size); some registers have age-limited
denominators in QOF (e.g. diabetes 17+), which this file does not restate.
The file also holds rows for practices with no English IMD decile (labelled
"Wales"); they are not an IMD decile and are left out of the table (the job
reports how many).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# QOF register group codes -> the names used across the platform.
REGISTER_NAMES = {
    "AF": "atrial_fibrillation",
    "AST": "asthma",
    "CAN": "cancer",
    "CHD": "coronary_heart_disease",
    "CKD": "chronic_kidney_disease",
    "COPD": "copd",
    "CVDPP": "cvd_primary_prevention",
    "DEM": "dementia",
    "DEP": "depression",
    "DM": "diabetes",
    "EP": "epilepsy",
    "HF": "heart_failure",
    "HYP": "hypertension",
    "LD": "learning_disability",
    "MH": "serious_mental_illness",
    "OB": "obesity",
    "OST": "osteoporosis",
    "PAD": "peripheral_arterial_disease",
    "PC": "palliative_care",
    "RA": "rheumatoid_arthritis",
    "STIA": "stroke_tia",
}

RAW_COLUMNS = ("imd_overall", "group_code", "register", "list", "prevalence")
IMD_DECILE_PATTERN = r"^(10|[1-9])$"


def register_by_decile(raw: pd.DataFrame, code: str) -> pd.DataFrame:
    """The raw file's rows (as read by pandas, strings) for one QOF group code and IMD deciles 1-10, typed:
    imd_decile, register_count, list_size, prevalence; sorted by decile."""
    rows = raw[(raw["group_code"] == code) & raw["imd_overall"].astype(str).str.strip().str.fullmatch(r"10|[1-9]")]
    return pd.DataFrame(
        {
            "imd_decile": rows["imd_overall"].astype(int).to_numpy(),
            "register_count": rows["register"].astype(float).to_numpy(),
            "list_size": rows["list"].astype(float).to_numpy(),
            "prevalence": rows["prevalence"].astype(float).to_numpy(),
        }
    ).sort_values("imd_decile", ignore_index=True)


def pooled_prevalence(rows: pd.DataFrame) -> float:
    """Register over list size, pooled over the given rows (e.g. all deciles: England's prevalence)."""
    return float(rows["register_count"].sum() / rows["list_size"].sum())


def is_imd_decile_row() -> Column:
    """True for raw rows whose imd_overall is an IMD decile 1-10."""
    return F.trim(F.col("imd_overall")).rlike(IMD_DECILE_PATTERN)


def standardise_qof_prevalence(raw: DataFrame) -> DataFrame:
    """Raw CSV rows (strings) -> one typed row per register x decile, with the ratio to England's prevalence.

    Only IMD decile rows are kept (see the module docstring). An unknown group
    code keeps its code, lower-cased, as the register name rather than being dropped.
    """
    names = F.create_map(*[F.lit(x) for pair in REGISTER_NAMES.items() for x in pair])
    typed = raw.where(is_imd_decile_row()).select(
        F.coalesce(names[F.col("group_code")], F.lower("group_code")).alias("register"),
        F.col("imd_overall").cast("int").alias("imd_decile"),
        F.col("register").cast("double").alias("register_count"),
        F.col("list").cast("double").alias("list_size"),
        F.col("prevalence").cast("double").alias("prevalence"),
    )
    by_register = Window.partitionBy("register")
    england = F.sum("register_count").over(by_register) / F.sum("list_size").over(by_register)
    return typed.withColumn("ratio_to_england", F.col("prevalence") / england)
