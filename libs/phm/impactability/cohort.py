"""The historical programme as an emulated trial: who was eligible, who was treated, time zero and outcomes.

Design (target trial emulation; Hernán & Robins, Am J Epidemiol 2016;183:758): the trial starts at a
baseline index date of gold.features. Its population is the people `eligible` then (config, over the
baseline features) registered at a practice that referred anyone to the programme. Treated: enrolled at a
referral dated in the follow-up after the baseline (the recruitment window). Everyone else in the
population is a comparator: declined referrals, people never referred and people referred only after the
window (counted: their own referral may fall in their follow-up, which biases towards no effect).
Time zero is the referral date for the referred and, for the rest, a date drawn uniformly from the
window (seeded, per person), so that both arms are followed up for the same length of calendar time;
people referred before the baseline, or dead before their time zero, leave the trial (counted).
Outcomes: an emergency admission (and their number) in the follow-up from time zero, and the same in
the follow-up before it (for before/after and difference-in-differences estimates). Baseline features
are those of the baseline date: the programme referred on risk, which the baseline captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dateutil.relativedelta import relativedelta
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError

ENROLLED, DECLINED = "enrolled", "declined"
# Why a person referred to the programme is or is not in the trial (every referral is accounted for).
REFERRAL_ROLES = (
    "treated", "comparator_declined", "comparator_referred_after_window", "referred_before_baseline",
    "not_eligible_at_baseline", "died_before_time_zero",
)  # fmt: skip


@dataclass(frozen=True)
class TrialPlan:
    baseline: date
    window_end: date  # recruitment: referrals dated in [baseline, window_end)
    follow_up_months: int

    @property
    def window_days(self) -> int:
        return (self.window_end - self.baseline).days


def referrals(events: DataFrame, source: str) -> DataFrame:
    """person_id, referral_date, referral_outcome: each person's first referral to the programme (gold.events
    rows of the source; the outcome, enrolled or declined, is their setting)."""
    rows = events.where(F.col("source") == source).select("person_id", "event_date", "setting")
    return rows.groupBy("person_id").agg(
        F.min("event_date").alias("referral_date"),
        F.min_by("setting", F.struct("event_date", "setting")).alias("referral_outcome"),
    )


def plan_trial(index_dates: list[date], scoring: date, follow_up_months: int, first_referral: date | None) -> TrialPlan:
    """The latest index date whose recruitment window and follow-up after it end by the scoring date and
    that has referrals after it; a UserError naming what is missing otherwise."""
    if first_referral is None:
        raise UserError("impactability: gold.events holds no programme referral; load the programme's extract")
    months = relativedelta(months=follow_up_months)
    fitting = [d for d in sorted(index_dates) if d + months + months <= scoring and d + months > first_referral]
    if not fitting:
        raise UserError(
            f"impactability: no index date of gold.features (have {sorted(map(str, index_dates))}) leaves a "
            f"{follow_up_months}-month recruitment window and {follow_up_months}-month follow-up before the "
            f"scoring date {scoring} after the first referral ({first_referral}); load more history or shorten "
            "risk.follow_up_months"
        )
    return TrialPlan(fitting[-1], fitting[-1] + months, follow_up_months)


def emergency_outcomes(events: DataFrame, people: DataFrame, follow_up_months: int) -> DataFrame:
    """person_id -> outcome, outcome_count (after time_zero) and prior, prior_count (the same span before)."""
    t0 = F.col("time_zero")
    after = (F.col("event_date") >= t0) & (F.col("event_date") < F.add_months(t0, follow_up_months))
    before = (F.col("event_date") >= F.add_months(t0, -follow_up_months)) & (F.col("event_date") < t0)
    admissions = events.where(F.col("emergency")).select("person_id", "event_date")
    counted = (
        people.select("person_id", "time_zero")
        .join(admissions, "person_id", "left")
        .groupBy("person_id")
        .agg(
            F.count(F.when(after, 1)).alias("outcome_count"),
            F.count(F.when(before, 1)).alias("prior_count"),
        )
    )
    return counted.select(
        "person_id",
        (F.col("outcome_count") > 0).cast("int").alias("outcome"),
        F.col("outcome_count").cast("int").alias("outcome_count"),
        (F.col("prior_count") > 0).cast("int").alias("prior"),
        F.col("prior_count").cast("int").alias("prior_count"),
    )


def build_trial(
    baseline_features: DataFrame, events: DataFrame, referred: DataFrame, plan: TrialPlan, eligible: str, seed: int
) -> tuple[DataFrame, DataFrame]:
    """(trial, referral_roles): one row per person in the trial with `treated`, time_zero and outcomes beside
    the baseline features; and every referred person with their role (REFERRAL_ROLES)."""
    start, end = F.lit(plan.baseline).cast("date"), F.lit(plan.window_end).cast("date")
    programme_practices = (
        referred.join(baseline_features.select("person_id", "practice_code"), "person_id")
        .select("practice_code")
        .where(F.col("practice_code").isNotNull())
        .distinct()
    )
    population = baseline_features.join(F.broadcast(programme_practices), "practice_code", "left_semi").where(
        F.expr(eligible)
    )
    deaths = events.where(F.col("activity") == "death").groupBy("person_id").agg(F.min("event_date").alias("died"))
    offset = F.pmod(F.xxhash64("person_id", F.lit(seed)), F.lit(max(plan.window_days, 1))).cast("int")
    in_window = (F.col("referral_date") >= start) & (F.col("referral_date") < end)
    candidates = (
        population.join(referred, "person_id", "left")
        .join(deaths, "person_id", "left")
        .withColumn("time_zero", F.when(in_window, F.col("referral_date")).otherwise(F.date_add(start, offset)))
        .withColumn(
            "role",
            F.when(F.col("referral_date") < start, "referred_before_baseline")
            .when(F.col("died") < F.col("time_zero"), "died_before_time_zero")
            .when(in_window & (F.col("referral_outcome") == ENROLLED), "treated")
            .when(in_window, "comparator_declined")
            .when(F.col("referral_date").isNotNull(), "comparator_referred_after_window")
            .otherwise("comparator"),
        )
    )
    roles = referred.join(candidates.select("person_id", "role"), "person_id", "left").select(
        "person_id",
        "referral_date",
        "referral_outcome",
        F.coalesce("role", F.lit("not_eligible_at_baseline")).alias("role"),
    )
    kept = candidates.where(~F.col("role").isin("referred_before_baseline", "died_before_time_zero"))
    trial = (
        kept.withColumn("treated", (F.col("role") == "treated").cast("int"))
        .drop("referral_date", "referral_outcome", "died")
        .join(emergency_outcomes(events, kept, plan.follow_up_months), "person_id")
    )
    return trial, roles


def trial_with_features(trial: DataFrame, features: DataFrame) -> DataFrame:
    """The trial's people (gold.programme_trial) with their baseline features (gold.features)."""
    if "did_propensity" not in trial.columns:
        raise UserError(
            "gold.programme_trial was written before it carried the difference-in-differences' "
            "propensity; run `phm run evaluate_programme` (or `phm refresh`) to write it again"
        )
    chosen = trial.select(
        "person_id", F.col("baseline_date").alias("index_date"), "treated", "outcome", "prior", "propensity",
        "did_propensity", "held_out", "role",
    )  # fmt: skip
    return features.drop("pcn_code").join(chosen, ["person_id", "index_date"])
