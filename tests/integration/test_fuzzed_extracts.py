"""Damaged deliveries: random byte corruption, a truncated file, a wrong encoding and a runaway field are
quarantined line by line with every line accounted for; an empty file, another delimiter, UTF-16 and a corrupt
Parquet file are refused with a message naming the file; what was accepted before is never lost."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from phm import cli
from phm.runtime.catalog import Catalog
from phm.tables import INGEST_FILES, QUARANTINE

from ..conftest import TEST_CONFIG, test_overrides
from .test_ingest import INPATIENT_HEADER, crafted, deliver, ingest, write

pytestmark = pytest.mark.slow
LINES_PER_FILE = 40


def clean_lines(period: str) -> list[str]:
    """Well-formed spells admitted in `period` (no NHS number: accepted with a warning)."""
    year, month = period.split("-")
    return [f"f{period}-{i:03d},,Pat,Doe,01/01/1950,2,QA1 1AB,Q00001,{1 + i % 28:02d}/{month}/{year},,21,1,J189,"
            for i in range(LINES_PER_FILE)]  # fmt: skip


def delivered_bytes(period: str) -> bytes:
    return ("\n".join([INPATIENT_HEADER, *clean_lines(period)]) + "\n").encode()


def corrupt_bytes(data: bytes, rate: float, seed: int) -> bytes:
    """Overwrite a share of the bytes after the header with random bytes (newlines and commas included)."""
    rng = random.Random(seed)
    body = bytearray(data)
    start = data.index(b"\n") + 1
    for i in range(start, len(body)):
        if rng.random() < rate:
            body[i] = rng.randrange(256)
    return bytes(body)


@pytest.fixture(scope="module")
def accepted_january(tmp_path_factory, spark):
    """The crafted deliveries ingested, once for the module; the accepted January spells."""
    config, landing = crafted(tmp_path_factory.mktemp("fuzzed"))
    ingest(config, spark)
    catalog = Catalog(spark, config.resolve(config.paths.warehouse))
    return config, landing, catalog, rows_of(catalog, "2026-01")


def rows_of(catalog, period: str) -> list[tuple]:
    silver = catalog.read("silver.inpatient").where(f"period = '{period}'").drop("_run_id")
    return sorted(tuple(r) for r in silver.collect())


def test_damaged_lines_are_quarantined_and_every_line_is_accounted_for(accepted_january, spark):
    config, landing, catalog, january = accepted_january
    folder = landing / "inpatient"
    write_bytes(folder / "2026-04" / "spells.csv", corrupt_bytes(delivered_bytes("2026-04"), 0.02, seed=7))
    whole = delivered_bytes("2026-05")
    write_bytes(folder / "2026-05" / "spells.csv", whole[: len(whole) * 3 // 5])  # cut off mid-line
    latin = delivered_bytes("2026-06").replace(b"Pat,Doe", "Zoë,Doe".encode("cp1252"), 5)
    write_bytes(folder / "2026-06" / "spells.csv", latin)
    runaway = clean_lines("2026-07")
    runaway[3] = runaway[3].replace(",Doe,", "," + "D" * 50_000 + ",")
    deliver(landing, "2026-07", runaway)

    ingest(config, spark)

    files = {r.period: r for r in catalog.read(INGEST_FILES.name).where("source = 'inpatient'").collect()}
    for period in ("2026-04", "2026-05", "2026-06", "2026-07"):
        f = files[period]
        lines = [line for line in (folder / period / "spells.csv").read_bytes().split(b"\n")[1:] if line.strip()]
        assert f.rows_in == len(lines) == f.rows_accepted + f.rows_quarantined, period
        assert f.rows_quarantined > 0, period
    quarantine = catalog.read(QUARANTINE.name).where("source = 'inpatient'")
    reasons = {r.period: r.reason for r in quarantine.where("period IN ('2026-06', '2026-07')").collect()}
    assert "not UTF-8" in reasons["2026-06"]
    assert "a field longer than 4096 characters" in reasons["2026-07"]
    assert files["2026-06"].rows_quarantined == 5 and files["2026-07"].rows_quarantined == 1
    assert files["2026-05"].rows_quarantined == 1  # the cut line; the lines before it are whole
    assert rows_of(catalog, "2026-01") == january  # nothing accepted earlier is lost


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


REFUSED = {
    "empty": (lambda: b"", "the file is empty (0 bytes"),
    "semicolons": (lambda: delivered_bytes("2026-08").replace(b",", b";"), "the header is separated by ';'"),
    "utf16": (lambda: delivered_bytes("2026-08").decode().encode("utf-16"), "the header is not UTF-8 text"),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_an_unreadable_file_is_refused_naming_it_and_nothing_is_lost(kind, accepted_january, spark, capsys):
    config, landing, catalog, january = accepted_january
    data, message = REFUSED[kind]
    delivered = landing / "inpatient" / "2026-08" / "spells.csv"
    write_bytes(delivered, data())
    try:
        assert cli.main(["run", "ingest", "--config", str(TEST_CONFIG), *arguments_of(config)]) == 2
    finally:
        delivered.unlink()  # the supplier takes it back
    error = capsys.readouterr().err
    assert "inpatient/2026-08/spells.csv: " + message in error and "Traceback" not in error
    assert rows_of(catalog, "2026-01") == january
    assert catalog.read(INGEST_FILES.name).where("period = '2026-08'").count() == 0


def arguments_of(config) -> list[str]:
    """The CLI --set arguments that give `config` (the test's warehouse, landing and key)."""
    base = Path(config.resolve(config.paths.warehouse)).parent
    return [a for o in test_overrides(base) for a in ("--set", o)]


def test_a_corrupt_parquet_delivery_is_refused_naming_it(tmp_path, spark, capsys):
    config, landing = crafted(tmp_path)
    write(landing / "ae" / "2026-01" / "attendances.parquet", "PAR1 this is not parquet")
    assert cli.main(["run", "ingest", "--config", str(TEST_CONFIG), *arguments_of(config)]) == 2
    error = capsys.readouterr().err
    assert "ae/2026-01/attendances.parquet: not a readable Parquet file" in error and "Traceback" not in error
