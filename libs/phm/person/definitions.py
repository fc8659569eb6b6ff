"""The person model's definitions, read from config: code lists, observations and unit costs.

A code list (configs/codelists/conditions/<name>.yaml, one per condition, and
configs/codelists/flags/<name>.yaml for activity flags) names its source and
version and holds SNOMED CT concepts (matched exactly, for GP events) and
ICD-10 prefixes (no dot; "I10" matches I10X, "C7" matches C77-C79), with
prefixes to exclude, "resolved" SNOMED concepts, a rule ("ever" recorded, or
"within_years" of the reference date) and a minimum age (QOF register ages).
Real deployments replace or extend the codes with the full published refsets;
the format takes any number of codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from phm.config import StrictModel, load_definitions, load_definitions_folder
from phm.errors import ConfigError

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Snomed = Annotated[str, StringConstraints(pattern=r"^[0-9]{6,18}$")]
IcdPrefix = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9X]{0,3}$")]

SNOMED, ICD10 = "snomed", "icd10"


class CodeList(StrictModel):
    name: Name
    description: str
    version: str
    source: str = Field(min_length=3, description="Where the definition comes from (named in every file).")
    qof_register: str | None = None
    long_term_condition: bool = Field(True, description="Counted in a person's number of long-term conditions.")
    rule: Literal["ever", "within_years"] = "ever"
    years: int | None = Field(None, ge=1, le=100)
    min_age: int | None = Field(None, ge=0, le=120)
    snomed: list[Snomed] = Field(default_factory=list)
    icd10: list[IcdPrefix] = Field(default_factory=list)
    icd10_exclude: list[IcdPrefix] = Field(default_factory=list)
    resolved_snomed: list[Snomed] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> CodeList:
        if not (self.snomed or self.icd10):
            raise ValueError("a code list needs at least one snomed or icd10 code")
        if (self.rule == "within_years") != (self.years is not None):
            raise ValueError("rule within_years needs years (and only it does)")
        return self


class Observation(StrictModel):
    snomed: list[Snomed] = Field(default_factory=list)
    unit: str | None = None
    plausible: tuple[float, float] | None = None
    categories: dict[Snomed, Name] = Field(default_factory=dict, description="code -> category (e.g. smoking)")

    @model_validator(mode="after")
    def _consistent(self) -> Observation:
        if bool(self.snomed) == bool(self.categories):
            raise ValueError("an observation has either snomed codes with values or categories, not both")
        return self


class Observations(StrictModel):
    version: str
    observations: dict[Name, Observation]


class UnitCosts(StrictModel):
    price_base: str
    emergency_admission: float = Field(ge=0)
    fall_admission_65_plus: float = Field(ge=0)
    elective_admission: float = Field(ge=0)
    day_case: float = Field(ge=0)
    excess_bed_day: float = Field(ge=0)
    excess_bed_days_after: int = Field(ge=0)
    outpatient_attendance: float = Field(ge=0)
    ae_attendance: float = Field(ge=0)
    gp_consultation: float = Field(ge=0)
    gp_consultation_snomed: list[Snomed]
    community_contact: float = Field(ge=0)
    mental_health_contact: float = Field(ge=0)
    care_home_residential_week: float = Field(ge=0)
    care_home_nursing_week: float = Field(ge=0)
    home_care_hour: float = Field(ge=0)


def load_codelists(folder: str) -> dict[str, CodeList]:
    """Every *.yaml in `folder` by name; a file must be named after the list it declares."""
    found = load_definitions_folder(folder, CodeList, "code lists", "person_model.codelists")
    return {name: codelist for name, (codelist, _) in found.items()}


class PersonModelDefinitions(StrictModel):
    """Everything build_person_model and segment read from config, loaded once."""

    conditions: dict[str, CodeList]
    flags: dict[str, CodeList]
    observations: Observations
    unit_costs: UnitCosts


def load_person_model_definitions(config) -> PersonModelDefinitions:
    folder = Path(config.resolve(config.person_model.codelists))
    flags = load_codelists(str(folder / "flags"))
    for needed in ("acsc", "fall"):
        if needed not in flags:
            raise ConfigError(f"config error: {folder / 'flags'}: no {needed}.yaml; gold.events flags need it")
    return PersonModelDefinitions(
        conditions=load_codelists(str(folder / "conditions")),
        flags=flags,
        observations=load_definitions(str(folder / "observations.yaml"), Observations),
        unit_costs=load_definitions(config.resolve(config.person_model.unit_costs), UnitCosts),
    )
