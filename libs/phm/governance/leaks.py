"""Search a table for the canary people's identifiers (leak tests; the synthetic truth names the canaries).

A hit is any of: an NHS number in any formatting (10 digits, 3-3-4 with
spaces or dashes) inside any text; a forename or surname as a whole value
or word of a text column (case-insensitive); a date of birth in a column
whose name says it is one, or together with the person's postcode in the
same row.
"""

from __future__ import annotations

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
    """Descriptions of every canary identifier found in `df` (empty when clean), one pass over the data."""
    texts = _texts(df)
    checks: list[tuple[str, Column]] = []
    for i, canary in enumerate(canaries):
        for name, text in texts:
            upper = F.upper(text)
            for form in nhs_number_forms(canary.nhs_number):
                checks.append((f"canary {i} NHS number in {name}", F.instr(text, form) > 0))
            for kind, value in (("forename", canary.forename), ("surname", canary.surname)):
                pattern = rf"(^|[^A-Z]){_escape(value.upper())}($|[^A-Z])"
                checks.append((f"canary {i} {kind} in {name}", upper.rlike(pattern)))
            if "birth" in name.lower() or "dob" in name.lower():
                checks.append((f"canary {i} date of birth in {name}", F.instr(text, canary.date_of_birth) > 0))
        row_text = F.upper(F.concat_ws("|", *[t for _, t in texts]))
        together = F.instr(row_text, canary.date_of_birth) > 0
        near = F.lit(False)
        for postcode in canary.postcodes:
            near = near | (F.instr(row_text, postcode.upper()) > 0)
        checks.append((f"canary {i} date of birth with postcode", together & near))
    if not checks:
        return []
    counts = df.agg(*[F.sum(condition.cast("int")).alias(f"c{j}") for j, (_, condition) in enumerate(checks)]).first()
    return [label for j, (label, _) in enumerate(checks) if counts and (counts[f"c{j}"] or 0) > 0]


def _escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() and c != " " else c for c in text)
