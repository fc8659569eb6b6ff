"""The person model and segmentation on the refreshed tiny ICS: every activity row on the timeline once, gold
tables keyed by person_id, recorded prevalence against the truth store, and score distributions that look like
FACTS.md (directions that hold even on 2,000 people)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from phm import cli
from phm.ingest.contracts import load_contracts
from phm.person.events import BUILDERS
from phm.tables import (
    CODED_EVENTS,
    CONDITION_ASCERTAINMENT,
    CONDITIONS,
    EVENTS,
    OBSERVATIONS,
    PERSON,
    PERSON_LINK,
    RUN_ID_COLUMN,
    SEGMENTS,
)  # fmt: skip

from .conftest import copy_of_sample

pytestmark = pytest.mark.slow
ONE_DAY = timedelta(days=1)


def test_every_activity_row_is_on_the_timeline_once_with_its_person(sample):
    config, catalog = sample
    events = catalog.read(EVENTS.name)
    assert events.count() == events.select("source", "record_id").distinct().count()
    contracts = load_contracts(config.resolve(config.ingest.sources))
    for source in BUILDERS:
        contract = contracts[source]
        if not catalog.exists(contract.silver_table):
            continue
        silver = catalog.read(contract.silver_table).select(F.col(contract.record_id).cast("string").alias("record_id"))
        on_timeline = events.where(F.col("source") == source).select("record_id")
        missing = silver.join(on_timeline, "record_id", "left_anti")
        if source == "social_care":  # end records close their package
            assert missing.count() == events.where("source = 'social_care' AND end_date IS NOT NULL "
                                                   "AND activity != 'care_end_without_start'").count()  # fmt: skip
        else:
            assert missing.count() == 0, source
        assert on_timeline.join(silver, "record_id", "left_anti").count() == 0, source
    links = catalog.read(PERSON_LINK.name)
    assert events.join(links, ["source", "record_id", "person_id"], "left_anti").count() == 0
    costed = {r.activity: r.cost for r in events.groupBy("activity").agg(F.min("cost").alias("cost")).collect()}
    assert costed["ae_attendance"] == 148.0 and costed["gp_consultation"] == 39.0
    assert costed["emergency_admission"] >= 1590.0
    assert events.where("acsc").count() > 0 and events.where("acsc AND NOT emergency").count() == 0


def test_gold_tables_are_keyed_by_person_id(sample):
    _, catalog = sample
    persons = catalog.read(PERSON.name).select("person_id")
    conditions = catalog.read(CONDITIONS.name)
    assert conditions.count() == conditions.select("person_id", "condition").distinct().count() > 0
    assert conditions.join(persons, "person_id", "left_anti").count() == 0
    latest = catalog.read(OBSERVATIONS.name).where("is_latest").groupBy("person_id", "observation").count()
    assert latest.count() > 0 and latest.where("count > 1").count() == 0
    segments = catalog.read(SEGMENTS.name)
    living = catalog.read(PERSON.name).where(~F.col("deceased")).select("person_id")
    assert segments.count() == segments.select("person_id").distinct().count() == living.count()
    assert segments.join(living, "person_id", "left_anti").count() == 0


def test_recorded_prevalence_lies_between_what_the_gp_coded_and_the_truth(sample):
    _, catalog = sample
    rows = catalog.read(CONDITION_ASCERTAINMENT.name).where(F.col("imd_quintile") == "all").collect()
    assert len(rows) == 16
    checked = 0
    for row in rows:
        assert row.persons == pytest.approx(row.true_persons, rel=0.03), row.condition
        if row.true_coded >= 20:  # enough cases to compare
            checked += 1
            # what the GP coded is found (hospital coding adds more), and nothing the truth lacks is invented
            assert row.true_coded * 0.95 <= row.recorded <= row.true_cases * 1.05, row.condition
    assert checked >= 5
    hypertension = next(r for r in rows if r.condition == "hypertension")
    assert hypertension.recorded_to_true < 0.9  # undiagnosed hypertension (29%) stays unrecorded


def test_scores_and_segments_look_like_the_facts(sample):
    _, catalog = sample
    segments = catalog.read(SEGMENTS.name)
    assert segments.where("age < 65 AND efi_category IS NOT NULL").count() == 0
    assert segments.where("age >= 65 AND efi_category IS NULL").count() == 0
    by_age = {
        r.older: r
        for r in segments.groupBy((F.col("age") >= 65).alias("older"))
        .agg(
            F.avg("cms_score").alias("cms"),
            F.avg((F.col("long_term_conditions") >= 2).cast("int")).alias("multimorbid"),
            F.avg("annual_cost").alias("cost"),
        )
        .collect()
    }
    # FACTS.md: multimorbidity rises steeply with age (8% at 25-34, 76% at 75+); so do CMS and cost
    assert by_age[True].multimorbid > 2 * by_age[False].multimorbid
    assert by_age[True].cms > 2 * by_age[False].cms and by_age[True].cost > by_age[False].cost
    frail = {r.efi_category: r["count"] for r in segments.where("age >= 65").groupBy("efi_category").count().collect()}
    assert frail.get("fit", 0) > frail.get("severe", 0)  # Clegg 2016: most over-65s are fit or mildly frail
    shares = {r.segment: r["count"] for r in segments.groupBy("segment").count().collect()}
    assert shares["healthy"] + shares.get("acute_illness", 0) > shares["long_term_conditions"] > 0
    assert shares.get("end_of_life", 0) < shares["long_term_conditions"]


def test_a_refresh_changes_the_timeline_in_place_as_building_it_whole_would(refreshed, spark, tmp_path_factory):
    copy = copy_of_sample(refreshed, spark, tmp_path_factory.mktemp("person_model_in_place"))
    catalog = copy.catalog
    assert cli.main(["run", "build_person_model", *copy.arguments]) == 0  # the copy's configuration: built whole
    spells = load_contracts(copy.config.resolve(copy.config.ingest.sources))["inpatient"].silver_table
    silver = catalog.read(spells).drop(RUN_ID_COLUMN)
    period = silver.agg(F.max("period")).first()[0]
    month = silver.where(F.col("period") == period).orderBy("spell_id").collect()
    dropped, moved, template = month[0].spell_id, month[1].spell_id, month[2]
    links = catalog.read(PERSON_LINK.name).drop(RUN_ID_COLUMN)
    # A month of spells re-delivered: one left out, one admitted a day earlier, one added (and linked).
    redelivered = (
        silver.where((F.col("period") == period) & (F.col("spell_id") != dropped))
        .withColumn("admission_date", F.when(F.col("spell_id") == moved, F.date_sub("admission_date", 1))
                    .otherwise(F.col("admission_date")))
        .unionByName(spark.createDataFrame([template], silver.schema).withColumn("spell_id", F.lit("TEST-NEW")))
    )  # fmt: skip
    catalog.overwrite(spells, redelivered, replace_where=f"period = '{period}'")
    template_link = links.where((F.col("source") == "inpatient") & (F.col("record_id") == template.spell_id))
    catalog.append(PERSON_LINK.name, template_link.withColumn("record_id", F.lit("TEST-NEW")))
    # An earlier spell's profile linked to another person (as a merge does): all of its records move.
    earlier = links.where((F.col("source") == "inpatient") & (F.col("period") < period)).orderBy("record_id").first()
    other = links.where(F.col("person_id") != earlier.person_id).orderBy("person_id").first().person_id
    relinked = spark.createDataFrame([(earlier.profile_id, other)], "profile_id string, person_id string")
    catalog.update_matching(PERSON_LINK.name, relinked, on="profile_id")

    assert cli.main(["run", "build_person_model", *copy.arguments]) == 0
    assert _writes(catalog, 2) == [("WRITE", "Append"), ("MERGE", None)]  # in place: merged, then appended
    events = catalog.read(EVENTS.name).drop(RUN_ID_COLUMN)
    inpatient = {r.record_id: r for r in events.where(F.col("source") == "inpatient").collect()}
    assert dropped not in inpatient and inpatient["TEST-NEW"].person_id == template_link.first().person_id
    assert inpatient[moved].event_date == next(r.admission_date for r in month if r.spell_id == moved) - ONE_DAY
    moved_records = catalog.read(PERSON_LINK.name).where(F.col("profile_id") == earlier.profile_id)
    assert moved_records.count() >= 1
    assert events.join(moved_records.select("source", "record_id"), ["source", "record_id"]).where(
        F.col("person_id") != other).count() == 0  # fmt: skip
    tables = (EVENTS.name, CODED_EVENTS.name, CONDITIONS.name, OBSERVATIONS.name)
    in_place = {name: catalog.read(name).drop(RUN_ID_COLUMN) for name in tables}
    in_place = {name: frame.collect() for name, frame in in_place.items()}

    # The same tables built whole (another definition, though not one this job reads: nothing is reused; a run
    # setting such as Spark's would not do, as the configuration digest leaves those out).
    whole = [*copy.arguments, "--set", "linkage.threshold=0.95"]
    assert cli.main(["run", "build_person_model", *whole]) == 0
    assert _writes(catalog, 1) == [("WRITE", "Overwrite")]
    for name, rows in in_place.items():
        assertDataFrameEqual(catalog.read(name).drop(RUN_ID_COLUMN), rows)

    # A new row nobody linked: the run fails before it changes anything.
    before = catalog.version(EVENTS.name)
    catalog.append(
        spells, spark.createDataFrame([template], silver.schema).withColumn("spell_id", F.lit("TEST-UNLINKED"))
    )
    assert cli.main(["run", "build_person_model", *whole]) == 2
    assert catalog.version(EVENTS.name) == before


def _writes(catalog, last: int) -> list[tuple[str, str | None]]:
    """(operation, mode) of gold.events' last commits, latest first."""
    return [(r.operation, r.operationParameters.get("mode")) for r in catalog.history(EVENTS.name, last).collect()]
