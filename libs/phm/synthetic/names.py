"""Name pools per ethnic group and sex, from Faker's locale lists (a maintained package; no download).

Faker's lists are used as data only: sampling is ours, seeded, with numpy.
Nicknames (Robert/Bob) are a short list of common English pairs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

import numpy as np

# Locales whose names stand in for each group's naming in England (approx., a synthetic device).
LOCALES = {
    "white": ("en_GB", "en_GB", "en_GB", "en_IE", "pl_PL"),
    "asian": ("en_IN", "en_PK", "en_IN", "gu_IN"),
    "black": ("en_KE", "en_NG", "en_GB"),
    "mixed": ("en_GB", "en_IN", "en_KE"),
    "other": ("ar_AA", "tr_TR", "en_GB"),
}

NICKNAMES = {
    "Robert": "Bob", "William": "Bill", "Elizabeth": "Liz", "Margaret": "Maggie", "James": "Jim",
    "Richard": "Dick", "Thomas": "Tom", "Michael": "Mike", "Christopher": "Chris", "Anthony": "Tony",
    "Jennifer": "Jenny", "Katherine": "Kate", "Catherine": "Cathy", "Patricia": "Pat", "Susan": "Sue",
    "Samuel": "Sam", "Benjamin": "Ben", "Alexander": "Alex", "Daniel": "Dan", "Matthew": "Matt",
    "Jonathan": "Jon", "Joseph": "Joe", "Edward": "Ted", "Charles": "Charlie", "Victoria": "Vicky",
    "Rebecca": "Becky", "Deborah": "Debbie", "Stephen": "Steve", "Andrew": "Andy", "David": "Dave",
    "Peter": "Pete", "Nicholas": "Nick", "Jacqueline": "Jackie", "Frederick": "Fred", "Harold": "Harry",
    "Abigail": "Abby", "Alexandra": "Alex", "Samantha": "Sam", "Josephine": "Jo", "Timothy": "Tim",
}  # fmt: skip


@dataclass(frozen=True)
class NamePool:
    female: np.ndarray
    male: np.ndarray
    surnames: np.ndarray


def _names(provider: type, *attributes: str) -> list[str]:
    for attribute in attributes:
        value = getattr(provider, attribute, None)
        if value and len(value) > 5:
            return [str(v) for v in value]  # dict-like lists are keyed by name
    return []


def _clean(names: list[str]) -> list[str]:
    """Names as a GP system holds them: letters, hyphens, apostrophes and spaces only."""
    return sorted({n for n in names if n and all(c.isalpha() or c in "-' " for c in n) and n.isascii()})


@cache
def name_pools() -> dict[str, NamePool]:
    pools = {}
    for group, locales in LOCALES.items():
        female, male, surnames = [], [], []
        for locale in locales:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
            female += _names(provider, "first_names_female", "first_names")
            male += _names(provider, "first_names_male", "first_names")
            surnames += _names(provider, "last_names", "last_names_male")
        pools[group] = NamePool(np.array(_clean(female)), np.array(_clean(male)), np.array(_clean(surnames)))
    return pools
