"""Small constant tables (code lists, score weights, index dates) as DataFrames held in the query plan, and the
first row of each group of a frame.

`spark.createDataFrame(list_of_tuples)` ships the rows to the JVM as an RDD (`LogicalRDD`), so every query that
uses the table runs a Spark job to read it back (a broadcast of it is a job of its own), and two uses of the same
table are never recognised as one (an RDD has an identity, not a value). From an Arrow table Spark builds a
`LocalRelation` instead: the rows are part of the plan, a broadcast of them needs no job, and the optimizer can
fold filters and projections over them. On the features query (3 index dates, ~75 such tables in its plan) that
is 104 Spark jobs instead of 120 and 17 s instead of 22 s on the test sample (docs/bench.md).

Not for anything secret: rows held in the plan travel with it (keys stay in an RDD: phm.ingest.pseudonymise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType, _parse_datatype_string


def literal_frame(spark: SparkSession, rows: Iterable[Sequence[Any]], schema: StructType | str) -> DataFrame:
    """A DataFrame of `rows` (tuples in the order of the schema's fields) with exactly `schema` (a StructType or
    a DDL string such as "code string, weight double"), held in the plan as a LocalRelation."""
    struct = schema if isinstance(schema, StructType) else _parse_datatype_string(schema)
    if not isinstance(struct, StructType):
        raise TypeError(f"literal_frame needs a struct schema, got {struct.simpleString()}")
    names = struct.names
    records = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"literal_frame: row {tuple(row)!r} has {len(row)} values for the columns {names}")
        records.append(dict(zip(names, row, strict=True)))
    table = pa.Table.from_pylist(records, schema=to_arrow_schema(struct))
    return spark.createDataFrame(table, struct)


def first_in_each(df: DataFrame, partition: str, order: list[Column]) -> DataFrame:
    """The first row of each `partition` value by `order` (one row each)."""
    window = Window.partitionBy(partition).orderBy(*order)
    return df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


# A set is held in a long's bits: one bit per possible value.
MAX_SET_VALUES = 63


def as_bits(values: Column, universe: Sequence[str]) -> Column:
    """An array of strings, each one of `universe`, as a set of bits (a long: bit i for universe[i]), so that
    the sets of a group can be united with `F.bit_or` in Spark's hash aggregation. The union written as
    `array_distinct(flatten(collect_list(...)))` is an object aggregation, which Spark sorts once a task holds
    more than 128 groups (gold.person's sources at 1m people: 10.2 / 11.5 s against 6.6 / 7.1 s this way). A
    value outside `universe` fails the query, naming it (nothing is dropped silently)."""
    if len(universe) > MAX_SET_VALUES or len(set(universe)) != len(universe):
        raise ValueError(f"as_bits takes at most {MAX_SET_VALUES} distinct values, got {list(universe)}")
    bit_of = F.create_map(
        *[part for i, value in enumerate(universe) for part in (F.lit(value), F.lit(1 << i).cast("long"))]
    )

    def bit(value: Column) -> Column:
        missing = F.raise_error(F.concat(F.lit("as_bits: a value outside the expected set: "), value))
        return F.coalesce(bit_of[value], missing.cast("long"))

    return F.aggregate(values, F.lit(0).cast("long"), lambda bits, value: bits.bitwiseOR(bit(value)))


def from_bits(bits: Column, universe: Sequence[str]) -> Column:
    """The values whose bits are set (`as_bits`), in the order of `universe`; an empty array for null."""
    flags = [F.when(bits.bitwiseAND(F.lit(1 << i)) != 0, F.lit(value)) for i, value in enumerate(universe)]
    return F.filter(F.array(*flags), lambda value: value.isNotNull())
