"""From a block's people to every row of every source extract (one table, a column says which source).

Runs inside Spark tasks (applyInArrow per block), seeded by (seed, block),
so the rows are the same however Spark splits the work. Record ids are a
keyed 64-bit mix of (seed, source, person, sequence): unique, stable, and
revealing nothing about the person behind them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from phm.synthetic.activity import KIND_SOURCE, generate_events
from phm.synthetic.calibration import SOURCES
from phm.synthetic.corruption import apply_name_errors, apply_source_quality, identity_at_events
from phm.synthetic.dates import days
from phm.synthetic.population import PopulationPlan

RECORDS_STREAM = 3
# Name swaps and OCR errors draw from a sub-stream of their own: added later, they left every other draw as it was.
NAME_ERRORS_STREAM = 1
# Sources whose extracts carry no names (the NHS number and demographics only).
NAMELESS_SOURCES = frozenset({"gp_events", "outpatient", "community", "mental_health", "programme"})
# Sources keyed by a local system's own person reference: (key space apart from every record id, prefix).
LOCAL_ID_SOURCES = {"social_care": (1000, "SC"), "housing": (1001, "HC")}
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
DEFECT_KINDS = ("malformed_date", "future_date", "unknown_code", "exact_duplicate")

RECORD_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("period", T.StringType(), False),
        T.StructField("record_id", T.StringType(), False),
        T.StructField("true_person_id", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("event_date", T.DateType(), False),
        T.StructField("nhs_number", T.StringType(), True),
        T.StructField("forename", T.StringType(), True),
        T.StructField("surname", T.StringType(), True),
        T.StructField("date_of_birth", T.DateType(), True),
        T.StructField("sex", T.StringType(), True),
        T.StructField("ethnicity", T.StringType(), True),
        T.StructField("postcode", T.StringType(), True),
        T.StructField("practice_code", T.StringType(), True),
        T.StructField("code", T.StringType(), True),
        T.StructField("condition", T.StringType(), True),
        T.StructField("value", T.DoubleType(), True),
        T.StructField("value2", T.DoubleType(), True),
        T.StructField("los_days", T.IntegerType(), True),
        T.StructField("end_date", T.DateType(), True),
        T.StructField("local_id", T.StringType(), True),
        T.StructField("method", T.StringType(), True),
        T.StructField("corruptions", T.StringType(), True),
        T.StructField("defect", T.StringType(), True),
    ]
)
RECORD_ARROW_SCHEMA = to_arrow_schema(RECORD_SCHEMA)

# Registration changes a GP system sends after the first registration record.
CHANGE_KINDS = {"moved_on": "address_change", "surname_changed_on": "name_change", "death_date": "deregistration"}


def block_records(
    people: pd.DataFrame, factors: pd.DataFrame, plan: PopulationPlan, programme: pd.DataFrame | None = None
) -> pa.Table:
    """Every extract row for one block of people (people, factors and programme in the same order), as Arrow
    in RECORD_SCHEMA: handed to Spark as it is (pandas' hand-over checked every value for nulls again)."""
    block = int(people["block"].iloc[0])
    rng = np.random.default_rng([plan.seed, block, RECORDS_STREAM])
    name_rng = np.random.default_rng([plan.seed, block, RECORDS_STREAM, NAME_ERRORS_STREAM])
    events = pd.concat(
        [generate_events(people, factors, plan, programme), _registration_changes(people)], ignore_index=True
    )
    events["source"] = events["kind"].map(KIND_SOURCE)
    identity = identity_at_events(people, events)

    # Rows grouped by source in the calibration's order of sources (each in event order), and each source's view
    # of the identities; columns joined with numpy (pandas' concat of frames checks every value of an all-null
    # column, and each source has some).
    sources = plan.calibration.identifiers.sources
    codes = events["source"].map({source: i for i, source in enumerate(sources)}).to_numpy()
    by_source = [np.flatnonzero(codes == i) for i in range(len(sources))]
    seen_parts = []
    for (source, quality), rows in zip(sources.items(), by_source, strict=True):
        if len(rows):
            seen = apply_source_quality(
                identity.iloc[rows].reset_index(drop=True), quality, plan.calibration.identifiers, rng
            )
            seen = apply_name_errors(seen, quality, name_rng)
            if source in NAMELESS_SOURCES:
                seen[["forename", "surname"]] = None
            seen_parts.append(seen)
    order = np.concatenate(by_source)
    seen = pd.DataFrame({c: np.concatenate([part[c].to_numpy() for part in seen_parts]) for c in seen_parts[0]})
    records = pd.concat([events.iloc[order].reset_index(drop=True), seen], axis=1)

    person = people[["true_person_id", "ethnicity", "practice_code", "person_index"]].iloc[records["row"].to_numpy()]
    records["true_person_id"] = person["true_person_id"].to_numpy()
    records["ethnicity"] = person["ethnicity"].to_numpy()
    records["practice_code"] = person["practice_code"].to_numpy()
    records["period"] = _periods(records["event_date"], plan)
    records["record_id"] = _record_ids(plan.seed, records, person["person_index"].to_numpy())
    records["local_id"] = None
    for source, (key, prefix) in LOCAL_ID_SOURCES.items():
        own = (records["source"] == source).to_numpy()
        records.loc[own, "local_id"] = _local_ids(plan.seed, person["person_index"].to_numpy()[own], key, prefix)
    records["defect"] = _defects(len(records), plan, rng)
    return _as_arrow(records)


def _as_arrow(records: pd.DataFrame) -> pa.Table:
    """The frame's columns in RECORD_SCHEMA (a column no event kind of the block has is all null); None, NaN
    and NaT are nulls, as in Spark's own hand-over from pandas."""
    arrays = []
    for field in RECORD_ARROW_SCHEMA:
        if field.name not in records:
            arrays.append(pa.nulls(len(records), field.type))
        elif pa.types.is_date32(field.type):
            arrays.append(pa.array(days(records[field.name]), field.type, from_pandas=True))
        else:
            arrays.append(pa.Array.from_pandas(records[field.name], type=field.type))
    return pa.Table.from_arrays(arrays, schema=RECORD_ARROW_SCHEMA)


def _registration_changes(people: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for column, kind in CHANGE_KINDS.items():
        dates = days(people[column])
        rows = np.flatnonzero(~np.isnat(dates))
        frames.append(pd.DataFrame({"row": rows, "kind": kind, "event_date": dates[rows]}))
    return pd.concat(frames, ignore_index=True)


def _periods(dates: pd.Series, plan: PopulationPlan) -> np.ndarray:
    """The monthly extract a row is delivered in; history before the window comes with the first month."""
    months = days(dates).astype("datetime64[M]").astype(np.int64)
    first = np.datetime64(plan.history_start, "M").astype(np.int64)
    delivered = np.maximum(months, first)
    # Each month's text once (formatting every row's date was 6% of a block's time, profiled).
    names = np.datetime_as_string(np.arange(first, delivered.max() + 1).astype("datetime64[M]"), unit="M")
    return names[delivered - first]


def _record_ids(seed: int, records: pd.DataFrame, person_index: np.ndarray) -> np.ndarray:
    """16 hex digits from splitmix64 over (seed, source, person, sequence within person and source)."""
    source_code = records["source"].map({s: i + 1 for i, s in enumerate(SOURCES)}).to_numpy().astype(np.uint64)
    sequence = records.groupby(["source", "row"]).cumcount().to_numpy().astype(np.uint64)
    return _hex16(_mix(seed, source_code, person_index.astype(np.uint64), sequence))


def _hex16(key: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit keys as 16 lowercase hex digits, by a table of digits (a format per row is slower)."""
    nibbles = (key[:, None] >> np.arange(60, -4, -4, dtype=np.uint64)) & np.uint64(15)
    return HEX_DIGITS[nibbles].view("S16").ravel().astype(str).astype(object)


def _local_ids(seed: int, person_index: np.ndarray, key_space: int, prefix: str) -> np.ndarray:
    """A local system's own person reference (e.g. a council's client id): prefix + 10 digits, stable per person."""
    n = len(person_index)
    key = _mix(seed, np.full(n, key_space, np.uint64), person_index.astype(np.uint64), np.zeros(n, np.uint64))
    return np.char.add(prefix, np.char.zfill((key % np.uint64(10**10)).astype(str), 10)).astype(object)


def _mix(seed: int, source: np.ndarray, person: np.ndarray, sequence: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over the combined key: unsigned 64-bit, uniform, not invertible without the seed."""
    with np.errstate(over="ignore"):
        key = (
            np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            ^ source * np.uint64(0xBF58476D1CE4E5B9)
            ^ person * np.uint64(0x94D049BB133111EB)
            ^ sequence * np.uint64(0xD6E8FEB86659FD93)
        )
        for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            key = (key ^ (key >> np.uint64(shift))) * np.uint64(multiplier)
        return key ^ (key >> np.uint64(31))


def _defects(n: int, plan: PopulationPlan, rng: np.random.Generator) -> np.ndarray:
    rates = plan.calibration.defects
    draw = rng.random(n)
    defect = np.full(n, None, dtype=object)
    edge = 0.0
    for kind in DEFECT_KINDS:
        rate = getattr(rates, kind)
        defect[(draw >= edge) & (draw < edge + rate)] = kind
        edge += rate
    return defect
