"""QOF reference standardisation on a handful of inline rows."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from phm.reference.qof import standardise_qof_prevalence
from phm.tables import QOF_PREVALENCE

RAW_COLUMNS = ("imd_overall", "group_code", "register", "list", "prevalence")
RAW_SCHEMA = T.StructType([T.StructField(c, T.StringType()) for c in RAW_COLUMNS])


def test_types_names_ratio_and_non_decile_rows(spark):
    raw = spark.createDataFrame(
        [
            ("1", "DM", "90", "1000", "0.09"),
            ("10", "DM", "30", "1000", "0.03"),
            ("Wales", "DM", "5", "50", "0.1"),  # not an IMD decile: left out
            (" 2", "XYZ", "1", "100", "0.01"),  # unknown code kept, lower-cased
        ],
        RAW_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            ("diabetes", 1, 90.0, 1000.0, 0.09, 0.09 / 0.06),
            ("diabetes", 10, 30.0, 1000.0, 0.03, 0.03 / 0.06),
            ("xyz", 2, 1.0, 100.0, 0.01, 1.0),
        ],
        QOF_PREVALENCE.schema,
    )
    assertDataFrameEqual(standardise_qof_prevalence(raw), expected, rtol=1e-9, checkRowOrder=False)


@pytest.mark.parametrize("value", ["0", "11", "1.5", "", "decile 3"])
def test_values_that_are_not_deciles_are_left_out(spark, value):
    raw = spark.createDataFrame([(value, "DM", "1", "10", "0.1")], RAW_SCHEMA)
    assert standardise_qof_prevalence(raw).count() == 0
