"""Link every source's identity records into one person index: `phm run link`.

Reads vault.identity (this job runs with vault access) and, besides the
profiles it compares (vault.identity_profiles: identifiers, so in the vault),
writes pseudonyms only: silver.linkage_profiles (the linkage state),
silver.person_link (record -> person_id), silver.person_id_history (merges,
moves, splits; appended), gold.person and mart.linkage_quality. A refresh
profiles only the records vault.identity gained or lost since the last run
(Delta's change data feed) when it can tell which they are; otherwise every
record. The model is trained on the first run
(or with linkage.retrain) and saved as JSON at linkage.model; every other run
reuses it. A refresh scores only profiles not seen before, against each other
and the existing persons; a new model or linkage.full_relink scores them all.
Either way existing person_ids are kept (phm.linkage.person_ids). Training,
comparisons per blocking rule and the quality measures go to MLflow.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import mlflow
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from splink.blocking_analysis import count_comparisons_from_blocking_rules

from phm.errors import SchemaMismatchError, UserError
from phm.linkage import Materialise
from phm.linkage import model as linkage_model
from phm.linkage.linking import link_all, link_new, profile_link_details, with_earlier_state
from phm.linkage.person_ids import assign, check_unique
from phm.linkage.person_index import person_index
from phm.linkage.profiles import linkage_records, profiles, updated_profiles
from phm.linkage.quality import quality
from phm.runtime.jobs import JobContext, JobSpec
from phm.runtime.script import main_for
from phm.runtime.staging import splink_tables_removed, stage
from phm.runtime.tracking import tracked_run
from phm.tables import (
    IDENTITY,
    IDENTITY_PROFILES,
    LINKAGE_PROFILES,
    LINKAGE_QUALITY,
    PERSON,
    PERSON_ID_HISTORY,
    PERSON_LINK,
)

log = logging.getLogger("phm.jobs.link")

# What a link run reads: the identity records, and what gold.person takes its best values from.
PERSON_SOURCES = ("silver.gp_registrations", "silver.deaths", "silver.practices")
INPUTS = (IDENTITY.name, *PERSON_SOURCES)
# A linkage record: which source record, of which period, has which identity profile.
RECORD_COLUMNS = ("source", "period", "record_id", "profile_id")
# What gold.person and the quality measures count of each linked profile, from the profile.
PROFILE_VALUES = ("record_count", "date_of_birth", "sex", "gp_record_count", "records_by_source")

SPEC = JobSpec(
    name="link",
    description="vault.identity -> one person index (Splink on Spark): person_link, person_id history, gold.person",
    outputs=(
        IDENTITY_PROFILES.name,
        LINKAGE_PROFILES.name,
        PERSON_LINK.name,
        PERSON_ID_HISTORY.name,
        PERSON.name,
        LINKAGE_QUALITY.name,
    ),
    depends_on=("ingest",),
)


def run(ctx: JobContext) -> None:
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    settings = config.linkage
    if not catalog.exists(IDENTITY.name):
        raise UserError("link: vault.identity does not exist yet; run `phm run ingest` first")
    # Skipped without reading a record when nothing it reads has a new version (a refresh with nothing new).
    if not (settings.retrain or settings.full_relink) and ctx.unchanged_since_last_success(INPUTS, SPEC.outputs):
        log.info("link: vault.identity and the tables gold.person is built from are unchanged since the last link "
                 "run; nothing to do")  # fmt: skip
        ctx.rows_out = 0
        return
    staging = Path(config.resolve(config.paths.checkpoints)) / f"link-{ctx.run_id}"
    timings: dict[str, float] = {}
    relink = settings.retrain or settings.full_relink
    try:
        with tracked_run(config, "linkage", ctx.run_id), splink_tables_removed(spark):
            with _timed(timings, "profiles"):
                nicknames = read_nicknames(spark, config.resolve(settings.nicknames))
                last_read = _last_read(ctx)
                changed = _changed_records(ctx, last_read.get(IDENTITY.name), staging)
                if changed is None:  # the first run, or Delta has not recorded every change since the last
                    records = stage(spark, linkage_records(catalog.read(IDENTITY.name)), staging / "records")
                    nothing_new = not relink and _nothing_new(catalog, records)
                    profile = _profiled(ctx, profiles(records, nicknames), nothing_new, staging)
                else:
                    inserted, deleted = changed
                    # e.g. a period delivered again unchanged: every record removed came back as it was
                    nothing_new = not relink and _same_records(inserted, deleted)
                    records = _records_after(catalog, inserted, deleted)
                    state = catalog.read(IDENTITY_PROFILES.name)
                    updated = updated_profiles(state, inserted, deleted, nicknames, _materialiser(spark, staging))
                    profile = _profiled(ctx, updated, nothing_new, staging)
                mlflow.log_param("profiled", "all_records" if changed is None else "changed_records")
            if nothing_new and _person_sources_changed(ctx, last_read):
                # e.g. a practice moved to another PCN: every link stands, gold.person's values do not
                with _timed(timings, "person"):
                    ctx.rows_in, reference_date, sources = _records_date_and_sources(catalog)
                    state, links = catalog.read(LINKAGE_PROFILES.name), catalog.read(PERSON_LINK.name)
                    linked_profiles = _linked_profiles(state, profile, _materialiser(spark, staging))
                    catalog.overwrite(PERSON.name, _person(catalog, linked_profiles, links, reference_date, sources))
                mlflow.set_tag("phm.outcome", "gold.person rebuilt")
                log.info("link: every identity record is already linked with the same identifiers; gold.person "
                         "rebuilt, since tables it takes values from changed (%.1fs)", timings["person"])  # fmt: skip
                return
            if nothing_new:
                mlflow.set_tag("phm.outcome", "nothing new")
                log.info("link: every identity record is already linked with the same identifiers; nothing to do")
                ctx.rows_out = 0
                return
            _link(ctx, records, profile, changed, staging, timings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link(
    ctx: JobContext,
    records: DataFrame,
    profile: DataFrame,
    changed: tuple[DataFrame, DataFrame] | None,
    staging: Path,
    timings: dict[str, float],
) -> None:
    """Link the profiles and write every output. records: (source, period, record_id, profile_id) of every
    record now; changed: the records inserted and deleted since the last run when the change feed told them."""
    config, spark, catalog = ctx.config, ctx.spark, ctx.catalog
    settings = config.linkage
    # Not staged though this run overwrites the table: the version read stays readable (Catalog.read pins it, and
    # a vacuum keeps a removed file for days), and every read of it comes first (linked_profiles is staged before
    # the write). Staged, it took 9.5 s at 1m people (3.7m profiles).
    earlier = catalog.read(LINKAGE_PROFILES.name) if catalog.exists(LINKAGE_PROFILES.name) else None
    previous = earlier.select("profile_id", "person_id") if earlier is not None else None
    model_path = Path(config.resolve(settings.model))
    trained = settings.retrain or not model_path.exists()
    full = previous is None or trained or settings.full_relink
    mlflow.log_params(
        {
            "threshold": settings.threshold,
            "trained": trained,
            "full_relink": full,
            "training_profiles": settings.training_profiles,
            "u_max_pairs": settings.u_max_pairs,
            "seed": settings.seed,
        }
    )
    if trained:
        with _timed(timings, "train"):
            plan = linkage_model.TrainingPlan(settings.training_profiles, settings.u_max_pairs, settings.seed)
            linker, model = linkage_model.train(spark, profile, plan)
            linkage_model.save_model(model, model_path)
        _log_model(linker, model)
    model = linkage_model.load_model(model_path)
    linker = linkage_model.linker_for(spark, profile, model)

    with _timed(timings, "blocking_analysis"):
        comparisons = _comparisons(linker, profile) if full else {}
    for rule, n in comparisons.items():
        log.info("link: blocking rule %s: %d comparisons", rule, n)
    materialise = _materialiser(spark, staging)
    with _timed(timings, "predict_and_cluster"):
        if full:
            linked = link_all(linker, profile, settings.threshold, materialise)
        else:
            linked = link_new(linker, profile, previous, settings.threshold, materialise)
        scored, edges = linked.scored, linked.edges
        clusters = stage(spark, linked.clusters, staging / "clusters")
    with _timed(timings, "assign"):
        assigned, history = assign(clusters, previous, ctx.run_id, materialise)
        check_unique(assigned)
        history = stage(spark, history, staging / "history")

    with _timed(timings, "write"):
        ctx.rows_in, reference_date, sources = _records_date_and_sources(catalog)
        # The profiles, their strongest edges and the earlier state, each joined once (3.7m rows at 1m people),
        # with what gold.person and the quality measures count of each profile: staged, linkage_profiles is
        # written from it and they read it eight times.
        state = profile_link_details(
            assigned.join(profile.select("profile_id", "sources", *PROFILE_VALUES), "profile_id"), edges
        )
        linked_profiles = materialise(
            with_earlier_state(state, earlier, ctx.run_id, refresh=not full).withColumn(
                "record_count", F.col("record_count").cast("long")
            ),
            "linked_profiles",
        )
        catalog.overwrite(LINKAGE_PROFILES.name, linked_profiles.select(*LINKAGE_PROFILES.schema.fieldNames()))
        linked = linked_profiles.select("profile_id", "person_id", "match_probability", "link_method",
                                        "linkage_run_id")  # fmt: skip
        if full or changed is None:
            catalog.overwrite(PERSON_LINK.name, records.select(*RECORD_COLUMNS).join(linked, "profile_id"))
        else:
            _links_changed_in_place(catalog, ctx.run_id, changed, linked)
        links = catalog.read(PERSON_LINK.name)
        catalog.append(
            PERSON_ID_HISTORY.name,
            history.select(F.lit(ctx.run_id).alias("linkage_run_id"), "*", F.current_timestamp().alias("recorded_at")),
        )
    with _timed(timings, "person"):
        catalog.overwrite(PERSON.name, _person(catalog, linked_profiles, links, reference_date, sources))
    with _timed(timings, "quality"):
        linked_records = links.count()
        counted = linked_profiles.select("profile_id", "person_id", "link_method", "records_by_source")
        measures = quality(ctx.run_id, scored, edges, counted, history, comparisons)
        catalog.append(LINKAGE_QUALITY.name, measures)
        totals = _log_quality(catalog.read(LINKAGE_QUALITY.name).where(F.col("linkage_run_id") == ctx.run_id), timings)
    ctx.rows_out = int(totals["identity_records"])
    if not ctx.rows_in == linked_records == ctx.rows_out:
        raise RuntimeError(f"link: {ctx.rows_in} identity records in, {linked_records} in silver.person_link, "
                           f"{ctx.rows_out} counted by the profiles: a defect")  # fmt: skip
    log.info("link: %d records -> %d persons (%s)", ctx.rows_out, int(totals["persons"]),
             ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))  # fmt: skip


def _links_changed_in_place(catalog, run_id: str, changed: tuple[DataFrame, DataFrame], linked: DataFrame) -> None:
    """A refresh's person_link: the records removed deleted, the records of the profiles this run linked anew
    updated in place (Delta marks the rows it replaces in deletion vectors) and the records added appended,
    instead of rewriting every record (36.2m at 1m people, most of them unchanged).

    linked: this run's (profile_id, person_id, match_probability, link_method, linkage_run_id) of every
    profile. A record re-delivered under the same key is in both changes: deleted, then added."""
    inserted, deleted = changed
    if deleted.limit(1).count():
        catalog.delete_matching(PERSON_LINK.name, deleted)
    # Profiles first seen in this run are among them: they have no row yet, so match none.
    relinked = linked.where(F.col("linkage_run_id") == run_id)
    catalog.update_matching(PERSON_LINK.name, relinked, on="profile_id", broadcast=True)
    catalog.append(PERSON_LINK.name, inserted.select(*RECORD_COLUMNS).join(linked, "profile_id"))


def _profiled(ctx: JobContext, profile: DataFrame, nothing_new: bool, staging: Path) -> DataFrame:
    """The profiles of every record now, which every later step reads. With something to link they are
    vault.identity_profiles' new version (the next run's state), written here and read back, rather than
    staged and the staged rows written again at the end (3.7m profiles at 1m people): the job's outputs are put
    back together if it fails. With nothing new, nothing is written: they are staged."""
    if nothing_new:
        return stage(ctx.spark, profile, staging / "profiles")
    ctx.catalog.overwrite(IDENTITY_PROFILES.name, profile)
    return ctx.catalog.read(IDENTITY_PROFILES.name)


def _materialiser(spark: SparkSession, staging: Path) -> Materialise:
    """The library's frames that later steps read more than once, staged in this run's folder."""
    return lambda df, name: stage(spark, df, staging / name)


def _comparisons(linker, profile: DataFrame) -> dict[str, int]:
    """Comparisons each prediction rule adds (exact counts, before predicting) on a full run.

    A refresh scores only the new profiles, so it reports the comparisons it
    scored (the quality table's scored_comparisons) rather than recounting
    every block of the population.
    """
    api = linker._db_api  # the linker's registered backend (Splink has no public accessor)
    counted = count_comparisons_from_blocking_rules(
        api.register(linkage_model.comparable(profile)),
        blocking_rules=list(linkage_model.PREDICTION_BLOCKING_RULES),
        link_type="dedupe_only",
        unique_id_column_name=linkage_model.UNIQUE_ID,
        record_sample_proportion=1.0,
    )
    return {c["blocking_rule"]: int(c["marginal_comparison_count"]) for c in counted}


def read_nicknames(spark: SparkSession, path: str) -> DataFrame:
    """The nickname list (formal,nickname), upper case like the standardised names."""
    table = spark.read.csv(path, header=True)
    if sorted(table.columns) != ["formal", "nickname"]:
        raise SchemaMismatchError(f"{path}: expected the columns formal,nickname; found {','.join(table.columns)}")
    return table.select(F.upper(F.trim("formal")).alias("formal"), F.upper(F.trim("nickname")).alias("nickname"))


def _nothing_new(catalog, records: DataFrame) -> bool:
    """The last run linked exactly these records with these identifiers."""
    if not catalog.exists(PERSON_LINK.name):
        return False
    return _same_records(records, catalog.read(PERSON_LINK.name))


def _changed_records(ctx: JobContext, since: int | None, staging: Path) -> tuple[DataFrame, DataFrame] | None:
    """The linkage records vault.identity gained and lost since `since`, the version the last successful link
    run read (staged), or None when they cannot be known: no earlier run or profile state, change data not
    recorded throughout (a vault from before the feed was on), or a key rotation in between (its records come
    back under new pseudonyms)."""
    catalog = ctx.catalog
    if not all(catalog.exists(name) for name in (IDENTITY_PROFILES.name, PERSON_LINK.name)):
        return None
    changes = catalog.changes(IDENTITY.name, since) if since is not None else None
    if changes is None:
        return None
    try:
        changed = stage(ctx.spark, linkage_records(changes, keep=("key_id", "_change_type")), staging / "changes")
    except (PySparkException, Py4JJavaError) as unreadable:  # e.g. removed files vacuumed after a key rotation
        log.warning("link: the records changed since the last run cannot be read (%s); profiling every record",
                    str(unreadable).splitlines()[0][:300])  # fmt: skip
        return None
    if changed.select("key_id").distinct().limit(2).count() > 1:
        log.info("link: the pseudonymisation key changed since the last run; profiling every record")
        return None
    return tuple(changed.where(F.col("_change_type") == kind).drop("key_id", "_change_type")
                 for kind in ("insert", "delete"))  # fmt: skip


def _last_read(ctx: JobContext) -> dict[str, int]:
    """The table versions the last successful link run read (none before the first)."""
    last = ctx.last_success
    return dict(last.input_versions or {}) if last is not None else {}


def _person_sources_changed(ctx: JobContext, last_read: dict[str, int]) -> bool:
    """gold.person is missing, or a table it takes values from has changed since the last run read it."""
    if not ctx.catalog.exists(PERSON.name):
        return True
    return not all(ctx.catalog.data_unchanged(name, last_read.get(name)) for name in PERSON_SOURCES)


def _same_records(one: DataFrame, other: DataFrame) -> bool:
    """The same records with the same identifiers (source, record_id, profile_id), as many times each."""
    now, before = (df.select("source", "record_id", "profile_id") for df in (one, other))
    return not now.exceptAll(before).limit(1).count() and not before.exceptAll(now).limit(1).count()


def _records_after(catalog, inserted: DataFrame, deleted: DataFrame) -> DataFrame:
    """(source, period, record_id, profile_id) of every record now: the last run's less those removed, with
    those added."""
    linked = catalog.read(PERSON_LINK.name).select(*RECORD_COLUMNS)
    return linked.join(deleted.select("source", "record_id"), ["source", "record_id"], "left_anti").unionByName(
        inserted.select(*RECORD_COLUMNS)
    )


def _linked_profiles(state: DataFrame, profile: DataFrame, materialise: Materialise) -> DataFrame:
    """Each profile's person and link (the linkage state, silver.linkage_profiles) with what gold.person
    counts of it; staged: gold.person reads it three times."""
    return materialise(
        state.select("profile_id", "person_id", "record_count", "sources", "link_method").join(
            profile.select("profile_id", *(c for c in PROFILE_VALUES if c != "record_count")), "profile_id"
        ),
        "linked_profiles",
    )


def _person(
    catalog, linked_profiles: DataFrame, links: DataFrame, reference_date: str, sources: list[str]
) -> DataFrame:
    """gold.person from the linked profiles (_linked_profiles), person_link and the silver tables it takes
    values from; sources: vault.identity's (_records_date_and_sources)."""

    def silver(name: str) -> DataFrame:
        if not catalog.exists(name):
            raise UserError(f"link: {name} does not exist; gold.person needs it (deliver and ingest that source)")
        return catalog.read(name)

    return person_index(linked_profiles, links, *map(silver, PERSON_SOURCES), reference_date, sources)


def _records_date_and_sources(catalog) -> tuple[int, str, list[str]]:
    """How many identity records vault.identity holds, the last day of the latest monthly period loaded
    (gold.person's reference date) and the sources it holds records of (those a profile may list), from its
    Delta log: the row count from the files' statistics, the periods and sources from its partitions (a scan
    of the records took 6 s at 1m people)."""
    records = catalog.read(IDENTITY.name).count()  # Delta answers a bare count from the log
    partitions = [json.loads(partition) for partition, _ in catalog.files(IDENTITY.name)]
    periods = {p.get("period") or "" for p in partitions}
    sources = sorted({p["source"] for p in partitions if p.get("source")})
    monthly = sorted(p for p in periods if re.fullmatch(r"\d{4}-\d{2}", p))
    if not monthly:
        raise UserError("link: vault.identity holds no monthly period (yyyy-MM); nothing to date gold.person by")
    latest = date.fromisoformat(f"{monthly[-1]}-01")
    return records, str(latest.replace(day=calendar.monthrange(latest.year, latest.month)[1])), sources


def _log_model(linker, model: dict) -> None:
    """The trained model (settings and m/u values only) and its charts, self-contained HTML."""
    mlflow.log_text(json.dumps(model, indent=2, sort_keys=True), "model/linkage_model.json")
    charts = {
        "match_weights": linker.visualisations.match_weights_chart(),
        "m_u_parameters": linker.visualisations.m_u_parameters_chart(),
    }
    for name, chart in charts.items():
        mlflow.log_text(chart.to_html(inline=True), f"charts/{name}.html")
    mlflow.log_metric("probability_two_random_records_match", model["probability_two_random_records_match"])


def _log_quality(measures: DataFrame, timings: dict[str, float]) -> dict[str, float]:
    """Log the run's quality measures (a few hundred rows) to MLflow; return its totals (group "all")."""
    rows = measures.collect()
    metrics = {f"seconds_{k}": v for k, v in timings.items()}
    for r in rows:
        if r.measure in ("match_weight", "cluster_profiles"):
            continue  # distributions: logged as a table below
        metrics[_metric_name(f"{r.measure}.{r.group_value}")] = r.value
    mlflow.log_metrics(metrics)
    mlflow.log_table(
        {"measure": [r.measure for r in rows], "group_value": [r.group_value for r in rows],
         "value": [r.value for r in rows]},
        "quality/linkage_quality.json",
    )  # fmt: skip
    return {r.measure: r.value for r in rows if r.group_value == "all"}


def _metric_name(text: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space only (blocking rules hold SQL)."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)[:250]


@contextmanager
def _timed(into: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    into[name] = time.monotonic() - started


if __name__ == "__main__":
    main_for(SPEC.name)
