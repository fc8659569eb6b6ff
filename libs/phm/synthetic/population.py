"""People of the synthetic ICS: demographics, identity, latent health, true conditions, life events.

Definitions (calibration.yaml, sources in FACTS.md):
- Age and sex from Census 2021 bands; ethnicity from Census 2021, more
  diverse in deprived LSOAs (an odds ratio between decile 1 and 10).
- True condition c for a person of age band a in IMD decile d with latent
  health z: logit P = intercept[c, a, d] + L z. The intercept makes the
  cell's mean over z equal base_c * age_rr[c][a] * qof_ratio[c][d] /
  (1 - undiagnosed_c), where base_c makes the *recorded* prevalence over the
  Census age structure equal QOF 2019/20's England prevalence and qof_ratio
  is QOF's decile prevalence over England's. A share `undiagnosed_c` of true
  cases is uncoded at the reference date (case finding's target): never
  diagnosed, or diagnosed after it (a diagnosis comes on average 180 days
  after onset, so the never-diagnosed share is lowered to match); where the calibration gives
  it by age band and sex (hypertension: ONS, HSE 2015-19, most undiagnosed
  in young men) each person's share is their band's and sex's, and the
  intercept divides by the band's share averaged over the sexes. The shared
  z makes conditions cluster (multimorbidity) without changing prevalence.
  These targets hold for the living at the reference date: the prevalence
  drawn is the target over the cases' relative survival over the window
  (people with more conditions die more often; a fixed-seed pilot measures it).
- Life events over the history window: moves, surname changes (women
  18-45), twins (shared surname, date of birth and address), new
  registrations, deaths by age-specific mortality, raised 20% per condition
  relative to people of the same age. Age bands are drawn so that the
  people alive at the reference date have the Census structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import types as T

from phm.identifiers import valid_numbers_for_prefix
from phm.reference.qof import pooled_prevalence, register_by_decile
from phm.synthetic.calibration import AGE_BAND_COUNT, Calibration, ConditionCalibration, PopulationCalibration
from phm.synthetic.dates import for_spark
from phm.synthetic.geography import UNITS_PER_LSOA, Geography, postcodes
from phm.synthetic.names import NamePool, name_pools

PEOPLE_STREAM = 1
ETHNIC_GROUPS = ("white", "asian", "black", "mixed", "other")
DAY = np.timedelta64(1, "D")
DIAGNOSIS_DELAY_DAYS = 180  # mean time from onset to a coded diagnosis (approx.)
MORTALITY_LOG_RR_PER_CONDITION = 0.2  # each true condition raises mortality 20% (approx.), relative to the band
SURVIVAL_PILOT_DRAWS = 10_000  # simulated people per age band x decile when correcting prevalence for deaths
SURVIVAL_PILOT_ITERATIONS = 2


@dataclass(frozen=True)
class PopulationPlan:
    """Everything a block task needs, small enough to ship to executors."""

    seed: int
    population: int
    block_size: int
    history_start: date
    reference_date: date
    calibration: Calibration
    geography: Geography
    condition_names: tuple[str, ...]
    condition_logits: np.ndarray  # condition x age band x IMD decile: see condition_logits()
    adopting_practices: frozenset[str] = frozenset()  # practices that ran the historical programme

    @property
    def blocks(self) -> int:
        return -(-self.population // self.block_size)

    @property
    def history_years(self) -> float:
        return (self.reference_date - self.history_start).days / 365.25


def condition_columns(names: tuple[str, ...]) -> list[str]:
    return [f"{prefix}_{name}" for name in names for prefix in ("onset", "diagnosed")]


def people_schema(condition_names: tuple[str, ...]) -> T.StructType:
    fields = [
        T.StructField("true_person_id", T.StringType(), False),
        T.StructField("person_index", T.LongType(), False),
        T.StructField("block", T.LongType(), False),
        T.StructField("sex", T.StringType(), False),
        T.StructField("date_of_birth", T.DateType(), False),
        T.StructField("age_band", T.IntegerType(), False),
        T.StructField("ethnicity", T.StringType(), False),
        T.StructField("nhs_number", T.StringType(), False),
        T.StructField("forename", T.StringType(), False),
        T.StructField("surname", T.StringType(), False),
        T.StructField("lsoa_code", T.StringType(), False),
        T.StructField("imd_decile", T.IntegerType(), False),
        T.StructField("postcode", T.StringType(), False),
        T.StructField("practice_code", T.StringType(), False),
        T.StructField("registered_on", T.DateType(), False),
        T.StructField("twin_of", T.StringType(), True),
        T.StructField("moved_on", T.DateType(), True),
        T.StructField("new_lsoa_code", T.StringType(), True),
        T.StructField("new_postcode", T.StringType(), True),
        T.StructField("surname_changed_on", T.DateType(), True),
        T.StructField("new_surname", T.StringType(), True),
        T.StructField("death_date", T.DateType(), True),
        T.StructField("latent_health", T.DoubleType(), False),
        T.StructField("condition_count", T.IntegerType(), False),
    ]
    fields += [T.StructField(c, T.DateType(), True) for c in condition_columns(condition_names)]
    return T.StructType(fields)


def condition_logits(
    calibration: Calibration, qof: pd.DataFrame, history_years: float
) -> tuple[tuple[str, ...], np.ndarray]:
    """Per condition x age band x decile, the log-odds intercept of a true condition given z = 0.

    The cell's target true prevalence is base * age_rr * decile ratio / (1 - undiagnosed), where base
    makes the recorded prevalence over the Census age structure equal QOF's England prevalence. The
    intercept is shifted so that averaging over z ~ N(0, 1) with the latent loading gives exactly that
    target (Gauss-Hermite quadrature), so clustering never changes prevalence. The target describes
    the living at the reference date: people with more conditions die more often during the history
    window, so each cell's prevalence before deaths is the target over the cases' relative survival
    (see `_relative_survival_of_cases`).
    """
    band_shares = np.array([b.share for b in calibration.population.age_bands])
    names = tuple(calibration.health.conditions)
    targets = np.zeros((len(names), len(band_shares), 10))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    loading = calibration.health.latent_loading
    for i, name in enumerate(names):
        spec = calibration.health.conditions[name]
        rows = register_by_decile(qof, spec.qof)
        if rows.empty:
            raise ValueError(f"calibration: condition {name} names QOF register {spec.qof}, absent from the QOF file")
        england = pooled_prevalence(rows)
        ratio = np.ones(10)
        ratio[rows["imd_decile"].to_numpy() - 1] = rows["prevalence"].to_numpy() / england
        base = england / float(np.dot(band_shares, spec.age_rr))
        undiagnosed = band_undiagnosed(spec, calibration.population)
        targets[i] = np.clip(base * np.outer(spec.age_rr, ratio) / (1 - undiagnosed)[:, None], 0, 0.95)
    before_deaths = targets
    logits = _intercepts_for(before_deaths, loading * nodes, weights)
    for _ in range(SURVIVAL_PILOT_ITERATIONS if history_years > 0 else 0):
        survival = _relative_survival_of_cases(logits, calibration, history_years)
        before_deaths = np.clip(targets / survival, 0, 0.95)
        logits = _intercepts_for(before_deaths, loading * nodes, weights)
    return names, logits


def _relative_survival_of_cases(logits: np.ndarray, calibration: Calibration, history_years: float) -> np.ndarray:
    """Per condition x age band x decile, the survival over the window of true cases over everyone's.

    A pilot of SURVIVAL_PILOT_DRAWS people per cell drawn as generate_block draws them (latent z, one
    Bernoulli per condition, mortality raised per condition relative to the band's mean count). A case's
    survival is taken with its own condition as a probability rather than a draw (the mean over the
    pilot of P(c | z) times the survival with the other conditions drawn plus c), so rare conditions
    carry no sampling noise of their own. Fixed seed: the logits depend only on the calibration.
    """
    rng = np.random.default_rng(0)
    z = rng.standard_normal((*logits.shape[1:], SURVIVAL_PILOT_DRAWS))
    with np.errstate(over="ignore"):
        chance = 1 / (1 + np.exp(-(logits[..., None] + calibration.health.latent_loading * z)))
    has = rng.random(chance.shape) < chance
    count = has.sum(0)
    band_mean = count.mean(axis=(1, 2), keepdims=True)
    yearly = np.asarray(calibration.activity.mortality_per_1000_by_age)[:, None, None] / 1000

    def survival(conditions: np.ndarray) -> np.ndarray:
        return np.exp(-condition_mortality(yearly, conditions, band_mean) * history_years)

    everyone = survival(count).mean(-1)
    cases = chance.mean(-1)
    cases_survival = (chance * survival(count - has + 1)).mean(-1) / np.maximum(cases, 1e-300)
    return np.where(cases > 0, cases_survival / everyone, 1.0)


def condition_mortality(yearly: np.ndarray, count: np.ndarray, band_mean: np.ndarray) -> np.ndarray:
    """Yearly mortality raised per true condition relative to the band's mean count (the band keeps its rate);
    shared by generate_block and the survival pilot so the pilot corrects for the deaths actually drawn."""
    return yearly * np.exp(MORTALITY_LOG_RR_PER_CONDITION * (count - band_mean))


def band_undiagnosed(spec: ConditionCalibration, population: PopulationCalibration) -> np.ndarray:
    """The share of true cases undiagnosed per age band, over both sexes (by the Census female share)."""
    if spec.undiagnosed_by_age_sex is None:
        return np.full(AGE_BAND_COUNT, spec.undiagnosed)
    female = np.full(AGE_BAND_COUNT, population.female_share)
    female[-1] = population.female_share_85_plus
    by = spec.undiagnosed_by_age_sex
    return female * np.asarray(by.female) + (1 - female) * np.asarray(by.male)


def person_undiagnosed(spec: ConditionCalibration, band: np.ndarray, female: np.ndarray) -> np.ndarray | float:
    """The chance that a true case stays undiagnosed, per person (by age band and sex where configured)."""
    if spec.undiagnosed_by_age_sex is None:
        return spec.undiagnosed
    by = spec.undiagnosed_by_age_sex
    return np.where(female, np.asarray(by.female)[band], np.asarray(by.male)[band])


def _intercepts_for(target: np.ndarray, shifts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Solve E_z[sigmoid(a + shift)] = target for a, cell by cell (Newton steps from logit(target))."""
    positive = target > 0
    safe = np.where(positive, target, 0.5)
    a = np.log(safe / (1 - safe))
    for _ in range(30):
        p = 1 / (1 + np.exp(-(a[..., None] + shifts)))
        mean = (p * weights).sum(-1)
        slope = (p * (1 - p) * weights).sum(-1)
        a = a - (mean - safe) / np.maximum(slope, 1e-12)
    return np.where(positive, a, -np.inf)


def generate_block(block: int, plan: PopulationPlan) -> pd.DataFrame:
    """The people of one block, deterministic in (seed, block)."""
    cal = plan.calibration
    rng = np.random.default_rng([plan.seed, block, PEOPLE_STREAM])
    start = block * plan.block_size
    n = min(plan.block_size, plan.population - start)
    index = np.arange(start, start + n, dtype=np.int64)
    ref = np.datetime64(plan.reference_date, "D")
    hist_start = np.datetime64(plan.history_start, "D")
    window_days = int((ref - hist_start) / DAY)

    # Where people live: LSOA -> decile, PCN; practice mostly in the home PCN.
    lsoas = plan.geography.lsoas
    lsoa_idx = rng.integers(0, len(lsoas), n)
    decile = lsoas["imd_decile"].to_numpy()[lsoa_idx]
    practice_idx = _practice_for(lsoas["pcn_code"].to_numpy()[lsoa_idx], plan.geography, rng)
    unit = rng.integers(0, UNITS_PER_LSOA, n)
    postcode = postcodes(
        lsoas["postcode_district"].to_numpy()[lsoa_idx], lsoas["postcode_sector"].to_numpy()[lsoa_idx], unit
    )

    # Age, sex, date of birth.
    # Census shares describe the living at the reference date; people who die in the window come on
    # top, so each band is drawn in proportion to share / survival over the window.
    bands = cal.population.age_bands
    yearly_mortality = np.asarray(cal.activity.mortality_per_1000_by_age) / 1000
    drawn = np.array([b.share for b in bands]) / np.exp(-yearly_mortality * plan.history_years)
    band = rng.choice(len(bands), n, p=drawn / drawn.sum())
    low = np.array([b.low for b in bands])[band]
    high = np.array([b.high for b in bands])[band]
    age_days = ((low + rng.random(n) * (high - low + 1)) * 365.25).astype(np.int64)
    dob = ref - age_days * DAY
    female_p = np.where(band == len(bands) - 1, cal.population.female_share_85_plus, cal.population.female_share)
    female = rng.random(n) < female_p

    ethnicity = _ethnicity(decile, cal, rng)
    forename, surname = _names(ethnicity, female, rng)

    # Twins: the next person becomes the twin of a chosen one (same surname, DOB, address, practice).
    twin_of = np.full(n, None, dtype=object)
    firsts = np.flatnonzero(rng.random(n - 1) < cal.identifiers.twins_rate / 2) if n > 1 else np.array([], int)
    firsts = firsts[np.diff(np.concatenate([[-2], firsts])) > 1]  # no chains
    for arr in (surname, dob, age_days, lsoa_idx, decile, practice_idx, postcode, ethnicity, band):
        arr[firsts + 1] = arr[firsts]
    twin_of[firsts + 1] = _person_ids(index[firsts])

    # Latent health and true conditions.
    z = rng.standard_normal(n)
    loading = cal.health.latent_loading
    cond_cols: dict[str, np.ndarray] = {}
    count = np.zeros(n, dtype=np.int32)
    for i, name in enumerate(plan.condition_names):
        spec = cal.health.conditions[name]
        p = 1 / (1 + np.exp(-(plan.condition_logits[i, band, decile - 1] + loading * z)))
        has = rng.random(n) < p
        onset_age_days = (rng.random(n) ** 0.7 * age_days).astype(np.int64)  # recent onset more likely
        onset = dob + onset_age_days * DAY
        # Undiagnosed at the reference date = never diagnosed, or diagnosed only after it (a mean delay of
        # DIAGNOSIS_DELAY_DAYS): the never-diagnosed share is what brings the two to the configured share.
        pending = np.exp(-((ref - onset) / DAY) / DIAGNOSIS_DELAY_DAYS)
        undiagnosed = person_undiagnosed(spec, band, female)
        never = np.clip((undiagnosed - pending) / np.maximum(1 - pending, 1e-9), 0, 1)
        diagnosed = has & (rng.random(n) >= never)
        diag = onset + (rng.exponential(DIAGNOSIS_DELAY_DAYS, n).astype(np.int64)) * DAY
        diagnosed &= diag <= ref
        cond_cols[f"onset_{name}"] = np.where(has, onset, np.datetime64("NaT"))
        cond_cols[f"diagnosed_{name}"] = np.where(diagnosed, diag, np.datetime64("NaT"))
        count += has

    # Registration: most registered before the window; births and arrivals during it.
    years = plan.history_years
    arrived = rng.random(n) < 0.03 * years
    registered = np.maximum(dob, ref - rng.integers(window_days + 1, 40 * 365, n) * DAY)
    registered = np.where(arrived, hist_start + rng.integers(0, window_days, n) * DAY, registered)
    registered = np.maximum(registered, dob)

    # Moves and surname changes inside the window, after registration.
    def eventfor_spark(probability: np.ndarray | float) -> np.ndarray:
        happens = rng.random(n) < probability
        when = np.maximum(registered, hist_start) + rng.integers(1, window_days, n) * DAY
        return np.where(happens & (when < ref), when, np.datetime64("NaT"))

    moved_on = eventfor_spark(cal.geography.moves_per_year * years)
    new_lsoa_idx = rng.integers(0, len(lsoas), n)
    new_postcode = postcodes(
        lsoas["postcode_district"].to_numpy()[new_lsoa_idx],
        lsoas["postcode_sector"].to_numpy()[new_lsoa_idx],
        rng.integers(0, UNITS_PER_LSOA, n),
    )
    age_years = age_days / 365.25
    can_marry = female & (age_years >= 18) & (age_years <= 45)
    renamed_on = eventfor_spark(np.where(can_marry, cal.identifiers.surname_change_per_year_female_18_45 * years, 0))
    _, new_surname = _names(ethnicity, female, rng)

    # Deaths: age-specific mortality, raised 20% per condition (approx.).
    # Relative to people of the same age, so each band keeps its published mortality.
    band_mean = np.bincount(band, weights=count, minlength=len(bands)) / np.maximum(
        np.bincount(band, minlength=len(bands)), 1
    )
    yearly = condition_mortality(yearly_mortality[band], count, band_mean[band])
    died = rng.random(n) < 1 - np.exp(-yearly * years)
    death = hist_start + rng.integers(0, window_days, n) * DAY
    death = np.where(died & (death > registered), death, np.datetime64("NaT"))

    has_move = ~np.isnat(moved_on)
    has_rename = ~np.isnat(renamed_on)
    frame = pd.DataFrame(
        {
            "true_person_id": _person_ids(index),
            "person_index": index,
            "block": np.full(n, block, dtype=np.int64),
            "sex": np.where(female, "F", "M"),
            "date_of_birth": for_spark(dob),
            "age_band": band.astype(np.int32),
            "ethnicity": ethnicity,
            "nhs_number": _nhs_numbers(index, plan).astype(str),
            "forename": forename,
            "surname": surname,
            "lsoa_code": lsoas["lsoa_code"].to_numpy()[lsoa_idx],
            "imd_decile": decile.astype(np.int32),
            "postcode": postcode,
            "practice_code": plan.geography.practices["practice_code"].to_numpy()[practice_idx],
            "registered_on": for_spark(registered),
            "twin_of": twin_of,
            "moved_on": for_spark(moved_on),
            "new_lsoa_code": np.where(has_move, lsoas["lsoa_code"].to_numpy()[new_lsoa_idx], None),
            "new_postcode": np.where(has_move, new_postcode, None),
            "surname_changed_on": for_spark(renamed_on),
            "new_surname": np.where(has_rename, new_surname, None),
            "death_date": for_spark(death),
            "latent_health": z,
            "condition_count": count,
        }
    )
    for column, values in cond_cols.items():
        frame[column] = for_spark(values)
    return frame


def _person_ids(index: np.ndarray) -> np.ndarray:
    return np.char.add("T", np.char.zfill(index.astype(str), 9))


def _practice_for(pcn_codes: np.ndarray, geography: Geography, rng: np.random.Generator) -> np.ndarray:
    practice_pcn = geography.practices["pcn_code"].to_numpy()
    result = np.empty(len(pcn_codes), dtype=np.int64)
    anywhere = rng.random(len(pcn_codes)) < 0.05  # registered outside the home PCN
    for pcn in np.unique(pcn_codes):
        rows = np.flatnonzero(pcn_codes == pcn)
        options = np.flatnonzero(practice_pcn == pcn)
        result[rows] = rng.choice(options, len(rows))
    result[anywhere] = rng.integers(0, len(practice_pcn), anywhere.sum())
    return result


def _ethnicity(decile: np.ndarray, cal: Calibration, rng: np.random.Generator) -> np.ndarray:
    shares = cal.population.ethnicity_shares
    groups = [g for g in ETHNIC_GROUPS if g in shares]
    nonwhite = np.array([shares[g] for g in groups if g != "white"])
    odds_ratio = cal.population.ethnic_diversity_odds_ratio_most_vs_least_deprived
    # Log-odds of being non-White shift linearly from decile 10 to decile 1, centred on the overall share.
    overall = nonwhite.sum()
    shift = np.log(odds_ratio) * ((10 - decile) / 9 - 0.5)
    logit = np.log(overall / (1 - overall)) + shift
    p_nonwhite = 1 / (1 + np.exp(-logit))
    is_nonwhite = rng.random(len(decile)) < p_nonwhite
    which = rng.choice(len(nonwhite), len(decile), p=nonwhite / overall)
    labels = np.array([g for g in groups if g != "white"], dtype=object)[which]
    return np.where(is_nonwhite, labels, "white").astype(object)


def _zipf_choice(pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Names are heavy-tailed (a few are very common): weights 1/(rank + 5) over a fixed order."""
    weights = 1.0 / (np.arange(len(pool)) + 5.0)
    order = np.random.default_rng(len(pool)).permutation(len(pool))  # fixed per pool, so seeds agree
    return pool[order][rng.choice(len(pool), size, p=weights / weights.sum())]


def _names(ethnicity: np.ndarray, female: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pools: dict[str, NamePool] = name_pools()
    forename = np.empty(len(ethnicity), dtype=object)
    surname = np.empty(len(ethnicity), dtype=object)
    for group, pool in pools.items():
        for is_female, names in ((True, pool.female), (False, pool.male)):
            rows = np.flatnonzero((ethnicity == group) & (female == is_female))
            forename[rows] = _zipf_choice(names, len(rows), rng)
        rows = np.flatnonzero(ethnicity == group)
        surname[rows] = _zipf_choice(pool.surnames, len(rows), rng)
    return forename, surname


def nhs_number_capacity(prefixes: list[str]) -> int:
    return sum(len(valid_numbers_for_prefix(p)) for p in prefixes)


def _nhs_numbers(index: np.ndarray, plan: PopulationPlan) -> np.ndarray:
    """A distinct valid number per person: the index-th of a seeded shuffle of every valid number in the prefixes."""
    valid = np.concatenate([valid_numbers_for_prefix(p) for p in plan.calibration.identifiers.nhs_number_prefixes])
    order = np.random.default_rng([plan.seed, 0xAB]).permutation(len(valid))
    return valid[order[index]]
