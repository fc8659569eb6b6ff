"""Generated figures against their public targets (FACTS.md), each with a stated tolerance.

Measured on the truth (people, factors, records before defects): age and
sex structure, ethnicity, recorded prevalence by register and its
most/least deprived quintile ratio (QOF 2019/20), multimorbidity, GP
consultations, housing cases, the undiagnosed share of true cases (overall, and for
hypertension by age and sex), emergency admissions per 1,000 by age group x IMD quintile
(Devon), A&E frequency distribution, the top-5% cost share, the share
eligible for primary CVD prevention, NHS number completeness by source, and
the best achievable AUC of the true risk.
Only aggregates leave this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import stats

from phm.reference.qof import pooled_prevalence, register_by_decile
from phm.synthetic.activity import emergency_cell_rate, housing_deprivation_factor
from phm.synthetic.population import PopulationPlan

# Tolerances: how far a generated figure may sit from its target on a mid-sized sample (10k+ people).
ABS, REL, RANGE = "absolute", "relative", "range"
COMMON_REGISTERS = ("hypertension", "diabetes", "depression", "obesity", "asthma")

# Figures the generator does not meet yet, and why (shown in the report; the tests hold every other figure).
KNOWN_GAPS = {
    "2+ recorded conditions share": (
        "FACTS.md's 23% counts a broader condition list (e.g. pain, hearing loss, anxiety) than the 16 QOF "
        "registers generated"
    ),
    "asthma undiagnosed share": (
        "a diagnosis is coded on average 180 days after onset and most asthma starts in childhood, so the share "
        "still uncoded at the reference date cannot fall to the 5% planning value (children 0-15: ~19%)"
    ),
}


@dataclass(frozen=True)
class Figure:
    group: str
    name: str
    value: float
    target: float
    tolerance: float
    kind: str  # absolute: |v - t| <= tol; relative: |v / t - 1| <= tol; range: target <= v <= tolerance
    source: str

    @property
    def known_gap(self) -> str | None:
        return KNOWN_GAPS.get(self.name)

    @property
    def within(self) -> bool:
        if self.kind == ABS:
            return abs(self.value - self.target) <= self.tolerance
        if self.kind == REL:
            return abs(self.value / self.target - 1) <= self.tolerance if self.target else self.value == 0
        return self.target <= self.value <= self.tolerance


def calibration_figures(
    people: DataFrame, factors: DataFrame, records: DataFrame, plan: PopulationPlan, qof: pd.DataFrame
) -> list[Figure]:
    cal = plan.calibration
    ref = plan.reference_date
    year_start = ref - timedelta(days=365)
    alive = people.where(F.col("death_date").isNull())
    figures: list[Figure] = []

    # Age and sex structure (Census 2021).
    n_alive = alive.count()
    bands = {r["age_band"]: r["count"] for r in alive.groupBy("age_band").count().collect()}
    for i, band in enumerate(cal.population.age_bands):
        figures.append(
            Figure(
                "population",
                f"age {band.low}-{band.high} share",
                bands.get(i, 0) / n_alive,
                band.share,
                0.015,
                ABS,
                "Census 2021",
            )
        )
    female = alive.where(F.col("sex") == "F").count() / n_alive
    figures.append(Figure("population", "female share", female, cal.population.female_share, 0.015, ABS, "Census 2021"))
    ethnic = {r["ethnicity"]: r["count"] for r in alive.groupBy("ethnicity").count().collect()}
    for group, share in cal.population.ethnicity_shares.items():
        figures.append(
            Figure(
                "population",
                f"ethnicity {group} share",
                ethnic.get(group, 0) / n_alive,
                share,
                max(0.02, share * 0.3),
                ABS,
                "Census 2021",
            )
        )

    # Recorded prevalence (coded by the reference date, alive then), overall and by quintile ratio (QOF 2019/20).
    coded = [F.col(f"diagnosed_{c}").isNotNull().cast("int").alias(c) for c in plan.condition_names]
    prevalence = alive.select(((F.col("imd_decile") + 1) / 2).cast("int").alias("quintile"), *coded)
    by_quintile = (
        prevalence.groupBy("quintile")
        .agg(F.count("*").alias("n"), *[F.sum(c).alias(c) for c in plan.condition_names])
        .toPandas()
        .set_index("quintile")
    )
    count_coded = sum(F.col(f"diagnosed_{c}").isNotNull().cast("int") for c in plan.condition_names)
    for name in plan.condition_names:
        spec = cal.health.conditions[name]
        target, ratio_target = _qof_targets(qof, spec.qof)
        value = by_quintile[name].sum() / by_quintile["n"].sum()
        figures.append(Figure("prevalence", f"{name} recorded prevalence", value, target, 0.15, REL, "QOF 2019/20"))
        if name in COMMON_REGISTERS and {1, 5} <= set(by_quintile.index):
            ratio = (by_quintile.loc[1, name] / by_quintile.loc[1, "n"]) / (
                by_quintile.loc[5, name] / by_quintile.loc[5, "n"]
            )
            figures.append(
                Figure(
                    "prevalence",
                    f"{name} quintile 1 / quintile 5 ratio",
                    ratio,
                    ratio_target,
                    0.25,
                    REL,
                    "QOF 2019/20 by IMD decile",
                )
            )
    multimorbid = alive.where(count_coded >= 2).count() / n_alive
    figures.append(
        Figure("prevalence", "2+ recorded conditions share", multimorbid, 0.23, 0.06, ABS, "FACTS.md (23% with 2+)")
    )
    figures += _undiagnosed_figures(alive, plan)

    # Activity over the last 12 months among people registered and alive for all of it.
    # Exposure: the last 12 months for everyone registered before them and alive at their start;
    # people who die contribute the days they lived (as in published per-population rates).
    exposure_days = F.datediff(F.coalesce(F.col("death_date"), F.lit(ref)), F.lit(year_start))
    at_risk = (
        people.where(F.col("registered_on") <= F.lit(year_start))
        .where(F.col("death_date").isNull() | (F.col("death_date") > F.lit(year_start)))
        .select("true_person_id", F.least(exposure_days, F.lit(365)).alias("exposure_days"))
    )
    in_last_year = (F.col("event_date") > F.lit(year_start)) & (F.col("event_date") <= F.lit(ref))
    counted = in_last_year & (F.col("source") != "gp_registrations")
    emergency = in_last_year & (F.col("kind") == "emergency")
    care = F.col("kind") == "care_start"
    trim = cal.activity.excess_bed_days_after
    overlap_days = F.datediff(
        F.least(F.col("end_date"), F.lit(ref)), F.greatest(F.col("event_date"), F.lit(year_start))
    )
    # One pass over the records (most of the data; an aggregate per figure read them five times).
    activity = (
        records.where(in_last_year | care)
        .groupBy("true_person_id")
        .agg(
            *[
                F.count_if(counted & (F.col("kind") == kind)).alias(kind)
                for kind in ("emergency", "elective", "ae", "outpatient", "consultation", "community", "mental_health")
            ],
            F.count_if(in_last_year & (F.col("kind") == "elective") & (F.col("los_days") == 0)).alias("day_case"),
            F.sum(F.when(care, F.greatest(overlap_days, F.lit(0)) / 7 * F.col("value2"))).alias("social_care_cost"),
            F.count_if(emergency & F.col("code").isin("S720", "S721", "S722", "W19X")).alias("fall"),
            F.sum(F.when(emergency, F.greatest(F.col("los_days") - F.lit(trim), F.lit(0)))).alias("excess_bed_days"),
        )
    )
    frame = (
        at_risk.join(activity, "true_person_id", "left")
        .join(
            factors.select("true_person_id", "emergency_age_group", "imd_quintile", "p_emergency_12m"), "true_person_id"
        )
        .fillna(0)
        .toPandas()
    )
    n = len(frame)
    years = frame["exposure_days"].sum() / 365

    figures.append(
        Figure(
            "activity",
            "GP consultations per person-year",
            frame["consultation"].sum() / years,
            5.0,
            0.25,
            REL,
            "FACTS.md (~5)",
        )
    )
    figures.append(
        Figure(
            "activity",
            "A&E attendances per person-year",
            frame["ae"].sum() / years,
            cal.activity.ae_attendances_per_person,
            0.15,
            REL,
            "FACTS.md (~0.4)",
        )
    )
    attenders = frame.loc[frame["ae"] > 0, "ae"]
    if len(attenders):
        figures.append(
            Figure("activity", "A&E attenders coming once", (attenders == 1).mean(), 0.74, 0.06, ABS, "FACTS.md")
        )
        figures.append(
            Figure("activity", "A&E attenders coming 3+ times", (attenders >= 3).mean(), 0.095, 0.04, ABS, "FACTS.md")
        )
        figures.append(
            Figure("activity", "A&E attenders coming 6+ times", (attenders >= 6).mean(), 0.012, 0.012, ABS, "FACTS.md")
        )
    # High-intensity users: 5+ A&E attendances in the year (FACTS.md: <1% of people, ~16% of attendances,
    # ~26% of emergency admissions).
    high = frame["ae"] >= 5
    if frame["ae"].sum() and frame["emergency"].sum():
        figures += [
            Figure("activity", "high-intensity A&E users' share of people", high.mean(), 0.0, 0.01, RANGE,
                   "FACTS.md (<1%)"),
            Figure("activity", "high-intensity A&E users' share of attendances",
                   frame.loc[high, "ae"].sum() / frame["ae"].sum(), 0.16, 0.06, ABS, "FACTS.md (16%)"),
            Figure("activity", "high-intensity A&E users' share of emergency admissions",
                   frame.loc[high, "emergency"].sum() / frame["emergency"].sum(), 0.26, 0.08, ABS, "FACTS.md (26%)"),
        ]  # fmt: skip
    groups = cal.activity.emergency_admissions_per_1000.age_group_lower_bounds
    frame["exposure_years"] = frame["exposure_days"] / 365
    frame["emergency_squared"] = frame["emergency"] ** 2
    cells = (
        frame.groupby(["emergency_age_group", "imd_quintile"])
        .agg(admissions=("emergency", "sum"), years=("exposure_years", "sum"), squares=("emergency_squared", "sum"))
        .reset_index()
    )
    cells["mean"] = cells["admissions"] / cells["years"]
    for row in cells.itertuples():
        target = float(
            emergency_cell_rate(plan.calibration, np.array([row.emergency_age_group]), np.array([row.imd_quintile]))[0]
        )
        label = (
            f"{groups[row.emergency_age_group]}+"
            if row.emergency_age_group == len(groups) - 1
            else (f"{groups[row.emergency_age_group]}-{groups[row.emergency_age_group + 1] - 1}")
        )
        # 3 relative standard errors of the cell's total, measured (admissions are overdispersed).
        tolerance = max(0.2, 3 * np.sqrt(row.squares) / max(row.admissions, 1))
        figures.append(
            Figure(
                "emergency admissions per 1,000",
                f"age {label}, IMD quintile {row.imd_quintile}",
                row.mean * 1000,
                target * 1000,
                tolerance,
                REL,
                "Devon, by age and IMD quintile",
            )
        )

    figures += _housing_figures(people, records.where(in_last_year), plan, year_start)

    # Cost concentration: unit costs over the last 12 months.
    costs = cal.unit_costs_gbp
    frame["cost"] = (
        (frame["emergency"] - frame["fall"]) * costs["emergency_admission"]
        + frame["fall"] * costs["fall_admission_65_plus"]
        + frame["excess_bed_days"] * costs["excess_bed_day"]
        + (frame["elective"] - frame["day_case"]) * costs["elective_admission"]
        + frame["day_case"] * costs["day_case"]
        + frame["outpatient"] * costs["outpatient_attendance"]
        + frame["ae"] * costs["ae_attendance"]
        + frame["consultation"] * costs["gp_consultation"]
        + frame["community"] * costs["community_contact"]
        + frame["mental_health"] * costs["mental_health_contact"]
        + frame["social_care_cost"]
    )
    top = frame["cost"].sort_values(ascending=False)
    figures.append(
        Figure(
            "cost",
            "top 5% of people: share of cost",
            top.iloc[: max(1, n // 20)].sum() / top.sum(),
            0.50,
            0.10,
            ABS,
            "FACTS.md (~50%)",
        )
    )

    # Primary prevention: people 30-84 with a true 10-year CVD risk of 10% or more and no CVD (Ueda 2017).
    at_risk = (
        alive.where(F.months_between(F.lit(ref), "date_of_birth").between(30 * 12, 85 * 12 - 1e-6))
        .join(factors.select("true_person_id", "cvd_risk_10y"), "true_person_id")
        .agg(F.avg((F.coalesce(F.nanvl("cvd_risk_10y", F.lit(None)), F.lit(0.0)) >= 0.10).cast("double")))
        .first()[0]
    )
    figures.append(
        Figure(
            "prevention",
            "people 30-84 eligible for primary prevention (CVD risk 10%+)",
            at_risk,
            0.31,
            0.04,
            ABS,
            "Ueda et al., BJGP 2017 (9.8m of 31.9m)",
        )
    )

    # The best achievable AUC: the true probability against what happened in the last 12 months.
    auc = _auc(frame["p_emergency_12m"].to_numpy(), (frame["emergency"] > 0).to_numpy())
    figures.append(
        Figure(
            "risk",
            "AUC of the true risk for an emergency admission in 12 months",
            auc,
            0.72,
            0.88,
            RANGE,
            "issue 3: realistic best AUC about 0.75-0.85",
        )
    )

    # NHS number completeness by source (FACTS.md linkage realities).
    completeness = records.groupBy("source").agg(
        F.avg(F.col("nhs_number").isNotNull().cast("double")).alias("c"), F.count("*").alias("n")
    )
    order = list(cal.identifiers.sources)  # the calibration's order, not the aggregate's (which its input sets)
    for row in sorted(completeness.collect(), key=lambda r: order.index(r["source"])):
        expected = 1 - cal.identifiers.sources[row["source"]].nhs_number_missing
        tolerance = _sampling_tolerance(expected, row["n"], 0.005)
        figures.append(
            Figure("identifiers", f"{row['source']} NHS number present", row["c"], expected, tolerance, ABS,
                   "FACTS.md linkage realities")
        )  # fmt: skip
    return figures


def _undiagnosed_figures(alive: DataFrame, plan: PopulationPlan) -> list[Figure]:
    """Share of the living's true cases never diagnosed by the reference date: overall per condition, and by
    age and sex where the calibration gives it (young men and women 16-34, both sexes 75+)."""
    cal = plan.calibration
    names = [c for c in plan.condition_names if cal.health.conditions[c].undiagnosed > 0]
    if not names:
        return []
    undiagnosed = [(F.col(f"onset_{c}").isNotNull() & F.col(f"diagnosed_{c}").isNull()).cast("int") for c in names]
    cells = (
        alive.groupBy("age_band", "sex")
        .agg(
            *[F.count(f"onset_{c}").alias(f"{c}_cases") for c in names],
            *[F.sum(flag).alias(f"{c}_undiagnosed") for c, flag in zip(names, undiagnosed, strict=True)],
        )
        .toPandas()
        .fillna(0)
    )
    last = len(cal.population.age_bands) - 1
    figures = []
    for name in names:
        spec = cal.health.conditions[name]
        cases, missed = cells[f"{name}_cases"], cells[f"{name}_undiagnosed"]
        if cases.sum():
            source = "ONS HSE 2015-19 (29%)" if spec.undiagnosed_by_age_sex else "calibration.yaml (approx.)"
            tolerance = _sampling_tolerance(spec.undiagnosed, cases.sum(), 0.04)
            share = missed.sum() / cases.sum()
            figures.append(Figure("undiagnosed", f"{name} undiagnosed share", share, spec.undiagnosed, tolerance,
                                  ABS, source))  # fmt: skip
        by = spec.undiagnosed_by_age_sex
        if by is None:
            continue
        for label, sex, bands, shares in (
            ("men 16-34", "M", [1], by.male), ("women 16-34", "F", [1], by.female),
            ("men 75+", "M", [last - 1, last], by.male), ("women 75+", "F", [last - 1, last], by.female),
        ):  # fmt: skip
            cell = (cells["sex"] == sex) & cells["age_band"].isin(bands)
            if cases[cell].sum():
                # The configured share of the cell's bands, weighted by their cases.
                target = float(
                    (cases[cell] * np.asarray(shares)[cells.loc[cell, "age_band"]]).sum() / cases[cell].sum()
                )
                tolerance = _sampling_tolerance(target, cases[cell].sum(), 0.05)
                share = missed[cell].sum() / cases[cell].sum()
                figures.append(Figure("undiagnosed", f"{name} undiagnosed share, {label}", share, target, tolerance,
                                      ABS, "ONS HSE 2015-19"))  # fmt: skip
    return figures


def _housing_figures(people: DataFrame, last_year: DataFrame, plan: PopulationPlan, year_start) -> list[Figure]:
    """Housing cases in the last 12 months per 1,000 people 16+ (MHCLG: ~325,000 households a year owed a
    prevention or relief duty, ~7 per 1,000 adults in England), and the most / least deprived quintile ratio
    the calibration implies."""
    adults = people.where(
        (F.months_between(F.lit(year_start), F.col("date_of_birth")) >= 16 * 12)
        & (F.col("death_date").isNull() | (F.col("death_date") > F.lit(year_start)))
    ).select("true_person_id", ((F.col("imd_decile") + 1) / 2).cast("int").alias("quintile"))
    cases = last_year.where(F.col("kind") == "housing_case").groupBy("true_person_id").count()
    by_quintile = (
        adults.join(cases, "true_person_id", "left")
        .groupBy("quintile")
        .agg(F.count(F.lit(1)).alias("people"), F.sum(F.coalesce("count", F.lit(0))).alias("cases"))
        .toPandas()
        .set_index("quintile")
    )
    if not by_quintile["people"].sum():
        return []
    figures = [
        Figure("housing", "housing cases per 1,000 people 16+ a year", 1000 * by_quintile["cases"].sum()
               / by_quintile["people"].sum(), 7.2, 0.35, REL, "MHCLG statutory homelessness 2023-24 (approx.)")
    ]  # fmt: skip
    if {1, 5} <= set(by_quintile.index) and by_quintile.loc[5, "cases"]:
        factor = housing_deprivation_factor(
            np.arange(1, 11), plan.calibration.housing.rate_ratio_most_vs_least_deprived
        )
        rates = by_quintile["cases"] / by_quintile["people"]
        target = factor[:2].mean() / factor[8:].mean()
        figures.append(Figure("housing", "housing cases quintile 1 / quintile 5 ratio", rates[1] / rates[5], target,
                              0.35, REL, "calibration.yaml (approx.)"))  # fmt: skip
    return figures


def _sampling_tolerance(share: float, cases: float, floor: float) -> float:
    """The floor, widened to the central 99.9% of a binomial share over this many cases (small samples are
    noisy). Exact quantiles, not three normal standard errors: a rare share over few cases is skewed (0.5% of
    580 deaths: 3 expected, 8 seen about once in a hundred samples, 4 normal standard errors out)."""
    low, high = stats.binom.ppf([0.0005, 0.9995], int(cases), share) / cases
    return max(floor, share - float(low), float(high) - share)


def _qof_targets(qof: pd.DataFrame, code: str) -> tuple[float, float]:
    """England's prevalence, and quintile 1 (deciles 1-2) over quintile 5 (deciles 9-10)."""
    rows = register_by_decile(qof, code)
    ratio = pooled_prevalence(rows[rows["imd_decile"] <= 2]) / pooled_prevalence(rows[rows["imd_decile"] >= 9])
    return pooled_prevalence(rows), ratio


