"""Ingest logic on small inline frames: CSV line parsing, cleaning, rules and actions, pseudonyms, plans."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from phm.errors import ConfigError, SchemaMismatchError
from phm.ingest import pseudonymise
from phm.ingest.contracts import RuleSpec, SourceContract, load_contracts
from phm.ingest.landing import LandedFile, plan_loads, schema_drift
from phm.ingest.outputs import age_band
from phm.ingest.reader import BATCH_ROWS, field_of, landed_rows
from phm.ingest.rules import compile_rule, evaluate
from phm.ingest.standardise import clean_text, standardise
from phm.ingest.validation import Validator

REPO = Path(__file__).resolve().parents[2]
WIDE = "\u00e9" * 64  # 128 bytes: fields are measured in characters
LINES = [
    (b"a1,Ann,2026-01-02", {"id": "a1", "name": "Ann", "when": "2026-01-02"}, None),
    (b'a2,"Smith, Jo",2026-01-02', {"id": "a2", "name": "Smith, Jo", "when": "2026-01-02"}, None),
    (b"a3,,2026-01-02\r", {"id": "a3", "name": None, "when": "2026-01-02"}, None),
    (b"   ", None, None),  # blank: not a row
    (b"a4,Ann", None, "2 fields where the header has 3"),
    (b"a5,An,n,2026-01-02", None, "4 fields where the header has 3"),
    (b'a6,"Ann,2026-01-02', None, "bad quoting"),
    (b"a7,\xff\xfeAnn,2026-01-02", None, "not UTF-8 (byte 3)"),
    (b"a8," + b"A" * 65 + b",2026-01-02", None, "a field longer than 64 characters"),
    (b"a9," + b"A" * 64 + b",2026-01-02", {"id": "a9", "name": "A" * 64, "when": "2026-01-02"}, None),
    (f"a10,{WIDE},2026-01-02".encode(), {"id": "a10", "name": WIDE, "when": "2026-01-02"}, None),  # 64 characters
    (b'a11,"",2026-01-02', {"id": "a11", "name": None, "when": "2026-01-02"}, None),
    (b"a12,Ann,", {"id": "a12", "name": "Ann", "when": None}, None),
]


@pytest.mark.parametrize("utf8", [True, False], ids=["utf8-split-by-arrow", "not-utf8-read-line-by-line"])
def test_csv_lines_are_read_with_their_numbers_or_kept_raw_with_the_reason(spark, tmp_path, utf8):
    lines = [entry for entry in LINES if not (utf8 and entry[2] == "not UTF-8 (byte 3)")]
    path = tmp_path / "demo" / "2026-01" / "a.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join([b"id,name,when", *[line for line, _, _ in lines]]) + b"\n")
    landed = LandedFile("demo", "2026-01", str(path), "demo/2026-01/a.csv", "sum", 1, ("id", "name", "when"))
    rows = landed_rows(spark, [landed], {"demo": "csv"}, 2, max_field_chars=64)
    got = {r.line_number: r for r in rows.collect()}
    expected_numbers = [n for n, (line, _, _) in enumerate(lines, start=2) if line.strip()]
    assert sorted(got) == expected_numbers
    for number in expected_numbers:
        line, fields, error = lines[number - 2]
        row = got[number]
        assert (row.source, row.period, row.file, row.checksum) == ("demo", "2026-01", "demo/2026-01/a.csv", "sum")
        if error is None:
            assert row["values"] == [fields[c] for c in landed.columns]
            assert row.raw_line is None and row.parse_error is None
        else:
            assert row["values"] is None and row.parse_error.startswith(error)
            assert row.raw_line.startswith(line[:3].decode())


def test_a_file_longer_than_a_batch_keeps_every_line(spark, tmp_path):
    path = tmp_path / "demo" / "2026-01" / "a.csv"
    path.parent.mkdir(parents=True)
    lines = [f"r{i},x" for i in range(BATCH_ROWS + 2)]
    lines[BATCH_ROWS + 1] = 'r,"y'  # a malformed line in the second batch
    path.write_text("\n".join(["id,name", *lines]) + "\n")
    landed = LandedFile("demo", "2026-01", str(path), "demo/2026-01/a.csv", "sum", 1, ("id", "name"))
    rows = landed_rows(spark, [landed], {"demo": "csv"}, 2, max_field_chars=64)
    counted = rows.agg(F.count(F.lit(1)), F.min("line_number"), F.max("line_number"), F.count("parse_error")).first()
    assert tuple(counted) == (BATCH_ROWS + 2, 2, BATCH_ROWS + 3, 1)


def test_parquet_rows_are_read_as_text_and_checked_like_lines(spark, tmp_path):
    path = tmp_path / "demo" / "2026-01" / "a.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table({"id": ["p1", "p2", "p3"], "name": ["Ann", "", "A" * 65],
                      "when": [date(2026, 1, 2), None, date(2026, 1, 3)]})  # fmt: skip
    pq.write_table(table, path)
    landed = LandedFile("demo", "2026-01", str(path), "demo/2026-01/a.parquet", "sum", 1, ("id", "name", "when"))
    rows = landed_rows(spark, [landed], {"demo": "parquet"}, 2, max_field_chars=64).collect()
    got = {r.line_number: (r["values"], r.raw_line, r.parse_error) for r in rows}
    assert got == {
        1: (["p1", "Ann", "2026-01-02"], None, None),
        2: (["p2", None, None], None, None),
        3: (None, None, "a field longer than 64 characters"),
    }


def test_cleaning_follows_data_dictionary_formats(spark):
    rows = [
        (" qa1 2xy ", "999 000 0018", "s72.2", "  mary   ann "),
        ("QA12XY", "999-000-0018", "I10X", ""),
        ("", None, None, None),
    ]
    df = spark.createDataFrame(rows, "pc string, nhs string, code string, name string")
    out = df.select(
        clean_text(F.col("pc"), "postcode").alias("pc"),
        clean_text(F.col("nhs"), "nhs_number").alias("nhs"),
        clean_text(F.col("code"), "code").alias("code"),
        clean_text(F.col("name"), "name").alias("name"),
    ).collect()
    assert [tuple(r) for r in out] == [
        ("QA1 2XY", "9990000018", "S722", "MARY ANN"),
        ("QA1 2XY", "9990000018", "I10X", None),
        (None, None, None, None),
    ]


def test_spark_hmac_equals_python_hmac(spark):
    key = bytes.fromhex("a1" * 40)  # longer than 32 bytes, shorter than a block
    long_key = bytes(range(100))  # longer than a block: hashed first (RFC 2104)
    for k in (key, long_key):
        df = spark.createDataFrame([("9990000018",), ("ÉMILE",), (None,)], "v string")
        got = [r[0] for r in pseudonymise.without_key(
            pseudonymise.with_key(spark, df, k).select(pseudonymise.pseudonym("nhs_number", F.col("v")))
        ).collect()]  # fmt: skip
        expected = [
            hmac.new(k, f"nhs_number:{v}".encode(), hashlib.sha256).hexdigest() for v in ("9990000018", "ÉMILE")
        ]
        assert got == [*expected, None]
        assert got[0] == pseudonymise.reference_pseudonym(k, "nhs_number", "9990000018")


def test_each_key_of_a_row_gets_its_own_hmac(spark):
    # More keys in one row than the function keeps states for per thread (4), taken in turn row after row, and
    # messages of one SHA-256 block and of several.
    keys = [bytes([n]) * 32 for n in range(1, 6)]
    pairs = [(f"_pad_in_{n}", f"_pad_out_{n}") for n in range(len(keys))]
    values = ["9990000018", "ÉMILE", "12 " + "LONG ROAD " * 30, ""]
    df = spark.createDataFrame([(v,) for v in values], "v string").repartition(1)
    for k, pair in zip(keys, pairs, strict=True):
        df = pseudonymise.with_key(spark, df, k, pair)
    got = df.select("v", *[pseudonymise.pseudonym("address", F.col("v"), pair).alias(str(n))
                           for n, pair in enumerate(pairs)]).collect()  # fmt: skip
    assert {r.v: [r[str(n)] for n in range(len(keys))] for r in got} == {
        v: [pseudonymise.reference_pseudonym(k, "address", v) for k in keys] for v in values
    }


def test_the_key_never_appears_in_the_plan(spark):
    key = bytes.fromhex("c3" * 32)
    df = pseudonymise.with_key(spark, spark.createDataFrame([("x",)], "v string"), key)
    plan = df.select(pseudonymise.pseudonym("surname", F.col("v")))._jdf.queryExecution().toString()
    inner, outer = pseudonymise.pads(key)
    assert inner.hex() not in plan.lower() and outer.hex() not in plan.lower() and key.hex() not in plan.lower()


def test_key_from_env_or_file_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("PHM_TEST_KEY", raising=False)
    missing = tmp_path / "nokey"
    with pytest.raises(pseudonymise.MissingKeyError, match="set PHM_TEST_KEY or create .*nokey"):
        pseudonymise.load_key("PHM_TEST_KEY", str(missing))
    path = pseudonymise.write_new_key(str(tmp_path / "k" / "key"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    key = pseudonymise.load_key("PHM_TEST_KEY", str(path))
    assert len(key) == 32
    with pytest.raises(FileExistsError):
        pseudonymise.write_new_key(str(path))  # never overwrites
    monkeypatch.setenv("PHM_TEST_KEY", "not hex")
    with pytest.raises(pseudonymise.MissingKeyError, match="not hex"):
        pseudonymise.load_key("PHM_TEST_KEY", str(path))
    monkeypatch.setenv("PHM_TEST_KEY", "ab" * 8)
    with pytest.raises(pseudonymise.MissingKeyError, match="shorter than 32 bytes"):
        pseudonymise.load_key("PHM_TEST_KEY", str(path))
    assert pseudonymise.key_id(key) != pseudonymise.key_id(key[::-1])


def _contract(rules: list[dict], **extra) -> SourceContract:
    return SourceContract.model_validate(
        {
            "source": "demo",
            "description": "demo",
            "format": "csv",
            "files": "*.csv",
            "date_format": "dd/MM/yyyy",
            "record_id": "id",
            "event_date": "seen",
            "columns": {
                "id": {"from": "ID", "required": True},
                "nhs": {"from": "NHS", "clean": "nhs_number"},
                "dob": {"from": "DOB", "type": "date"},
                "seen": {"from": "Seen", "type": "date"},
                "code": {"from": "Code", "clean": "code"},
                "cost": {"from": "Cost", "type": "double"},
            },
            "rules": rules,
            **extra,
        }
    )


def _bronze(spark, rows, header):
    """landed_rows' form of rows given as {column: value} (None: a malformed line) of one file with `header`."""
    data = [("demo", "2026-01", "demo/2026-01/a.csv", i + 2, "c", [fields.get(c) for c in header] if fields else None,
             raw, err) for i, (fields, raw, err) in enumerate(rows)]  # fmt: skip
    return spark.createDataFrame(
        data,
        "source string, period string, file string, line_number long, checksum string, "
        "values array<string>, raw_line string, parse_error string",
    )


