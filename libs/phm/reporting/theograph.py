"""Patient theographs: one person's contacts with every service on one time axis, as a self-contained page.

A theograph draws each contact of one person as a mark in the lane of its service (GP, outpatients, A&E,
hospital spells, community, mental health, social care), spells and care packages as bars from start to end,
and new diagnoses above them, so that a clinician reviewing a case-finding list sees the pattern of use at a
glance (the presentation the Nuffield Trust popularised for individual patients' journeys through health and
social care).

Pseudonymised: drawn from gold.person, gold.segments, gold.events, gold.conditions and gold.risk_scores,
keyed by person_id. No identity table is read, so the page carries no NHS number, name, date of birth or
postcode (the person's age is shown as an age band); knowing who the person is goes through the audited
re-identification path, not through this page. A page is person-level data for a care team, not a
publication: it is not disclosure-controlled and says so. Pure: pandas frames in, HTML text out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

import pandas as pd

from phm.reporting.page import render_page
from phm.reporting.sections import Section, table_html
from phm.reporting.svg import PALETTE, _svg, _text

EMERGENCY_COLOUR = "#da291c"
DIAGNOSES_LANE = "New diagnoses"


@dataclass(frozen=True)
class Lane:
    name: str
    activities: tuple[str, ...]
    colour: str


# Top to bottom: primary care, planned hospital care, urgent care, spells, then community and social care.
LANES = (
    Lane("GP consultations", ("gp_consultation",), PALETTE[0]),
    Lane("GP records", ("gp_record",), PALETTE[7]),
    Lane("Outpatients", ("outpatient_attendance",), PALETTE[4]),
    Lane("A&E", ("ae_attendance",), EMERGENCY_COLOUR),
    Lane(
        "Hospital spells",
        ("emergency_admission", "elective_admission", "day_case", "maternity_admission", "other_admission"),
        PALETTE[3],
    ),
    Lane("Community", ("community_contact",), PALETTE[2]),
    Lane("Mental health", ("mental_health_contact",), PALETTE[5]),
    Lane("Social care", ("care_package", "care_home_placement", "care_end_without_start"), PALETTE[1]),
    Lane("Programme", ("programme_referral",), PALETTE[6]),
)
LANE_OF = {activity: lane.name for lane in LANES for activity in lane.activities}
LANE_COLOUR = {lane.name: lane.colour for lane in LANES}


def lane_of(activity: str) -> str:
    """The lane an activity is drawn in ('Other' for an activity no lane names, so nothing is hidden)."""
    return LANE_OF.get(activity, "Other")


def _day(value) -> dt.date | None:
    if value is None or pd.isna(value):
        return None
    return value.date() if isinstance(value, dt.datetime | pd.Timestamp) else value


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    """First days of the months shown as ticks: every month up to 18 months, else every quarter."""
    step = 1 if (end - start).days <= 550 else 3
    month = ((start.month - 1) // step) * step + 1
    tick = dt.date(start.year, month, 1)
    ticks = []
    while tick <= end:
        if tick >= start:
            ticks.append(tick)
        month = tick.month - 1 + step
        tick = dt.date(tick.year + month // 12, month % 12 + 1, 1)
    return ticks


def _describe(row) -> str:
    """A mark's tooltip: date, activity and the clinical detail of the contact (codes, stay, cost)."""
    parts = [str(_day(row.event_date)), str(row.activity).replace("_", " ")]
    end = _day(row.end_date)
    if end is not None:
        parts.append(f"to {end}")
    if isinstance(row.setting, str) and row.setting and not str(row.activity).startswith("gp_"):
        parts.append(row.setting.replace("_", " "))
    if isinstance(row.code, str) and row.code:
        parts.append(f"{row.code_system or 'code'} {row.code}")
    if pd.notna(row.length_of_stay):
        parts.append(f"{int(row.length_of_stay)} day(s)")
    if pd.notna(row.cost) and row.cost:
        parts.append(f"£{float(row.cost):,.0f}")
    return ", ".join(parts)


