"""The truth store: what really happened, for evaluation code and tests only (the pipeline never reads it).

- person: one row per true person (demographics, identifiers, geography,
  life events, latent health, emergency factor, true 12-month admission
  probability);
- person_condition: true conditions with onset and (if coded) diagnosis date;
- admission_risk: true 12-month emergency admission probability at each
  configured index date, for people registered and alive then. The person's
  rate is constant over the window (ageing inside 3 years is ignored), so
  the probability differs between index dates only by who is at risk;
- record_person: (source, record_id) -> true person, with the corruptions
  applied to the record's identifiers;
- canaries: a few people whose identifiers leak tests search for;
- programme: each person's adoption, eligibility, referral, enrolment and
  true relative and absolute effect of the historical programme.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.errors import UserError
from phm.synthetic.population import PopulationPlan, condition_columns


def truth_store(config, job: str, needs: str) -> Path:
    """The truth store folder for an evaluation job; a UserError if it lacks `needs` (e.g. on real data)."""
    truth = Path(config.resolve(config.paths.truth))
    if not (truth / needs).exists():
        raise UserError(
            f"{job}: no truth store at {truth} (the synthetic generator writes it); "
            f"on real data leave this stage out with refresh.exclude: [{job}]"
        )
    return truth


def person_truth(people: DataFrame, factors: DataFrame, plan: PopulationPlan) -> DataFrame:
    return people.drop(*condition_columns(plan.condition_names)).join(factors, "true_person_id")


def person_conditions(people: DataFrame, plan: PopulationPlan) -> DataFrame:
    parts = [
        people.where(F.col(f"onset_{name}").isNotNull()).select(
            "true_person_id",
            F.lit(name).alias("condition"),
            F.col(f"onset_{name}").alias("onset_date"),
            F.col(f"diagnosed_{name}").alias("diagnosed_date"),
            F.col(f"diagnosed_{name}").isNotNull().alias("coded_flag"),
        )
        for name in plan.condition_names
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def admission_risk(people: DataFrame, factors: DataFrame, index_dates: list[date]) -> DataFrame:
    at_risk = people.select("true_person_id", "registered_on", "death_date").join(
        factors.select("true_person_id", "p_emergency_12m"), "true_person_id"
    )
    dates = F.array(*[F.lit(d) for d in index_dates])
    return (
        at_risk.withColumn("index_date", F.explode(dates))
        .where(F.col("registered_on") <= F.col("index_date"))
        .where(F.col("death_date").isNull() | (F.col("death_date") > F.col("index_date")))
        .select("true_person_id", "index_date", "p_emergency_12m")
    )


def record_person(records: DataFrame) -> DataFrame:
    return records.select("source", "period", "record_id", "true_person_id", "kind", "corruptions")


def canaries(people: DataFrame, count: int, seed: int) -> DataFrame:
    """A seeded handful of people (alive at the end, so they appear in every stage's output)."""
    return (
        people.where(F.col("death_date").isNull())
        .orderBy(F.xxhash64("true_person_id", F.lit(seed)))
        .limit(count)
        .select("true_person_id", "nhs_number", "forename", "surname", "date_of_birth", "postcode", "new_postcode")
    )
