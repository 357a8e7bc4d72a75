"""The analysts' figures: pure functions over published cells of ``usage.app_daily_public``.

**The rule every analyst surface keeps** (API, dashboard, CSV, export, demo report): every figure is either a
published cell — a ``(day, app, sub_app)`` with at least ``K`` distinct students that day — or a sum, maximum
or lower median over a set of published cells chosen by the request (range, app, category, grouping). No
figure covers a suppressed cell. So the difference of any two figures is a combination of published cells,
each of which the analyst may already see on its own: subtracting a top-N from a total, a category from its
apps or one range from an overlapping one recovers nothing below ``K``. Complementary suppression
(:mod:`privacy.suppression`) is needed only when a total covers suppressed cells; no total here does
(its ``"published"`` mode). :func:`published` re-applies ``K`` to what the store returns, so a view migrated
with a smaller ``K`` still shows nothing below the configured one.

**Distinct students are per day.** Student tokens change every UTC day and the view counts distinct students
per day *and sub-app*, so a range's distinct students cannot be computed. What is shown instead:

- ``student_days``: the sum over days and sub-apps of each cell's distinct students (a student in two
  sub-apps of one app on one day counts twice; for one site or one sub-app it is exactly student-days);
- ``peak_daily_students`` / ``median_daily_students``: over the days, the largest published cell of the group
  that day — a lower bound on that day's distinct students, exact when the group is one sub-app or site.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from analyst.catalog import UNCATALOGUED, Catalog

Bucket = Literal["day", "week", "month"]
BUCKETS: tuple[Bucket, ...] = ("day", "week", "month")


class Cell(NamedTuple):
    """One published cell of the public view."""

    day: dt.date
    app: str
    sub_app: str
    active_seconds: float
    students: int


class Summary(NamedTuple):
    """Figures of a group of published cells (see the module docstring for what each means)."""

    active_seconds: float
    student_days: int
    peak_daily_students: int
    median_daily_students: int
    days: int


@dataclass(frozen=True, slots=True)
class Query:
    """What an analyst asked for: an inclusive day range and optional filters."""

    day_from: dt.date
    day_to: dt.date
    app: str | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        if self.day_to < self.day_from:
            raise ValueError("'to' is before 'from'")
        if (self.day_to - self.day_from).days > 400:
            raise ValueError("a range is at most 400 days")


def published(rows: Iterable[Mapping[str, Any]], k: int) -> list[Cell]:
    """Rows of the public view as cells, keeping only those with at least ``k`` students."""
    cells = [
        Cell(dt.date.fromisoformat(str(r["day"])), str(r["app"]), str(r["sub_app"]),
             float(r["active_seconds"]), int(r["students"]))
        for r in rows
    ]  # fmt: skip
    return [c for c in cells if c.students >= k]


def select(cells: Iterable[Cell], query: Query, catalog: Catalog) -> list[Cell]:
    """The cells of the query's range and filters."""
    return [
        c
        for c in cells
        if query.day_from <= c.day <= query.day_to
        and (query.app is None or c.app == query.app)
        and (
            query.category is None or catalog.entry_for(c.app, c.sub_app).category == query.category
        )
    ]


def summarise(cells: Iterable[Cell]) -> Summary:
    """Sum of time and student-days; peak and lower median of the daily largest cell."""
    cells = list(cells)
    daily: dict[dt.date, int] = defaultdict(int)
    for c in cells:
        daily[c.day] = max(daily[c.day], c.students)
    values = sorted(daily.values())
    return Summary(
        active_seconds=round(sum(c.active_seconds for c in cells), 3),
        student_days=sum(c.students for c in cells),
        peak_daily_students=values[-1] if values else 0,
        median_daily_students=int(statistics.median_low(values)) if values else 0,
        days=len(values),
    )


def grouped(cells: Iterable[Cell], key: Callable[[Cell], str]) -> dict[str, list[Cell]]:
    """Cells grouped by ``key``."""
    groups: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        groups[key(c)].append(c)
    return dict(groups)


def top(
    cells: Iterable[Cell], kind: Literal["apps", "sites"], n: int, catalog: Catalog
) -> dict[str, Any]:
    """The ``n`` apps (every app but ``web``) or sites (``web`` domains) with the most time, and the
    total over all of them (published cells only, so ``total - top`` is published cells too)."""
    mine = [c for c in cells if (c.app == "web") == (kind == "sites")]
    groups = grouped(mine, (lambda c: c.sub_app) if kind == "sites" else (lambda c: c.app))
    rows = [
        {"name": name, "category": catalog.entry_for(g[0].app, g[0].sub_app).category,
         **summarise(g)._asdict()}
        for name, g in groups.items()
    ]  # fmt: skip
    rows.sort(key=lambda r: (-r["active_seconds"], r["name"]))
    return {"rows": rows[:n], "total": summarise(mine)._asdict(), "groups": len(rows)}