def theograph_svg(
    events: pd.DataFrame, diagnoses: pd.DataFrame, start: dt.date, end: dt.date, reference_date: dt.date, title: str
) -> str:
    """The timeline: one lane per service that the person used (and the diagnoses lane), time left to right.

    `events`: gold.events rows of one person; `diagnoses`: gold.conditions rows (condition, first_recorded,
    first_source). Contacts outside [start, end] are not drawn; a spell or package that overlaps the window is
    drawn clipped to it, an open one (no end) up to the reference date.
    """
    width, left, right, top, row = 960, 130, 20, 28, 26
    used = {lane_of(a) for a in events["activity"]} if len(events) else set()
    lanes = [DIAGNOSES_LANE, *[lane.name for lane in (*LANES, Lane("Other", (), "")) if lane.name in used]]
    height = top + row * len(lanes) + 34
    span = max((end - start).days, 1)
    plot_w = width - left - right

    def px(day: dt.date) -> float:
        return left + (min(max(day, start), end) - start).days / span * plot_w

    def cy(lane: str) -> float:
        return top + row * (lanes.index(lane) + 0.5)

    body = []
    for i, lane in enumerate(lanes):
        if i % 2:
            body.append(f'<rect x="{left}" y="{top + row * i}" width="{plot_w}" height="{row}" fill="#f0f4f5"/>')
        body.append(_text(left - 8, cy(lane) + 4, lane, "end", 'class="lane"'))
    axis_y = top + row * len(lanes)
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#425563"/>')
    for tick in _months(start, end):
        x = px(tick)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#d8dde0"/>')
        body.append(_text(x, axis_y + 16, tick.strftime("%b %y"), "middle"))
    if start <= reference_date <= end:
        x = px(reference_date)
        body.append(f'<line x1="{x:.1f}" y1="{top - 10}" x2="{x:.1f}" y2="{axis_y}" stroke="#425563" '
                    'stroke-dasharray="4 3"/>')  # fmt: skip
        body.append(_text(x - 4, top - 14, "reference date", "end"))
    marks = 0
    for item in events.sort_values("event_date").itertuples(index=False):
        day, lane = _day(item.event_date), lane_of(item.activity)
        closes = _day(item.end_date)
        open_ended = closes is None and item.activity in ("care_package", "care_home_placement")
        last = reference_date if open_ended else closes
        if day is None or day > end or (last or day) < start:
            continue
        colour = EMERGENCY_COLOUR if item.emergency else LANE_COLOUR.get(lane, PALETTE[7])
        tip = f"<title>{escape(_describe(item))}</title>"
        y = cy(lane)
        if item.activity == "death":
            x = px(day)
            body.append(f'<line class="mark" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#212b32" '
                        f'stroke-width="2">{tip}</line>')  # fmt: skip
            body.append(_text(x + 4, top - 14, "died"))
        elif last is not None and last > day:
            x0, x1 = px(day), px(last)
            opacity = "0.45" if open_ended else "0.85"
            body.append(f'<rect class="mark" x="{x0:.1f}" y="{y - 6:.1f}" width="{max(x1 - x0, 3):.1f}" height="12" '
                        f'fill="{colour}" fill-opacity="{opacity}">{tip}</rect>')  # fmt: skip
        else:
            body.append(f'<circle class="mark" cx="{px(day):.1f}" cy="{y:.1f}" r="4" fill="{colour}" '
                        f'fill-opacity="0.8">{tip}</circle>')  # fmt: skip
        marks += 1
    for item in diagnoses.sort_values("first_recorded").itertuples(index=False):
        day = _day(item.first_recorded)
        if day is None or not start <= day <= end:
            continue
        x, y = px(day), cy(DIAGNOSES_LANE)
        label = f"{item.condition.replace('_', ' ')} first recorded {day} ({item.first_source})"
        body.append(f'<polygon class="mark" points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} '
                    f'{x - 6:.1f},{y:.1f}" fill="{PALETTE[3]}"><title>{escape(label)}</title></polygon>')  # fmt: skip
        marks += 1
    return _svg(width, height, title, marks, body)


