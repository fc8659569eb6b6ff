"""Generate the synthetic ICS: landing extracts per source and period, and the truth store.

`phm run generate [--set synthetic.population=N] [--set synthetic.until=YYYY-MM]`.
Deterministic for a seed and config. With `synthetic.until`, only periods up
to it are written; a later run writes the periods not yet in landing/, so
incremental refresh can be tested. The generator refuses to add periods to
a landing folder written with another seed or calibration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.staging import stage
from phm.synthetic import truth
from phm.synthetic.calibration import DefectCalibration, load_calibration
from phm.synthetic.calibration_report import as_json, as_markdown, calibration_figures
from phm.synthetic.extracts import (
    EXTRACT_FORMATS,
    damage_line,
    injected_defects,
    line_defect_id_bound,
    line_defect_of,
    render,
)
from phm.synthetic.generator import (
    generate_factors,
    generate_people,
    generate_programme,
    generate_records,
    make_plan,
    periods,
    with_cell_rates,
)
from phm.synthetic.geography import imd_domains, postcode_directory

log = logging.getLogger("phm.jobs.generate")

SPEC = JobSpec(
    name="generate",
    description="synthetic ICS: landing extracts per source and month, and the truth store (test bed only)",
    outputs=(),
)
MANIFEST = "_generator.json"


def run(ctx: JobContext) -> None:
    config = ctx.config
    settings = config.synthetic
    spark = ctx.spark
    calibration = load_calibration(config.resolve(settings.calibration))
    if settings.extra_nhs_number_prefixes:
        prefixes = [*calibration.identifiers.nhs_number_prefixes, *settings.extra_nhs_number_prefixes]
        identifiers = calibration.identifiers.model_copy(update={"nhs_number_prefixes": prefixes})
        calibration = calibration.model_copy(update={"identifiers": identifiers})
    qof = pd.read_csv(config.resolve(config.reference.qof_prevalence_csv), dtype=str)
    plan = make_plan(settings.seed, settings.population, settings.people_per_block, settings.reference_date,
                     settings.history_months, calibration, qof)  # fmt: skip
    landing = Path(config.resolve(config.paths.landing))
    truth_dir = Path(config.resolve(config.paths.truth))
    staging = Path(config.resolve(config.paths.checkpoints)) / f"generate-{ctx.run_id}"
    all_periods = periods(plan.history_start, plan.reference_date)
    wanted = [p for p in all_periods if settings.until is None or p <= settings.until]
    _check_manifest(landing, _fingerprint(settings.model_dump_json(exclude={"until"}), calibration.model_dump_json()))
    if _already_delivered(landing, truth_dir, wanted):
        log.info("landing already holds every source's periods up to %s; nothing to generate", wanted[-1])
        ctx.rows_out = 0
        return
    log.info("generating %d people in %d blocks, periods %s..%s", plan.population, plan.blocks, wanted[0], wanted[-1])

    try:
        with step("people"):
            people = stage(spark, generate_people(spark, plan), staging / "people")
        with step("activity factors"):
            drawn = stage(spark, generate_factors(people, plan), staging / "drawn_factors")
            factors = stage(spark, with_cell_rates(drawn, plan), staging / "factors")
        with step("programme"):
            programme = stage(spark, generate_programme(people, factors, plan), staging / "programme")
        with step("records"):
            records = stage(spark, generate_records(people, factors, programme, plan), staging / "records")

        written = {}
        for source, fmt in EXTRACT_FORMATS.items():
            with step(f"extract {source}"):
                damage = partial(_damage_lines, source=source, rates=calibration.defects)
                written[source] = _write_periods(
                    render(records, fmt), fmt.file_format, landing / source, wanted, staging,
                    finish=damage if fmt.file_format == "csv" else _parquet_rows,
                )  # fmt: skip
        _write_static(plan, landing)

        with step("truth store"):
            tables = {
                "person": truth.person_truth(people, factors, plan),
                "person_condition": truth.person_conditions(people, plan),
                "admission_risk": truth.admission_risk(people, factors, settings.index_dates),
                "record_person": truth.record_person(records),
                "injected_defects": injected_defects(records, calibration.defects),
                "canaries": truth.canaries(people, settings.canaries, settings.seed),
                "programme": programme,
            }
            for name, frame in tables.items():
                with step(f"truth {name}"):
                    _write_truth(frame, truth_dir / name)

        with step("calibration report"):
            figures = calibration_figures(people, factors, records, plan, qof)
        (truth_dir / "calibration_report.json").write_text(json.dumps(as_json(figures), indent=2))
        title = f"Synthetic ICS calibration: {plan.population:,} people, seed {plan.seed}, to {plan.reference_date}"
        (truth_dir / "calibration_report.md").write_text(as_markdown(figures, title))
        outside = [f"{f.group}: {f.name}" for f in figures if not f.within]
        log.info(
            "calibration: %d of %d figures within tolerance%s",
            len(figures) - len(outside),
            len(figures),
            f"; outside: {', '.join(outside)}" if outside else "",
        )
        rows = sum(n for per_source in written.values() for n in per_source.values())
        ctx.rows_out = rows
        log.info(
            "landing: %d new period folders, %d rows; truth: %s", sum(len(v) for v in written.values()), rows, truth_dir
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log how long a long step took (progress for users, per-step figures for `make bench`)."""
    started = time.monotonic()
    yield
    log.info("generate: %s done in %.1fs", name, time.monotonic() - started)


