"""HTML of the analysts' dashboard: the page the service serves, the export's snapshot, the demo's report.

One renderer for all three. The service's page links its stylesheet and ES module from the package (served
under a strict Content-Security-Policy: no inline script or style, no CDN); a static snapshot inlines the
stylesheet and has no script. Charts are inline SVG made here. Every number cell carries its exact value in
``data-value`` (what the CSV and the API say), and shows it rounded.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

from analyst.dashboard import SUMMARY, table_rows

TITLES = {
    "name": "name", "category": "category", "bucket": "from", "status": "status",
    "active_seconds": "hours", "student_days": "student-days", "days": "days",
    "peak_daily_students": "peak daily students (≥)", "median_daily_students": "median daily students (≥)",
    "licenses": "licences", "peak_utilisation": "peak use", "median_utilisation": "median use",
    "annual_cost": "annual cost", "cost_per_peak_student": "cost per peak student", "approved": "approved",
}  # fmt: skip
NO_CELL = "no cell with at least K students in this range"
PALETTE = ("#1d4ed8", "#15803d", "#b45309", "#b91c1c", "#6d28d9", "#0e7490", "#475569")
PRESETS = (("7", "Last 7 days"), ("30", "Last 30 days"), ("sytd", "School year to date"))


def asset(name: str) -> str:
    """A file of ``analyst/static`` (package data)."""
    return resources.files("analyst").joinpath("static", name).read_text(encoding="utf-8")


def fmt(column: str, value: Any) -> str:
    """A figure as shown (hours with two decimals, shares as percent, counts with separators)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column == "active_seconds":
        return f"{value / 3600:,.2f}"
    if column.endswith("utilisation"):
        return f"{value:.0%}"
    if column in ("annual_cost", "cost_per_peak_student"):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def table(table_id: str, caption: str, rows: list[dict[str, Any]], columns: tuple[str, ...],
          empty: str = "nothing in this range") -> str:  # fmt: skip
    """An accessible table: caption, column headers with scope, exact values in ``data-value``."""
    head = "".join(f'<th scope="col">{html.escape(TITLES[c])}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(
                    f'<td class="n" data-col="{c}" data-value="{value}">{fmt(c, value)}</td>'
                )
            else:
                cells.append(f'<td data-col="{c}">{fmt(c, value)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(
            f'<tr><td colspan="{len(columns)}" class="empty">{html.escape(empty)}</td></tr>'
        )
    return (f'<table id="{table_id}"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def bar_chart(
    label: str, points: list[tuple[str, float]], width: int = 640, height: int = 220
) -> str:
    """Vertical bars of hours (inline SVG with a title; the same numbers are in the table beside it)."""
    if not points:
        return '<p class="empty">No published usage in this range.</p>'
    left, bottom, top = 52, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max(v for _, v in points) or 1.0
    step = min(plot_w / len(points), 72.0)  # a few bars stay bars, not blocks
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-trend-title">'
             f'<title id="chart-trend-title">{html.escape(label)}</title>']  # fmt: skip
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{_axis(peak * i / 4, peak)}</text>")  # fmt: skip
    every = max(1, len(points) // 8)
    for i, (name, value) in enumerate(points):
        h = plot_h * value / peak
        x = left + i * step
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{html.escape(name)}: '
                     f"{value / 3600:.2f} h</title></rect>")  # fmt: skip
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 8}">{html.escape(name[5:])}</text>')
    return "".join(parts) + "</svg>"


def _axis(seconds: float, peak: float) -> str:
    """An axis label in hours, or minutes when the chart's peak is under two hours."""
    return f"{seconds / 60:,.0f} min" if peak < 7200 else f"{seconds / 3600:,.1f} h"


def share_chart(label: str, points: list[tuple[str, float]], width: int = 640) -> str:
    """Horizontal bars, one per category, longest first (inline SVG)."""
    if not points:
        return ""
    row_h, left = 22, 170
    peak = max(v for _, v in points) or 1.0
    height = row_h * len(points) + 6
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-categories-title">'
             f'<title id="chart-categories-title">{html.escape(label)}</title>']  # fmt: skip
    for i, (name, value) in enumerate(points):
        w = (width - left - 70) * value / peak
        y = 3 + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(name[:24])}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
                     f'fill="{PALETTE[(i + 1) % len(PALETTE)]}"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 15}">{_axis(value, peak)}</text>')  # fmt: skip
    return "".join(parts) + "</svg>"


def _form(data: dict[str, Any], today: str, sytd: str, categories: list[str]) -> str:
    options = "".join(
        f'<option value="{html.escape(c)}"{" selected" if c == data["category"] else ""}>{html.escape(c)}</option>'
        for c in ["", *categories]
    )
    presets = "".join(f'<button type="button" data-preset="{p}">{t}</button>' for p, t in PRESETS)
    return (f'<form id="range" method="get" action="/" data-today="{today}" data-sytd="{sytd}">'
            f"<fieldset><legend>Date range</legend>"
            f'<label for="from">From</label><input type="date" id="from" name="from" value="{data["from"]}" required>'
            f'<label for="to">To</label><input type="date" id="to" name="to" value="{data["to"]}" required>'
            f'<label for="category">Category</label><select id="category" name="category">{options}</select>'
            f'<button type="submit">Show</button><span class="presets">{presets}</span></fieldset></form>'
            f'<p><a id="csv" download href="/v1/dashboard.csv?{_query(data)}">Download CSV of this page</a></p>')  # fmt: skip