def contact_summary(events: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Per lane, in the window: contacts, emergency ones, bed days and cost."""
    if not len(events):
        return pd.DataFrame(columns=["service", "contacts", "emergency", "bed days", "cost (£)"])
    days = events["event_date"].map(_day)
    shown = events[(days >= start) & (days <= end)].assign(service=lambda f: f["activity"].map(lane_of))
    order = {lane.name: i for i, lane in enumerate(LANES)}
    summary = (
        shown.groupby("service")
        .agg(
            contacts=("activity", "size"),
            emergency=("emergency", "sum"),
            bed_days=("length_of_stay", "sum"),
            cost=("cost", "sum"),
        )
        .reset_index()
        .sort_values("service", key=lambda s: s.map(lambda name: order.get(name, len(order))))
        .rename(columns={"bed_days": "bed days", "cost": "cost (£)"})
    )
    return summary


def theograph_page(
    person: dict,
    events: pd.DataFrame,
    conditions: pd.DataFrame,
    scores: pd.DataFrame | None,
    reference_date: dt.date,
    years: float,
) -> str:
    """One person's page: who (pseudonym, age band, sex, area, segment), the timeline over the `years` to the
    reference date (or to the last contact, if later), what they used, their conditions and risk scores.

    `person`: gold.person's row joined to gold.segments' (segment_label, cms_score, efi_category; absent for
    someone who died); `scores`: gold.risk_scores rows (model_name, tier, probability, percentile), None when
    nothing was scored."""
    last = max([reference_date, *[d for d in events["event_date"].map(_day) if d is not None]])
    start = reference_date - dt.timedelta(days=round(365.25 * years))
    person_id = str(person["person_id"])
    meta = [
        ("person_id", person_id),
        ("reference date", str(reference_date)),
        ("age band, sex", f"{person.get('age_band') or '-'}, {person.get('sex') or '-'}"),
        ("ethnicity", str(person.get("ethnicity") or "-")),
        ("IMD quintile", str(person.get("imd_quintile") or "-")),
        ("practice, PCN, place", ", ".join(str(person.get(k) or "-") for k in ("practice_code", "pcn_code",
                                                                                "place_code"))),
        ("segment", str(person.get("segment_label") or ("died" if person.get("deceased") else "-"))),
        ("CMS, frailty", f"{_number(person.get('cms_score'))}, {person.get('efi_category') or '-'}"),
        ("shown", f"{start} to {last}"),
    ]  # fmt: skip
    timeline = theograph_svg(events, conditions, start, last, reference_date, f"Contacts of {person_id} by service")
    legend = (
        "<p>One mark per contact; bars are hospital spells and social care packages (pale: still running); "
        f'<span style="color:{EMERGENCY_COLOUR}">red</span>: emergency; diamonds: a condition first recorded; '
        "hover a mark for its date, codes, stay and cost.</p>"
    )
    condition_rows = conditions.sort_values("first_recorded")[
        ["condition", "first_recorded", "first_source", "records"]
    ]
    scored = scores is not None and len(scores) > 0
    sections = [
        Section("timeline", "Timeline", timeline + legend),
        Section("contacts", "Contacts in the window", table_html(contact_summary(events, start, last),
                                                                  {"cost (£)": ",.0f", "bed days": ",.0f"})),
        Section("conditions", "Conditions", table_html(condition_rows) if len(conditions) else "<p>None recorded.</p>"),
        Section("risk", "Risk scores", table_html(scores[["model_name", "tier", "probability", "percentile"]],
                                                  {"probability": ".3f", "percentile": ".1f"})
                if scored else "<p>Not scored (not alive at the scoring date, or no champion).</p>"),
    ]  # fmt: skip
    return render_page(
        f"Theograph: {person_id}",
        meta,
        sections,
        footer=(
            "Person-level, pseudonymised: for the care team's review, not for publication (not "
            "disclosure-controlled). Who the person is can be known only through the audited re-identification path."
        ),
    )


def _number(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):g}"
