"""Layered, validated configuration.

A run's configuration is a YAML file that may name the file it `inherits`
(relative to itself), so `configs/local.yaml` inherits `configs/base.yaml`;
the chain is merged base first, then `--set key.path=value` overrides, then
validated into strict pydantic models (`extra="forbid"`). Any problem is a
`ConfigError` whose one-line message names the key, where it came from and
the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from phm.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_CONFIG = "configs/local.yaml"
CONFIG_ENV_VAR = "PHM_CONFIG"
INHERITS_KEY = "inherits"

MEMORY_PATTERN = r"^[1-9][0-9]*[kmgt]$"


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(StrictModel):
    """Where things live. Relative paths are under `root`; URIs (s3a://, abfss://, hdfs://) are used as given."""

    root: str = Field(".", description="Base of every relative path; relative to the working directory.")
    landing: str = "landing"
    truth: str = "truth"
    warehouse: str = "warehouse"
    reports: str = "reports"
    logs: str = "logs"
    checkpoints: str = ".phm/checkpoints"
    jars: str = ".phm/jars"


class SparkConfig(StrictModel):
    """The Spark session every job gets (see phm.runtime.spark)."""

    master: str = "local[*]"
    app_name: str = "phm"
    driver_memory: str = Field("8g", pattern=MEMORY_PATTERN)
    # What one action may bring back to the driver (spark.driver.maxResultSize; Spark's default is 1g).
    # train_risk collects gold.features' training rows for LightGBM: at 1m people 1.23 GB, which 1g refused.
    max_result_size: str = Field("4g", pattern=MEMORY_PATTERN)
    shuffle_partitions: int = Field(8, ge=1)
    # Delta reconstructs table state with this many tasks; its default of 50
    # costs seconds per read on a 2-core machine with small tables.
    delta_snapshot_partitions: int = Field(4, ge=1)
    adaptive_enabled: StrictBool = True
    # Spark compiles each query's expressions and whole stages to JVM bytecode (Janino), which pays off on real
    # row counts; on tiny tables compiling is most of a task's time, so the test config interprets instead
    # (with adaptive execution off: the test sample's stages 136 -> 114 s, identical outputs; docs/bench.md).
    codegen: StrictBool = True
    # Independent Spark jobs a stage submits at once from its own threads (ingest checks and writes its sources
    # so): one source's jobs run while another's driver plans, validates or commits. 3, as base.yaml: at 1m
    # people on 2 cores, with 1 the JVM kept 1.5 cores busy through a monthly increment (docs/bench.md).
    concurrent_jobs: int = Field(3, ge=1, le=32)
    # Options for the JVMs Spark starts (the driver in local mode, where it is the whole cluster; executors on a
    # cluster), after the ones phm sets. base.yaml's parallel collector, bench.yaml's JIT thresholds: see there.
    java_options: list[str] = Field(default_factory=list)
    ui_enabled: StrictBool = False
    console_progress: StrictBool = False
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    # local_jars: put the fetched jars on spark.jars (laptop, CI, standalone
    # clusters that share a filesystem); packages: hand the Maven coordinates
    # to spark.jars.packages and let each cluster resolve them.
    jar_delivery: Literal["local_jars", "packages"] = "local_jars"
    conf: dict[str, str] = Field(default_factory=dict, description="Extra spark.* settings, passed as given.")

    @field_validator("conf")
    @classmethod
    def _spark_keys_only(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"keys must start with 'spark.', got {', '.join(sorted(bad))}")
        return value


class JvmConfig(StrictModel):
    """Coordinates of the JVM jars (kept equal to jvm/pom.xml and the delta-spark pin)."""

    delta_version: str = "4.4.0"
    spark_binary_version: str = "4.2"
    scala_binary_version: str = "2.13"

    @property
    def delta_coordinates(self) -> list[str]:
        artifact = f"delta-spark_{self.spark_binary_version}_{self.scala_binary_version}"
        return [
            f"io.delta:{artifact}:{self.delta_version}",
            f"io.delta:delta-storage:{self.delta_version}",
        ]

    @property
    def delta_jar_names(self) -> list[str]:
        return [f"{c.split(':')[1]}-{c.split(':')[2]}.jar" for c in self.delta_coordinates]


class MlflowConfig(StrictModel):
    """MLflow tracking. A relative sqlite path is under paths.root; any other URI is used as given."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    experiment_prefix: str = "phm"


class ReferenceConfig(StrictModel):
    """Public reference data shipped with the code (paths under paths.root)."""

    qof_prevalence_csv: str = "configs/reference/qof_prevalence_by_imd_decile_2019_20.csv"


class SyntheticConfig(StrictModel):
    """The synthetic ICS (`phm run generate`): size, seed, window; figures in the calibration file."""

    seed: int = 20261122
    population: int = Field(20_000, ge=1_000, le=20_000_000)
    reference_date: date = date(2026, 3, 31)
    history_months: int = Field(36, ge=1, le=240)
    until: str | None = Field(
        None, pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="Last period to write (YYYY-MM)."
    )
    people_per_block: int = Field(5_000, ge=100, le=200_000)
    index_dates: list[date] = Field(default_factory=lambda: [date(2024, 3, 31), date(2025, 3, 31)])
    canaries: int = Field(5, ge=0, le=100)
    calibration: str = "configs/synthetic/calibration.yaml"
    # NHS number prefixes added to the calibration's (999, the test range: ~909k numbers) for larger
    # populations. Numbers outside 999 are not guaranteed never to have been issued: bench only.
    extra_nhs_number_prefixes: list[Annotated[str, StringConstraints(pattern=r"^9[0-9]{2}$")]] = Field(
        default_factory=list
    )


class IngestConfig(StrictModel):
    """`phm run ingest`: source contracts, the pseudonymisation key, validation outputs."""

    sources: str = Field("configs/sources", description="Folder of source contracts, one YAML per source.")
    key_env: str = Field("PHM_PSEUDONYM_KEY", description="Environment variable holding the key (hex).")
    key_file: str = Field("~/.config/phm/pseudonym.key", description="Key file used when key_env is unset.")
    # `phm rekey`: the key to rotate to (docs/trust.md "Key rotation"); afterwards point key_env / key_file at it.
    new_key_env: str | None = Field(None, description="Environment variable holding the key to rotate to (hex).")
    new_key_file: str | None = Field(None, description="Key file holding the key to rotate to.")
    data_docs: StrictBool = Field(True, description="Write Great Expectations Data Docs under reports/<run_id>/.")
    max_field_chars: int = Field(
        4096, ge=64, description="A line with a longer field is quarantined as malformed (a runaway quote, junk)."
    )


class LinkageConfig(StrictModel):
    """`phm run link`: the Splink model, when to retrain or relink everything, the match threshold."""

    model: str = Field("models/linkage/model.json", description="The trained model (JSON), reused by refreshes.")
    retrain: StrictBool = Field(False, description="Train a new model even if `model` exists (then relink all).")
    full_relink: StrictBool = Field(False, description="Score every profile again, not only the new ones.")
    threshold: float = Field(0.9, gt=0.0, lt=1.0, description="Match probability at which two profiles link.")
    training_profiles: int = Field(200_000, ge=100, description="Profiles sampled to train on (seeded).")
    u_max_pairs: float = Field(5e6, ge=1e4, description="Random pairs for u estimation.")
    seed: int = 20261123
    nicknames: str = Field("configs/linkage/nicknames.csv", description="formal,nickname pairs for forenames.")


class PersonModelConfig(StrictModel):
    """`phm run build_person_model` and `phm run segment`: where their definitions live."""

    codelists: str = Field("configs/codelists", description="conditions/*.yaml, flags/*.yaml, observations.yaml.")
    unit_costs: str = Field("configs/unit_costs.yaml", description="The cost of each contact in gold.events.")
    segmentation: str = Field("configs/segmentation.yaml", description="CMS, eFI, Bridges to Health, HIU.")


class RiskTiers(StrictModel):
    """Risk tiers by percentile of the scored population: high at or above `high`, emerging at or above
    `emerging`, low below."""

    high: float = Field(95.0, gt=0.0, lt=100.0)
    emerging: float = Field(80.0, gt=0.0, lt=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> RiskTiers:
        if self.emerging >= self.high:
            raise ValueError(f"emerging ({self.emerging}) must be below high ({self.high})")
        return self


# Models are retrained on a cadence, not at every monthly refresh (phm.models.registry.retraining_due).
RETRAIN_EVERY_MONTHS = 3
RETRAIN_DESCRIPTION = (
    "When only the data changed, keep the champions until the validation index date is this many months past "
    "the one they were measured at (0: retrain whenever the data change). A changed configuration always retrains."
)


class RiskConfig(StrictModel):
    """`phm run features`, `train_risk`, `score`: index dates, feature windows, model specs, tiers.

    Index dates: scoring is the day after the reference date; validation is the latest date at least
    `follow_up_months` earlier (its outcome is then fully observed) on a grid of `index_dates_every_months`
    from the earliest the history allows, so it moves a step at a time and a monthly refresh keeps the earlier
    dates' features as built (`keep_earlier_index_dates`; phm.features.index_dates); training dates step back
    by `follow_up_months` from there, as many as `training_index_dates` with at least `min_history_months` of
    data before them. Features use only data dated before an index date; the label is an emergency admission
    in the `follow_up_months` from it.
    """

    models: str = Field("models/risk", description="Model specs, one YAML per model.")
    follow_up_months: int = Field(12, ge=1, le=60)
    lookback_months: list[Annotated[int, Field(ge=1, le=120)]] = Field(default_factory=lambda: [3, 12, 24])
    training_index_dates: int = Field(1, ge=1, le=10)
    min_history_months: int = Field(12, ge=1, le=120)
    index_dates_every_months: int = Field(
        RETRAIN_EVERY_MONTHS, ge=1, le=24, description="How far the validation and training dates move at a time."
    )
    keep_earlier_index_dates: bool = Field(
        True,
        description="A refresh whose training and validation dates did not move keeps their rows of gold.features "
        "as built and builds the scoring date's only (false: every row built every run).",
    )
    retrain_every_months: int = Field(RETRAIN_EVERY_MONTHS, ge=0, le=120, description=RETRAIN_DESCRIPTION)
    tiers: RiskTiers = RiskTiers()
    seed: int = 20261124

    @model_validator(mode="after")
    def _windows(self) -> RiskConfig:
        if sorted(set(self.lookback_months)) != self.lookback_months:
            raise ValueError(f"lookback_months must be distinct and ascending, got {self.lookback_months}")
        return self


class Capacity(StrictModel):
    """How many people each PCN's care coordinators can take on: `per_pcn`, or a PCN's own figure in `pcn`."""

    per_pcn: int = Field(50, ge=0)
    pcn: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    def of(self, pcn_code: str | None) -> int:
        return self.pcn.get(pcn_code or "", self.per_pcn)


class ImpactabilityConfig(StrictModel):
    """`phm run train_impactability`, `evaluate_programme`, `target`: the historical programme and targeting.

    The programme's referrals are gold.events rows of `programme_source` (code: enrolled / declined). Its
    analysis emulates a trial at a baseline index date of gold.features: people `eligible` then at a practice
    that referred anyone, treated if enrolled in the follow-up after the baseline, each followed up for
    risk.follow_up_months from their referral (or a matched time zero). `exclusions` and `amenable` are Spark
    SQL conditions over the targeting columns (docs/impactability.md lists them).
    """

    models: str = Field("models/impactability", description="Uplift model specs, one YAML per model.")
    retrain_every_months: int = Field(RETRAIN_EVERY_MONTHS, ge=0, le=120, description=RETRAIN_DESCRIPTION)
    programme_source: str = "programme"
    eligible: str = Field("age >= 65 OR long_term_conditions >= 2", description="Who the programme was for.")
    exclusions: dict[str, str] = Field(
        default_factory=lambda: {
            "end_of_life": "array_contains(conditions, 'palliative_care')",
            "already_enrolled": "programme_status = 'enrolled'",
            "declined_within_a_year": "programme_status = 'declined' AND months_since_referral < 12",
        }
    )
    amenable: str = Field(
        "long_term_conditions >= 2 OR efi_category IN ('moderate', 'severe')",
        description="Whom the intervention can help (e.g. ACSC conditions, frailty).",
    )
    capacity: Capacity = Capacity()
    risk_model: str = Field("emergency_admission_gbm", description="The risk model whose champion scores risk.")
    assumed_relative_benefit: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="Only while no uplift model has a champion: target on risk alone and value each place at "
        "risk x this share of admissions avoided (an assumption, labelled as such in the outputs).",
    )
    preferred_uplift_model: str | None = Field(
        "uplift_proportional",
        description="The prespecified uplift model target uses while its spec has a champion, unless another "
        "champion's held-out Qini beats it by challenger_min_z SEs of the difference; none: the best Qini.",
    )
    challenger_min_z: float = Field(1.645, ge=0.0, description="One-sided 95% by default.")
    held_out_share: float = Field(0.3, gt=0.0, lt=1.0)
    bootstrap: int = Field(200, ge=20, le=2000, description="Resamples for the effect estimates' intervals.")
    caliper_sd: float = Field(0.2, gt=0.0, description="Matching caliper in SDs of the logit propensity.")
    did_leaves_out: list[str] = Field(
        default_factory=lambda: ["*_3m", "*_12m", "*_trend", "days_since_*"],
        description="Baseline features (shell-style patterns) the difference-in-differences' propensity does "
        "not balance: use of services over a window before baseline, the outcome's own history "
        "(phm.impactability.effects).",
    )
    seed: int = 20261125


class DisclosureConfig(StrictModel):
    """Disclosure control of published marts (phm.governance.disclosure): counts from 1 to `max_suppressed`
    suppressed, the rest rounded to the nearest `rounding_base`."""

    max_suppressed: int = Field(7, ge=0)
    rounding_base: int = Field(5, ge=1)


class ProfilingConfig(StrictModel):
    """`phm run profile`: population profiles by tier and group, and inequality gradients across IMD deciles."""

    system_code: str = Field("ICS", description="The area code of the whole system's rows.")
    simulations: int = Field(1000, ge=100, le=100000, description="Draws for the SII / RII intervals.")
    seed: int = 20261126
    disclosure: DisclosureConfig = DisclosureConfig()
    undiagnosed: dict[str, float] = Field(
        default_factory=dict,
        description="Condition -> the national share of true cases not diagnosed (expected prevalence).",
    )

    @field_validator("undiagnosed")
    @classmethod
    def _shares(cls, shares: dict[str, float]) -> dict[str, float]:
        wrong = {name: share for name, share in shares.items() if not 0 <= share < 1}
        if wrong:
            raise ValueError(f"undiagnosed shares must be in [0, 1): {wrong}")
        return shares


class CohortsConfig(StrictModel):
    """`phm run case_finding`: the case-finding cohorts, one YAML per cohort (phm.cohorts.case_finding)."""

    definitions: str = Field("configs/cohorts", description="Cohort definitions, one YAML per cohort.")
    lookback_months: int = Field(24, ge=1, le=120, description="How far back readings (bp, hba1c) reach.")


class ReidentificationConfig(StrictModel):
    """`phm reidentify`: who may re-identify which practices' case-finding lists, and where the identified
    lists go (phm.governance.reidentification)."""

    roles: str = Field("configs/roles.yaml", description="Roles with a duty of care: users, practices or PCNs.")
    output: str = Field("restricted", description="The only folder identified lists are written to (owner-only).")


class ActuarialConfig(StrictModel):
    """`phm run actuarial`: costs, concentration, segment transitions, projections, scenarios and a backtest."""

    step_months: int = Field(12, ge=1, le=24, description="Months between the segmentation dates (12: yearly).")
    min_history_months: int = Field(
        12, ge=1, le=120, description="History a segmentation date needs before it (its 12 months of activity)."
    )
    horizon_steps: int = Field(5, ge=1, le=20, description="How many steps ahead the projection reaches.")
    backtest_steps: int = Field(
        2, ge=1, le=10, description="How far back the backtest starts (fewer if the history is too short)."
    )
    simulations: int = Field(500, ge=50, le=20000, description="Monte Carlo draws of the projection.")
    interval: float = Field(0.95, gt=0.5, lt=1.0, description="Width of the projection intervals.")
    max_age: int = Field(100, ge=90, le=120, description="Ages at or above this are one open-ended age.")
    seed: int = 20261124
    scenarios: str = Field("configs/scenarios", description="Scenario definitions, one YAML per scenario.")


class MaintenanceConfig(StrictModel):
    """`phm run maintain`, the refresh's last stage: compacts the small files of tables written a little at a
    time and deletes the files no recent version needs (phm.runtime.maintenance; docs/maintenance.md)."""

    compact_min_files: int = Field(
        16, ge=2, description="Compact a table once this many of its small files can be joined (2+ in a partition)."
    )
    small_file_mb: float = Field(32, gt=0, description="Files below this size are small: compaction rewrites them.")
    target_file_mb: float = Field(128, gt=0, description="The size compaction writes files at (Delta OPTIMIZE).")
    vacuum_retention_hours: float | None = Field(
        720,
        ge=0,
        description="Delete files no version of this many hours needs (null: never). Time travel, restoring a "
        "failed run's outputs and reading change data work only within it; Delta refuses less than 168.",
    )
    vacuum_every_days: float = Field(7, ge=0, description="How often a refresh vacuums (listing: ~1 s a table).")
    listing_parallelism: int = Field(8, ge=1, description="Spark tasks a vacuum lists a table's folders with.")


class RefreshConfig(StrictModel):
    """What `phm refresh` runs: every registered stage (or only `stages`), less `exclude`, in dependency order."""

    stages: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    lock_wait_seconds: float = Field(
        0.0, ge=0, description="How long a run waits for another run writing the same warehouse (0: fail at once)."
    )


class PhmConfig(StrictModel):
    """The whole configuration of a run."""

    environment: str = "local"
    paths: PathsConfig = PathsConfig()
    spark: SparkConfig = SparkConfig()
    jvm: JvmConfig = JvmConfig()
    mlflow: MlflowConfig = MlflowConfig()
    reference: ReferenceConfig = ReferenceConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    ingest: IngestConfig = IngestConfig()
    linkage: LinkageConfig = LinkageConfig()
    person_model: PersonModelConfig = PersonModelConfig()
    risk: RiskConfig = RiskConfig()
    impactability: ImpactabilityConfig = ImpactabilityConfig()
    profiling: ProfilingConfig = ProfilingConfig()
    cohorts: CohortsConfig = CohortsConfig()
    actuarial: ActuarialConfig = ActuarialConfig()
    reidentification: ReidentificationConfig = ReidentificationConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    refresh: RefreshConfig = RefreshConfig()

    def resolve(self, path: str) -> str:
        """A configured path made absolute under paths.root; URIs are returned unchanged."""
        if "://" in path or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.paths.root, path))

    @property
    def pseudonym_key_file(self) -> str:
        """ingest.key_file with ~ expanded, relative paths under paths.root."""
        return self.resolve(os.path.expanduser(self.ingest.key_file))

    @property
    def tracking_uri(self) -> str:
        uri = self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + self.resolve(uri[len(prefix) :])
        return uri

    def definitions(self) -> dict[str, Any]:
        """The effective configuration less RUN_SETTINGS and the spark.conf keys of SPARK_TUNING_CONF: the
        settings that decide what a run computes, which the digest hashes."""
        dump = self.model_dump(mode="json", exclude=RUN_SETTINGS)
        dump["spark"]["conf"] = {k: v for k, v in dump["spark"]["conf"].items() if not is_spark_tuning(k)}
        return dump

    def digest(self) -> str:
        """A stable hash of the settings that decide what a run computes (`definitions`) and of the definition
        files they point at (contracts, code lists, costs, ...), recorded in the run ledger: equal digests mean
        the same definitions."""
        canonical = json.dumps(self.definitions(), sort_keys=True)
        digest = hashlib.sha256(canonical.encode())
        for key in REQUIRED_INPUT_PATHS:
            section, _, name = key.partition(".")
            root = Path(self.resolve(getattr(getattr(self, section), name)))
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            for path in files:
                if path.is_file():
                    digest.update(f"{path.relative_to(root.parent)}\0".encode() + path.read_bytes())
        return digest.hexdigest()[:16]


# Settings that say how and where a run works, not what it computes: the session's tuning and master, where
# its by-products go, which stages a refresh runs and the tables' upkeep. The configuration digest leaves them
# out, since a stage skips work, a training stage keeps its champions and a failed refresh resumes only under
# the digest it last ran with: with them in, more driver memory after a failure restarted the refresh from its
# first stage, and another master or partition count made every stage run again and both training stages retrain
# (333 s at 1m). java_options too: the session's time zone is pinned (phm.runtime.spark), so no JVM option moves a
# date.
# As pydantic's `exclude`: a section's settings left out, or True for the whole section.
RUN_SETTINGS: dict[str, Any] = {
    "paths": {"reports", "logs", "checkpoints", "jars"},
    "spark": set(SparkConfig.model_fields) - {"conf"},
    "maintenance": True,
    "refresh": True,
}
# spark.conf keys (exact, or every key under one ending in ".") that only tune: left out of the digest too.
# Any other key given there counts as a definition, as some change results (spark.sql.session.timeZone moves
# dates, spark.sql.ansi.enabled turns a bad cast from a null into a failure).
SPARK_TUNING_CONF = (
    "spark.executor.memory",
    "spark.executor.memoryOverhead",
    "spark.executor.cores",
    "spark.executor.instances",
    "spark.executor.extraJavaOptions",
    "spark.driver.memory",
    "spark.driver.memoryOverhead",
    "spark.driver.cores",
    "spark.driver.maxResultSize",
    "spark.driver.extraJavaOptions",
    "spark.cores.max",
    "spark.default.parallelism",
    "spark.memory.",
    "spark.dynamicAllocation.",
    "spark.sql.shuffle.partitions",
    "spark.sql.adaptive.",
    "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.broadcastTimeout",
    "spark.sql.files.maxPartitionBytes",
    "spark.sql.files.openCostInBytes",
    "spark.databricks.delta.snapshotPartitions",
    "spark.local.dir",
    "spark.eventLog.",
    "spark.ui.",
    "spark.network.timeout",
    "spark.locality.wait",
    "spark.speculation",
    "spark.task.maxFailures",
    "spark.serializer",
    "spark.kryoserializer.",
    "spark.shuffle.",
)


def is_spark_tuning(key: str) -> bool:
    """True if the spark.conf key only tunes (SPARK_TUNING_CONF): the digest leaves it out."""
    return any(key == entry or (entry.endswith(".") and key.startswith(entry)) for entry in SPARK_TUNING_CONF)


# Paths that must exist before any job starts: (dotted key, description).
REQUIRED_INPUT_PATHS = (
    "reference.qof_prevalence_csv",
    "synthetic.calibration",
    "ingest.sources",
    "linkage.nicknames",
    "person_model.codelists",
    "person_model.unit_costs",
    "person_model.segmentation",
    "risk.models",
    "impactability.models",
    "cohorts.definitions",
    "actuarial.scenarios",
)


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PhmConfig:
    """Load, merge and validate a configuration; raise ConfigError naming the key and the fix."""
    path = path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer_path in _inheritance_chain(Path(path)):
        _merge(merged, _read_yaml(layer_path), origin, str(layer_path), prefix="")
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(merged, key, value)
        origin[key] = f"--set {override}"
    paths = merged.setdefault("paths", {})
    if isinstance(paths, dict):
        paths["root"] = os.path.abspath(str(paths.get("root", ".")))
    try:
        config = PhmConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, path)) from None
    _check_input_paths(config, origin, path)
    return config


def load_definitions(path: str, model: type[ModelT]) -> ModelT:
    """One definitions file (code list, unit costs, ...) validated by `model`; ConfigError names file and key."""
    if not Path(path).is_file():
        raise ConfigError(f"config error: no file at {path}; restore it from the checkout or fix the configured path")
    try:
        return model.model_validate(_read_yaml(Path(path)))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"config error: {path}: {key}: {_sentence(first['msg'])}; fix the value") from None


def load_definitions_folder(folder: str, model: type[ModelT], what: str, setting: str) -> dict[str, tuple[ModelT, str]]:
    """Every *.yaml in `folder` validated by `model`: name -> (definition, path). Each file must declare the
    `name` it is called by; an empty folder is an error naming the `setting` that points at it."""
    found: dict[str, tuple[ModelT, str]] = {}
    paths = sorted(Path(folder).glob("*.yaml"))
    if not paths:
        raise ConfigError(f"config error: no {what} (*.yaml) in {folder}; point {setting} at them")
    for path in paths:
        definition = load_definitions(str(path), model)
        if definition.name != path.stem:
            raise ConfigError(
                f"config error: {path}: declares {definition.name!r}; name the file {definition.name}.yaml"
            )
        found[definition.name] = (definition, str(path))
    return found


def _inheritance_chain(path: Path) -> list[Path]:
    chain: list[Path] = []
    current: Path | None = path
    while current is not None:
        if not current.is_file():
            hint = f" (inherited by {chain[-1]})" if chain else ""
            raise ConfigError(
                f"config error: no config file at {current}{hint}; "
                f"pass --config with an existing file, e.g. {DEFAULT_CONFIG} from the checkout"
            )
        if current.resolve() in [c.resolve() for c in chain]:
            raise ConfigError(f"config error: {current}: '{INHERITS_KEY}' makes a cycle; remove it from one file")
        chain.append(current)
        parent = _read_yaml(current).get(INHERITS_KEY)
        current = (current.parent / parent) if parent else None
    return list(reversed(chain))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config error: {path}{where}: not valid YAML; fix the syntax there") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: the top level must be a mapping of keys to values")
    return data


def _merge(into: dict[str, Any], layer: dict[str, Any], origin: dict[str, str], source: str, prefix: str) -> None:
    for key, value in layer.items():
        if not prefix and key == INHERITS_KEY:
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and key != "conf":
            _merge(into[key], value, origin, source, prefix=f"{dotted}.")
        else:
            into[key] = value
            origin[dotted] = source
            if isinstance(value, dict):
                for sub in value:
                    origin[f"{dotted}.{sub}"] = source


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"config error: --set {override!r}: expected key.path=value, e.g. --set spark.shuffle_partitions=4"
        )
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key, value


FREE_FORM_SECTIONS = ("spark.conf.",)  # their keys contain dots and their values are strings


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for section in FREE_FORM_SECTIONS:
        if key.startswith(section) and len(key) > len(section):
            parts = [*section.rstrip(".").split("."), key[len(section) :]]
            value = str(value).lower() if isinstance(value, bool) else str(value)
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config error: --set {key}: '{part}' is a value, not a section")
        target = child
    target[parts[-1]] = value


def _describe(exc: ValidationError, origin: dict[str, str], path: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        source = _origin_of(key, origin, path)
        if error["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key (in {source}); {_valid_keys_hint(error['loc'][:-1])}")
        else:
            given = error.get("input")
            problems.append(f"{key}: {_sentence(error['msg'])}, got {given!r} (in {source}); fix the value")
    return "config error: " + "; ".join(problems)


def _sentence(message: str) -> str:
    """pydantic's message continuing our sentence: its first letter lowered, names in it left as written."""
    return message[:1].lower() + message[1:]


def _origin_of(key: str, origin: dict[str, str], path: str) -> str:
    """Where a key (or the nearest key above or below it) was set: a file or a --set."""
    below = [source for dotted, source in origin.items() if dotted.startswith(key + ".")]
    if key not in origin and below:
        return below[-1]
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return path


def _valid_keys_hint(location: tuple[Any, ...]) -> str:
    model: type[BaseModel] = PhmConfig
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "remove it"
        model = annotation
    where = ".".join(str(p) for p in location) or "the top level"
    return f"valid keys under {where}: {', '.join(sorted(model.model_fields))}"


def _check_input_paths(config: PhmConfig, origin: dict[str, str], path: str) -> None:
    for key in REQUIRED_INPUT_PATHS:
        section, _, name = key.partition(".")
        value = getattr(getattr(config, section), name)
        resolved = config.resolve(value)
        if "://" not in resolved and not os.path.exists(resolved):
            raise ConfigError(
                f"config error: {key}: no file at {resolved} (in {_origin_of(key, origin, path)}); "
                "point it at an existing file or restore it from the checkout"
            )