def test_a_field_is_found_by_each_files_own_header(spark):
    rows = [("a.csv", ["1", "x"]), ("b.csv", ["y", "2"]), ("c.csv", ["3"]), ("a.csv", None)]
    frame = spark.createDataFrame(rows, "file string, `values` array<string>")
    one = {"a.csv": ("id", "name"), "c.csv": ("id",)}
    two = {**one, "b.csv": ("name", "id")}
    got = frame.select("file", field_of("id", two).alias("id"), field_of("name", two).alias("name")).collect()
    assert [tuple(r) for r in got] == [
        ("a.csv", "1", "x"), ("b.csv", "2", "y"), ("c.csv", "3", None), ("a.csv", None, None)
    ]  # fmt: skip
    same = frame.where("file = 'a.csv'").select(field_of("name", {"a.csv": ("id", "name")}).alias("name")).collect()
    assert [r.name for r in same] == ["x", None]


def test_every_check_and_action_on_inline_rows(spark):
    def rule(name, check, action, **arguments):
        return {"name": name, "check": check, "action": action, "reason": "r", **arguments}

    rules = [
        rule("id_present", "not_null", "quarantine", column="id"),
        rule("id_unique", "unique", "quarantine", columns=["id"]),
        rule("seen_parses", "parses", "quarantine", column="seen"),
        rule("seen_in_period", "in_period", "quarantine", column="seen"),
        rule("dob_not_future", "not_future", "warn", column="dob"),
        rule("age", "age_between", "warn", column="dob", min=0, max=115),
        rule("nhs_digits", "regex", "warn", column="nhs", pattern="^[0-9]{10}$"),
        rule("nhs_mod11", "check_digit", "warn", column="nhs"),
        rule("code_known", "in_set", "quarantine", column="code", values=["A1", "B2"]),
        rule("cost_range", "between", "fail", column="cost", min=0, max=100),
    ]
    contract = _contract(rules)
    good = {"ID": "1", "NHS": "9990000018", "DOB": "01/02/1950", "Seen": "15/01/2026", "Code": "a1", "Cost": "5"}
    rows = [
        (good, None, None),  # line 2: clean
        ({**good, "ID": "2", "NHS": "9990000019"}, None, None),  # 3: bad check digit -> warn
        ({**good, "ID": "3", "Seen": "30/02/2026"}, None, None),  # 4: unparseable date -> quarantine
        ({**good, "ID": "4", "Seen": "15/01/2029"}, None, None),  # 5: outside period -> quarantine
        ({**good, "ID": "1"}, None, None),  # 6: second copy of id 1 -> quarantine
        ({**good, "ID": "6", "Code": "ZZ"}, None, None),  # 7: unknown code -> quarantine
        ({**good, "ID": "7", "DOB": "01/02/2027"}, None, None),  # 8: future DOB, age < 0 -> warn twice
        ({**good, "ID": "8", "NHS": None}, None, None),  # 9: missing NHS number: no rule says present -> accept
        (None, "9,99900", "2 fields where the header has 6"),  # 10: malformed line
        ({**good, "ID": "10", "Cost": "500"}, None, None),  # 11: fail action
        ({**good, "ID": None}, None, None),  # 12: no id -> quarantine (unique ignores nulls)
    ]
    compiled = [compile_rule(RuleSpec.model_validate(r)) for r in rules]
    header = ("ID", "NHS", "DOB", "Seen", "Code", "Cost")
    out = evaluate(standardise(_bronze(spark, rows, header), contract, {"demo/2026-01/a.csv": header}), compiled)
    got = {r.line_number: (r._outcome, sorted(r._failed), sorted(r._warnings))
           for r in out.select("line_number", "_outcome", "_failed", "_warnings").collect()}  # fmt: skip
    assert got == {
        2: ("accept", [], []),
        3: ("accept", ["nhs_mod11"], ["nhs_mod11"]),
        4: ("quarantine", ["seen_parses"], []),
        5: ("quarantine", ["seen_in_period"], []),
        6: ("quarantine", ["id_unique"], []),
        7: ("quarantine", ["code_known"], []),
        8: ("accept", ["age", "dob_not_future"], ["age", "dob_not_future"]),
        9: ("accept", [], []),
        10: ("quarantine", ["id_present", "malformed_line"], []),
        11: ("fail", ["cost_range"], []),
        12: ("quarantine", ["id_present"], []),
    }
    # Great Expectations runs the same rules as the source's suite and counts the same failing rows (a unique rule:
    # every copy, not only the later ones); it does not keep the frame it validated cached.
    ours = {r.spec.name: sum(r.spec.name in failed for _, failed, _ in got.values()) for r in compiled}
    theirs = {name: outcome.unexpected for name, outcome in Validator(None).validate("inline", out, compiled).items()}
    assert theirs == {**ours, "id_unique": 2}
    assert out.storageLevel == StorageLevel(False, False, False, False, 1)