def _query(data: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    q = {"from": data["from"], "to": data["to"]}
    if data.get("category"):
        q["category"] = data["category"]
    if data.get("app"):
        q["app"] = data["app"]
    return html.escape(urlencode(q))


def page(data: dict[str, Any], *, live: dict[str, Any] | None = None, title: str = "Usage dashboard",
         facts: dict[str, str] | None = None, extra: str = "") -> str:  # fmt: skip
    """The dashboard for ``data`` (:func:`analyst.dashboard.dashboard_data`); ``extra`` is HTML placed first
    in ``<main>`` (the demo's intraday chart).

    ``live`` (``today``, ``sytd``, ``categories``, ``analyst``): the service's page with its form, linked
    stylesheet and module; ``None``: a static snapshot with the stylesheet inlined and no script.
    """
    k = data["k"]
    if live is not None:
        head = (
            '<link rel="stylesheet" href="/static/dashboard.css">'
            '<script type="module" src="/static/dashboard.js"></script>'
        )
        top = (f'<div class="who">Signed in as {html.escape(live["analyst"])} · '
               '<form method="post" action="/logout" class="inline"><button>Sign out</button></form></div>'
               + _form(data, live["today"], live["sytd"], live["categories"]))  # fmt: skip
    else:
        head, top = f"<style>{asset('dashboard.css')}</style>", ""
    fact_rows = "".join(f"<tr><th scope='row'>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>"
                        for a, b in (facts or {}).items())  # fmt: skip
    total = data["total"]
    trend = [(r["bucket"], float(r["active_seconds"])) for r in data["trend"]]
    cats = [(r["category"], float(r["active_seconds"])) for r in data["categories"]]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>{head}</head><body>
<header><h1>{html.escape(title)}</h1>{top}
<p class="note">{data["from"]} to {data["to"]}{
        _filters(data)
    }. Every figure comes from the de-identified view
<code>usage.app_daily_public</code>: cells of one day, app and sub-app with at least {
        k
    } distinct students;
smaller cells are in no figure, total or chart. Students are counted per day (daily tokens): <em>student-days</em>
add each day's distinct students per sub-app; <em>daily students (≥)</em> is the day's largest cell, a lower
bound.</p>{f"<table class='facts'>{fact_rows}</table>" if fact_rows else ""}</header>
<main>{extra}
<section aria-labelledby="h-total"><h2 id="h-total">In this range</h2>
{table("total", "All published usage in the range", [total], SUMMARY)}</section>
<section aria-labelledby="h-trend"><h2 id="h-trend">Trend (hours per {data["bucket"]})</h2>
{bar_chart(f"Hours per {data['bucket']}", trend)}
{table("trend", f"Per {data['bucket']}", data["trend"], ("bucket", *SUMMARY))}</section>
<div class="cols">
<section aria-labelledby="h-apps"><h2 id="h-apps">Top apps</h2>
{
        table(
            "top-apps",
            "Top apps by time",
            table_rows(data, "top_apps"),
            ("name", "category", *SUMMARY[:3]),
            NO_CELL,
        )
    }</section>
<section aria-labelledby="h-sites"><h2 id="h-sites">Top sites</h2>
{
        table(
            "top-sites",
            "Top sites by time",
            table_rows(data, "top_sites"),
            ("name", "category", *SUMMARY[:3]),
            NO_CELL,
        )
    }</section>
</div>
<section aria-labelledby="h-cat"><h2 id="h-cat">Categories</h2>
{share_chart("Hours per category", cats)}
{table("categories", "Per catalog category", data["categories"], ("category", *SUMMARY))}</section>
<section aria-labelledby="h-lic"><h2 id="h-lic">Licences</h2>
{
        table(
            "licenses",
            "Licence use (daily students ÷ licences owned)",
            data["licenses"],
            (
                "name",
                "licenses",
                "peak_daily_students",
                "median_daily_students",
                "peak_utilisation",
                "median_utilisation",
                "annual_cost",
                "cost_per_peak_student",
            ),
            "no catalog entry has licences",
        )
    }</section>
<section aria-labelledby="h-unapp"><h2 id="h-unapp">Unapproved or uncatalogued, in use</h2>
{
        table(
            "unapproved",
            "In use without approval",
            data["unapproved"],
            ("name", "category", "status", *SUMMARY[:3]),
        )
    }</section>
<section aria-labelledby="h-unused"><h2 id="h-unused">Catalogued, no published use</h2>
{
        table(
            "unused",
            f"No day with {k} or more students in the range",
            data["unused"],
            ("name", "category", "approved", "licenses"),
            "every catalogued app was used",
        )
    }</section>
</main></body></html>
"""  # noqa: E501


def _filters(data: dict[str, Any]) -> str:
    parts = [
        f"{name} {html.escape(str(data[name]))}" for name in ("app", "category") if data.get(name)
    ]
    return f" ({', '.join(parts)})" if parts else ""
