"""`phm theograph` on the refreshed tiny ICS: a page per person (asked for, or the top of a case-finding list)
that draws every contact of theirs in the window, carries no identifier, and renders in Chromium; bad requests
are user errors."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from phm import cli
from phm.governance.leaks import text_leak_hits

from ..conftest import REPO
from .browser import open_in_chromium

pytestmark = pytest.mark.slow
SCREENSHOT = REPO / "test-output" / "theograph.png"


@pytest.fixture(scope="module")
def busiest(sample, refreshed):
    """The living person with the most contacts, and their page."""
    config, catalog = sample
    living = catalog.read("gold.segments").select("person_id")
    person_id = (catalog.read("gold.events").join(living, "person_id").groupBy("person_id").count()
                 .orderBy(F.desc("count"), "person_id").first().person_id)  # fmt: skip
    assert cli.main(["theograph", person_id, *refreshed[2]]) == 0
    return person_id, Path(config.resolve(config.paths.reports)) / "theographs" / f"{person_id}.html"


def test_the_page_draws_every_contact_and_new_diagnosis_in_the_window(busiest, sample):
    _, catalog = sample
    person_id, page = busiest
    text = page.read_text(encoding="utf-8")
    shown = re.search(r"shown</dt><dd>(\S+) to (\S+)</dd>", text)
    start, end = (dt.date.fromisoformat(d) for d in shown.groups())
    mine = F.col("person_id") == person_id
    events = catalog.read("gold.events").where(mine)
    in_window = events.where(F.col("event_date").between(start, end)).count()
    running_into_it = events.where((F.col("event_date") < start) & (
        (F.col("end_date") >= start) | (F.col("end_date").isNull() & F.col("activity").isin("care_package",
                                                                                             "care_home_placement"))
    )).count()  # fmt: skip
    diagnosed = catalog.read("gold.conditions").where(mine & F.col("first_recorded").between(start, end)).count()
    assert in_window > 10
    assert int(re.search(r'data-marks="(\d+)"', text).group(1)) == in_window + running_into_it + diagnosed
    contacts = text.split('id="contacts"')[1].split("</section>")[0]
    assert sum(int(n) for n in re.findall(r"<tr><td>[^<]+</td><td>(\d+)</td>", contacts)) == in_window
    assert "<script" not in text and person_id in text


def test_a_case_finding_list_gets_a_page_per_person_and_no_identifier_is_in_any(
    busiest, sample, refreshed, canaries, largest_cohort
):
    config, catalog = sample
    cohort = largest_cohort
    assert catalog.read(cohort).count() >= 3
    top = [r.person_id for r in catalog.read(cohort).orderBy("pcn_code", "priority").limit(3).collect()]
    folder = Path(config.resolve(config.paths.reports)) / "theographs"
    assert cli.main(["theograph", "--cohort", cohort.removeprefix("mart.cohort_"), "--limit", "3", *refreshed[2]]) == 0
    assert all((folder / f"{person_id}.html").is_file() for person_id in top)
    pages = list(folder.glob("*.html"))
    for page in pages:
        assert text_leak_hits(page.read_text(encoding="utf-8"), canaries) == [], page.name


def test_bad_requests_are_user_errors(refreshed, capsys):
    arguments = refreshed[2]
    assert cli.main(["theograph", "no-such-person", *arguments]) == 2
    assert "no person no-such-person in gold.person" in capsys.readouterr().err
    assert cli.main(["theograph", "--cohort", "no_such_cohort", *arguments]) == 2
    assert "no cohort no_such_cohort in configs/cohorts; cohorts: falls_risk" in capsys.readouterr().err
    assert cli.main(["theograph", *arguments]) == 2
    assert "give person_id(s) or --cohort" in capsys.readouterr().err


def test_the_theograph_renders_in_chromium(busiest):
    seen = open_in_chromium(busiest[1], SCREENSHOT)
    assert seen["errors"] == [] and seen["fetched"] == []
    (chart,) = seen["charts"]
    assert chart["width"] > 500 and chart["marks"] == chart["declared"] > 0