def trend(cells: Iterable[Cell], bucket: Bucket) -> list[dict[str, Any]]:
    """Figures per day, ISO week (starting Monday) or calendar month, oldest first."""
    groups = grouped(cells, lambda c: bucket_start(c.day, bucket).isoformat())
    return [{"bucket": b, **summarise(g)._asdict()} for b, g in sorted(groups.items())]


def bucket_start(day: dt.date, bucket: Bucket) -> dt.date:
    """The first day of ``day``'s bucket."""
    if bucket == "week":
        return day - dt.timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def categories(cells: Iterable[Cell], catalog: Catalog) -> list[dict[str, Any]]:
    """Figures per catalog category (``uncatalogued`` for cells no entry matches), most time first."""
    groups = grouped(cells, lambda c: catalog.entry_for(c.app, c.sub_app).category)
    rows = [{"category": name, **summarise(g)._asdict()} for name, g in groups.items()]
    return sorted(rows, key=lambda r: (-r["active_seconds"], r["category"]))


def by_entry(cells: Iterable[Cell], catalog: Catalog) -> dict[str, list[Cell]]:
    """Cells grouped by the name of their catalog entry (the app or site when uncatalogued)."""
    return grouped(cells, lambda c: catalog.entry_for(c.app, c.sub_app).key)


def unapproved(cells: Iterable[Cell], catalog: Catalog) -> list[dict[str, Any]]:
    """Apps and sites in use that the catalog marks unapproved, or that it does not know."""
    rows = []
    for name, group in by_entry(cells, catalog).items():
        entry = catalog.entry_for(group[0].app, group[0].sub_app)
        if entry.approved is not True:
            status = "not in catalog" if entry.category == UNCATALOGUED else "unapproved"
            rows.append({"name": name, "category": entry.category, "status": status,
                         **summarise(group)._asdict()})  # fmt: skip
    return sorted(rows, key=lambda r: (-r["active_seconds"], r["name"]))


def licenses(cells: Iterable[Cell], catalog: Catalog, active_days: int) -> list[dict[str, Any]]:
    """Licence use of every entry with licences: peak and median daily students (lower bounds) over the
    range's ``active_days`` (days with any published cell; days without this entry count as 0), ÷ seats;
    cost per peak daily student."""
    groups = by_entry(cells, catalog)
    rows: list[dict[str, Any]] = []
    for entry in catalog.entries:
        if not entry.licenses or any(r["name"] == entry.key for r in rows):
            continue
        s = summarise(groups.get(entry.key, []))
        peaks = _daily_peaks(groups.get(entry.key, []))
        daily = sorted(peaks + [0] * max(0, active_days - s.days))
        median = int(statistics.median_low(daily)) if daily else 0
        rows.append({
            "name": entry.key, "category": entry.category, "licenses": entry.licenses,
            "peak_daily_students": s.peak_daily_students, "median_daily_students": median,
            "peak_utilisation": round(s.peak_daily_students / entry.licenses, 4),
            "median_utilisation": round(median / entry.licenses, 4),
            "annual_cost": entry.annual_cost,
            "cost_per_peak_student": (round(entry.annual_cost / s.peak_daily_students, 2)
                                      if entry.annual_cost is not None and s.peak_daily_students
                                      else None),
        })  # fmt: skip
    return rows


def _daily_peaks(cells: Iterable[Cell]) -> list[int]:
    daily: dict[dt.date, int] = defaultdict(int)
    for c in cells:
        daily[c.day] = max(daily[c.day], c.students)
    return list(daily.values())


def unused(cells: Iterable[Cell], catalog: Catalog) -> list[dict[str, Any]]:
    """Catalog entries with no published cell in the range (unused, or fewer than K students a day)."""
    seen = set(by_entry(cells, catalog))
    names: dict[str, dict[str, Any]] = {}
    for e in catalog.entries:
        if e.key not in seen and e.key not in names:
            names[e.key] = {"name": e.key, "category": e.category, "approved": e.approved,
                            "licenses": e.licenses}  # fmt: skip
    return list(names.values())