def test_age_band_edges(spark):
    df = spark.createDataFrame([(0,), (4,), (5,), (89,), (90,), (104,), (None,), (-1,)], "age int")
    assert [r[0] for r in df.select(age_band(F.col("age"))).collect()] == [
        "00-04", "00-04", "05-09", "85-89", "90+", "90+", None, None]  # fmt: skip


def test_plan_loads_new_changed_and_unchanged():
    def landed(source, period, name, checksum):
        return LandedFile(source, period, f"/l/{source}/{period}/{name}", f"{source}/{period}/{name}", checksum, 1, ())

    files = [landed("a", "2026-01", "x.csv", "c1"), landed("a", "2026-02", "x.csv", "c2"),
             landed("a", "2026-03", "x.csv", "c3"), landed("b", "static", "y.csv", "c4")]  # fmt: skip
    loaded = {("a", "2026-01"): {"a/2026-01/x.csv": "c1"}, ("a", "2026-02"): {"a/2026-02/x.csv": "old"}}
    plan = plan_loads(files, loaded)
    assert [(p.source, p.period, p.reason) for p in plan.loads] == [
        ("a", "2026-02", "changed"), ("a", "2026-03", "new"), ("b", "static", "new")]  # fmt: skip
    assert plan.unchanged == 1
    assert plan.periods("a") == ["2026-02", "2026-03"]


