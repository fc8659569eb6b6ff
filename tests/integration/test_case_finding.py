"""Case finding on the refreshed tiny ICS: one pseudonymised, ranked list per cohort, sizes published safely,
and the undiagnosed-condition and high-CVD-risk cohorts scored against the truth."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

from phm.cohorts.case_finding import cohort_table, load_cohort_specs
from phm.tables import CASE_FINDING_EVALUATION, COHORT_SUMMARY, PERSON

pytestmark = pytest.mark.slow


def test_every_cohort_has_a_ranked_pseudonymised_list_per_pcn_and_a_safe_summary(sample):
    config, catalog = sample
    specs = load_cohort_specs(config.resolve(config.cohorts.definitions))
    summary = catalog.read(COHORT_SUMMARY.name).toPandas()
    people = catalog.read(PERSON.name).select("person_id")
    for name, (spec, _) in specs.items():
        members = catalog.read(cohort_table(spec).name)
        count = members.count()
        assert members.join(people, "person_id", "left_anti").count() == 0, name  # every person_id is known
        ranks = members.groupBy("pcn_code").agg(F.count(F.lit(1)).alias("n"), F.max("priority").alias("top"),
                                                F.countDistinct("priority").alias("distinct"))  # fmt: skip
        assert all(r.n == r.top == r.distinct for r in ranks.collect()), name  # 1..n in each PCN
        published = summary[(summary["cohort"] == name) & (summary["pcn_code"] == "all")].iloc[0]
        if 1 <= count <= config.profiling.disclosure.max_suppressed:
            assert published["suppressed"] == "primary" and pd.isna(published["people"])
        else:
            assert abs(published["people"] - count) <= 2.5, name
    assert summary["people"].dropna().mod(5).eq(0).all() and summary["population"].dropna().mod(5).eq(0).all()


def test_undiagnosed_condition_cohorts_find_the_undiagnosed_better_than_chance(sample):
    _, catalog = sample
    rows = {r.cohort: r for r in catalog.read(CASE_FINDING_EVALUATION.name).collect()}
    assert set(rows) == {"undiagnosed_hypertension", "undiagnosed_diabetes", "high_cvd_risk_without_statin"}
    hypertension = rows["undiagnosed_hypertension"]
    assert hypertension.members > 0 and hypertension.precision > 2 * hypertension.undiagnosed_prevalence
    assert 0 < hypertension.recall <= 1 and hypertension.found == hypertension.true_positives
    # scored by its truth rule: true 10-year risk of 10% or more and no statin; it misses the unassessed
    cvd = rows["high_cvd_risk_without_statin"]
    assert cvd.condition == "untreated_high_cvd_risk"
    assert cvd.members > 0 and cvd.precision > 2 * cvd.undiagnosed_prevalence and 0 < cvd.recall < 1
    for row in rows.values():
        assert row.true_positives <= min(row.members, row.undiagnosed) and row.undiagnosed <= row.population
