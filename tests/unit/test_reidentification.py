"""Re-identification decisions and the identified list on hand-built frames."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from phm.governance.reidentification import Role, Roles, decide, identified_list

ROLES = Roles(
    roles=[
        Role(name="north_pcn", users=["ann"], pcns=["U1"]),
        Role(name="practice_b", users=["ann", "bob"], practices=["B2"], cohorts=["falls_risk"]),
    ]
)
PURPOSE = "invite for a falls review"


def test_a_duty_of_care_for_every_practice_on_the_list_grants():
    decision = decide("ann", ROLES, "falls_risk", PURPOSE, {"A1": "U1", "B2": "U2"})
    assert decision.granted and set(decision.roles) == {"north_pcn", "practice_b"}
    assert decide("bob", ROLES, "falls_risk", PURPOSE, {"B2": "U2"}).granted


@pytest.mark.parametrize(
    ("user", "cohort", "purpose", "practices", "reason"),
    [
        ("bob", "falls_risk", PURPOSE, {"A1": "U1", "B2": "U2"}, "1 practice(s) outside the duty of care"),
        ("bob", "frequent_ae_attenders", PURPOSE, {"B2": "U2"}, "no role of user bob covers cohort"),
        ("eve", "falls_risk", PURPOSE, {"B2": "U2"}, "user eve holds no re-identification role"),
        ("ann", "falls_risk", "review", {"A1": "U1"}, "no purpose given"),
        ("ann", "falls_risk", PURPOSE, {}, "is empty"),
        ("ann", "falls_risk", PURPOSE, {"(no practice)": None}, "outside the duty of care"),
    ],
)
def test_refusals_say_what_was_missing(user, cohort, purpose, practices, reason):
    decision = decide(user, ROLES, cohort, purpose, practices)
    assert not decision.granted and reason in decision.reason


def test_a_role_without_a_duty_of_care_is_a_config_error():
    with pytest.raises(ValidationError, match="needs practices or pcns"):
        Role(name="nobody", users=["ann"])


def test_the_list_takes_the_gp_registration_identity_and_drops_nobody(spark):
    cohort = spark.createDataFrame(
        [("p1", "U1", "A1", 1), ("p2", "U1", "A1", 2), ("p3", "U1", "A1", 3)],
        "person_id string, pcn_code string, practice_code string, priority int",
    )
    links = spark.createDataFrame(
        [("p1", "inpatient", "i1", "2025-06"), ("p1", "gp_registrations", "g1", "2025-01"),
         ("p1", "gp_registrations", "g2", "2025-05"), ("p2", "ae", "a1", "2025-03"),
         ("p2", "ae", "a2", "2025-04")],
        "person_id string, source string, record_id string, period string",
    )  # fmt: skip
    identity = spark.createDataFrame(
        [("inpatient", "i1", "9434765919", "ANN", "LEE", dt.date(1950, 1, 2), "AB1 2CD"),
         ("gp_registrations", "g1", "9434765919", "ANN", "LEE", dt.date(1950, 1, 2), "AB1 2CD"),
         ("gp_registrations", "g2", "9434765919", "ANN", "LEE-SMITH", dt.date(1950, 1, 2), "AB3 4EF"),
         ("ae", "a1", "9434765910", "BOB", "RAY", dt.date(1960, 3, 4), "ZZ1 1ZZ"),  # invalid check digit
         ("ae", "a2", None, "ROB", "RAY", dt.date(1960, 3, 4), "ZZ1 1ZZ")],
        "source string, record_id string, nhs_number string, forename string, surname string, "
        "date_of_birth date, postcode string",
    )  # fmt: skip
    rows = {r.person_id: r for r in identified_list(cohort, links, identity).collect()}
    assert [r.person_id for r in identified_list(cohort, links, identity).collect()] == ["p1", "p2", "p3"]
    assert (rows["p1"].identity_source, rows["p1"].surname, rows["p1"].postcode) == (
        "gp_registrations", "LEE-SMITH", "AB3 4EF")  # fmt: skip
    assert rows["p2"].forename == "ROB"  # no valid NHS number either way: the latest period
    assert rows["p3"].nhs_number is None and rows["p3"].priority == 3  # no identity record: still on the list
