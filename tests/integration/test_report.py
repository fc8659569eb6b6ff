"""The refresh report on the refreshed tiny ICS: one self-contained page per run and reports/latest/, every
section there, nothing fetched from elsewhere, no identifier in it; and in a real browser (Debian's Chromium,
headless, through Playwright): no console error, every chart drawn, every image loaded, a screenshot kept."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ..conftest import REPO

pytestmark = pytest.mark.slow

SECTIONS = ("population", "segments", "inequalities", "costs", "projection", "linkage", "data-quality", "models",
            "case-finding", "need")  # fmt: skip
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
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


def test_no_canary_identifier_is_in_the_report(report, refreshed):
    _, page, config = report
    text = page.read_text(encoding="utf-8")
    canaries = pq.read_table(Path(config.resolve(config.paths.truth)) / "canaries").to_pandas()
    assert len(canaries)
    for row in canaries.itertuples():
        digits = str(row.nhs_number)
        for needle in (digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}", row.forename, row.surname):
            assert needle not in text, "a canary identifier is in the report"
        assert str(row.date_of_birth) not in text or str(row.postcode) not in text


def test_the_report_renders_in_chromium_without_errors(report):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium (or set CHROMIUM)")
    from playwright.sync_api import sync_playwright

    _, page_path, _ = report
    errors, fetched = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(page_path.as_uri(), wait_until="load")
            charts = page.eval_on_selector_all(
                "svg.chart",
                "els => els.map(e => ({title: e.getAttribute('aria-label'), width: e.getBoundingClientRect().width,"
                " height: e.getBoundingClientRect().height, marks: e.querySelectorAll('.mark').length,"
                " declared: Number(e.dataset.marks), text: e.textContent}))",
            )
            images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []
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
