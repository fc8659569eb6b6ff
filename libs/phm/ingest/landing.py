"""What is in landing/ and what of it is new: files, checksums, headers, and the periods to (re)load.

The unit of loading is a source's period: if any file of a period is new,
changed or gone, the whole period is (re)loaded and replaces what was loaded
for it before, so a re-delivery is idempotent. Files are read with Python's
file API, so landing must be a filesystem the driver and executors can read
(local disk, NFS, or a cloud bucket mounted as a filesystem).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from phm.errors import SchemaMismatchError
from phm.ingest.contracts import STATIC_PERIOD, SourceContract

CHUNK = 1 << 20


@dataclass(frozen=True)
class LandedFile:
    source: str
    period: str
    path: str  # absolute
    file: str  # relative to landing/, as recorded in the tables
    checksum: str
    size_bytes: int
    columns: tuple[str, ...]  # header (CSV) or schema names (Parquet)


@dataclass
class PeriodLoad:
    """One source-period to load: its current files, and why."""

    source: str
    period: str
    files: list[LandedFile]
    reason: str  # new | changed


@dataclass
class LoadPlan:
    loads: list[PeriodLoad] = field(default_factory=list)
    unchanged: int = 0

    @property
    def files(self) -> list[LandedFile]:
        return [f for load in self.loads for f in load.files]

    def periods(self, source: str) -> list[str]:
        return sorted(load.period for load in self.loads if load.source == source)


def checksum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def header_of(path: Path, file_format: str) -> tuple[str, ...]:
    if file_format == "parquet":
        try:
            return tuple(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise SchemaMismatchError(
                f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]}); the delivery may be "
                "truncated or corrupt: ask the supplier to re-deliver it, or move it out of the landing folder"
            ) from None
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")
    return tuple(c.strip().strip('"') for c in first.split(",")) if first else ()


def scan_landing(landing: str | Path, contract: SourceContract) -> list[LandedFile]:
    """Every delivered file of a source: landing/<folder>/<period>/<files glob>, with checksum and columns."""
    root = Path(landing)
    folder = root / contract.landing_folder
    found: list[LandedFile] = []
    if not folder.is_dir():
        return found
    for period_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        period = period_dir.name
        for path in sorted(period_dir.glob(contract.files)):
            if not path.is_file() or path.name.startswith((".", "_")):
                continue
            found.append(
                LandedFile(
                    source=contract.source,
                    period=period,
                    path=str(path.resolve()),
                    file=str(path.relative_to(root)),
                    checksum=checksum(path),
                    size_bytes=path.stat().st_size,
                    columns=header_of(path, contract.format),
                )
            )
    return found


def check_period_name(landed: LandedFile) -> None:
    if landed.period != STATIC_PERIOD and not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", landed.period):
        raise SchemaMismatchError(
            f"{landed.file}: period folder {landed.period!r} is not YYYY-MM (or {STATIC_PERIOD!r}); "
            "deliver files under landing/<source>/<YYYY-MM>/"
        )


def schema_drift(landed: LandedFile, contract: SourceContract) -> list[str]:
    """Raise on a missing required column; return the unexpected extra columns (warned, or fail if configured)."""
    present = set(landed.columns)
    missing = [c for c in contract.required_source_columns if c not in present]
    if missing and landed.size_bytes == 0:
        raise SchemaMismatchError(
            f"{landed.file}: the file is empty (0 bytes, not even a header), as a failed transfer leaves it; "
            "ask the supplier to re-deliver (a month without activity is a header with no lines)"
        )
    if missing and any("\x00" in c or "\ufffd" in c for c in landed.columns):
        raise SchemaMismatchError(
            f"{landed.file}: the header is not UTF-8 text (UTF-16, or another encoding); ask the supplier for "
            "UTF-8, or convert the file, before ingest"
        )
    delimiter = next((d for d in (";", "\t", "|") if len(landed.columns) == 1 and d in landed.columns[0]), None)
    if missing and delimiter:
        raise SchemaMismatchError(
            f"{landed.file}: the header is separated by {delimiter!r}, not commas; ask the supplier for a "
            f"comma-separated file, or convert it, before ingest"
        )
    if missing:
        raise SchemaMismatchError(
            f"{landed.file}: required column(s) {missing} missing from the {contract.source} extract "
            f"(found {list(landed.columns)}); ask the supplier to re-deliver, or fix "
            f"configs/sources/{contract.source}.yaml"
        )
    expected = {c.source_column for c in contract.columns.values()}
    extra = [c for c in landed.columns if c not in expected]
    if extra and contract.extra_columns == "fail":
        raise SchemaMismatchError(
            f"{landed.file}: unexpected column(s) {extra} in the {contract.source} extract; map them in "
            f"configs/sources/{contract.source}.yaml or set extra_columns: warn"
        )
    return extra


def plan_loads(landed: list[LandedFile], loaded: dict[tuple[str, str], dict[str, str]]) -> LoadPlan:
    """Periods whose files differ from those loaded ({(source, period): {file: checksum}}), new or changed."""
    current: dict[tuple[str, str], list[LandedFile]] = {}
    for f in landed:
        current.setdefault((f.source, f.period), []).append(f)
    plan = LoadPlan()
    for (source, period), files in sorted(current.items()):
        state = {f.file: f.checksum for f in files}
        before = loaded.get((source, period))
        if before == state:
            plan.unchanged += 1
            continue
        plan.loads.append(PeriodLoad(source, period, files, "new" if before is None else "changed"))
    return plan
