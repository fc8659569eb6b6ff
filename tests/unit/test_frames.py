import pytest
from pyspark.errors import PySparkException
from pyspark.sql import functions as F

from phm.frames import MAX_SET_VALUES, as_bits, from_bits

UNIVERSE = ["ae", "deaths", "gp_events", "zz_last"]


def _united(df, universe):
    return {
        r.g: r.values
        for r in df.groupBy("g")
        .agg(F.bit_or(as_bits(F.col("values"), universe)).alias("bits"))
        .select("g", from_bits(F.col("bits"), universe).alias("values"))
        .collect()
    }


def test_sets_united_as_bits_give_the_sorted_union(spark):
    df = spark.createDataFrame(
        [("g1", ["gp_events", "ae"]), ("g1", ["zz_last", "ae"]), ("g2", []), ("g2", None), ("g3", None),
         ("g4", ["deaths"])],
        "g string, values array<string>",
    )  # fmt: skip
    expected = {"g1": ["ae", "gp_events", "zz_last"], "g2": [], "g3": [], "g4": ["deaths"]}
    assert _united(df, UNIVERSE) == expected
    # what the union by collect_list gives (the way it was written before)
    flattened = df.groupBy("g").agg(F.array_sort(F.array_distinct(F.flatten(F.collect_list("values")))).alias("v"))
    assert {r.g: r.v for r in flattened.collect()} == expected


def test_a_value_outside_the_set_fails_the_query_naming_it(spark):
    df = spark.createDataFrame([("g1", ["ae", "housing"])], "g string, values array<string>")
    with pytest.raises(PySparkException, match="outside the expected set: housing"):
        _united(df, UNIVERSE)


def test_more_values_than_bits_are_refused():
    with pytest.raises(ValueError, match="at most 63"):
        as_bits(F.col("values"), [f"s{i}" for i in range(MAX_SET_VALUES + 1)])
    with pytest.raises(ValueError):
        as_bits(F.col("values"), ["ae", "ae"])
