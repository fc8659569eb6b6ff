"""`phm run link` on the shared sample, delivered in two instalments as a monthly refresh would be:
every record linked once, person_ids stable across the refresh with every change in the history, gold.person,
the quality measures, the model reused, MLflow tracked, and the truth evaluation."""

from __future__ import annotations

import json

import mlflow
import pytest
from pyspark.sql import functions as F

from phm import cli
from phm.linkage.profiles import linkage_records, profiles
from phm.runtime.tracking import run_for
from phm.tables import (
    IDENTITY,
    IDENTITY_PROFILES,
    LINKAGE_EVALUATION,
    LINKAGE_PROFILES,
    LINKAGE_QUALITY,
    PERSON,
    PERSON_ID_HISTORY,
    PERSON_LINK,
)
from phm_jobs.link import read_nicknames

from .conftest import copy_of_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def linked(sample, first_instalment):
    """The shared sample: periods up to January linked first (what linkage wrote then is the snapshot), then the
    rest delivered, ingested, linked and evaluated by the full refresh."""
    config, catalog = sample
    return config, catalog, first_instalment


def test_every_identity_record_is_linked_exactly_once(linked):
    _, catalog, _ = linked
    links = catalog.read(PERSON_LINK.name)
    identity = catalog.read(IDENTITY.name)
    assert links.count() == identity.count() == links.select("source", "record_id").distinct().count()
    assert links.join(identity, ["source", "record_id"], "anti").count() == 0
    assert {r.link_method for r in links.select("link_method").distinct().collect()} <= {
        "deterministic", "probabilistic", "identical_identifiers", "unlinked"}  # fmt: skip
    persons = catalog.read(PERSON.name)
    assert persons.count() == links.select("person_id").distinct().count()
    assert (
        catalog.read(LINKAGE_PROFILES.name).select("profile_id").distinct().count()
        == links.select("profile_id").distinct().count()
    )


def test_the_refresh_keeps_person_ids_and_records_every_change(linked):
    _, catalog, before = linked
    now = {(r.source, r.record_id): r.person_id for r in catalog.read(PERSON_LINK.name).collect()}
    history = catalog.read(PERSON_ID_HISTORY.name)
    second_run = _latest_linkage_run(catalog)
    assert second_run != before["run"]
    assert history.where(F.col("linkage_run_id") == before["run"]).count() == 0  # a first run changes nothing
    changed_from = {r.person_id_from for r in history.where(F.col("linkage_run_id") == second_run).collect()}
    assert len(before["links"]) > 1000 and len(now) > len(before["links"])
    kept = [key for key, person in before["links"].items() if now[key] == person]
    moved = [key for key, person in before["links"].items() if now[key] != person]
    # nothing changes silently: every record whose person changed left a person named in the history
    assert all(before["links"][key] in changed_from for key in moved)
    assert len(kept) / len(before["links"]) > 0.99


def test_the_refresh_reuses_the_saved_model_and_tracks_both_runs(linked):
    config, catalog, before = linked
    path = config.resolve(config.linkage.model)
    with open(path) as f:
        assert f.read() == before["model"]
    model = json.loads(before["model"])
    assert model["unique_id_column_name"] == "profile_id" and len(model["comparisons"]) == 6
    first = run_for(config, "linkage", before["run"])
    second = run_for(config, "linkage", _latest_linkage_run(catalog))
    assert first and second
    client = mlflow.MlflowClient()
    trained, refreshed = client.get_run(first), client.get_run(second)
    assert trained.data.params["trained"] == "True" and refreshed.data.params["trained"] == "False"
    # the refresh profiled only what the second delivery added (Delta's change data feed of vault.identity)
    assert (trained.data.params["profiled"], refreshed.data.params["profiled"]) == ("all_records", "changed_records")
    artifacts = {a.path for a in client.list_artifacts(first, "charts")}
    assert artifacts == {"charts/match_weights.html", "charts/m_u_parameters.html"}
    chart = client.download_artifacts(first, "charts/match_weights.html")
    with open(chart) as f:
        page = f.read()
    # readable offline: Vega's libraries are in the page, no script is fetched
    assert len(page) > 200_000 and "<script src=" not in page.replace(" ", "")
    assert refreshed.data.metrics["persons.all"] > 0 and "truth.f1" in refreshed.data.metrics


def test_the_refresh_changes_in_place_the_links_of_the_profiles_it_linked_anew(linked):
    _, catalog, before = linked
    links = catalog.read(PERSON_LINK.name)
    state = catalog.read(LINKAGE_PROFILES.name)
    # every record carries its profile's link, as if person_link had been rewritten from the state
    columns = ["profile_id", "person_id", "match_probability", "link_method", "linkage_run_id"]
    assert links.select(*columns).exceptAll(links.select("profile_id").join(state.select(*columns), "profile_id")
                                            ).count() == 0  # fmt: skip
    # the refresh (in place: deletion vectors, no rewrite of the table) gave its own run id only to the profiles
    # whose link it changed; the others keep the first run's
    second_run = _latest_linkage_run(catalog)
    runs = {r.linkage_run_id: r["count"] for r in links.groupBy("linkage_run_id").count().collect()}
    assert set(runs) == {before["run"], second_run} and runs[before["run"]] > runs[second_run] > 0
    commits = catalog.history(PERSON_LINK.name).where(F.col("userMetadata") == second_run).collect()
    assert {(r.operation, r.operationParameters.get("mode")) for r in commits} == {("MERGE", None), ("WRITE", "Append")}


