"""Charts as inline SVG text: no JavaScript and no CDN, so a report opens offline and prints as it shows.

Each chart is one `<svg class="chart">` with a `<title>` (its accessible name) and `data-marks` (how many
data marks it drew: bars, bubbles, points, line points), which the browser test reads to check that every
chart rendered something. Missing values (None / NaN: suppressed by disclosure control) are not drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
PALETTE = ("#005eb8", "#ed8b00", "#009639", "#7c2855", "#00a499", "#8a1538", "#41b6e6", "#768692")
FONT = 'font-family="Arial, sans-serif" font-size="11"'


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _svg(width: int, height: int, title: str, marks: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" data-marks="{marks}" {FONT}>'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(str(text))}</text>'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < high - step * 1e-9:  # up to the first tick at or above `high`
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}m"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


@dataclass(frozen=True)
class Series:
    """One line of a line chart; `low` / `high` draw a band around it (an interval)."""

    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None


def pyramid(bands: Sequence[str], left: Sequence, right: Sequence, labels: tuple[str, str], title: str) -> str:
    """A population pyramid: one row per band (youngest at the bottom), `left` and `right` counts."""
    row, top, centre_gap = 18, 24, 50
    height = top + row * len(bands) + 30
    half = (WIDTH - centre_gap) / 2 - 20
    largest = max([v for v in (*left, *right) if _ok(v)] or [1])
    body = [_text(WIDTH / 4, 14, labels[0], "middle"), _text(3 * WIDTH / 4, 14, labels[1], "middle")]
    marks = 0
    centre = WIDTH / 2
    for i, band in enumerate(bands):
        y = top + row * (len(bands) - 1 - i)
        body.append(_text(centre, y + row * 0.7, band, "middle"))
        for value, side, colour in ((left[i], -1, PALETTE[0]), (right[i], 1, PALETTE[1])):
            if not _ok(value):
                continue
            length = half * float(value) / largest
            x = centre - centre_gap / 2 - length if side < 0 else centre + centre_gap / 2
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y + 2:.1f}" width="{length:.1f}" height="{row - 4}" '
                f'fill="{colour}"><title>{escape(band)}: {value:,.0f}</title></rect>'
            )
            marks += 1
    body.append(_text(centre, height - 8, f"largest band: {largest:,.0f} people", "middle"))
    return _svg(WIDTH, height, title, marks, body)


def bubble_matrix(
    rows: Sequence[str], columns: Sequence[str], size: dict[tuple[str, str], float | None], title: str, unit: str
) -> str:
    """A matrix of circles whose areas are proportional to `size[(row, column)]` (e.g. people per segment x tier)."""
    left, top, cell = 300, 40, 62
    height = top + cell * len(rows) + 10
    width = max(WIDTH, left + cell * len(columns) + 20)
    largest = max([v for v in size.values() if _ok(v)] or [1])
    body = [_text(left + cell * (j + 0.5), top - 12, c, "middle") for j, c in enumerate(columns)]
    marks = 0
    for i, r in enumerate(rows):
        cy = top + cell * (i + 0.5)
        body.append(_text(left - 8, cy + 4, r, "end"))
        for j, c in enumerate(columns):
            value = size.get((r, c))
            cx = left + cell * (j + 0.5)
            if not _ok(value):
                body.append(_text(cx, cy + 4, "*", "middle", 'fill="#768692"'))
                continue
            radius = max(math.sqrt(float(value) / largest) * (cell / 2 - 3), 1.5 if value else 0)
            body.append(
                f'<circle class="mark" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{PALETTE[0]}" '
                f'fill-opacity="0.7"><title>{escape(r)} x {escape(c)}: {value:,.0f} {escape(unit)}</title></circle>'
            )
            marks += 1
    return _svg(width, height, title, marks, body)


def line_chart(
    series: Sequence[Series], title: str, x_label: str, y_label: str, y_from_zero: bool = True, points: bool = False
) -> str:
    """Lines (with their bands, if any) on shared axes; `points` marks every value (for few x values)."""
    left, right, top, bottom = 60, 150, 16, 40
    height = 300
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    xs = [float(x) for s in series for x in s.x]
    ys = [float(v) for s in series for vals in (s.y, s.low or (), s.high or ()) for v in vals if _ok(v)]
    if not xs or not ys:
        return _svg(WIDTH, 40, title, 0, [_text(10, 24, "no published values")])
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min([0.0, *ys]) if y_from_zero else min(ys), max(ys))
    x0, x1, y0, y1 = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs)), y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + (float(x) - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (float(y) - y0) / ((y1 - y0) or 1) * plot_h

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#425563"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#425563"/>']  # fmt: skip
    body += [_text(px(t), top + plot_h + 14, _fmt(t), "middle") for t in x_ticks]
    body += [_text(left - 6, py(t) + 4, _fmt(t), "end") for t in y_ticks]
    middle = top + plot_h / 2
    body += [_text(left + plot_w / 2, height - 6, x_label, "middle"),
             _text(12, middle, y_label, "middle", f'transform="rotate(-90 12 {middle:.1f})"')]  # fmt: skip
    marks = 0
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        if s.low is not None and s.high is not None:
            band = [(x, lo, hi) for x, lo, hi in zip(s.x, s.low, s.high, strict=True) if _ok(lo) and _ok(hi)]
            if band:
                outline = [f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in band]
                outline += [f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(band)]
                body.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.18"/>')
        drawn = [(x, y) for x, y in zip(s.x, s.y, strict=True) if _ok(y)]
        if drawn:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in drawn)
            body.append(f'<polyline class="mark" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            marks += len(drawn)
            if points:
                body += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in drawn]
            body.append(_text(left + plot_w + 8, top + 14 + 16 * k, s.name, extra=f'fill="{colour}"'))
    return _svg(WIDTH, height, title, marks, body)


def bar_chart(labels: Sequence[str], values: Sequence, title: str, unit: str) -> str:
    """Horizontal bars, one per label (suppressed values shown as '*'; none publishable: says so)."""
    if not any(_ok(v) for v in values):
        return _svg(WIDTH, 40, title, 0, [_text(10, 24, "no published values (every value suppressed)")])
    left, row, top = 200, 20, 10
    height = top + row * len(labels) + 10
    largest = max([float(v) for v in values if _ok(v)] or [1])
    body, marks = [], 0
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + row * i
        body.append(_text(left - 8, y + row * 0.7, label, "end"))
        if not _ok(value):
            body.append(_text(left + 4, y + row * 0.7, "* (suppressed)", extra='fill="#768692"'))
            continue
        length = (WIDTH - left - 90) * float(value) / largest
        body.append(
            f'<rect class="mark" x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {float(value):,.1f} {escape(unit)}</title></rect>"
        )
        body.append(_text(left + length + 4, y + row * 0.7, f"{float(value):,.1f}"))
        marks += 1
    return _svg(WIDTH, height, title, marks, body)
