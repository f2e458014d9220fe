"""The report as one self-contained HTML page: Vega-Altair charts over each figure's rows, each with a
table of its numbers, and the Vega libraries inlined (vl-convert's bundle), so it opens offline.

Pure: rows in, text out. Every value from the registry (brand and company names are free text) is
escaped for HTML, and the chart specs are embedded as JSON that cannot close their script element.
"""

from __future__ import annotations

import html
import json
from datetime import date, datetime
from typing import Any, Callable, Sequence

import altair as alt

Rows = list[dict[str, Any]]
WIDTH = 720


def _weeks(y: str, color: str, title: str, side_by_side: bool = False) -> Callable[[Rows], alt.Chart]:
    """Bars per ISO week, stacked by ``color`` (or side by side)."""

    def chart(rows: Rows) -> alt.Chart:
        offset = {"xOffset": alt.XOffset(f"{color}:N")} if side_by_side else {}
        return alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            x=alt.X("week:O", timeUnit="yearmonthdate", title="week (Monday, UTC)"),
            y=alt.Y(f"{y}:Q", title=title),
            color=alt.Color(f"{color}:N"),
            tooltip=["week:T", f"{color}:N", f"{y}:Q"],
            **offset,
        )

    return chart


def _percentiles(rows: Rows) -> alt.Chart:
    """Median and 90th percentile per week, a line per family (solid: median, dashed: 90th percentile)."""
    return alt.Chart(alt.Data(values=rows)).transform_fold(["median_days", "p90_days"], as_=["measure", "days"]).mark_line(point=True).encode(
        x=alt.X("week:T", timeUnit="yearmonthdate", title="week of approval (Monday, UTC)"),
        y=alt.Y("days:Q", title="days from receipt to approval"),
        color=alt.Color("family:N"),
        strokeDash=alt.StrokeDash("measure:N"),
        tooltip=["week:T", "family:N", "measure:N", "days:Q", "colas:Q"],
    )


def _ranking(label: str, x: str) -> Callable[[Rows], alt.Chart]:
    """Horizontal bars, largest first."""

    def chart(rows: Rows) -> alt.Chart:
        return alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            y=alt.Y(f"{label}:N", sort="-x", title=None),
            x=alt.X(f"{x}:Q"),
            tooltip=[f"{label}:N", f"{x}:Q"],
        )

    return chart


CHARTS: dict[str, Callable[[Rows], alt.Chart]] = {
    "approvals_by_week": _weeks("approvals", "family", "COLAs approved"),
    "new_entrants_by_week": _weeks("colas", "kind", "COLAs", side_by_side=True),
    "days_to_approval_by_week": _percentiles,
    "top_filers": _ranking("company_name", "approvals"),
    "status_events_by_week": _weeks("events", "change_type", "events"),
    "approvals_by_origin": _ranking("origin", "approvals"),
}


def json_value(value: Any) -> Any:
    """A row value as JSON has it: dates and times as ISO text."""
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def chart_spec(name: str, rows: Rows) -> dict[str, Any] | None:
    """The Vega-Lite spec of figure ``name``'s chart over ``rows`` (None: the figure is a table only)."""
    make = CHARTS.get(name)
    if make is None:
        return None
    return make(rows).properties(width=WIDTH).to_dict()


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``</`` can end it early, no ``<!--`` open a comment."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(rows: Rows) -> str:
    if not rows:
        return '<p class="empty">Nothing in this period.</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2.5em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; } th { background: #f4f4f4; }
details { margin-top: 0.5em; } .empty, .meta { color: #666; }
"""


def render(title: str, meta: str, sections: Sequence[tuple[str, str, Rows]], vega_bundle: str) -> str:
    """The page: ``sections`` are (figure name, heading, rows); ``vega_bundle`` the inlined Vega libraries
    (:func:`vega_bundle`)."""
    parts, embeds = [], []
    for name, heading, rows in sections:
        parts.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        spec = chart_spec(name, rows) if rows else None
        if spec is not None:
            parts.append(f'<div class="chart" id="chart-{html.escape(name)}"></div>')
            parts.append(f'<script type="application/json" class="spec" data-figure="{html.escape(name)}">{_script_json(spec)}</script>')
            embeds.append(name)
        table = _table(rows)
        parts.append(f"<details><summary>The numbers</summary>{table}</details>" if spec else table)
        parts.append("</section>")
    embed = (
        "for (const el of document.querySelectorAll('script.spec')) {"
        " vegaEmbed('#chart-' + el.dataset.figure, JSON.parse(el.textContent), {actions: false, renderer: 'svg'}); }"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style><script>{vega_bundle}</script></head>\n<body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(meta)}</p>\n' + "\n".join(parts) + f"\n<script>{embed}</script></body></html>\n"
    )


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (vl-convert's bundle, for the Vega-Lite version Altair writes)."""
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]))
