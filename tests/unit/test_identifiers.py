"""NHS number check digits (modulus 11), in numpy and as a Spark Column."""

from __future__ import annotations

import numpy as np
import pytest

from phm.identifiers import check_digits, is_valid_nhs_number, nhs_number_is_valid, valid_numbers_for_prefix
from phm.runtime.spark import session_settings


def test_check_digit_of_known_numbers():
    # 943 476 591 -> 9 (the NHS number standard's worked example); 401 023 213 -> 7.
    assert check_digits(np.array([943476591, 401023213])).tolist() == [9, 7]


def test_remainder_one_means_no_valid_number():
    # Among any 100 consecutive stems some have remainder 1, i.e. check 10: never issued.
    first_nine = np.arange(999_000_000, 999_000_100)
    checks = check_digits(first_nine)
    assert (checks == 10).any()
    numbers = first_nine[checks != 10] * 10 + checks[checks != 10]
    assert is_valid_nhs_number(numbers).all()


def test_valid_numbers_for_the_test_range():
    numbers = valid_numbers_for_prefix("999")
    assert len(numbers) == 909_091  # every 9-digit stem but those whose check digit would be 10
    assert numbers.min() >= 9_990_000_000 and numbers.max() <= 9_999_999_999
    assert len(np.unique(numbers)) == len(numbers)
    assert is_valid_nhs_number(numbers[::997]).all()


def test_one_digit_changed_is_caught():
    assert not is_valid_nhs_number(np.array([9434765910, 9434765911, 9434765929])).any()


@pytest.mark.parametrize(
    ("text", "valid"),
    [("9434765919", True), ("943 476 5919", True), ("943-476-5919", True), ("9434765918", False),
     ("943476591", False), ("94347659190", False), ("943476591X", False), (None, None)],
)  # fmt: skip
def test_spark_column_validity(spark, text, valid):
    df = spark.createDataFrame([(text,)], "n string")
    assert df.select(nhs_number_is_valid("n").alias("ok")).first()["ok"] is valid


# The suite's session interprets expressions (small data compiles for longer than it runs); at scale Spark
# generates code for them, which is what the column is written for, so both are checked.
GENERATED_CODE = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "CODEGEN_ONLY"}


@pytest.mark.parametrize("settings", [{}, GENERATED_CODE], ids=["interpreted", "generated code"])
def test_spark_column_agrees_with_numpy_on_every_last_digit(spark, settings):
    # 200 stems (some with check 10, never issued) with each of the ten last digits: exactly the right one passes
    numbers = (np.arange(999_000_000, 999_000_200)[:, None] * 10 + np.arange(10)).ravel()
    df = spark.createDataFrame([(str(n),) for n in numbers.tolist()], "n string")
    with session_settings(spark, settings):
        got = [row.ok for row in df.select(nhs_number_is_valid("n").alias("ok")).collect()]
    assert got == is_valid_nhs_number(numbers).tolist()
    assert 0 < sum(got) < 200


def test_the_document_leak_search_finds_identities_not_month_names():
    from phm.governance.leaks import Canary, text_leak_hits

    jan = [Canary("9434765919", "Jan", "Diviney", "1950-01-02", ("AB1 2CD",))]
    assert text_leak_hits("<text>Jan 25</text><text>Apr 25</text> surnames: Divine", jan) == []
    assert text_leak_hits("patient: DIVINEY, JAN", jan) == ["canary 0 surname", "canary 0 forename with surname"]
    assert text_leak_hits("call 943 476 5919", jan) == ["canary 0 NHS number"]
    assert text_leak_hits("born 1950-01-02, lives at ab1 2cd", jan) == ["canary 0 date of birth with postcode"]
    assert text_leak_hits("born 1950-01-02", jan) == []