def test_schema_drift_missing_fails_extra_is_returned():
    contract = _contract([])
    ok = LandedFile("demo", "2026-01", "/p", "demo/2026-01/a.csv", "c", 1, ("ID", "NHS", "Seen", "Extra"))
    assert schema_drift(ok, contract) == ["Extra"]
    missing = LandedFile("demo", "2026-01", "/p", "demo/2026-01/b.csv", "c", 1, ("NHS", "Seen"))
    with pytest.raises(SchemaMismatchError, match=r"demo/2026-01/b.csv: required column\(s\) \['ID'\] missing"):
        schema_drift(missing, contract)
    strict = _contract([], extra_columns="fail")
    with pytest.raises(SchemaMismatchError, match=r"unexpected column\(s\) \['Extra'\]"):
        schema_drift(ok, strict)


def test_shipped_contracts_load_and_bad_ones_name_file_and_key(tmp_path):
    contracts = load_contracts(REPO / "configs" / "sources")
    assert list(contracts)[:3] == ["lsoa_imd", "postcode_lsoa", "practices"]  # reference sources first
    assert contracts["inpatient"].identifiers["nhs_number"] == "nhs_number"
    (tmp_path / "demo.yaml").write_text(
        "source: demo\ndescription: d\nformat: csv\nfiles: '*.csv'\nrecord_id: id\n"
        "columns: {id: {from: ID}}\nrules: [{name: x, check: regex, column: id, action: quarantine, reason: r}]\n"
    )
    with pytest.raises(ConfigError, match=r"demo.yaml: rules.0: .*needs pattern"):
        load_contracts(tmp_path)
    (tmp_path / "demo.yaml").write_text(
        "source: demo\ndescription: d\nformat: csv\nfiles: '*.csv'\nrecord_id: nope\ncolumns: {id: {from: ID}}\n"
    )
    with pytest.raises(ConfigError, match=r"demo.yaml: .*\['nope'\] are used but not declared"):
        load_contracts(tmp_path)


