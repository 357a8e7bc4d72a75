"""What the dashboard shows for a range: every table and chart's data, from published cells only.

One function assembles it (:func:`dashboard_data`), and the API page, the CSV of what is on screen, the
scheduled export's snapshot and the demo's report all render that same value (:mod:`analyst.render`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from analyst import reports
from analyst.catalog import Catalog
from analyst.reports import Bucket, Cell, Query

TOP_N = 10


def bucket_for(query: Query) -> Bucket:
    """Days for up to a month, weeks up to half a year, months beyond."""
    days = (query.day_to - query.day_from).days + 1
    return "day" if days <= 31 else "week" if days <= 183 else "month"


def school_year_start(today: dt.date) -> dt.date:
    """1 August of the school year ``today`` is in (US districts' fiscal and school year)."""
    year = today.year if today.month >= 8 else today.year - 1
    return dt.date(year, 8, 1)


def dashboard_data(cells: list[Cell], query: Query, catalog: Catalog, k: int) -> dict[str, Any]:
    """Every figure of the dashboard for ``query`` (``cells``: published cells, any range)."""
    chosen = reports.select(cells, query, catalog)
    active_days = len({c.day for c in chosen})
    bucket = bucket_for(query)
    return {
        "from": query.day_from.isoformat(),
        "to": query.day_to.isoformat(),
        "app": query.app,
        "category": query.category,
        "k": k,
        "bucket": bucket,
        "active_days": active_days,
        "total": reports.summarise(chosen)._asdict(),
        "top_apps": reports.top(chosen, "apps", TOP_N, catalog),
        "top_sites": reports.top(chosen, "sites", TOP_N, catalog),
        "trend": reports.trend(chosen, bucket),
        "categories": reports.categories(chosen, catalog),
        "licenses": reports.licenses(chosen, catalog, active_days),
        "unapproved": reports.unapproved(chosen, catalog),
        "unused": reports.unused(chosen, catalog),
    }


# The tables of the dashboard in screen order: (key in the data, CSV/HTML id, columns).
SUMMARY = ("active_seconds", "student_days", "peak_daily_students", "median_daily_students", "days")
TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("top_apps", "top-apps", ("name", "category", *SUMMARY)),
    ("top_sites", "top-sites", ("name", "category", *SUMMARY)),
    ("trend", "trend", ("bucket", *SUMMARY)),
    ("categories", "categories", ("category", *SUMMARY)),
    ("licenses", "licenses", ("name", "category", "licenses", "peak_daily_students",
                              "median_daily_students", "peak_utilisation", "median_utilisation",
                              "annual_cost", "cost_per_peak_student")),
    ("unapproved", "unapproved", ("name", "category", "status", *SUMMARY)),
    ("unused", "unused", ("name", "category", "approved", "licenses")),
)  # fmt: skip


def table_rows(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The rows of one table of ``data`` (top tables keep their rows, not their totals)."""
    value = data[key]
    rows: list[dict[str, Any]] = value["rows"] if isinstance(value, dict) else value
    return rows


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...], table: str | None = None) -> str:
    """Rows as CSV (a leading ``table`` column when several tables share one file)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((["table"] if table else []) + list(columns))
    for row in rows:
        writer.writerow(([table] if table else []) + [_cell(row.get(c)) for c in columns])
    return out.getvalue()


def dashboard_csv(data: dict[str, Any]) -> str:
    """Everything on screen as one CSV: one block per table (its own header line, every line starting
    with the table's id), blocks separated by an empty line."""
    return "\n".join(to_csv(table_rows(data, key), columns, name) for key, name, columns in TABLES)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
