"""configs/segmentation.yaml: the scores and segments of gold.segments, validated against the code lists."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from phm.config import StrictModel
from phm.errors import ConfigError
from phm.person.definitions import CodeList, IcdPrefix, Name, Snomed

EFI_CATEGORIES = ("fit", "mild", "moderate", "severe")


class HighIntensityUse(StrictModel):
    ae_attendances_12m: int = Field(ge=1)


class CmsWeight(StrictModel):
    weight: float = Field(gt=0)
    conditions: list[Name] = Field(min_length=1)
    first_recorded_within_years: int | None = Field(None, ge=1)


class CambridgeMultimorbidityScore(StrictModel):
    source: str
    weights: list[CmsWeight] = Field(min_length=1)


class Deficit(StrictModel):
    conditions: list[Name] = Field(default_factory=list)
    snomed: list[Snomed] = Field(default_factory=list)
    icd10: list[IcdPrefix] = Field(default_factory=list)
    social_care: list[Name] = Field(default_factory=list)
    unavailable: str | None = Field(None, description="Why the deficit cannot be measured from the sources.")

    @model_validator(mode="after")
    def _defined(self) -> Deficit:
        measured = self.conditions or self.snomed or self.icd10 or self.social_care
        if bool(measured) == bool(self.unavailable):
            raise ValueError("a deficit has conditions, codes or social care services, or says why it is unavailable")
        return self


class ElectronicFrailtyIndex(StrictModel):
    source: str
    min_age: int = Field(ge=0)
    categories: dict[Literal["fit", "mild", "moderate"], float]
    deficits: dict[Name, Deficit] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ElectronicFrailtyIndex:
        bounds = [self.categories.get(c) for c in EFI_CATEGORIES[:3]]
        if None in bounds or bounds != sorted(bounds):
            raise ValueError("categories need fit <= mild <= moderate upper bounds")
        return self


class Criteria(StrictModel):
    """All given criteria must hold (an empty set always holds)."""

    conditions: list[Name] = Field(default_factory=list)
    efi_category_at_least: Literal["mild", "moderate", "severe"] | None = None
    social_care: list[Name] = Field(default_factory=list)
    emergency_admissions_12m: int | None = Field(None, ge=1)
    ae_attendances_12m: int | None = Field(None, ge=1)
    age_below: int | None = Field(None, ge=0)
    age_at_least: int | None = Field(None, ge=0)
    long_term_conditions: int | None = Field(None, ge=1)


class Segment(StrictModel):
    name: Name
    label: str
    any: list[Criteria] = Field(min_length=1)


class BridgesToHealth(StrictModel):
    source: str
    segments: list[Segment] = Field(min_length=2)

    @model_validator(mode="after")
    def _last_catches_all(self) -> BridgesToHealth:
        if Criteria() not in self.segments[-1].any:
            raise ValueError("the last segment must catch everyone left (give it `any: [{}]`)")
        if len({s.name for s in self.segments}) != len(self.segments):
            raise ValueError("segment names must be unique")
        return self


class Segmentation(StrictModel):
    high_intensity_use: HighIntensityUse
    cambridge_multimorbidity_score: CambridgeMultimorbidityScore
    electronic_frailty_index: ElectronicFrailtyIndex
    bridges_to_health: BridgesToHealth

    def referenced_conditions(self) -> set[str]:
        named = {c for w in self.cambridge_multimorbidity_score.weights for c in w.conditions}
        named |= {c for d in self.electronic_frailty_index.deficits.values() for c in d.conditions}
        named |= {c for s in self.bridges_to_health.segments for crit in s.any for c in crit.conditions}
        return named


def check_against_codelists(segmentation: Segmentation, codelists: dict[str, CodeList], path: str) -> None:
    """Every condition the segmentation names must have a code list."""
    missing = sorted(segmentation.referenced_conditions() - set(codelists))
    if missing:
        raise ConfigError(
            f"config error: {path}: condition(s) {', '.join(missing)} have no code list; add "
            "configs/codelists/conditions/<name>.yaml or fix the name"
        )
