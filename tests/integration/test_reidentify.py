"""`phm reidentify` on the refreshed tiny ICS: a list with identities only for a role whose duty of care covers
it, written owner-only to the restricted folder; every request, granted or refused, in vault.audit, which
holds no identity; refusals exit 2 and say why."""

from __future__ import annotations

import csv
import os
import pwd
import stat
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from phm import cli
from phm.identifiers import is_valid_nhs_number

pytestmark = pytest.mark.slow
USER = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(scope="module")
def request_for(sample, refreshed, tmp_path_factory, largest_cohort):
    """(run a request with a roles file giving USER a duty of care for `pcns`, the cohort, its first PCN)."""
    _, catalog = sample
    table = largest_cohort
    pcn = catalog.read(table).orderBy("pcn_code").first().pcn_code  # (the tiny ICS has one PCN)
    folder = tmp_path_factory.mktemp("roles")

    def run(pcn: str | None, role_pcns: list[str], users: list[str], purpose="invite for a clinical review"):
        roles = folder / "roles.yaml"
        roles.write_text(yaml.safe_dump({"roles": [{"name": "coordinator", "users": users, "pcns": role_pcns}]}))
        scope = ["--pcn", pcn] if pcn else []
        arguments = ["--cohort", table.removeprefix("mart.cohort_"), "--purpose", purpose, *scope]
        return cli.main(["reidentify", *arguments, *refreshed[2], "--set", f"reidentification.roles={roles}"])

    return run, table, pcn


def _audit(catalog):
    return catalog.read("vault.audit").orderBy("requested_at").collect() if catalog.exists("vault.audit") else []


def test_refused_requests_are_audited_and_disclose_nothing(request_for, sample, refreshed, capsys):
    config, catalog = sample
    run, table, pcn = request_for
    before = len(_audit(catalog))
    assert run(None, ["U99999"], [USER]) == 2  # a duty of care for another PCN
    assert "outside the duty of care" in capsys.readouterr().err
    assert run(pcn, [pcn], ["someone_else"]) == 2
    assert f"user {USER} holds no re-identification role" in capsys.readouterr().err
    assert run(pcn, [pcn], [USER], purpose="because") == 2
    assert "no purpose given" in capsys.readouterr().err
    no_roles = ["--set", "reidentification.roles=/nonexistent/roles.yaml"]
    arguments = ["--cohort", table.removeprefix("mart.cohort_"), "--purpose", "invite for a clinical review"]
    assert cli.main(["reidentify", *arguments, *refreshed[2], *no_roles]) == 2
    assert "no file at /nonexistent/roles.yaml" in capsys.readouterr().err
    audit = _audit(catalog)[before:]
    assert [(a.granted, a.user, a.people, a.output) for a in audit] == [(False, USER, None, None)] * 4
    restricted = Path(config.resolve(config.reidentification.output))
    assert not restricted.exists() or not list(restricted.iterdir())


def test_a_covered_request_writes_the_list_owner_only_and_audits_it(request_for, sample, capsys):
    config, catalog = sample
    run, table, pcn = request_for
    assert run(pcn, [pcn], [USER]) == 0
    printed = capsys.readouterr().out
    (audit,) = [a for a in _audit(catalog) if a.granted]
    assert (audit.user, audit.roles, audit.pcn_code, audit.cohort) == (USER, ["coordinator"], pcn,
                                                                        table.removeprefix("mart.cohort_"))  # fmt: skip
    target = Path(audit.output)
    assert target.parent == Path(config.resolve(config.reidentification.output))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    with target.open(encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    expected = catalog.read(table).where(F.col("pcn_code") == pcn).select("person_id").collect()
    assert sorted(r["person_id"] for r in listed) == sorted(r.person_id for r in expected)
    assert audit.people == len(listed) > 0
    numbers = [r["nhs_number"] for r in listed if r["nhs_number"]]
    assert numbers and is_valid_nhs_number([int(n) for n in numbers]).mean() > 0.9
    # the identities are in the list only: not printed, not audited
    audited = " ".join(str(v) for a in _audit(catalog) for v in a.asDict().values())
    for row in listed:
        for value in (row["nhs_number"], row["surname"]):
            assert not value or (value not in printed and value not in audited)