def test_leak_search_finds_identifiers_in_any_formatting(spark):
    from phm.governance.leaks import Canary, leak_hits

    canary = Canary("9990000018", "Ann", "O'Neil", "1939-05-02", ("QA1 1AB",))
    clean = spark.createDataFrame(
        [("a1b2", "JOANNA", "1939-05-02", "QA1 2XY")], "id string, name string, d string, pc string"
    )
    assert leak_hits(clean, [canary]) == []  # ANN inside JOANNA is not the name; DOB without the postcode is not
    leaky = spark.createDataFrame(
        [("x 999 000 0018 y", "mrs ann smith", "o'neil", "1939-05-02", "QA1 1AB")],
        "note string, name string, surname string, date_of_birth string, pc string",
    )
    hits = leak_hits(leaky, [canary])
    assert "canary 0 NHS number in note" in hits
    assert "canary 0 forename in name" in hits and "canary 0 surname in surname" in hits
    assert "canary 0 date of birth in date_of_birth" in hits and "canary 0 date of birth with postcode" in hits


def test_compound_keys_with_a_missing_part_are_not_duplicates(spark):
    spec = {"name": "key", "check": "unique", "columns": ["id", "code"], "action": "quarantine", "reason": "r"}
    rule = compile_rule(RuleSpec.model_validate(spec))
    frame = spark.createDataFrame(
        [("f", 2, "a", "X"), ("f", 3, "a", "X"), ("f", 4, "a", None), ("f", 5, "a", None), ("g", 2, "a", "Y")],
        "file string, line_number long, id string, code string",
    ).withColumn("parse_error", F.lit(None).cast("string"))
    got = {r.line_number: r._outcome for r in evaluate(frame, [rule]).where("file = 'f'").collect()}
    assert got == {2: "accept", 3: "quarantine", 4: "accept", 5: "accept"}


def test_the_first_copy_of_a_key_is_the_first_by_file_then_line(spark):
    # Copies in two files: the first is the copy in the earlier file, though at a later line than the other's.
    spec = {"name": "id_once", "check": "unique", "columns": ["id"], "action": "quarantine", "reason": "r"}
    warn = {"name": "code_known", "check": "in_set", "column": "code", "values": ["A"], "action": "warn", "reason": "r"}
    rules = [compile_rule(RuleSpec.model_validate(spec)), compile_rule(RuleSpec.model_validate(warn))]
    frame = spark.createDataFrame(
        [("b.csv", 2, "x", "A", None), ("a.csv", 9, "x", "A", None), ("a.csv", 3, "x", "Z", None),
         ("a.csv", 4, "y", "Z", None), ("b.csv", 3, None, "Z", "1 field where the header has 2")],
        "file string, line_number long, id string, code string, parse_error string",
    )  # fmt: skip
    got = {(r.file, r.line_number): (r._outcome, r._failed, r._warnings) for r in evaluate(frame, rules).collect()}
    assert got == {
        ("a.csv", 3): ("accept", ["code_known"], ["code_known"]),
        ("a.csv", 9): ("quarantine", ["id_once"], []),
        ("b.csv", 2): ("quarantine", ["id_once"], []),
        ("a.csv", 4): ("accept", ["code_known"], ["code_known"]),
        ("b.csv", 3): ("quarantine", ["malformed_line", "code_known"], ["code_known"]),  # malformed first, in order
    }
