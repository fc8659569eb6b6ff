"""A page opened from disk in Debian's Chromium (headless, driven by Playwright): what the browser tests check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def open_in_chromium(page_path: Path, screenshot: Path) -> dict:
    """Console errors, requested URLs, every svg.chart's layout and marks, whether each image loaded; the full page
    saved as a screenshot."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium (or set CHROMIUM)")
    from playwright.sync_api import sync_playwright

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
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "fetched": [u for u in fetched if not u.startswith(("file:", "data:"))],
            "charts": charts, "images": images}  # fmt: skip
