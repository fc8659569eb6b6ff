"""Matching coded events to code lists: SNOMED CT concepts exactly, ICD-10 by prefix.

An ICD-10 code such as "I10X" or "E119" (4 characters, no dot, X-padded)
matches a list entry that is any of its prefixes ("E11", "E119", "E1", "E").
Each event's candidate keys are exploded and equi-joined to a broadcast
table of list entries, so matching costs one join whatever the list sizes.

gold.coded_events holds every event that belongs to a condition's or an eFI
deficit's list (build_person_model matches the timeline once; features,
segment and the actuarial history read the few matched rows, not the whole
timeline: at 1m people 1.8m rows of 35m, docs/bench.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.frames import literal_frame
from phm.person.definitions import ICD10, SNOMED, CodeList

INCLUDE, EXCLUDE, RESOLVED = "include", "exclude", "resolved"
ICD10_KEY_LENGTHS = (1, 2, 3, 4)
# gold.coded_events' families: which kind of list a row's codelist is (a condition and a deficit may share a name).
CONDITION, FRAILTY_DEFICIT = "condition", "frailty_deficit"
CODED_EVENT_KEEP = ("person_id", "source", "record_id", "event_date")


def codelist_entries(spark, families: Mapping[str, Iterable[CodeList]]) -> DataFrame:
    """(family, codelist, code_system, code_key, entry): one row per code of each list, by what the code means."""
    rows = []
    for family, codelists in families.items():
        for codelist in codelists:
            rows += [(family, codelist.name, SNOMED, code, INCLUDE) for code in codelist.snomed]
            rows += [(family, codelist.name, SNOMED, code, RESOLVED) for code in codelist.resolved_snomed]
            rows += [(family, codelist.name, ICD10, code, INCLUDE) for code in codelist.icd10]
            rows += [(family, codelist.name, ICD10, code, EXCLUDE) for code in codelist.icd10_exclude]
    schema = "family string, codelist string, code_system string, code_key string, entry string"
    return literal_frame(spark, rows, schema).distinct()


def _candidate_keys() -> Column:
    code = F.col("code")
    icd_prefixes = F.array(*[F.substring(code, 1, n) for n in ICD10_KEY_LENGTHS])
    return (
        F.when(F.col("code_system") == SNOMED, F.array(code))
        .when(F.col("code_system") == ICD10, F.array_distinct(icd_prefixes))
        .otherwise(F.array().cast("array<string>"))
    )


def match_codes(events: DataFrame, codelists: Iterable[CodeList], keep: Iterable[str]) -> DataFrame:
    """Each event (with `code_system`, `code`) x each list it belongs to: `keep` columns, codelist, entry.

    entry is "include" (a diagnosis code) or "resolved"; an ICD-10 code that matches one of the list's
    exclusions (e.g. C44 from cancer) is not a match.
    """
    return match_families(events, {"": codelists}, keep).drop("family")


def coded_events(events: DataFrame, families: Mapping[str, Iterable[CodeList]]) -> DataFrame:
    """gold.coded_events rows: each gold.events row x each list of `families` (family name -> its code lists) it
    belongs to: person_id, source, record_id, event_date, family, codelist, entry."""
    return match_families(events, families, CODED_EVENT_KEEP)


def match_families(events: DataFrame, families: Mapping[str, Iterable[CodeList]], keep: Iterable[str]) -> DataFrame:
    """match_codes against several families of lists in one pass: `keep` columns, family, codelist, entry."""
    keep = list(keep)
    entries = F.broadcast(codelist_entries(events.sparkSession, families))
    candidates = (
        events.where(F.col("code").isNotNull())
        .select(*keep, "code_system", F.explode(_candidate_keys()).alias("code_key"))
        .where(F.col("code_key") != "")
    )
    # One aggregation per event and list rather than the matches less those excluded (a join of the matches to
    # themselves): the events are read once, not twice (at 1m, 30.7m coded events: docs/bench.md).
    return (
        candidates.join(entries, ["code_system", "code_key"])
        .groupBy(*keep, "family", "codelist")
        .agg(F.collect_set("entry").alias("_entries"))
        .where(~F.array_contains("_entries", EXCLUDE))
        .select(*keep, "family", "codelist", F.explode("_entries").alias("entry"))
    )
