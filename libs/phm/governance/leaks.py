"""Search a table for the canary people's identifiers (leak tests; the synthetic truth names the canaries).

A hit is any of: an NHS number in any formatting (10 digits, 3-3-4 with
spaces or dashes) inside any text; a forename or surname as a whole value
or word of a text column (case-insensitive); a date of birth in a column
whose name says it is one, or together with the person's postcode in the
same row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


@dataclass(frozen=True)
class Canary:
    nhs_number: str
    forename: str
    surname: str
    date_of_birth: str  # ISO
    postcodes: tuple[str, ...]


def nhs_number_forms(number: str) -> list[str]:
    return [number, f"{number[:3]} {number[3:6]} {number[6:]}", f"{number[:3]}-{number[3:6]}-{number[6:]}"]


def _texts(df: DataFrame) -> list[tuple[str, Column]]:
    """Every column as text (nested values as JSON), by name."""
    out = []
    for field in df.schema.fields:
        column = F.col(f"`{field.name}`")
        if isinstance(field.dataType, T.ArrayType | T.MapType | T.StructType):
            column = F.to_json(column)
        out.append((field.name, column.cast("string")))
    return out


def leak_hits(df: DataFrame, canaries: list[Canary]) -> list[str]:
    """Descriptions of every canary identifier found in `df` (empty when clean).

    One pass with every canary folded into one pattern per column and kind (a clean table, the usual case,
    costs a few regular expressions per column, not a few per canary and column); only if that pass finds
    something does a second pass say which canary and which column.
    """
    if not canaries:
        return []
    texts = _texts(df)
    if not _hits(df, _checks(texts, [("a canary", canaries)])):
        return []
    return _hits(df, _checks(texts, [(f"canary {i}", [canary]) for i, canary in enumerate(canaries)]))


def _checks(texts: list[tuple[str, Column]], groups: list[tuple[str, list[Canary]]]) -> list[tuple[str, Column]]:
    """(label, condition) per named group of canaries and column."""
    checks: list[tuple[str, Column]] = []
    for who, group in groups:
        numbers = "|".join(_escape(form) for c in group for form in nhs_number_forms(c.nhs_number))
        names = {kind: "|".join(_escape(getattr(c, kind).upper()) for c in group) for kind in ("forename", "surname")}
        births = "|".join(_escape(c.date_of_birth) for c in group)
        for name, text in texts:
            checks.append((f"{who} NHS number in {name}", text.rlike(numbers)))
            for kind, pattern in names.items():
                checks.append((f"{who} {kind} in {name}", F.upper(text).rlike(rf"(^|[^A-Z])({pattern})($|[^A-Z])")))
            if "birth" in name.lower() or "dob" in name.lower():
                checks.append((f"{who} date of birth in {name}", text.rlike(births)))
        row_text = F.upper(F.concat_ws("|", *[t for _, t in texts]))
        for canary in group:
            near = F.lit(False)
            for postcode in canary.postcodes:
                near = near | (F.instr(row_text, postcode.upper()) > 0)
            checks.append((f"{who} date of birth with postcode", (F.instr(row_text, canary.date_of_birth) > 0) & near))
    return checks


def _hits(df: DataFrame, checks: list[tuple[str, Column]]) -> list[str]:
    counts = df.agg(*[F.sum(condition.cast("int")).alias(f"c{j}") for j, (_, condition) in enumerate(checks)]).first()
    return sorted({label for j, (label, _) in enumerate(checks) if counts and (counts[f"c{j}"] or 0) > 0})


def _escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() and c != " " else c for c in text)


NAME_GAP = 40  # characters between a forename and a surname that read as one name


def text_leak_hits(text: str, canaries: list[Canary]) -> list[str]:
    """The same search in a document (a report page, a notebook's outputs, a log): an NHS number in any
    formatting; a surname as a word; a forename as a word within NAME_GAP characters of the surname (either
    order); a date of birth anywhere with one of the person's postcodes. Names are matched as recorded, in
    capitals or in title case. A forename alone is not a hit in prose: short forenames are also words a
    document uses ('Jan' on a time axis, 'May', 'Will'), and a name without its surname identifies nobody."""
    hits = []
    for i, canary in enumerate(canaries):
        if any(form in text for form in nhs_number_forms(canary.nhs_number)):
            hits.append(f"canary {i} NHS number")
        forename, surname = (_word(getattr(canary, kind)) for kind in ("forename", "surname"))
        if re.search(surname, text):
            hits.append(f"canary {i} surname")
        gap = rf"[^\n]{{0,{NAME_GAP}}}"
        if re.search(forename + gap + surname, text) or re.search(surname + gap + forename, text):
            hits.append(f"canary {i} forename with surname")
        if canary.date_of_birth in text and any(p.upper() in text.upper() for p in canary.postcodes):
            hits.append(f"canary {i} date of birth with postcode")
    return hits


def _word(name: str) -> str:
    forms = "|".join(re.escape(form) for form in sorted({name, name.upper(), name.title()}))
    return rf"(?<![A-Za-z])(?:{forms})(?![A-Za-z])"
