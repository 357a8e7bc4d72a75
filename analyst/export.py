"""``csync usage export``: a period's CSVs and a static HTML snapshot, for cron or a Kubernetes CronJob.

The period is the last *complete* one before the reference day (``--as-of``, default today, UTC): ``daily``
= yesterday, ``weekly`` = the last ISO week (Monday–Sunday), ``monthly`` = the last calendar month. It is
written to ``DIR/{label}/`` (``weekly-2026-W48``): ``daily.csv`` (the published cells), one CSV per dashboard
table, ``index.html`` (the dashboard rendered without script) and ``MANIFEST.json`` (range, K, SHA-256 of
every file). Files go to a temporary folder that is renamed into place, so a reader never sees half an export.

Idempotent per period: a period already exported *final* is skipped (exit 0). An export is final once
``MAX_EVENT_AGE_H`` (plus an hour) has passed since the period's end — before that, devices may still upload
buffered events of the period — and an export made earlier is rewritten by the next run. ``--force`` rewrites.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from analyst import reports
from analyst.catalog import Catalog
from analyst.dashboard import TABLES, dashboard_data, table_rows, to_csv
from analyst.render import page
from analyst.reports import Query
from analyst.source import Reader

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")


def period_range(period: Period, as_of: dt.date) -> tuple[str, dt.date, dt.date]:
    """``(label, first day, last day)`` of the last complete period before ``as_of``."""
    if period == "daily":
        day = as_of - dt.timedelta(days=1)
        return f"daily-{day.isoformat()}", day, day
    if period == "weekly":
        start = as_of - dt.timedelta(days=as_of.weekday() + 7)
        year, week, _ = start.isocalendar()
        return f"weekly-{year}-W{week:02d}", start, start + dt.timedelta(days=6)
    end = as_of.replace(day=1) - dt.timedelta(days=1)
    return f"monthly-{end:%Y-%m}", end.replace(day=1), end


@dataclass(frozen=True)
class ExportResult:
    """Where the period went and whether this run wrote it."""

    path: Path
    written: bool
    final: bool


def is_final(day_to: dt.date, now: dt.datetime, max_event_age_h: int) -> bool:
    """Whether no event of the period can still arrive (the worker rejects events older than that)."""
    period_end = dt.datetime.combine(day_to + dt.timedelta(days=1), dt.time(), dt.UTC)
    return now >= period_end + dt.timedelta(hours=max_event_age_h + 1)


def export_period(
    reader: Reader, k: int, catalog: Catalog, out_dir: Path, period: Period, *,
    now: dt.datetime, max_event_age_h: int, force: bool = False,
) -> ExportResult:  # fmt: skip
    """Write (or skip) the export of the last complete ``period`` before ``now``."""
    label, day_from, day_to = period_range(period, now.date())
    target = out_dir / label
    final = is_final(day_to, now, max_event_age_h)
    manifest = target / "MANIFEST.json"
    if not force and manifest.exists() and orjson.loads(manifest.read_bytes()).get("final"):
        return ExportResult(target, written=False, final=True)
    query = Query(day_from, day_to)
    cells = reports.select(reports.published(reader(day_from, day_to), k), query, catalog)
    files = _files(cells, query, catalog, k, label)
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    files["MANIFEST.json"] = orjson.dumps(
        {"period": label, "from": str(day_from), "to": str(day_to), "k": k, "final": final,
         "files": digests}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
    ).decode()  # fmt: skip
    _write_atomically(out_dir, label, files)
    return ExportResult(target, written=True, final=final)


def _files(
    cells: list[reports.Cell], query: Query, catalog: Catalog, k: int, label: str
) -> dict[str, str]:
    data = dashboard_data(cells, query, catalog, k)
    daily = [
        {
            **c._asdict(),
            "day": c.day.isoformat(),
            "category": catalog.entry_for(c.app, c.sub_app).category,
        }
        for c in sorted(cells)
    ]
    files = {
        "daily.csv": to_csv(
            daily, ("day", "app", "sub_app", "category", "active_seconds", "students")
        )
    }
    for key, name, columns in TABLES:
        files[f"{name}.csv"] = to_csv(table_rows(data, key), columns)
    files["index.html"] = page(data, title=f"Usage {label}")
    return files


def _write_atomically(out_dir: Path, label: str, files: dict[str, str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{label}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, text in files.items():
        (tmp / name).write_text(text, encoding="utf-8")
    target = out_dir / label
    old = out_dir / f".{label}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
