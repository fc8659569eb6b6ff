"""Configured Spark SQL conditions (targeting rules, cohort definitions), checked before they are used."""

from __future__ import annotations

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.errors import ConfigError


def sql_condition(frame: DataFrame, expression: str, key: str, what: str = "the columns") -> Column:
    """A configured Spark SQL condition over `frame`; ConfigError naming the key if it does not parse or names
    a column the frame lacks (Spark parses and resolves it when a DataFrame uses it)."""
    condition = F.expr(expression)
    try:
        _ = frame.select(condition.alias("_rule")).schema  # resolving the plan is the check
    except (ParseException, AnalysisException) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"config error: {key}: {expression!r} is not a Spark SQL expression over {what} "
            f"({', '.join(frame.columns)}): {first_line}"
        ) from None
    return condition
