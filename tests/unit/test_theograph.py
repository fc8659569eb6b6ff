"""The patient theograph on one hand-built person: lanes, marks, spells as bars, window clipping, the summary."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from phm.reporting.theograph import contact_summary, lane_of, theograph_page, theograph_svg

D = dt.date
REFERENCE = D(2025, 6, 30)
EVENT_COLUMNS = ["person_id", "activity", "event_date", "end_date", "setting", "code_system", "code",
                 "length_of_stay", "cost", "emergency"]  # fmt: skip


def _events(*rows) -> pd.DataFrame:
    return pd.DataFrame([("p1", *row) for row in rows], columns=EVENT_COLUMNS)


ROWS = (
    ("gp_consultation", D(2025, 1, 10), None, "P1", "SNOMED", "185317003", None, 39.0, False),
    ("ae_attendance", D(2025, 2, 1), None, None, None, None, None, 180.0, True),
    ("emergency_admission", D(2025, 2, 1), D(2025, 2, 5), "inpatient", "ICD10", "J44<1", 4, 2300.0, True),
    ("care_package", D(2025, 3, 1), None, "home_care", None, None, None, 1200.0, False),
    ("outpatient_attendance", D(2020, 5, 1), None, "320", None, None, None, 150.0, False),  # before the window
)
EVENTS = _events(*ROWS)
DIAGNOSES = pd.DataFrame(
    [("diabetes", D(2025, 1, 10), "gp_events", 3), ("hypertension", D(2019, 3, 1), "gp_events", 5)],
    columns=["condition", "first_recorded", "first_source", "records"],
)


def _shapes(svg: str, kind: str) -> list[str]:
    return re.findall(rf'<{kind} class="mark"[^>]*>', svg)


def test_lanes_are_the_services_used_in_a_fixed_order():
    assert lane_of("emergency_admission") == lane_of("day_case") == "Hospital spells"
    assert lane_of("something_new") == "Other"  # an activity no lane names is still drawn
    svg = theograph_svg(EVENTS, DIAGNOSES, D(2024, 7, 1), REFERENCE, REFERENCE, "t")
    labels = re.findall(r'class="lane">([^<]+)</text>', svg)
    assert labels == ["New diagnoses", "GP consultations", "Outpatients", "A&amp;E", "Hospital spells", "Social care"]


def test_contacts_are_points_spells_and_packages_are_bars_and_the_window_clips():
    start = D(2024, 7, 1)
    svg = theograph_svg(EVENTS, DIAGNOSES, start, REFERENCE, REFERENCE, "t")
    # the 2020 outpatient visit and the 2019 diagnosis are outside the window: not drawn
    assert len(_shapes(svg, "circle")) == 2 and len(_shapes(svg, "rect")) == 2 and len(_shapes(svg, "polygon")) == 1
    assert int(re.search(r'data-marks="(\d+)"', svg).group(1)) == 5
    plot_width, span = 960 - 130 - 20, (REFERENCE - start).days

    def x(day: dt.date) -> float:
        return 130 + (day - start).days / span * plot_width

    spell, package = _shapes(svg, "rect")
    assert float(re.search(r'width="([\d.]+)"', spell).group(1)) == round(x(D(2025, 2, 5)) - x(D(2025, 2, 1)), 1)
    assert 'fill="#da291c"' in spell  # emergency
    # an open package runs to the reference date, pale
    assert float(re.search(r' x="([\d.]+)"', package).group(1)) == round(x(D(2025, 3, 1)), 1)
    assert float(re.search(r'width="([\d.]+)"', package).group(1)) == round(x(REFERENCE) - x(D(2025, 3, 1)), 1)
    assert 'fill-opacity="0.45"' in package
    assert "ICD10 J44&lt;1, 4 day(s), £2,300" in svg  # tooltip detail, escaped


def test_a_death_is_a_line_across_every_lane():
    died = _events(*ROWS, ("death", D(2025, 5, 1), None, None, None, None, None, 0.0, False))
    svg = theograph_svg(died, DIAGNOSES.iloc[0:0], D(2024, 7, 1), REFERENCE, REFERENCE, "t")
    assert len(_shapes(svg, "line")) == 1 and ">died</text>" in svg


def test_contact_summary_counts_the_window_per_lane():
    summary = contact_summary(EVENTS, D(2024, 7, 1), REFERENCE).set_index("service")
    assert list(summary.index) == ["GP consultations", "A&E", "Hospital spells", "Social care"]
    assert summary.loc["Hospital spells", "bed days"] == 4 and summary.loc["A&E", "emergency"] == 1
    assert summary["contacts"].sum() == 4 and summary["cost (£)"].sum() == 39 + 180 + 2300 + 1200


def test_the_page_names_the_person_by_pseudonym_and_is_not_a_publication():
    person = {"person_id": "p1", "age_band": "70-74", "sex": "F", "pcn_code": "U1", "segment_label": "Frailty",
              "cms_score": 1.5, "efi_category": "moderate", "deceased": False}  # fmt: skip
    scores = pd.DataFrame({"model_name": ["gbm"], "tier": ["high"], "probability": [0.31], "percentile": [97.5]})
    page = theograph_page(person, EVENTS, DIAGNOSES, scores, REFERENCE, years=1)
    assert "Theograph: p1" in page and "70-74, F" in page and "Frailty" in page and "<td>0.310</td>" in page
    assert "not for publication" in page and "disclosure-controlled (suppressed" not in page
    assert "<script" not in page
    assert "<td>hypertension</td><td>2019-03-01</td>" in page  # every condition is listed, drawn or not
    assert "shown</dt><dd>2024-06-30 to 2025-06-30" in page
