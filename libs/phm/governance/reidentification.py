"""Audited re-identification: a case-finding list with names, for a care team with a duty of care, logged.

Everything outside the identity vault is pseudonymised. A care team acting on a case-finding list needs to
know who the people are; that is the one path from a pseudonym back to an identity, and it is narrow on
purpose (the Caldicott principles: justify the purpose, use the minimum necessary, access on a strict
need-to-know basis, and be accountable):

- the requester is the operating-system account running the command (not an environment variable that
  anyone can set), and must be named in a configured role (configs/roles.yaml);
- a role grants a duty of care for practices (by practice code or PCN code) and, optionally, only some
  cohorts; a request is granted only if every person on the requested list is registered at a practice the
  requester's roles cover (narrow the request with --pcn), and it must state a purpose;
- the identified list holds only what a care team needs to contact the person (NHS number, name, date of
  birth, postcode) beside the list's own columns, and is written only to the restricted folder, owner-only;
- every request, granted or refused, is appended to vault.audit: who, when, purpose, cohort, scope, outcome,
  reason, how many people and where the list went. Never the identities themselves.

Pure: decisions on plain values and DataFrames in, DataFrames out; the command (phm.cli) does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.config import StrictModel
from phm.frames import first_in_each
from phm.identifiers import nhs_number_is_valid

MIN_PURPOSE_WORDS = 3
IDENTIFIED_COLUMNS = ("nhs_number", "forename", "surname", "date_of_birth", "postcode")
# The GP registration is the identity a practice holds for its patients: preferred to any other source's.
PREFERRED_SOURCE = "gp_registrations"


class Role(StrictModel):
    name: str
    users: list[str] = Field(default_factory=list, description="Operating-system accounts holding the role.")
    practices: list[str] = Field(default_factory=list, description="Practice codes the role has a duty of care for.")
    pcns: list[str] = Field(default_factory=list, description="PCN codes the role has a duty of care for.")
    cohorts: list[str] | None = Field(None, description="Cohorts the role may re-identify (default: any).")

    @model_validator(mode="after")
    def _some_duty(self) -> Role:
        if not self.pcns and not self.practices:
            raise ValueError(f"role {self.name} needs practices or pcns (its duty of care)")
        return self


class Roles(StrictModel):
    roles: list[Role] = Field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    roles: tuple[str, ...]


def decide(user: str, roles: Roles, cohort: str, purpose: str, practices: dict[str, str | None]) -> Decision:
    """Whether `user` may re-identify a list of `cohort` whose people are registered at `practices`
    (practice code -> its PCN code). The reason names what was missing, never a person."""
    held = [role for role in roles.roles if user in role.users]
    names = tuple(role.name for role in held)
    if len(purpose.split()) < MIN_PURPOSE_WORDS:
        return Decision(False, f"no purpose given: say why (at least {MIN_PURPOSE_WORDS} words)", names)
    if not held:
        return Decision(False, f"user {user} holds no re-identification role (configs/roles.yaml)", names)
    allowed = [role for role in held if role.cohorts is None or cohort in role.cohorts]
    if not allowed:
        return Decision(False, f"no role of user {user} covers cohort {cohort}", names)
    if not practices:
        return Decision(False, f"the {cohort} list asked for is empty", names)
    outside = sorted(
        practice
        for practice, pcn in practices.items()
        if not any(practice in role.practices or (pcn is not None and pcn in role.pcns) for role in allowed)
    )
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        return Decision(
            False,
            f"the list includes people at {len(outside)} practice(s) outside the duty of care of user {user}'s "
            f"roles ({shown}); narrow it with --pcn",
            names,
        )
    return Decision(True, "duty of care covers every practice on the list", tuple(r.name for r in allowed))


def identified_list(cohort: DataFrame, links: DataFrame, identity: DataFrame) -> DataFrame:
    """The cohort's rows (person_id, pcn_code, practice_code, priority) with each person's identity: from
    their GP registration record if they have one, else from any source, the latest period first and a valid
    NHS number before none. People with no identity record keep their row (identifiers null): nobody on the
    list is dropped."""
    # only the listed people's records reach the join and the window, not the whole population's
    listed = links.join(cohort.select("person_id"), "person_id", "left_semi")
    records = listed.select("person_id", "source", "record_id", "period").join(
        identity.select("source", "record_id", *IDENTIFIED_COLUMNS), ["source", "record_id"]
    )
    best = [
        (F.col("source") == PREFERRED_SOURCE).desc(),
        F.coalesce(nhs_number_is_valid(F.col("nhs_number")), F.lit(False)).desc(),
        F.col("period").desc(),
        F.col("record_id"),
    ]
    chosen = first_in_each(records, "person_id", best).select(
        "person_id", *IDENTIFIED_COLUMNS, F.col("source").alias("identity_source")
    )
    return (
        cohort.select("person_id", "pcn_code", "practice_code", "priority")
        .join(chosen, "person_id", "left")
        .orderBy("pcn_code", "priority")
    )