def _auc(scores: np.ndarray, outcomes: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    positives = outcomes.sum()
    negatives = len(outcomes) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[outcomes].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def as_json(figures: list[Figure]) -> list[dict]:
    numbers = ("value", "target", "tolerance")
    return [
        asdict(f) | {k: float(getattr(f, k)) for k in numbers} | {"within": bool(f.within), "known_gap": f.known_gap}
        for f in figures
    ]


def as_markdown(figures: list[Figure], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| group | figure | generated | target | tolerance | within | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        tolerance = (
            f"{f.target:g} to {f.tolerance:g}"
            if f.kind == RANGE
            else (f"±{f.tolerance:.0%}" if f.kind == REL else f"±{f.tolerance:g}")
        )
        target = "" if f.kind == RANGE else f"{f.target:.4g}"
        verdict = "yes" if f.within else ("known gap" if f.known_gap else "**no**")
        lines.append(f"| {f.group} | {f.name} | {f.value:.4g} | {target} | {tolerance} | {verdict} | {f.source} |")
    outside = [f for f in figures if not f.within]
    lines += ["", f"{len(figures) - len(outside)} of {len(figures)} figures within tolerance."]
    gaps = [f for f in outside if f.known_gap]
    if gaps:
        lines += ["", "Known gaps:", *[f"- {f.name}: {f.known_gap}" for f in gaps]]
    return "\n".join(lines) + "\n"
