"""What-if scenarios for the projection, one YAML per scenario (configs/scenarios/*.yaml).

A scenario acts on a cohort of model cells (Bridges to Health segments and an age range), from a given step
of the projection, reaching `coverage` of the cohort:
- `emergency_admissions_change`: the relative change in the cohort's emergency admissions (-0.15: 15% fewer);
  its cost changes by the same share of the cohort's emergency admission cost (the rest of its cost is kept);
- `transitions`: relative changes in the chance of moving from a cohort cell into given segments each step
  (-0.1: a tenth fewer move on; the difference stays in the segment they are in).
The baseline (no scenario) is always projected; each scenario is compared with it draw by draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from phm.config import StrictModel, load_definitions_folder
from phm.errors import ConfigError
from phm.person.definitions import Name

BASELINE = "baseline"


class Cohort(StrictModel):
    segments: list[str] | None = Field(None, description="Bridges to Health segments (all when left out).")
    age_at_least: int | None = Field(None, ge=0)
    age_below: int | None = Field(None, ge=1)


class TransitionChange(StrictModel):
    to_segments: list[str] = Field(min_length=1, description="Moves into these segments change...")
    relative_change: float = Field(ge=-1.0, le=1.0, description="...by this share (-0.1: a tenth fewer).")


class Scenario(StrictModel):
    name: Name
    description: str
    source: str = Field(min_length=3, description="Where the assumed effect comes from.")
    cohort: Cohort = Cohort()
    start_step: int = Field(1, ge=1, description="The first projection step the change applies to.")
    coverage: float = Field(1.0, gt=0.0, le=1.0, description="The share of the cohort the programme reaches.")
    emergency_admissions_change: float | None = Field(None, ge=-1.0, le=1.0)
    transitions: list[TransitionChange] = Field(default_factory=list)

    def cohort_cells(self, segments: Sequence[str], max_age: int) -> np.ndarray:
        """Boolean [age, segment] mask of the model cells in the cohort."""
        ages = np.arange(max_age + 1)
        in_age = np.ones(len(ages), dtype=bool)
        if self.cohort.age_at_least is not None:
            in_age &= ages >= self.cohort.age_at_least
        if self.cohort.age_below is not None:
            in_age &= ages < self.cohort.age_below
        chosen = set(self.cohort.segments or segments)
        in_segment = np.array([s in chosen for s in segments])
        return in_age[:, None] & in_segment[None, :]


def check_segments(scenario: Scenario, segments: Sequence[str], path: str) -> None:
    named = set(scenario.cohort.segments or []) | {s for change in scenario.transitions for s in change.to_segments}
    unknown = sorted(named - set(segments))
    if unknown:
        raise ConfigError(
            f"config error: {path}: unknown segment(s) {', '.join(unknown)}; use the names in the segmentation "
            f"config: {', '.join(segments)}"
        )
    if scenario.emergency_admissions_change is None and not scenario.transitions:
        raise ConfigError(f"config error: {path}: declares no change; set emergency_admissions_change or transitions")


def load_scenarios(folder: str, segments: Sequence[str]) -> dict[str, Scenario]:
    found = load_definitions_folder(folder, Scenario, "scenarios", "actuarial.scenarios")
    if BASELINE in found:
        raise ConfigError(f"config error: {found[BASELINE][1]}: '{BASELINE}' is the projection without a scenario")
    for scenario, path in found.values():
        check_segments(scenario, segments, path)
    return {name: scenario for name, (scenario, _) in found.items()}
