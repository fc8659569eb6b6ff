"""The ICS's geography: places > PCNs > practices, and LSOAs with IMD 2019 deciles and postcodes.

Sizes follow FACTS.md: LSOAs of ~1,500 residents, practices of ~9,000,
PCNs of 30-50k, places of 250-500k. LSOAs and practices nest in PCNs so
that a person's practice is near where they live. Postcodes use the area
letters `Q?`, which no real UK postcode starts with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from phm.synthetic.calibration import GeographyCalibration

POSTCODE_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))  # inward-code letters (no C I K M O V)
UNITS_PER_LSOA = 40


@dataclass(frozen=True)
class Geography:
    """Small reference tables (thousands of rows at most), built on the driver."""

    lsoas: pd.DataFrame  # lsoa_code, imd_decile, pcn_code, place_code, postcode_district, sector
    practices: pd.DataFrame  # practice_code, practice_name, pcn_code, place_code
    pcns: pd.DataFrame  # pcn_code, pcn_name, place_code
    places: pd.DataFrame  # place_code, place_name


def build_geography(population: int, calibration: GeographyCalibration, seed: int) -> Geography:
    rng = np.random.default_rng([seed, 0xE0])
    n_lsoa = max(1, round(population / calibration.people_per_lsoa))
    n_practice = max(1, round(population / calibration.people_per_practice))
    n_pcn = max(1, min(n_practice, round(population / calibration.people_per_pcn)))
    n_place = max(1, min(n_pcn, round(population / calibration.people_per_place)))

    places = pd.DataFrame({"place_code": [f"PL{i + 1:02d}" for i in range(n_place)]})
    places["place_name"] = [f"Place {i + 1}" for i in range(n_place)]
    pcn_place = np.sort(np.arange(n_pcn) % n_place)
    pcns = pd.DataFrame(
        {
            "pcn_code": [f"U{i + 1:05d}" for i in range(n_pcn)],
            "pcn_name": [f"PCN {i + 1}" for i in range(n_pcn)],
            "place_code": places["place_code"].to_numpy()[pcn_place],
        }
    )
    practice_pcn = np.sort(np.arange(n_practice) % n_pcn)
    practices = pd.DataFrame(
        {
            "practice_code": [f"Q{i + 1:05d}" for i in range(n_practice)],
            "practice_name": [f"Practice {i + 1}" for i in range(n_practice)],
            "pcn_code": pcns["pcn_code"].to_numpy()[practice_pcn],
        }
    )
    practices["place_code"] = practices["pcn_code"].map(dict(zip(pcns["pcn_code"], pcns["place_code"], strict=True)))

    # Deciles in the ICS's configured shares, clustered: LSOAs next to each other in a PCN are alike.
    shares = np.asarray(calibration.imd_decile_shares)
    counts = np.floor(shares * n_lsoa).astype(int)
    counts[np.argsort(-shares)[: n_lsoa - counts.sum()]] += 1
    deciles = np.repeat(np.arange(1, 11), counts)  # sorted: neighbours alike
    mixed = rng.choice(n_lsoa, size=int(0.3 * n_lsoa), replace=False)
    deciles[mixed] = deciles[rng.permutation(mixed)]  # but not uniformly so
    deciles = deciles[_block_shuffle(n_lsoa, max(1, n_lsoa // n_pcn), rng)]
    lsoa_pcn = np.sort(np.arange(n_lsoa) % n_pcn)
    lsoas = pd.DataFrame(
        {
            "lsoa_code": [f"E0{9_900_000 + i:07d}" for i in range(n_lsoa)],
            "imd_decile": deciles,
            "pcn_code": pcns["pcn_code"].to_numpy()[lsoa_pcn],
        }
    )
    lsoas["place_code"] = lsoas["pcn_code"].map(dict(zip(pcns["pcn_code"], pcns["place_code"], strict=True)))
    lsoas["postcode_district"] = [f"{calibration.postcode_area_letters}{1 + i // 10}" for i in range(n_lsoa)]
    lsoas["postcode_sector"] = [i % 10 for i in range(n_lsoa)]
    return Geography(lsoas=lsoas, practices=practices, pcns=pcns, places=places)


# IMD 2019's seven domains (MHCLG, English Indices of Deprivation 2019) and how loosely each follows the
# overall decile in the synthetic ICS (SD of the decile noise, approx.: income and employment drive the
# index; barriers to housing and living environment often run against it).
IMD_DOMAIN_SPREAD = {
    "income": 0.6,
    "employment": 0.7,
    "education": 1.2,
    "health": 1.0,
    "crime": 1.8,
    "barriers": 2.5,
    "living_environment": 2.2,
}


def imd_domains(lsoas: pd.DataFrame, seed: int) -> pd.DataFrame:
    """lsoa_code plus one `<domain>_decile` column per IMD domain, correlated with the overall decile."""
    rng = np.random.default_rng([seed, 0xE1])
    out = lsoas[["lsoa_code"]].copy()
    overall = lsoas["imd_decile"].to_numpy()
    for domain, spread in IMD_DOMAIN_SPREAD.items():
        out[f"{domain}_decile"] = np.clip(np.rint(overall + rng.normal(0, spread, len(overall))), 1, 10).astype(int)
    return out


def postcode_directory(lsoas: pd.DataFrame) -> pd.DataFrame:
    """The synthetic ONS postcode directory: every unit postcode of every LSOA -> lsoa_code."""
    n = len(lsoas)
    rows = np.repeat(np.arange(n), UNITS_PER_LSOA)
    units = np.tile(np.arange(UNITS_PER_LSOA), n)
    codes = postcodes(lsoas["postcode_district"].to_numpy()[rows], lsoas["postcode_sector"].to_numpy()[rows], units)
    return pd.DataFrame({"postcode": codes, "lsoa_code": lsoas["lsoa_code"].to_numpy()[rows]}).drop_duplicates(
        "postcode"
    )


def postcodes(district: np.ndarray, sector: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Unit postcodes 'QA12 3XY': outward = district; inward = sector digit + two letters from the unit number."""
    first = POSTCODE_LETTERS[unit % len(POSTCODE_LETTERS)]
    second = POSTCODE_LETTERS[(unit // len(POSTCODE_LETTERS) + sector) % len(POSTCODE_LETTERS)]
    return np.char.add(
        np.char.add(np.char.add(district.astype(str), " "), sector.astype(str)), np.char.add(first, second)
    )


def _block_shuffle(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation that keeps runs of `block` neighbours together (areas cluster) but mixes the runs."""
    starts = np.arange(0, n, block)
    order = rng.permutation(len(starts))
    return np.concatenate([np.arange(starts[i], min(starts[i] + block, n)) for i in order])
