"""Day-precision dates for the generator's numpy code, and their hand-over to Spark.

Inside a block task dates are numpy datetime64[D] (NaT for none); Spark's
DateType takes datetime64[ns] columns through Arrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Any date-like column or array as datetime64[D] (NaT for none)."""
    return (
        pd.to_datetime(values).to_numpy().astype("datetime64[D]")
        if isinstance(values, pd.Series)
        else (np.asarray(values).astype("datetime64[D]"))
    )


def for_spark(values: pd.Series | np.ndarray) -> np.ndarray:
    """Day-precision dates as datetime64[ns], which Arrow hands to Spark's DateType."""
    return days(values).astype("datetime64[ns]")
