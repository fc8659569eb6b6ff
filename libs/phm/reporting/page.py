"""The refresh report as one self-contained HTML page: inline CSS and SVG, images as data URIs, no script and
no request to any other host, so it reads the same offline, from disk or attached to an email."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from phm.reporting.sections import Section

STYLE = """
body{font-family:Arial,sans-serif;color:#212b32;margin:0 auto;max-width:980px;padding:0 16px 40px}
header{border-bottom:4px solid #005eb8;margin-bottom:12px}h1{color:#005eb8;margin:16px 0 4px}
h2{color:#005eb8;border-bottom:1px solid #d8dde0;padding-top:12px}nav a{margin-right:12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #d8dde0;padding:3px 6px;
text-align:right}th{background:#f0f4f5}td:first-child,th:first-child{text-align:left}.suppressed{color:#768692}
.missing{color:#8a1538}.chart{display:block;margin:8px 0;max-width:100%;height:auto}.plot{max-width:48%;margin:4px}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:bold}
"""


PUBLISHED_FOOTER = (
    "Every count is disclosure-controlled (suppressed 1-7, rounded to 5) before it is shown; * marks a suppressed "
    "value. Pseudonymised data only."
)


def render_page(
    title: str, meta: Sequence[tuple[str, str]], sections: Sequence[Section], footer: str = PUBLISHED_FOOTER
) -> str:
    """The whole page: a header naming what it shows (`meta`: the refresh, data versions and models), a contents
    line, the sections in order and a footer saying how the numbers were protected."""
    contents = " ".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections)
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta)
    body = "".join(f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<style>{STYLE}</style></head><body><header><h1>{escape(title)}</h1><dl class="meta">{facts}</dl>'
        f"<nav>{contents}</nav></header>{body}<footer><p>{escape(footer)}</p></footer></body></html>"
    )


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
