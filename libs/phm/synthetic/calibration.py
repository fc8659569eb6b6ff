"""The synthetic ICS's calibration: public figures with their sources, validated on load.

The figures live in configs/synthetic/calibration.yaml (FACTS.md is the
source of each, named beside it); this module only declares their shape, so
a typo in a key or a share that does not add up fails at start.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from phm.config import StrictModel, load_definitions

AGE_BAND_COUNT = 7
# Every source extract the generator writes. The order is part of each record id's key: append only.
SOURCES = (
    "gp_registrations", "gp_events", "inpatient", "ae", "outpatient", "deaths", "community", "mental_health",
    "social_care", "programme", "housing",
)  # fmt: skip


class AgeBand(StrictModel):
    low: int = Field(ge=0)
    high: int = Field(ge=0)
    share: float = Field(gt=0, lt=1)


class PopulationCalibration(StrictModel):
    age_bands: list[AgeBand] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    female_share: float = Field(gt=0, lt=1)
    female_share_85_plus: float = Field(gt=0, lt=1)
    ethnicity_shares: dict[str, float]
    ethnic_diversity_odds_ratio_most_vs_least_deprived: float = Field(gt=0)

    @model_validator(mode="after")
    def _shares_add_up(self) -> PopulationCalibration:
        _check_sum("population.age_bands[].share", sum(b.share for b in self.age_bands))
        _check_sum("population.ethnicity_shares", sum(self.ethnicity_shares.values()))
        if "white" not in self.ethnicity_shares:
            raise ValueError("population.ethnicity_shares needs a 'white' share (the reference group)")
        return self


class GeographyCalibration(StrictModel):
    people_per_lsoa: int = Field(gt=0)
    people_per_practice: int = Field(gt=0)
    people_per_pcn: int = Field(gt=0)
    people_per_place: int = Field(gt=0)
    imd_decile_shares: list[float] = Field(min_length=10, max_length=10)
    moves_per_year: float = Field(ge=0, lt=1)
    postcode_area_letters: str = Field(pattern=r"^Q[A-Z]$")

    @model_validator(mode="after")
    def _shares_add_up(self) -> GeographyCalibration:
        _check_sum("geography.imd_decile_shares", sum(self.imd_decile_shares))
        return self


class UndiagnosedByAgeSex(StrictModel):
    """The share of true cases never diagnosed, per age band, for each sex."""

    female: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    male: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)

    @model_validator(mode="after")
    def _shares(self) -> UndiagnosedByAgeSex:
        if not all(0 <= share < 1 for share in self.female + self.male):
            raise ValueError("undiagnosed_by_age_sex: every share must be at least 0 and below 1")
        return self


class ConditionCalibration(StrictModel):
    qof: str
    snomed: str = Field(pattern=r"^[0-9]{6,18}$")
    icd10: str = Field(pattern=r"^[A-Z][0-9]{2}[0-9X]$")
    # The overall share of true cases never diagnosed (checked by the calibration report); with
    # undiagnosed_by_age_sex the shares per age band and sex are drawn instead.
    undiagnosed: float = Field(ge=0, lt=1)
    undiagnosed_by_age_sex: UndiagnosedByAgeSex | None = None
    age_rr: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)


class HealthCalibration(StrictModel):
    latent_loading: float = Field(ge=0)
    conditions: dict[str, ConditionCalibration]


class ObservationCalibration(StrictModel):
    systolic_mean_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    systolic_sd: float = Field(gt=0)
    systolic_uplift_hypertension: float
    hba1c_mean: float
    hba1c_sd: float = Field(gt=0)
    hba1c_diabetes_mean: float
    hba1c_diabetes_sd: float = Field(gt=0)
    bmi_mean: float
    bmi_sd: float = Field(gt=0)
    bmi_obesity_mean: float
    smoking_prevalence: float = Field(ge=0, le=1)
    readings_per_year_with_condition: float = Field(ge=0)
    readings_per_year_without: float = Field(ge=0)


class PreventionCalibration(StrictModel):
    cvd_risk_at_50: float = Field(gt=0, lt=1)
    cvd_log_hr_per_decade: float
    cvd_log_hr_male: float
    cvd_log_hr_smoker: float
    cvd_log_hr_diabetes: float
    cvd_log_hr_hypertension: float
    cvd_log_hr_per_deprivation_decile: float
    cvd_log_hr_latent: float
    qrisk_recorded_health_check_ages: float = Field(ge=0, le=1)
    qrisk_recorded_with_condition: float = Field(ge=0, le=1)
    qrisk_recorded_other: float = Field(ge=0, le=1)
    qrisk_error_sd: float = Field(ge=0)
    statin_secondary: float = Field(ge=0, le=1)
    statin_after_raised_qrisk: float = Field(ge=0, le=1)
    statin_unassessed_high_risk: float = Field(ge=0, le=1)
    statin_other: float = Field(ge=0, le=1)
    statin_issue_days: int = Field(ge=7, le=365)
    ld_health_check_yearly: float = Field(ge=0, le=1)


class FrailtyCalibration(StrictModel):
    deficits_per_person_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    health_exponent: float = Field(ge=0)
    deficit_snomed: list[str] = Field(min_length=1)


class EmergencyRates(StrictModel):
    age_group_lower_bounds: list[int]
    least_deprived: list[float]
    most_deprived: list[float]

    @model_validator(mode="after")
    def _same_lengths(self) -> EmergencyRates:
        if not len(self.age_group_lower_bounds) == len(self.least_deprived) == len(self.most_deprived):
            raise ValueError("emergency_admissions_per_1000: the three lists must have the same length")
        return self


class ActivityCalibration(StrictModel):
    gp_consultations_per_year_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    emergency_admissions_per_1000: EmergencyRates
    emergency_unobserved_sd: float = Field(ge=0)
    emergency_conditions_log_rr_per_condition: float = Field(ge=0)
    emergency_max_per_year: float = Field(gt=0, le=30)
    ae_attendances_per_person: float = Field(ge=0)
    ae_dispersion_shape: float = Field(gt=0)
    ae_high_intensity_share: float = Field(ge=0, lt=0.1)
    ae_high_intensity_rate: float = Field(ge=0)
    ae_high_intensity_emergency_rr: float = Field(ge=1)
    excess_bed_days_after: int = Field(ge=0)
    elective_admissions_per_1000: float = Field(ge=0)
    day_cases_share_of_elective: float = Field(ge=0, le=1)
    outpatient_attendances_per_person: float = Field(ge=0)
    community_contacts_per_year_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    mental_health_contacts_smi: float = Field(ge=0)
    mental_health_contacts_depression: float = Field(ge=0)
    home_care_start_per_year_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    care_home_start_per_year_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    social_care_dementia_multiplier: float = Field(ge=0)
    social_care_learning_disability_rate: float = Field(ge=0, le=1)
    home_care_hours_per_week: float = Field(gt=0)
    home_care_mean_weeks: float = Field(gt=0)
    care_home_mean_weeks: float = Field(gt=0)
    nursing_share_of_care_home: float = Field(ge=0, le=1)
    mortality_per_1000_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)


class SourceQuality(StrictModel):
    nhs_number_missing: float = Field(ge=0, le=1)
    name_typo: float = Field(ge=0, le=1)
    nickname: float = Field(ge=0, le=1)
    dob_error: float = Field(ge=0, le=1)
    stale_postcode: float = Field(ge=0, le=1)
    name_swap: float = Field(default=0.0, ge=0, le=1)
    # One-digit NHS number slips; None: identifiers.invalid_nhs_number_rate.
    nhs_number_slip: float | None = Field(default=None, ge=0, le=1)
    ocr_error: float = Field(default=0.0, ge=0, le=1)


class IdentifierCalibration(StrictModel):
    nhs_number_prefixes: list[str] = Field(min_length=1)
    invalid_nhs_number_rate: float = Field(ge=0, lt=1)
    twins_rate: float = Field(ge=0, lt=0.2)
    sources: dict[str, SourceQuality]
    typo_kinds: dict[str, float]
    typo_first_letter: float = Field(ge=0, le=1)
    dob_day_month_swap_share: float = Field(ge=0, le=1)
    surname_change_per_year_female_18_45: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> IdentifierCalibration:
        _check_sum("identifiers.typo_kinds", sum(self.typo_kinds.values()))
        for prefix in self.nhs_number_prefixes:
            if len(prefix) != 3 or not prefix.isdigit() or prefix[0] != "9":
                raise ValueError(f"identifiers.nhs_number_prefixes: {prefix!r} must be 3 digits starting with 9")
        missing = sorted(set(SOURCES) - set(self.sources))
        if missing:
            raise ValueError(f"identifiers.sources: add the quality of {missing}")
        return self


class ProgrammeCalibration(StrictModel):
    adoption_share_of_practices: float = Field(ge=0, le=1)
    start_share_of_history: float = Field(ge=0, lt=1)
    eligible_min_age: int = Field(ge=0)
    eligible_min_conditions: int = Field(ge=0)
    referrals_per_year_of_eligible: float = Field(ge=0, le=1)
    referral_risk_odds_ratio_per_sd: float = Field(gt=0)
    declined_share: float = Field(ge=0, le=1)
    effect_multimorbid_3_plus: float = Field(ge=0, lt=1)
    effect_frail_elderly_80_plus: float = Field(ge=0, lt=1)
    effect_default: float = Field(ge=0, lt=1)
    effect_dementia: float = Field(ge=0, lt=1)
    effect_end_of_life: float = Field(ge=0, lt=1)


class HousingCalibration(StrictModel):
    cases_per_year_by_age: list[float] = Field(min_length=AGE_BAND_COUNT, max_length=AGE_BAND_COUNT)
    rate_ratio_most_vs_least_deprived: float = Field(gt=0)
    mental_illness_rate_ratio: float = Field(gt=0)
    need_shares: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares_add_up(self) -> HousingCalibration:
        _check_sum("housing.need_shares", sum(self.need_shares.values()))
        return self


class DefectCalibration(StrictModel):
    malformed_date: float = Field(ge=0, lt=0.1)
    future_date: float = Field(ge=0, lt=0.1)
    unknown_code: float = Field(ge=0, lt=0.1)
    exact_duplicate: float = Field(ge=0, lt=0.1)
    truncated_line: float = Field(ge=0, lt=0.1)
    stray_delimiter: float = Field(ge=0, lt=0.1)
    wrong_type: float = Field(ge=0, lt=0.1)


class Calibration(StrictModel):
    population: PopulationCalibration
    geography: GeographyCalibration
    health: HealthCalibration
    observations: ObservationCalibration
    prevention: PreventionCalibration
    frailty: FrailtyCalibration
    activity: ActivityCalibration
    unit_costs_gbp: dict[str, float]
    identifiers: IdentifierCalibration
    programme: ProgrammeCalibration
    housing: HousingCalibration
    defects: DefectCalibration


def load_calibration(path: str) -> Calibration:
    """Read and validate the calibration file; ConfigError names the key and the file."""
    return load_definitions(path, Calibration)


def _check_sum(key: str, total: float) -> None:
    if abs(total - 1.0) > 0.01:
        raise ValueError(f"{key} must add up to 1, they add up to {total:.3f}")
