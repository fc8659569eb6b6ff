"""Identity profiles: the distinct identifier combinations that linkage compares.

Most source records of a person carry exactly the same identifiers (their GP
events, their outpatient appointments, every month's registration row), so
linkage compares each distinct combination once, a *profile*, and maps every
record to its profile. A profile's id is a hash of the record's keyed
pseudonyms (never of the identifiers themselves), so it reveals nothing
without the pseudonymisation key.

Comparison columns derived here (FACTS.md "Linkage realities"):
- `nhs_number_valid`: the number passes the modulus-11 check digit;
- `forename_forms`: the forename plus its formal name(s) from the nickname
  list (configs/linkage/nicknames.csv), so BOB and ROBERT share a form;
- `surnames`: every surname seen with the profile's valid NHS number and date
  of birth (a name change leaves records under the earlier surname);
- `postcode_sector` / `postcode_district`: the postcode without its last two
  characters / its outward code.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from phm.identifiers import nhs_number_is_valid
from phm.linkage import Materialise, as_is

# The source whose records gold.person trusts first (profiles count them apart).
GP_SOURCE = "gp_registrations"
# The identifiers linkage compares (vault.identity columns) and the pseudonyms that name them.
IDENTIFIERS = ("nhs_number", "forename", "surname", "date_of_birth", "sex", "postcode")
PSEUDONYMISED = ("nhs_number", "forename", "surname", "date_of_birth", "postcode")

# At most this many profile ids are broadcast to pick profiles out of every profile (about 70 bytes each in every
# task's hash table): a refresh's changed profiles (680k in a month at 1m people) to split the state, and
# linking's edge ends; more (e.g. years delivered again) and the planner decides (a shuffle of every profile).
BROADCAST_PROFILES = 2_000_000

# What a profile row holds (profiles() adds record_count, gp_record_count and sources from records_by_source).
PROFILE_COLUMNS = (
    "profile_id",
    "nhs_number",
    "nhs_number_valid",
    "forename",
    "surname",
    "date_of_birth",
    "sex",
    "postcode",
    "postcode_sector",
    "postcode_district",
    "forename_forms",
    "surnames",
    "records_by_source",
)
# What a profile's known surnames are found from (_with_known_surnames).
KNOWN_SURNAMES_FROM = ("profile_id", "nhs_number", "nhs_number_valid", "date_of_birth", "surname")


def profile_id(record: DataFrame) -> Column:
    """A stable id for a combination of identifiers, from their keyed pseudonyms (sex is not identifying)."""
    parts = [F.coalesce(F.col(f"{name}_pseudonym"), F.lit("")) for name in PSEUDONYMISED]
    return F.sha2(F.concat_ws("|", *parts, F.coalesce(F.col("sex"), F.lit(""))), 256).substr(1, 32)


def linkage_records(identity: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    """vault.identity -> (source, period, record_id, profile_id, identifiers, and the columns to `keep`): one
    row per identity record."""
    return identity.select(
        "source",
        "period",
        "record_id",
        profile_id(identity).alias("profile_id"),
        *IDENTIFIERS,
        *keep,
    )


def profiles(records: DataFrame, nicknames: DataFrame) -> DataFrame:
    """One row per distinct profile with its records counted by source (all, and GP registrations for
    gold.person's best values), its sources and the comparison columns."""
    return _with_record_counts(_with_known_surnames(_with_comparison_columns(_grouped(records), nicknames)))


def updated_profiles(
    state: DataFrame,
    inserted: DataFrame,
    deleted: DataFrame,
    nicknames: DataFrame,
    materialise: Materialise = as_is,
) -> DataFrame:
    """The profiles after records were inserted and deleted, from the profiles before (`state`): what
    `profiles()` of every record gives, computed from the changed records alone (a monthly increment).

    inserted / deleted: linkage_records() of the records added and removed (a re-delivered period removes
    its earlier records). Counts change by source; a profile left with no record goes; a profile first
    seen gets its comparison columns. Known surnames follow an NHS number's profiles (deterministic_keys),
    so they are recomputed for the numbers of profiles that came or went, and only for those.

    The state is not shuffled: the changed profiles' ids (a fifth of the profiles in a month at 1m people;
    at most BROADCAST_PROFILES) and the numbers whose surnames are redone (fewer) are broadcast to
    split it, and only the changed rows are joined with their changes. With the whole state (3.7m wide rows at
    1m people) shuffled to be joined with the changes, link's profile step took 66 s (median) at 1m; this way
    50 s (docs/linkage.md). Every column of the state is read twice (the changed rows, then every row); the
    profiles whose surnames are redone are found from the five columns that find them, and their new surnames
    (121,580 against 669,965 changed profiles in a month at 1m people) are broadcast to the last read.
    `materialise` keeps what later steps read more than once: the changes, the changed rows joined with them,
    the profiles whose surnames are redone and their new surnames.
    """
    signed = inserted.withColumn("_n", F.lit(1)).unionByName(deleted.withColumn("_n", F.lit(-1)))
    # One aggregation by profile, its records' sources counted afterwards (as _grouped does). Counted by
    # (profile, source) first, with first() of each identifier, the records were shuffled twice and the first
    # aggregation sorted (first() of a string has no place in Spark's hash aggregation).
    grouped = signed.groupBy("profile_id").agg(
        F.first(F.struct(*IDENTIFIERS)).alias("_new"),  # a profile's records share them
        F.collect_list(F.struct("source", "_n")).alias("_signed"),
    )
    change = materialise(
        grouped.select(
            "profile_id",
            *[F.col(f"_new.{name}").alias(f"_new_{name}") for name in IDENTIFIERS],
            _summed_by_source(F.col("_signed")).alias("_change"),
        ),
        "profile_changes",
    )
    splitting = broadcast_if_few(change)
    changed_ids = splitting(change.select("profile_id"))
    unchanged = state.join(changed_ids, "profile_id", "left_anti").select(*PROFILE_COLUMNS)
    added = F.map_zip_with(
        "records_by_source",
        "_change",
        lambda _source, was, change: F.coalesce(was, F.lit(0)) + F.coalesce(change, F.lit(0)),
    )
    # The changed profiles that were in the state, with their counts now (none left: the profile went).
    was = state.join(changed_ids, "profile_id", "left_semi").drop("record_count", "gp_record_count", "sources")
    recounted = materialise(
        was.join(change.select("profile_id", "_change"), "profile_id").withColumn(
            "records_by_source", _positive(added)
        ),
        "recounted_profiles",
    )
    present = F.size("records_by_source") > 0
    existing = recounted.where(present).select(*PROFILE_COLUMNS)
    gone = recounted.where(~present)
    arriving = _with_comparison_columns(
        change.join(recounted.select("profile_id"), "profile_id", "left_anti")
        .select(
            "profile_id",
            *[F.col(f"_new_{name}").alias(name) for name in IDENTIFIERS],
            _positive(F.col("_change")).alias("records_by_source"),
        )
        .where(present),
        nicknames,
    ).withColumn("surnames", F.lit(None).cast("array<string>"))
    numbers = splitting(
        gone.select("nhs_number").unionByName(arriving.select("nhs_number")).where(F.col("nhs_number").isNotNull())
        .distinct()
    )  # fmt: skip
    known = unchanged.unionByName(existing)
    # The profiles whose surnames are redone, with only what finds them: these five columns of the state are
    # read, not every column (whole rows are read only for the changed rows, above, and by the last step).
    # Staged: finding the known surnames reads it four times.
    redo = materialise(
        known.select(*KNOWN_SURNAMES_FROM).join(numbers, "nhs_number", "left_semi")
        .unionByName(arriving.select(*KNOWN_SURNAMES_FROM)),
        "redo_profiles",
    )  # fmt: skip
    redone = materialise(
        _with_known_surnames(redo).select(
            "profile_id", F.col("surnames").alias("_surnames"), F.lit(True).alias("_redone")
        ),
        "redone_surnames",
    )
    updating = broadcast_if_few(redone)  # so the state is not shuffled to take them
    surnames = F.when(F.col("_redone"), F.col("_surnames")).otherwise(F.col("surnames"))
    now = known.unionByName(arriving.select(*PROFILE_COLUMNS))
    return _with_record_counts(
        now.join(updating(redone), "profile_id", "left").withColumn("surnames", surnames).select(*PROFILE_COLUMNS)
    )


def _summed_by_source(entries: Column) -> Column:
    """A list of (source, _n) -> a map of each source to its sum (bigint)."""
    sources = F.array_distinct(F.transform(entries, lambda entry: entry["source"]))
    return F.map_from_arrays(
        sources,
        F.transform(
            sources,
            lambda source: F.aggregate(
                F.filter(entries, lambda entry: entry["source"] == source),
                F.lit(0).cast("bigint"),
                lambda total, entry: total + entry["_n"],
            ),
        ),
    )


def broadcast_if_few(rows: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """A join hint for `rows` or a part of it: broadcast when it has at most BROADCAST_PROFILES rows
    (counted: one Spark job), otherwise none (the planner decides)."""
    return F.broadcast if rows.count() <= BROADCAST_PROFILES else (lambda df: df)


def _positive(counts: Column) -> Column:
    """The sources a profile still has records from."""
    return F.map_filter(counts, lambda _source, n: n > 0)


def _grouped(records: DataFrame) -> DataFrame:
    """One row per profile: its identifiers and its records counted by source.

    One aggregation, counting each profile's list of sources afterwards: counting by (profile, source) first
    and then by profile shuffles the records twice (profiles of 36.2m records at 1m: 221 s against 174 s).
    """
    grouped = records.groupBy("profile_id").agg(
        *[F.first(name).alias(name) for name in IDENTIFIERS], F.collect_list("source").alias("_sources")
    )
    # Counted with size(filter) rather than through _summed_by_source (a sum over (source, 1) pairs): 15.6 against
    # 18.7 s (medians) for 4m records (/work/exp/grouped_ab.py).
    sources = F.col("_sources")
    counted = F.map_from_entries(
        F.transform(
            F.array_distinct(sources),
            lambda source: F.struct(source, F.size(F.filter(sources, lambda s: s == source)).cast("bigint")),
        )
    )
    return grouped.select("profile_id", *IDENTIFIERS, counted.alias("records_by_source"))


def _with_comparison_columns(grouped: DataFrame, nicknames: DataFrame) -> DataFrame:
    sex = known_sex(F.col("sex"))  # U(nknown) compares as missing
    with_columns = grouped.select(
        "profile_id",
        "nhs_number",
        nhs_number_is_valid(F.col("nhs_number")).alias("nhs_number_valid"),
        "forename",
        "surname",
        "date_of_birth",
        sex.alias("sex"),
        "postcode",
        postcode_sector(F.col("postcode")).alias("postcode_sector"),
        postcode_district(F.col("postcode")).alias("postcode_district"),
        "records_by_source",
    )
    return _with_forename_forms(with_columns, nicknames)


def _with_record_counts(profile: DataFrame) -> DataFrame:
    counts = F.col("records_by_source")
    return profile.select(
        *PROFILE_COLUMNS,
        F.aggregate(F.map_values(counts), F.lit(0).cast("bigint"), lambda total, n: total + n).alias("record_count"),
        F.coalesce(counts[GP_SOURCE], F.lit(0).cast("bigint")).alias("gp_record_count"),
        F.array_sort(F.map_keys(counts)).alias("sources"),
    )


def known_sex(sex: Column) -> Column:
    """M or F; any other value (U: unknown) is no sex."""
    return F.when(sex.isin("M", "F"), sex)


def postcode_sector(postcode: Column) -> Column:
    """'LS1 4AB' -> 'LS1 4' (standardised postcodes have one space before the inward code)."""
    return F.when(F.length(postcode) >= 6, postcode.substr(F.lit(1), F.length(postcode) - 2))


def postcode_district(postcode: Column) -> Column:
    return F.when(postcode.contains(" "), F.substring_index(postcode, " ", 1))


def deterministic_keys(profile: DataFrame) -> DataFrame:
    """(profile_id, key): profiles with equal keys link without a model (the deterministic pass).

    The key is a valid NHS number with the date of birth. A profile with a valid
    number but no date of birth (GP clinical events carry the number alone)
    takes the key of the one date of birth seen with its number, or the number
    alone if none is; a number seen with two dates of birth leaves it unkeyed.
    """
    valid = profile.where(F.col("nhs_number_valid"))
    dates = (
        valid.where(F.col("date_of_birth").isNotNull())
        .groupBy("nhs_number")
        .agg(F.countDistinct("date_of_birth").alias("_dates"), F.min("date_of_birth").alias("_only_date"))
    )
    number = F.col("nhs_number")
    key = (
        F.when(F.col("date_of_birth").isNotNull(), F.concat_ws("|", number, F.col("date_of_birth").cast("string")))
        .when(F.col("_dates").isNull(), F.concat_ws("|", number, F.lit("")))
        .when(F.col("_dates") == 1, F.concat_ws("|", number, F.col("_only_date").cast("string")))
    )
    return (
        valid.join(dates, "nhs_number", "left").select("profile_id", key.alias("key")).where(F.col("key").isNotNull())
    )


def _with_forename_forms(profile: DataFrame, nicknames: DataFrame) -> DataFrame:
    formal_of = nicknames.groupBy(F.col("nickname").alias("forename")).agg(F.collect_set("formal").alias("_formal"))
    joined = profile.join(F.broadcast(formal_of), "forename", "left")
    forms = F.when(
        F.col("forename").isNotNull(),
        F.array_sort(F.array_union(F.array(F.col("forename")), F.coalesce(F.col("_formal"), F.array()))),
    )
    return joined.withColumn("forename_forms", forms).drop("_formal")


def _with_known_surnames(profile: DataFrame) -> DataFrame:
    keyed = profile.join(deterministic_keys(profile), "profile_id", "left")
    known = (
        keyed.where(F.col("key").isNotNull() & F.col("surname").isNotNull())
        .groupBy("key")
        .agg(F.array_sort(F.collect_set("surname")).alias("_known"))
    )
    surnames = F.when(F.col("surname").isNotNull(), F.coalesce(F.col("_known"), F.array(F.col("surname"))))
    return keyed.join(known, "key", "left").withColumn("surnames", surnames).drop("key", "_known")
