"""NHS number rules (vectorised with numpy, and as Spark Columns).

NHS number: 10 digits. Weights 10..2 on digits 1-9; the remainder of their
weighted sum mod 11 gives check = 11 - remainder, where 11 becomes 0 and 10
means the number is invalid and never issued (NHS Digital, NHS number
standard; FACTS.md).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

WEIGHTS = np.arange(10, 1, -1)  # 10, 9, ..., 2
INVALID = 10


def check_digits(first_nine: np.ndarray) -> np.ndarray:
    """Check digit of each 9-digit integer (10 where no valid number exists)."""
    digits = (first_nine[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    remainder = (digits * WEIGHTS).sum(axis=1) % 11
    check = 11 - remainder
    return np.where(check == 11, 0, check)


@cache
def valid_numbers_for_prefix(prefix: str) -> np.ndarray:
    """Every valid 10-digit NHS number starting with a 3-digit prefix (about 909,000), ascending."""
    first_nine = int(prefix) * 1_000_000 + np.arange(1_000_000, dtype=np.int64)
    check = check_digits(first_nine)
    keep = check != INVALID
    return first_nine[keep] * 10 + check[keep]


def is_valid_nhs_number(numbers: np.ndarray) -> np.ndarray:
    """True where a 10-digit integer carries the right check digit."""
    numbers = np.asarray(numbers, dtype=np.int64)
    check = check_digits(numbers // 10)
    return (numbers >= 1_000_000_000) & (numbers <= 9_999_999_999) & (check != INVALID) & (check == numbers % 10)


def nhs_number_is_valid(column: Column) -> Column:
    """Spark: true where a string holds 10 digits (spaces and dashes allowed) with a valid check digit.

    The cleaned digits and the check digit are each computed once per row (bound through `transform`
    over a one-element array): written out, the optimiser would repeat the regex replacement in every
    term, which made the check the most expensive rule of ingest.
    """

    def given_digits(digits: Column) -> Column:
        weighted = sum(
            (
                F.substring(digits, position, 1).try_cast("int") * weight
                for position, weight in zip(range(1, 10), WEIGHTS, strict=True)
            ),
            F.lit(0),
        )

        def given_check(check: Column) -> Column:
            expected = F.when(check == 11, 0).otherwise(check)
            last = F.substring(digits, 10, 1).try_cast("int")
            return digits.rlike(r"^[0-9]{10}$") & (expected != INVALID) & (expected == last)

        return _let(F.lit(11) - (weighted % 11), given_check)

    return _let(F.regexp_replace(column, r"[\s-]", ""), given_digits)


def _let(value: Column, body) -> Column:
    """body(value) with `value` evaluated once per row."""
    return F.element_at(F.transform(F.array(value), body), 1)
