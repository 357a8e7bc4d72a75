"""The scheduled export: which period, what is written, idempotent per period once final."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import orjson

from analyst.catalog import Catalog
from analyst.export import export_period, period_range

FRIDAY = dt.date(2026, 12, 4)


def test_the_period_is_the_last_complete_one() -> None:
    assert period_range("weekly", FRIDAY) == (
        "weekly-2026-W48",
        dt.date(2026, 11, 23),
        dt.date(2026, 11, 29),
    )
    assert (
        period_range("weekly", dt.date(2026, 11, 30))[0] == "weekly-2026-W48"
    )  # Monday: last week
    assert period_range("daily", FRIDAY) == (
        "daily-2026-12-03",
        dt.date(2026, 12, 3),
        dt.date(2026, 12, 3),
    )
    assert period_range("monthly", FRIDAY) == (
        "monthly-2026-11",
        dt.date(2026, 11, 1),
        dt.date(2026, 11, 30),
    )
    assert period_range("monthly", dt.date(2027, 1, 1))[0] == "monthly-2026-12"


def test_export_writes_csvs_and_a_snapshot_once_per_final_period(tmp_path: Path) -> None:
    reads: list[tuple[dt.date, dt.date]] = []
    rows = [{"day": "2026-11-24", "app": "math", "sub_app": "a", "active_seconds": 90.0, "students": 11},
            {"day": "2026-11-24", "app": "math", "sub_app": "b", "active_seconds": 30.0, "students": 4}]  # fmt: skip

    def reader(day_from: dt.date, day_to: dt.date) -> list[dict[str, Any]]:
        reads.append((day_from, day_to))
        return rows

    early = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)  # Sunday's late events may still arrive
    first = export_period(reader, 10, Catalog(), tmp_path, "weekly", now=early, max_event_age_h=72)
    assert first.written and not first.final
    late = dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC)
    second = export_period(reader, 10, Catalog(), tmp_path, "weekly", now=late, max_event_age_h=72)
    assert second.written and second.final and second.path == first.path  # rewritten: now final
    third = export_period(reader, 10, Catalog(), tmp_path, "weekly", now=late, max_event_age_h=72)
    assert not third.written and len(reads) == 2  # idempotent: not even read again
    forced = export_period(
        reader, 10, Catalog(), tmp_path, "weekly", now=late, max_event_age_h=72, force=True
    )
    assert forced.written
    folder = tmp_path / "weekly-2026-W48"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weekly-2026-W48"]  # no temporary left
    manifest = orjson.loads((folder / "MANIFEST.json").read_bytes())
    assert (manifest["from"], manifest["to"], manifest["k"], manifest["final"]) == (
        "2026-11-23",
        "2026-11-29",
        10,
        True,
    )
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert {"daily.csv", "top-apps.csv", "licenses.csv", "index.html"} <= set(manifest["files"])
    daily = (folder / "daily.csv").read_text().splitlines()
    assert daily == [
        "day,app,sub_app,category,active_seconds,students",
        "2026-11-24,math,a,uncatalogued,90.0,11",
    ]
    html = (folder / "index.html").read_text()
    assert (
        "<script" not in html
        and "Usage weekly-2026-W48" in html
        and 'data-value="30.0"' not in html
    )
