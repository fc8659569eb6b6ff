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
    """Spark: true where a string holds 10 digits (spaces and dashes allowed) with a valid check digit (null
    stays null).

    Written without conditionals or lambdas, so that it is generated code that computes the cleaned digits
    once per row and shares them between the terms (Spark's common-subexpression elimination does not look
    inside the branches of a CASE): the check digit expected, 11 - (sum mod 11) with 11 becoming 0, is
    (11 - sum mod 11) mod 11, and a number whose expected digit is 10 (never issued) cannot equal its last
    digit. Before, each row's digits were bound through `transform` over a one-element array, whose lambda
    Spark evaluates outside generated code: at 1m people that check was a third of GP events' rules (24.8m
    rows: 130-136 s with it, 95.5 s without, 111 s in this form). Inlined, the code Spark generates for a
    query can pass the 8,000 bytes of bytecode above which HotSpot does not compile a method (GP events' rules:
    268-270 s): configs/base.yaml lifts that limit (`-XX:-DontCompileHugeMethods`).
    """
    digits = F.regexp_replace(column, r"[\s-]", "")
    weighted = sum(
        (
            F.substring(digits, position, 1).try_cast("int") * weight
            for position, weight in zip(range(1, 10), WEIGHTS, strict=True)
        ),
        F.lit(0),
    )
    expected = (F.lit(11) - weighted % 11) % 11
    return digits.rlike(r"^[0-9]{10}$") & (expected == F.substring(digits, 10, 1).try_cast("int"))