def _latest_linkage_run(catalog) -> str:
    return catalog.read(LINKAGE_QUALITY.name).agg(F.max("linkage_run_id")).first()[0]


def test_the_profiles_a_refresh_updates_are_those_of_every_record(linked, spark):
    config, catalog, _ = linked
    nicknames = read_nicknames(spark, config.resolve(config.linkage.nicknames))
    every_record = profiles(linkage_records(catalog.read(IDENTITY.name)), nicknames)
    kept = catalog.read(IDENTITY_PROFILES.name)

    def comparable(df):  # set operations take no map column
        return df.select(*IDENTITY_PROFILES.schema.fieldNames()).withColumn(
            "records_by_source", F.array_sort(F.map_entries("records_by_source"))
        )

    assert kept.count() == every_record.count() > 1000
    assert comparable(kept).exceptAll(comparable(every_record)).count() == 0


def test_quality_measures_are_recorded_for_each_run(linked):
    _, catalog, before = linked
    quality = catalog.read(LINKAGE_QUALITY.name).where(F.col("linkage_run_id") == before["run"])
    first = {(r.measure, r.group_value): r.value for r in quality.collect()}
    assert sum(v for (m, _), v in first.items() if m == "comparisons") > 0  # blocking analysis of a full run
    assert first[("identity_records", "all")] == len(before["links"])
    assert sum(v for (m, _), v in first.items() if m == "cluster_profiles") == first[("persons", "all")]
    assert first[("records", "gp_registrations")] > 0 and ("unlinked_rate", "ae") in first
    assert sum(v for (m, _), v in first.items() if m == "match_weight") == first[("scored_comparisons", "all")]


def test_gold_person_has_one_row_per_person_and_no_identifier(linked):
    _, catalog, _ = linked
    persons = catalog.read(PERSON.name)
    assert set(persons.columns) & {"nhs_number", "forename", "surname", "date_of_birth", "postcode"} == set()
    summary = persons.agg(
        F.count(F.lit(1)).alias("n"),
        F.avg(F.col("gp_registered").cast("int")).alias("registered"),
        F.avg(F.col("age").isNotNull().cast("int")).alias("aged"),
        F.avg(F.col("imd_decile").isNotNull().cast("int")).alias("with_imd"),
    ).first()
    assert summary.n == persons.select("person_id").distinct().count()
    assert summary.registered > 0.8 and summary.aged > 0.95 and summary.with_imd > 0.8


def test_evaluation_against_truth_beats_the_nhs_number_baseline(linked):
    _, catalog, _ = linked
    rows = catalog.read(LINKAGE_EVALUATION.name).collect()
    overall = {r.method: r for r in rows if r.scope == "overall"}
    model, baseline = overall["splink"], overall["nhs_number_only"]
    assert model.records == baseline.records == catalog.read(PERSON_LINK.name).count()
    assert model.f1 >= 0.98 and model.precision >= 0.98 and model.recall > baseline.recall
    assert model.false_merge_rate <= 0.01 and model.missed_link_rate <= 0.01
    scopes = {(r.method, r.scope) for r in rows}
    assert {("splink", s) for s in ("source", "ethnicity", "age_band", "imd_quintile")} <= scopes


def test_a_practice_moving_to_another_pcn_rebuilds_gold_person_and_relinks_nothing(refreshed, spark, tmp_path_factory):
    copy = copy_of_sample(refreshed, spark, tmp_path_factory.mktemp("practice_moved"))
    catalog, arguments = copy.catalog, copy.arguments
    before = catalog.read(PERSON.name).drop("_run_id").cache()
    practice = before.where(F.col("pcn_code").isNotNull()).groupBy("practice_code").count().orderBy(
        F.desc("count")).first().practice_code  # fmt: skip
    # The reference data moves the practice to a new PCN (as a re-delivered practice list would).
    moved = F.when(F.col("practice_code") == practice, F.lit("U_MOVED")).otherwise(F.col("pcn_code"))
    practices = catalog.read("silver.practices").withColumn("pcn_code", moved)
    practices.write.format("delta").mode("overwrite").save(catalog.path("silver.practices"))
    linkage = (IDENTITY_PROFILES, LINKAGE_PROFILES, PERSON_LINK, PERSON_ID_HISTORY, LINKAGE_QUALITY)
    versions = {t.name: catalog.version(t.name) for t in linkage}

    assert cli.main(["run", "link", *arguments]) == 0
    assert {t.name: catalog.version(t.name) for t in linkage} == versions  # every link stands
    after = catalog.read(PERSON.name).drop("_run_id")
    assert after.where(F.col("practice_code") == practice).count() == before.where(
        F.col("practice_code") == practice).count() > 0  # fmt: skip
    assert {r.pcn_code for r in after.where(F.col("practice_code") == practice).collect()} == {"U_MOVED"}
    assert after.where(F.col("practice_code") != practice).exceptAll(before).count() == 0
    assert after.count() == before.count()
    # and with nothing changed since, nothing to do
    person = catalog.version(PERSON.name)
    assert cli.main(["run", "link", *arguments]) == 0
    assert catalog.version(PERSON.name) == person
