"""Record linkage: identity profiles, Splink model, clustering, stable person ids, evaluation."""

from collections.abc import Callable

from pyspark.sql import DataFrame

# Takes a frame and a name and returns the same rows computed once (e.g. written to the job's staging folder and
# read back), for a frame that later steps read more than once; the library's functions take one so that they
# stay DataFrames in, DataFrames out.
Materialise = Callable[[DataFrame, str], DataFrame]


def as_is(df: DataFrame, _name: str) -> DataFrame:
    """Materialise that keeps the plan as it is (tests, small frames)."""
    return df
