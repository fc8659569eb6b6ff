"""The report's charts and sections on hand-built frames: what is drawn, what is suppressed, what is escaped."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from phm.reporting.page import render_page
from phm.reporting.sections import Section, population_pyramid, segment_matrix_section, table_html
from phm.reporting.svg import Series, bar_chart, bubble_matrix, line_chart, nice_ticks, pyramid


def _marks(svg: str) -> int:
    return int(re.search(r'data-marks="(\d+)"', svg).group(1))


def test_nice_ticks_cover_the_range_in_round_steps():
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.013, 0.048) == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert nice_ticks(5, 5) == [5]


def test_suppressed_values_are_not_drawn_and_labels_are_escaped():
    svg = pyramid(["0-4", "5-9"], [10, None], [12, float("nan")], ("Male", "Female"), "<pyramid>")
    assert _marks(svg) == 2 and svg.count('class="mark"') == 2
    assert "&lt;pyramid&gt;" in svg and "<pyramid>" not in svg
    bars = bar_chart(["P1", "P2 & co"], [3.5, None], "need", "per 1,000")
    assert _marks(bars) == 1 and "* (suppressed)" in bars and "P2 &amp; co" in bars
    nothing = bar_chart(["P1", "P2"], [None, float("nan")], "need", "per 1,000")
    assert _marks(nothing) == 0 and "no published values" in nothing
    bubbles = bubble_matrix(["a"], ["low", "high"], {("a", "low"): 100.0, ("a", "high"): None}, "m", "people")
    assert _marks(bubbles) == 1 and ">*<" in bubbles


def test_bubble_areas_are_proportional_to_the_values():
    svg = bubble_matrix(["a"], ["x", "y"], {("a", "x"): 100.0, ("a", "y"): 25.0}, "m", "people")
    radii = [float(r) for r in re.findall(r'<circle class="mark" [^>]*r="([\d.]+)"', svg)]
    assert radii[1] / radii[0] == pytest.approx(0.5, abs=0.01)  # a quarter of the area: half the radius


def test_line_chart_draws_its_band_and_says_when_nothing_is_published():
    fan = line_chart([Series("baseline", [0, 1, 2], [10, 11, 12], [9, 9.5, 10], [11, 12.5, 14])], "fan", "x", "y")
    assert _marks(fan) == 3 and "<polygon" in fan
    empty = line_chart([Series("s", [1, 2], [None, None])], "empty", "x", "y")
    assert _marks(empty) == 0 and "no published values" in empty


def test_the_pyramid_section_controls_its_counts():
    counts = pd.DataFrame(
        {"age_band": ["0-4", "0-4", "5-9", "5-9", None], "sex": ["F", "M", "F", "M", "F"],
         "people": [103, 98, 6, 51, 2]}
    )  # fmt: skip
    section = population_pyramid(counts, 7, 5)
    # women 5-9 (6) suppressed, so women 0-4 too (it would give 6 away from the women's total); men rounded to 5
    assert _marks(section.body) == 2 and "0-4: 100<" in section.body and "5-9: 50<" in section.body
    assert "103" not in section.body and ": 6<" not in section.body
    assert "2 with another or no recorded sex or age" in section.body


def test_segment_matrix_section_shows_suppressed_cells_as_stars():
    matrix = pd.DataFrame(
        {
            "model_name": ["m", "m"], "model_version": ["3", "3"], "segment_order": [1, 2],
            "segment_label": ["Healthy", "Frailty & dementia"], "tier": ["low", "high"], "people": [1200.0, None],
            "annual_cost": [5.0e5, None], "emergency_admissions_12m": [40.0, None],
            "expected_admitted_people": [30.1, None],
        }
    )  # fmt: skip
    section = segment_matrix_section(matrix)
    assert "m v3" in section.body and "Frailty &amp; dementia" in section.body
    assert section.body.count('class="suppressed"') == 4  # people, cost, admissions, expected of the hidden cell


def test_table_and_page_escape_and_mark_suppressed_cells():
    html = table_html(pd.DataFrame({"group": ["<b>", "x"], "value": [0.123456, None]}), {"value": ".2f"})
    assert "&lt;b&gt;" in html and "<td>0.12</td>" in html and '<td class="suppressed">*</td>' in html
    page = render_page("T & co", [("report run", "r1")], [Section("a", "A", "<p>x</p>")])
    assert page.startswith("<!DOCTYPE html>") and "T &amp; co" in page and '<section id="a">' in page
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
