"""The demo's HTML report: one self-contained file (no script, no external asset) built from the analysts' view.

Everything in it comes from ``usage.app_daily_public`` (cells of at least ``K_ANONYMITY`` students) and is
rendered by the analysts' dashboard renderer (:mod:`analyst.render`, its static form): the same tables, charts
and rules as ``csync analyst-api`` shows. The one addition is the usage over the simulated school day: the view
is daily, so the day's shape is taken from how the view grew while the demo ran — the orchestrator read it
every second and :func:`day_profile` turns consecutive readings into time attributed per slice of the day.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyst.catalog import Catalog
from analyst.dashboard import dashboard_data
from analyst.render import page
from analyst.reports import Query, published
from demo.probe import UsageTotals

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#94a3b8")


@dataclass(frozen=True)
class Reading:
    """The public view summed per app, read at simulated time ``sim_ms``."""

    sim_ms: int
    apps: dict[str, float]


@dataclass(frozen=True)
class Profile:
    """Seconds attributed per slice of the day: ``series[app][i]`` for slice ``i`` starting at ``starts[i]``."""

    starts: list[int]
    series: dict[str, list[float]]


def day_profile(readings: Sequence[Reading], slices: int = 26, top: int = 6) -> Profile:
    """Growth of the view between consecutive readings, binned into ``slices`` of the simulated day.

    The ``top`` apps by final time get their own series; the rest are summed as ``other``. A cell enters the
    view only once it has ``K_ANONYMITY`` students, so a slice can hold time of earlier slices: never negative.
    """
    points = sorted(readings, key=lambda r: r.sim_ms)
    if len(points) < 2:
        return Profile([], {})
    first, last = points[0].sim_ms, points[-1].sim_ms
    width = max(1, (last - first) // slices + 1)
    final = points[-1].apps
    ranked = [a for a, _ in sorted(final.items(), key=lambda kv: -kv[1])[:top]]
    names = [*ranked, "other"]
    series = {name: [0.0] * slices for name in names}
    for before, after in zip(points, points[1:], strict=False):
        index = min(slices - 1, (after.sim_ms - first) // width)
        for app in set(before.apps) | set(after.apps):
            delta = after.apps.get(app, 0.0) - before.apps.get(app, 0.0)
            if delta > 0:
                series[app if app in ranked else "other"][index] += delta
    return Profile([first + i * width for i in range(slices)], series)


def svg_chart(profile: Profile, width: int = 900, height: int = 320) -> str:
    """Stacked bars of hours per slice (inline SVG, one colour per app, legend below)."""
    if not profile.starts:
        return '<p class="empty">Not enough readings of the view for a chart.</p>'
    left, bottom, top_pad = 56, 40, 12
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    n = len(profile.starts)
    totals = [sum(s[i] for s in profile.series.values()) for i in range(n)]
    peak = max(totals) or 1.0
    bar_w = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
        f'viewBox="0 0 {width} {height + 30}" role="img" aria-label="usage over the day">'
    ]
    for k in range(5):
        value = peak * k / 4
        y = top_pad + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value / 3600:.1f} h</text>"
        )
    for i in range(n):
        y = top_pad + plot_h
        for j, (_name, values) in enumerate(profile.series.items()):
            h = plot_h * values[i] / peak
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}"/>'
            )
        if i % max(1, n // 8) == 0:
            label = dt.datetime.fromtimestamp(profile.starts[i] / 1000, dt.UTC).strftime("%H:%M")
            parts.append(
                f'<text x="{left + i * bar_w:.1f}" y="{top_pad + plot_h + 16}" font-size="11">'
                f"{label}</text>"
            )
    x = left
    for j, name in enumerate(profile.series):
        parts.append(
            f'<rect x="{x}" y="{height + 8}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 16}" y="{height + 18}" font-size="12">{html.escape(name)}</text>'
        )
        x += 24 + 8 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _cells_of_totals(totals: UsageTotals, day: dt.date) -> list[dict[str, Any]]:
    """Rows standing in for the view when only per-app totals are at hand (one cell per app and site)."""
    rows = [
        {
            "day": day.isoformat(),
            "app": app,
            "sub_app": "",
            "active_seconds": seconds,
            "students": students,
        }
        for app, (seconds, students) in totals.apps.items()
        if app != "web"
    ]
    rows += [{"day": day.isoformat(), "app": "web", "sub_app": site, "active_seconds": seconds,
              "students": students} for site, (seconds, students) in totals.sites.items()]  # fmt: skip
    return rows


def write_report(
    path: Path,
    totals: UsageTotals,
    readings: Sequence[Reading],
    *,
    k_anonymity: int,
    summary: dict[str, str],
    rows: list[dict[str, Any]] | None = None,
    catalog: Catalog | None = None,
) -> Path:
    """Write ``path`` (creating its folder) and return it.

    ``rows`` are the public view's rows (the report then shows exactly what the analysts' dashboard shows for
    their days, rendered by :mod:`analyst.render`); without them, one cell per app and site of ``totals``.
    """
    today = dt.datetime.now(dt.UTC).date()
    rows = rows if rows is not None else _cells_of_totals(totals, today)
    cells = published(rows, k_anonymity)
    days = sorted({c.day for c in cells}) or [today]
    query = Query(days[0], days[-1])
    data = dashboard_data(cells, query, catalog or Catalog(), k_anonymity)
    profile = (
        "<section aria-labelledby='h-day'><h2 id='h-day'>Usage over the simulated school day "
        "(hours per slice, top apps)</h2>" + svg_chart(day_profile(readings)) +
        "<p class='note'>Time a slice gained in the view while the demo ran. A cell joins the view once "
        f"it reaches {k_anonymity} students, with the time it had gathered until then.</p></section>"
    )  # fmt: skip
    html_page = page(data, title="ClassroomSync demo report", facts=summary, extra=profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page, encoding="utf-8")
    return path
