"""The refresh report on the refreshed tiny ICS: one self-contained page per run and reports/latest/, every
section there, nothing fetched from elsewhere, no identifier in it; and in a real browser (Debian's Chromium,
headless, through Playwright): no console error, every chart drawn, every image loaded, a screenshot kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from phm.governance.leaks import text_leak_hits

from ..conftest import REPO
from .browser import open_in_chromium

pytestmark = pytest.mark.slow

SECTIONS = ("population", "segments", "inequalities", "costs", "projection", "linkage", "data-quality", "models",
            "case-finding", "need")  # fmt: skip
SCREENSHOT = REPO / "test-output" / "report.png"


@pytest.fixture(scope="module")
def report(refreshed):
    config = refreshed[3]
    reports = Path(config.resolve(config.paths.reports))
    runs = sorted(p for p in reports.glob("*-report-*/index.html"))
    assert runs, "the refresh wrote no report"
    return reports, runs[-1], config


def test_the_report_is_self_contained_with_every_section_and_names_its_data(report):
    reports, page, _ = report
    text = page.read_text(encoding="utf-8")
    assert (reports / "latest" / "index.html").read_text(encoding="utf-8") == text
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text, anchor
    assert 'class="missing"' not in text  # every mart the sections read exists after a full refresh
    # offline: no script, no stylesheet or image from another host (the SVG namespace is a name, not a fetch)
    assert "<script" not in text and "<link" not in text
    assert re.findall(r"(?:src|href)=\"(https?:)?//", text) == []
    assert "data versions" in text and re.search(r"gold\.segments v\d+", text)
    assert re.search(r"MLflow run [0-9a-f]{32}", text)


def test_no_canary_identifier_is_in_the_report(report, canaries):
    _, page, _ = report
    assert text_leak_hits(page.read_text(encoding="utf-8"), canaries) == []


def test_the_report_renders_in_chromium_without_errors(report):
    seen = open_in_chromium(report[1], SCREENSHOT)
    assert seen["errors"] == [] and seen["fetched"] == []
    charts, images = seen["charts"], seen["images"]
    assert len(charts) >= 6
    for chart in charts:  # laid out; drew marks, or says that disclosure control left nothing to publish
        assert chart["width"] > 100 and chart["height"] > 30, chart["title"]
        assert chart["marks"] <= chart["declared"], chart["title"]
        assert chart["marks"] > 0 or "no published values" in chart["text"], chart["title"]
    # (the tiny sample's people all live in IMD quintile 1, so its quintile charts publish nothing)
    drawn = {chart["title"].split(":")[0] for chart in charts if chart["marks"] > 0}
    assert {"Population pyramid", "Segment x risk tier", "Cost concentration", "Projected annual cost"} <= drawn
    assert images and all(images)  # the champion's ROC and calibration plots
    assert SCREENSHOT.stat().st_size > 10_000
