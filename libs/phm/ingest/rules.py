"""A contract's rules as row-level Spark predicates (what happens to each row) and as Great Expectations
expectations (the validation record and Data Docs), built from the same declaration.

A row passes a rule when the rule does not apply to it (a null value passes
every check but `not_null`) or the check holds. Checks Great Expectations
cannot state on the raw columns (the modulus-11 check digit, a date inside
its row's delivery period, age from a date of birth) are stated on helper
columns derived here, so both sides count the same rows. For `unique`, the
row-level action keeps the first copy (by file and line) and fails the
others; Great Expectations counts every copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.identifiers import nhs_number_is_valid
from phm.ingest.contracts import RuleSpec, SourceContract
from phm.ingest.standardise import raw_column

MALFORMED_RULE = "malformed_line"
MALFORMED_REASON = "the line could not be parsed"


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    passes: Column  # true when the row passes (never null)
    helpers: dict[str, Column]  # derived columns the predicate and the expectation read
    value_set: list[str] | None = None  # resolved `values_from` of an in_set rule
    prepare: Callable[[DataFrame], DataFrame] | None = None  # adds helpers that need more than one row


def helper_name(rule: RuleSpec) -> str:
    return f"_check_{rule.name}"


def compile_rule(rule: RuleSpec, values: list[str] | None = None) -> CompiledRule:
    """The row predicate of a rule (values: the resolved value set of `values_from`)."""
    col = F.col(rule.column) if rule.column else None
    helpers: dict[str, Column] = {}
    check = rule.check
    if check == "not_null":
        ok = col.isNotNull()
    elif check == "parses":
        ok = F.col(raw_column(rule.column)).isNull() | col.isNotNull()
    elif check == "regex":
        ok = col.rlike(rule.pattern)
    elif check == "check_digit":
        helpers[helper_name(rule)] = F.when(col.isNotNull(), nhs_number_is_valid(col))
        ok = F.col(helper_name(rule))
    elif check == "in_set":
        ok = col.isin(list(rule.values if rule.values is not None else values or []))
    elif check == "between":
        ok = col.between(rule.min, rule.max)
    elif check == "not_future":
        ok = col <= F.col("_period_end")
    elif check == "in_period":
        helpers[helper_name(rule)] = F.trunc(col, "month")
        ok = F.col(helper_name(rule)) == F.col("_period_start")
    elif check == "age_between":
        helpers[helper_name(rule)] = F.floor(F.months_between(F.col("_period_end"), col) / 12).cast("int")
        ok = F.col(helper_name(rule)).between(rule.min, rule.max)
    elif check == "unique":
        return CompiledRule(rule, F.col(helper_name(rule)), {}, values, _first_copies(rule))
    else:  # pragma: no cover - the contract model only admits CHECKS
        raise ValueError(f"unknown check {check}")
    return CompiledRule(rule, F.coalesce(ok, F.lit(True)), helpers, values)


def _first_copies(rule: RuleSpec) -> Callable[[DataFrame], DataFrame]:
    """Adds the rule's helper: true for a row whose key is unique or that is its key's first copy.

    Keys seen more than once are found by an aggregate (few, usually) and joined back, which is far
    cheaper than sorting every row by key in a window.
    """
    names = list(rule.columns)
    renamed = [f"_key_{i}" for i in range(len(names))]

    def prepare(frame: DataFrame) -> DataFrame:
        complete = F.lit(True)
        for name in names:  # a key with a missing part identifies nothing (as in SQL)
            complete = complete & F.col(name).isNotNull()
        present = frame.where(complete)
        repeated = (
            present.groupBy(*[F.col(c).alias(r) for c, r in zip(names, renamed, strict=True)])
            .agg(F.count(F.lit(1)).alias("_copies"), F.min(F.struct("file", "line_number")).alias("_first"))
            .where(F.col("_copies") > 1)
            .drop("_copies")
        )
        on = [F.col(c) == F.col(r) for c, r in zip(names, renamed, strict=True)]
        joined = frame.join(repeated, on, "left")
        first = F.col("_first").isNull() | (F.struct("file", "line_number") == F.col("_first"))
        return joined.withColumn(helper_name(rule), first).drop("_first", *renamed)

    return prepare


def compile_rules(contract: SourceContract, value_sets: dict[str, list[str]]) -> list[CompiledRule]:
    return [compile_rule(r, value_sets.get(r.values_from) if r.values_from else None) for r in contract.rules]


def evaluate(frame: DataFrame, rules: list[CompiledRule]) -> DataFrame:
    """Add helper columns, `_failed` (every failing rule, malformed lines first) and `_outcome`.

    `_outcome` is `fail` if any failing rule's action is fail, else `quarantine` if any is quarantine
    (or the line was malformed), else `accept`; warn-only failures are accepted with `_warnings`.
    """
    for rule in rules:
        if rule.prepare is not None:
            frame = rule.prepare(frame)
        for name, column in rule.helpers.items():
            frame = frame.withColumn(name, column)
    failing = [F.when(F.col("parse_error").isNotNull(), F.lit(MALFORMED_RULE))]
    failing += [F.when(~r.passes, F.lit(r.spec.name)) for r in rules]
    frame = frame.withColumn("_failed", F.filter(F.array(*failing), lambda x: x.isNotNull()))
    by_action = {a: [r.spec.name for r in rules if r.spec.action == a] for a in ("fail", "quarantine", "warn")}

    def any_of(names: list[str]) -> Column:
        return F.exists("_failed", lambda x: x.isin(names)) if names else F.lit(False)

    outcome = (
        F.when(any_of(by_action["fail"]), "fail")
        .when(F.col("parse_error").isNotNull() | any_of(by_action["quarantine"]), "quarantine")
        .otherwise("accept")
    )
    return frame.withColumn("_outcome", outcome).withColumn(
        "_warnings", F.filter("_failed", lambda x: x.isin(by_action["warn"]) if by_action["warn"] else F.lit(False))
    )


def quarantine_reason(rules: list[CompiledRule]) -> Column:
    """The reason of the first failing quarantine (or fail) rule; a malformed line names its parse error."""
    reasons = F.create_map(*[F.lit(x) for r in rules for x in (r.spec.name, f"{r.spec.reason} ({r.spec.check})")])
    malformed = F.concat(F.lit(MALFORMED_REASON + ": "), F.col("parse_error"))
    return F.when(F.col("parse_error").isNotNull(), malformed).otherwise(reasons[first_quarantine_rule(rules)])


def first_quarantine_rule(rules: list[CompiledRule]) -> Column:
    """The first failing rule whose action is not warn (malformed_line when the line could not be parsed)."""
    return F.filter("_failed", lambda x: ~x.isin([r.spec.name for r in rules if r.spec.action == "warn"]))[0]


def failure_counts(flagged: DataFrame, contract: SourceContract) -> DataFrame:
    """(period, rule, rows_checked, failing_rows) for every rule and malformed lines, zeros included."""
    names = [MALFORMED_RULE] + [r.name for r in contract.rules]
    aggregates = [F.count(F.lit(1)).alias("rows_checked")]
    aggregates += [F.sum(F.array_contains("_failed", n).cast("long")).alias(n) for n in names]
    wide = flagged.groupBy("period").agg(*aggregates)
    stack = ", ".join(f"'{n}', `{n}`" for n in names)
    return wide.select("period", "rows_checked", F.expr(f"stack({len(names)}, {stack}) as (rule, failing_rows)"))
