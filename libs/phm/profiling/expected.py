"""Recorded against expected prevalence: the undiagnosed gap per area.

Expected recorded cases: indirect standardisation of each area to the whole system's recorded prevalence by
age band (ESP 2013 bands) and sex, the method of PHE / OHID's "observed vs expected" practice prevalence:
how many cases the area would have on its registers if it recorded like the system, given who lives there.
The ratio of recorded to expected (indirectly standardised ratio) has exact Poisson limits on the recorded
count (Garwood), so a ratio well under 1 marks an area that records less than its population predicts.
Expected true cases: the expected recorded cases raised by the share of true cases that national survey
estimates find undiagnosed (profiling.undiagnosed; e.g. hypertension 29% and diabetes 25% of adults,
Health Survey for England via PHE / OHID prevalence estimates, FACTS.md). The undiagnosed gap is the
expected true cases less those recorded. Conditions without a configured undiagnosed share get the ratio
only. Age and sex are the only strata: deprivation and ethnicity also drive prevalence, so an area's ratio
mixes under-recording with their differences from the system's mix (see mart.inequalities for those).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from phm.profiling.standardise import poisson_limits

SYSTEM = "system"


def expected_prevalence(
    counts: pd.DataFrame, conditions: Sequence[str], undiagnosed: Mapping[str, float]
) -> pd.DataFrame:
    """One row per tier x area x condition from phm.profiling.profiles.band_counts (the `sex` breakdown's rows
    give the age band x sex strata): people, recorded cases, expected recorded cases, their ratio with a 95%
    interval, and where an undiagnosed share is configured, the expected true cases and the undiagnosed gap."""
    strata = counts[counts["breakdown"] == "sex"]
    keys = ["group", "esp_band"]
    system = strata[strata["tier"] == SYSTEM].groupby(keys).sum(numeric_only=True)
    rows = []
    for (tier, area_code), cells in strata.groupby(["tier", "area_code"], sort=True):
        cells = cells.groupby(keys).sum(numeric_only=True)
        people = cells["people"].to_numpy(dtype=float)
        reference = system.reindex(cells.index)
        for name in conditions:
            column = f"cond:{name}"
            recorded = float(cells[column].sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = (reference[column] / reference["people"]).fillna(0.0).to_numpy()
            expected = float((people * rate).sum())
            low, high = poisson_limits(recorded)
            share = undiagnosed.get(name)
            expected_true = expected / (1 - share) if share is not None else np.nan
            ratio = recorded / expected if expected > 0 else np.nan
            rows.append(
                {
                    "tier": tier,
                    "area_code": area_code,
                    "condition": name,
                    "people": int(people.sum()),
                    "recorded": int(recorded),
                    "recorded_prevalence": 100 * recorded / people.sum(),
                    "expected_recorded": expected,
                    "ratio": ratio,
                    "ratio_ci_low": float(low) / expected if expected > 0 else np.nan,
                    "ratio_ci_high": float(high) / expected if expected > 0 else np.nan,
                    "undiagnosed_share": share if share is not None else np.nan,
                    "expected_cases": expected_true,
                    "expected_prevalence": 100 * expected_true / people.sum(),
                    "undiagnosed_gap": expected_true - recorded,
                }
            )
    return pd.DataFrame(rows)
