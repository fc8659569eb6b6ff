"""The refresh report: `phm run report`.

Reads the published marts (and gold.segments for the pyramid, controlled here) and writes one self-contained
page, reports/<run_id>/index.html, copied to reports/latest/index.html: population pyramid; segment x risk
tier bubble matrix; admissions and prevalence by IMD quintile with the SII / RII; cost concentration; the
projection fan chart and backtest; linkage quality; data quality with a link to the latest Data Docs; the
risk champions' performance (ROC and calibration from their MLflow runs, subgroups) with run ids; case-finding
cohort sizes per PCN with their precision and recall; need by PCN. The header names the refresh, the Delta
version of every table read and the models. Sections whose marts are missing say which stage makes them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pyspark.sql import functions as F

from phm.models.registry import champion_of
from phm.models.specs import load_model_specs
from phm.reporting import sections as S
from phm.reporting.page import png_data_uri, render_page
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.tables import (
    ACTUARIAL_BACKTEST,
    ACTUARIAL_PROJECTION,
    CASE_FINDING_EVALUATION,
    COHORT_SUMMARY,
    COST_CONCENTRATION,
    DATA_QUALITY,
    INEQUALITIES,
    INTERVENTION_TARGETS,
    LINKAGE_EVALUATION,
    LINKAGE_QUALITY,
    POPULATION_PROFILE,
    RISK_MODEL_PERFORMANCE,
    SEGMENT_MATRIX,
    SEGMENTS,
)

log = logging.getLogger("phm.jobs.report")

SPEC = JobSpec(
    name="report",
    description="the marts -> reports/<run_id>/index.html and reports/latest/ (self-contained, disclosure-controlled)",
    outputs=(),
    depends_on=("score", "profile", "case_finding", "evaluate_case_finding", "actuarial", "evaluate_linkage", "target"),
)
PLOTS = ("roc.png", "calibration.png")


def run(ctx: JobContext) -> None:
    config, catalog = ctx.config, ctx.catalog
    rules = config.profiling.disclosure
    limits = (rules.max_suppressed, rules.rounding_base)

    def read(spec):
        return catalog.read(spec.name).toPandas() if catalog.exists(spec.name) else None

    sections = []
    reference_date = "-"
    if catalog.exists(SEGMENTS.name):
        segments = catalog.read(SEGMENTS.name)
        reference_date = str(segments.agg(F.max("reference_date")).first()[0])
        counts = segments.groupBy("age_band", "sex").agg(F.count(F.lit(1)).alias("people")).toPandas()
        sections.append(S.population_pyramid(counts, *limits))
    else:
        sections.append(S.missing("population", "Population", SEGMENTS.name, "segment"))
    matrix = read(SEGMENT_MATRIX)
    if matrix is not None and len(matrix):
        first_model = sorted(matrix["model_name"].unique())[0]
        sections.append(S.segment_matrix_section(matrix[matrix["model_name"] == first_model]))
    else:
        sections.append(S.missing("segments", "Segments and risk", SEGMENT_MATRIX.name, "score"))
    profile, inequalities = read(POPULATION_PROFILE), read(INEQUALITIES)
    if profile is not None and inequalities is not None:
        sections.append(S.inequalities_section(profile, inequalities, config.profiling.system_code))
    else:
        sections.append(S.missing("inequalities", "Inequalities", POPULATION_PROFILE.name, "profile"))
    concentration = read(COST_CONCENTRATION)
    projection = read(ACTUARIAL_PROJECTION)
    if concentration is not None and projection is not None:
        sections.append(S.concentration_section(concentration))
        sections.append(S.projection_section(projection, read(ACTUARIAL_BACKTEST)))
    else:
        sections.append(S.missing("projection", "Costs and projection", ACTUARIAL_PROJECTION.name, "actuarial"))
    sections.append(S.linkage_section(read(LINKAGE_EVALUATION), read(LINKAGE_QUALITY)))
    quality = read(DATA_QUALITY)
    if quality is not None:
        sections.append(S.data_quality_section(quality, _data_docs(config), *limits))
    else:
        sections.append(S.missing("data-quality", "Data quality", DATA_QUALITY.name, "ingest"))
    performance = read(RISK_MODEL_PERFORMANCE)
    champions, images = _risk_champions(config)
    if performance is not None:
        sections.append(S.models_section(performance, {m: v for m, (v, _) in champions.items()}, images, *limits))
    else:
        sections.append(S.missing("models", "Risk models", RISK_MODEL_PERFORMANCE.name, "train_risk"))
    summary = read(COHORT_SUMMARY)
    if summary is not None:
        sections.append(S.case_finding_section(summary, read(CASE_FINDING_EVALUATION)))
    else:
        sections.append(S.missing("case-finding", "Case finding", COHORT_SUMMARY.name, "case_finding"))
    if profile is not None:
        sections.append(S.need_by_area_section(profile))

    models = [f"{m} v{v} (MLflow run {run_id})" for m, (v, run_id) in sorted(champions.items())]
    if catalog.exists(INTERVENTION_TARGETS.name):
        used = catalog.read(INTERVENTION_TARGETS.name).select("uplift_model").first()
        models += [f"targeting: {used[0]}"] if used else []
    versions = ", ".join(f"{name} v{version}" for name, version in sorted(catalog.versions_read.items()))
    meta = [("report run", ctx.run_id), ("reference date", reference_date),
            ("models", "; ".join(models) or "none"), ("data versions", versions)]  # fmt: skip
    page = render_page("Population health refresh report", meta, sections)

    reports = Path(config.resolve(config.paths.reports))
    target = reports / ctx.run_id / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    latest = reports / "latest"
    staging = reports / f".latest-{ctx.run_id}"
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, staging / "index.html")
    shutil.rmtree(latest, ignore_errors=True)
    staging.rename(latest)
    ctx.rows_out = 0
    log.info("report: %d sections, %d tables read -> %s (and %s)", len(sections), len(catalog.versions_read),
             target, latest / "index.html")  # fmt: skip


def _risk_champions(config) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """{model: (champion version, run id)} of the scored risk models, and their plots as data URIs."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    champions, images = {}, {}
    for spec, _ in load_model_specs(config.resolve(config.risk.models)).values():
        if not spec.score:
            continue
        champion = champion_of(client, spec.registered_model)
        if champion is None:
            continue
        champions[spec.name] = (str(champion.version), champion.run_id)
        with tempfile.TemporaryDirectory() as folder:
            for plot in PLOTS:
                try:
                    path = Path(client.download_artifacts(champion.run_id, plot, folder))
                except (MlflowException, OSError) as error:
                    log.warning("report: %s of %s v%s not found: %s", plot, spec.name, champion.version, error)
                    continue
                images[f"{spec.name}:{plot}"] = png_data_uri(path)
    return champions, images


def _data_docs(config) -> str | None:
    """The latest ingest's Data Docs, relative to a report folder (reports/<run>/ and reports/latest/ alike)."""
    reports = Path(config.resolve(config.paths.reports))
    found = sorted(reports.glob("*-ingest-*/data_docs/index.html"))
    return f"../{found[-1].relative_to(reports).as_posix()}" if found else None


if __name__ == "__main__":
    main_for(SPEC.name)