def _write_periods(
    df: DataFrame,
    file_format: str,
    target: Path,
    wanted: list[str],
    staging: Path,
    finish: Callable[[Path], int],
) -> dict[str, int]:
    """Write each wanted period not yet delivered into target/<period>/, atomically per period: written and
    finished in staging by `finish` (which damages CSV text and returns the period's rows: counted from the
    files, as a count query would render the source again), then moved into place, so a crash never leaves
    half a delivery."""
    missing = [p for p in wanted if not (target / p).exists()]
    if not missing:
        return {}
    out = staging / "extracts" / target.name
    selected = df.where(F.col("period").isin(missing))
    writer = selected.repartition("period").write.mode("overwrite").partitionBy("period")
    if file_format == "csv":
        writer.option("header", True).csv(str(out))
    else:
        writer.parquet(str(out))
    counts = {}
    target.mkdir(parents=True, exist_ok=True)
    for period in missing:
        source_dir = out / f"period={period}"
        if not source_dir.exists():  # a month with no rows still gets its (empty) delivery folder
            source_dir.mkdir(parents=True)
        for junk in source_dir.glob(".*.crc"):
            junk.unlink()
        _name_as_delivered(source_dir, target.name, period, file_format)
        counts[period] = finish(source_dir)
        os.replace(source_dir, target / period)
    return counts


def _name_as_delivered(folder: Path, source: str, period: str, file_format: str) -> None:
    """Rename Spark's part files (part-00000-<write uuid>...) as a supplier names a delivery, e.g.
    ae_202510.parquet: the same seed gives the same file names, and bronze's `file` column reads as a user
    expects it to."""
    parts = sorted(folder.glob(f"part-*.{file_format}"))
    for number, part in enumerate(parts, start=1):
        suffix = f"_part{number}" if len(parts) > 1 else ""
        part.rename(folder / f"{source}_{period.replace('-', '')}{suffix}.{file_format}")


def _parquet_rows(period_folder: Path) -> int:
    """Rows in a period's Parquet files, from their footers."""
    return sum(pq.read_metadata(path).num_rows for path in period_folder.glob("*.parquet"))


def _damage_lines(period_folder: Path, source: str, rates: DefectCalibration) -> int:
    """Damage the text of the chosen records of one period (truth/injected_defects lists them); the period's
    rows, as Spark wrote them: lines after the header (no field the generator writes holds a line break)."""
    bound = line_defect_id_bound(rates)
    rows = 0
    for path in period_folder.glob("*.csv"):
        lines = path.read_text().split("\n")
        rows += len(lines) - 2  # the header, and the empty text after the last line break
        header = lines[0].split(",")
        changed = False
        # A comparison per line leaves the few candidates (about the defect rates' share) to be parsed.
        for i in [i for i, line in enumerate(lines) if line[:8] < bound and i > 0]:
            kind = line_defect_of(lines[i][:16], rates) if len(lines[i]) >= 16 else None
            if kind:
                damaged = damage_line(lines[i], kind, header, source)
                changed |= damaged != lines[i]
                lines[i] = damaged
        if changed:
            path.write_text("\n".join(lines))
    return rows


def _write_static(plan, landing: Path) -> None:
    """Reference data delivered once: practices -> PCN -> place, the postcode directory, LSOA -> IMD."""
    geography = plan.geography
    practices = geography.practices.merge(geography.pcns, on=["pcn_code", "place_code"]).merge(
        geography.places, on="place_code"
    )
    lsoas = geography.lsoas[["lsoa_code", "imd_decile", "pcn_code", "place_code"]].merge(
        imd_domains(geography.lsoas, plan.seed), on="lsoa_code"
    )
    for folder, name, frame in (
        ("reference", "practices.csv", practices),
        ("reference", "postcode_lsoa.csv", postcode_directory(geography.lsoas)),
        ("local_authority", "lsoa_imd.csv", lsoas),
    ):
        path = landing / folder / "static" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial_path = path.with_name(f".{name}.partial")
            frame.to_csv(partial_path, index=False)
            os.replace(partial_path, path)  # delivered whole or not at all


def _already_delivered(landing: Path, truth_dir: Path, wanted: list[str]) -> bool:
    folders = [landing / source / period for source in EXTRACT_FORMATS for period in wanted]
    return all(f.is_dir() for f in folders) and (truth_dir / "calibration_report.json").is_file()


def _write_truth(df: DataFrame, path: Path) -> None:
    df.write.mode("overwrite").parquet(str(path))


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _check_manifest(landing: Path, fingerprint: str) -> None:
    manifest = landing / MANIFEST
    if manifest.exists():
        found = json.loads(manifest.read_text()).get("fingerprint")
        if found != fingerprint:
            raise UserError(
                f"{landing} holds extracts generated with another seed, size or calibration "
                f"(fingerprint {found}, now {fingerprint}); clear {landing} or generate with the same config"
            )
        return
    landing.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"fingerprint": fingerprint}))


if __name__ == "__main__":
    main_for(SPEC.name)
