"""The refresh report's sections, each from the published (disclosure-controlled) marts as pandas frames.

Every number shown comes from a mart that passed disclosure control (phm.governance.disclosure), or is
controlled here before it is shown (the pyramid's counts, the data quality counts, the model subgroup
counts); rates and model metrics on a suppressed count are not shown. A section whose mart is missing says so
instead of failing the report. Pure: frames in, HTML text out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd

from phm.governance.disclosure import disclosure_control
from phm.reporting.svg import Series, bar_chart, bubble_matrix, line_chart, pyramid

TIER_ORDER = ("low", "emerging", "high")
KEY_CONDITIONS = ("hypertension", "diabetes", "copd", "depression", "coronary_heart_disease")


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def missing(anchor: str, title: str, table: str, stage: str) -> Section:
    return Section(anchor, title, f'<p class="missing">{escape(table)} does not exist yet: run `phm run {stage}`.</p>')


def table_html(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A plain HTML table; None / NaN cells (suppressed) show as '*'."""
    formats = formats or {}
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                cells.append('<td class="suppressed">*</td>')
            elif column in formats and isinstance(value, int | float):
                cells.append(f"<td>{format(value, formats[column])}</td>")
            else:
                cells.append(f"<td>{escape(str(value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def population_pyramid(counts: pd.DataFrame, max_suppressed: int, rounding_base: int) -> Section:
    """counts: age_band, sex (F / M), people (unrounded), from gold.segments; controlled here."""
    known = counts[counts["age_band"].notna() & counts["sex"].isin(["F", "M"])]
    controlled = disclosure_control(known, ["people"], [], ["sex"], max_suppressed, rounding_base)
    bands = sorted(controlled["age_band"].unique(), key=_band_start)
    by = controlled.set_index(["age_band", "sex"])["people"]

    def people(band, sex):
        value = by.get((band, sex))
        return None if value is None or pd.isna(value) else float(value)

    chart = pyramid(bands, [people(b, "M") for b in bands], [people(b, "F") for b in bands], ("Male", "Female"),
                    "Population pyramid: people by age band and sex")  # fmt: skip
    total, unknown = controlled["people"].dropna().sum(), int(counts["people"].sum() - known["people"].sum())
    other = f" {unknown:,} with another or no recorded sex or age are not drawn." if unknown else ""
    return Section("population", "Population", f"<p>{total:,.0f} people at the reference date (counts rounded "
                   f"to {rounding_base}, 1-{max_suppressed} suppressed).{other}</p>{chart}")  # fmt: skip


def segment_matrix_section(matrix: pd.DataFrame) -> Section:
    """mart.segment_matrix of one model: people per Bridges to Health segment x risk tier."""
    frame = matrix.sort_values("segment_order")
    rows = list(dict.fromkeys(frame["segment_label"]))
    tiers = [t for t in TIER_ORDER if t in set(frame["tier"])] + sorted(set(frame["tier"]) - set(TIER_ORDER))
    size = {(r.segment_label, r.tier): (None if pd.isna(r.people) else float(r.people)) for r in frame.itertuples()}
    chart = bubble_matrix(rows, tiers, size, "Segment x risk tier: people", "people")
    shown = frame[["segment_label", "tier", "people", "annual_cost", "emergency_admissions_12m",
                   "expected_admitted_people"]]  # fmt: skip
    model = f"{frame['model_name'].iloc[0]} v{frame['model_version'].iloc[0]}" if len(frame) else "-"
    body = (f"<p>Risk tiers from the champion {escape(model)}; * suppressed.</p>{chart}<details><summary>Cells"
            f"</summary>{table_html(shown, {'annual_cost': ',.0f', 'people': ',.0f'})}</details>")  # fmt: skip
    return Section("segments", "Segments and risk", body)


def inequalities_section(profile: pd.DataFrame, inequalities: pd.DataFrame, system_code: str) -> Section:
    """Admissions, cost and prevalence by IMD quintile (system, standardised where given) and the SII / RII."""
    system = profile[(profile["tier"] == "system") & (profile["breakdown"] == "imd_quintile")]
    system = system[system["group"].astype(str).str.fullmatch(r"\d+")]
    charts = []
    for title, measures in (("Emergency admissions and A&E attendances per 1,000 by IMD quintile",
                             ("emergency_admissions", "ae_attendances")),
                            ("Recorded prevalence (%) by IMD quintile", None)):  # fmt: skip
        chosen = (
            [m for m in measures if m in set(system["measure"])]
            if measures
            else [f"prevalence:{c}" for c in KEY_CONDITIONS if f"prevalence:{c}" in set(system["measure"])]
        )
        series = []
        for measure in chosen:
            rows = system[system["measure"] == measure].assign(q=lambda f: f["group"].astype(int)).sort_values("q")
            value = rows["standardised_value"].where(rows["standardised_value"].notna(), rows["value"])
            series.append(Series(measure.removeprefix("prevalence:"), rows["q"].tolist(), _floats(value)))
        if series:
            charts.append(line_chart(series, title, "IMD quintile (1 = most deprived)", "rate", points=True))
    sii = inequalities[(inequalities["tier"] == "system") & (inequalities["area_code"] == system_code)]
    sii = sii[sii["mean"].fillna(0) != 0]  # measures nobody has (conditions no source records) say nothing
    sii = sii[["measure", "unit", "standardised", "sii", "sii_ci_low", "sii_ci_high", "rii", "rii_ci_low",
               "rii_ci_high"]].sort_values("measure")  # fmt: skip
    formats = {c: ".3g" for c in ("sii", "sii_ci_low", "sii_ci_high", "rii", "rii_ci_low", "rii_ci_high")}
    body = ("".join(charts) + "<p>Slope (SII) and relative (RII) index of inequality across IMD deciles, most "
            "minus least deprived, with 95% intervals:</p>" + table_html(sii, formats))  # fmt: skip
    return Section("inequalities", "Inequalities", body)


def concentration_section(concentration: pd.DataFrame) -> Section:
    latest = concentration[concentration["reference_date"] == concentration["reference_date"].max()]
    latest = latest.sort_values("top_percent")
    chart = line_chart([Series("share of cost", [0, *latest["top_percent"]], [0.0, *_floats(latest["cost_share"])])],
                       "Cost concentration: share of cost held by the costliest x% of people", "costliest % of people",
                       "share of cost")  # fmt: skip
    picks = latest[latest["top_percent"].isin([1, 5, 20])][["top_percent", "people", "cost_share"]]
    gini = latest["gini"].dropna()
    note = f"<p>Gini {gini.iloc[0]:.2f}.</p>" if len(gini) else ""
    return Section("costs", "Cost concentration", chart + note + table_html(picks, {"cost_share": ".1%"}))


def projection_section(projection: pd.DataFrame, backtest: pd.DataFrame | None) -> Section:
    """The fan chart of projected cost (baseline, median and interval; scenarios' medians) and the backtest."""
    allseg = projection[(projection["segment"] == "all") & (projection["measure"] == "cost")]
    series = []
    for scenario, rows in sorted(allseg.groupby("scenario"), key=lambda kv: kv[0] != "baseline"):
        rows = rows.sort_values("step")
        if scenario == "baseline":
            series.append(Series("baseline", rows["step"].tolist(), _floats(rows["median"]), _floats(rows["low"]),
                                 _floats(rows["high"])))  # fmt: skip
        else:
            series.append(Series(scenario, rows["step"].tolist(), _floats(rows["median"])))
    interval = allseg["interval"].dropna()
    width = f"{interval.iloc[0]:.0%}" if len(interval) else "the"
    chart = line_chart(series, "Projected annual cost: baseline with its interval, and scenarios", "years ahead",
                       "annual cost (GBP)", y_from_zero=False, points=True)  # fmt: skip
    body = f"<p>Baseline median with {width} Monte Carlo interval; scenarios' medians.</p>{chart}"
    if backtest is not None and len(backtest):
        columns = ["base_date", "target_date", "measure", "median", "actual", "relative_error",
                   "no_change_relative_error", "covered"]  # fmt: skip
        shown = backtest[backtest["segment"] == "all"][columns]
        body += ("<p>Backtest: projected from an earlier date and compared with what happened.</p>"
                 + table_html(shown, {"median": ",.0f", "actual": ",.0f", "relative_error": "+.1%",
                                      "no_change_relative_error": "+.1%"}))  # fmt: skip
    return Section("projection", "Projection and backtest", body)


def linkage_section(evaluation: pd.DataFrame | None, quality: pd.DataFrame | None) -> Section:
    body = ""
    if evaluation is not None and len(evaluation):
        latest = evaluation[evaluation["linkage_run_id"] == evaluation["linkage_run_id"].max()]
        overall = latest[latest["scope"] == "overall"][["method", "precision", "recall", "f1", "false_merge_rate",
                                                    "missed_link_rate"]]  # fmt: skip
        body += "<p>Against the synthetic truth (pairwise):</p>" + table_html(overall, {c: ".4f" for c in overall})
    if quality is not None and len(quality):
        latest = quality[quality["linkage_run_id"] == quality["linkage_run_id"].max()]
        shown = latest[latest["group_value"].isin(["all", "ALL", ""]) | latest["group_value"].isna()]
        body += "<p>What the linkage itself reports:</p>" + table_html(shown[["measure", "value"]], {"value": ",.4g"})
    return Section("linkage", "Linkage quality", body or '<p class="missing">No linkage marts yet.</p>')


def data_quality_section(
    quality: pd.DataFrame, data_docs: str | None, max_suppressed: int, rounding_base: int
) -> Section:
    by_rule = (
        quality.groupby(["source", "rule", "action"], as_index=False)
        .agg(rows_checked=("rows_checked", "sum"), failing_rows=("failing_rows", "sum"))
        .query("failing_rows > 0")
        .sort_values(["source", "rule"])
    )
    controlled = disclosure_control(by_rule, ["failing_rows"], [], [], max_suppressed, rounding_base)
    link = (
        f'<p><a href="{escape(data_docs)}">Great Expectations Data Docs</a> of the latest ingest.</p>'
        if data_docs
        else ""
    )
    by_action = controlled.groupby("action", as_index=False)["failing_rows"].sum()
    totals = ", ".join(f"{r.action}: {r.failing_rows:,.0f} rows" for r in by_action.itertuples())
    return Section(
        "data-quality",
        "Data quality",
        f"{link}<p>Rows flagged over every loaded period ({escape(totals) or 'none'}; failing rows rounded, "
        f"1-{max_suppressed} suppressed and not in the totals).</p><details><summary>By source and rule</summary>"
        + table_html(controlled.drop(columns=["suppressed"]), {"rows_checked": ",.0f"})
        + "</details>",
    )


def models_section(performance: pd.DataFrame, champions: dict[str, str], images: dict[str, str],
                   max_suppressed: int, rounding_base: int) -> Section:  # fmt: skip
    """Each champion's validation metrics overall and by subgroup (counts controlled), with its MLflow run id and
    its ROC and calibration plots (`images`: name -> data URI)."""
    body = []
    for model, version in sorted(champions.items()):
        rows = performance[(performance["model_name"] == model) & (performance["model_version"] == version)]
        if not len(rows):
            continue
        run_id = rows["mlflow_run_id"].iloc[0]
        metrics = ["auc", "auprc", "brier", "calibration_slope", "ppv_top5", "sensitivity_top5"]
        controlled = disclosure_control(rows, ["persons", "events"], metrics, ["grouping"], max_suppressed,
                                        rounding_base)  # fmt: skip
        shown = controlled[["grouping", "group_value", "persons", "events", *metrics]]
        body.append(f"<h3>{escape(model)} v{escape(version)} (champion; MLflow run {escape(run_id)})</h3>")
        body += [f'<img class="plot" alt="{escape(name)} of {escape(model)}" src="{uri}">'
                 for name, uri in sorted(images.items()) if name.startswith(f"{model}:")]  # fmt: skip
        body.append(table_html(shown, {m: ".3f" for m in metrics} | {"persons": ",.0f", "events": ",.0f"}))
    return Section("models", "Risk models", "".join(body) or '<p class="missing">No champion yet.</p>')


def case_finding_section(summary: pd.DataFrame, evaluation: pd.DataFrame | None) -> Section:
    latest = summary[summary["reference_date"] == summary["reference_date"].max()]
    table = latest.pivot_table(index="cohort", columns="pcn_code", values="people", aggfunc="first")
    table = table.reset_index()
    table.columns = [str(c) for c in table.columns]
    body = "<p>People per cohort and PCN (rounded; * suppressed):</p>" + table_html(table, {c: ",.0f" for c in table})
    if evaluation is not None and len(evaluation):
        shown = evaluation[["cohort", "condition", "precision", "recall", "undiagnosed_prevalence"]]
        percents = {"precision": ".1%", "recall": ".1%", "undiagnosed_prevalence": ".1%"}
        body += ("<p>Against the synthetic truth: precision, recall and the prevalence a random list would "
                 "have.</p>" + table_html(shown, percents))  # fmt: skip
    return Section("case-finding", "Case finding", body)


def need_by_area_section(profile: pd.DataFrame) -> Section:
    """A geographic view of need: standardised emergency admissions per 1,000 by PCN (the finest published tier)."""
    pcn = profile[(profile["tier"] == "pcn") & (profile["breakdown"] == "all")
                  & (profile["measure"] == "emergency_admissions")].sort_values("area_code")  # fmt: skip
    value = pcn["standardised_value"].where(pcn["standardised_value"].notna(), pcn["value"])
    chart = bar_chart(pcn["area_code"].astype(str).tolist(), _floats(value),
                      "Need by PCN: age-standardised emergency admissions per 1,000", "per 1,000")  # fmt: skip
    return Section("need", "Need by area", chart)


def _floats(values) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in values]


def _band_start(band: str) -> int:
    digits = "".join(ch for ch in str(band).split("-")[0] if ch.isdigit())
    return int(digits) if digits else 10**6
