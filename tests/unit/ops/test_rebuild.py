"""Which days can be rebuilt, and the replay equals the worker's rule (no Kafka, no ClickHouse)."""

from __future__ import annotations

import datetime as dt

import orjson

from ops.rebuild import (
    DAY_MS,
    Horizons,
    day_start_ms,
    rebuilt_rows,
    refusals,
    replay_intervals,
)
from schemas.decoder import Limits
from schemas.probe import PROBE_DISTRICT
from schemas.routing import partition_for_key as partition_of
from streams.usage import UsageRules

DAY = dt.date(2026, 11, 20)
START = day_start_ms(DAY)
H = Horizons(now_ms=START + 10 * DAY_MS, retention_ms=7 * DAY_MS, first_kept_ms=None,
             max_event_age_ms=72 * 3_600_000, slack_ms=240_000)  # fmt: skip


def test_closed_retained_days_pass_others_say_why_and_when() -> None:
    assert refusals(dt.date(2026, 11, 25), dt.date(2026, 11, 25), H) == []
    old = refusals(DAY, DAY, H)
    assert old == [
        f"{DAY}: its raw records expired from the raw topic on 2026-11-26 23:00 UTC (retention 7 d)"
    ]
    open_ = refusals(dt.date(2026, 11, 28), dt.date(2026, 11, 28), H)
    assert open_ and "still open to late events until 2026-12-02 00:04 UTC" in open_[0]
    trimmed = Horizons(H.now_ms, -1, START + 8 * DAY_MS, H.max_event_age_ms, H.slack_ms)
    assert "are gone" in refusals(dt.date(2026, 11, 25), dt.date(2026, 11, 25), trimmed)[0]
    assert refusals(dt.date(2026, 11, 27), dt.date(2026, 11, 26), H) == ["--to is before --from"]


def _record(p: int, o: int, now: int, district: str, student: str, ts: int, app: str) -> tuple:  # type: ignore[type-arg]
    event = {"v": 1, "event_id": f"e{o}", "kind": "app_focus", "ts": ts, "district_id": district,
             "student_id": student, "device_id": "dev", "app": app}  # fmt: skip
    return (p, o, now, f"{district}:{student}".encode(), orjson.dumps(event))


def test_replay_attributes_like_the_rule_and_skips_probe_and_misrouted() -> None:
    parts = 4
    home = partition_of(b"d-1:s-1", parts)
    other = (home + 1) % parts
    t = START + 12 * 3_600_000
    records = [
        _record(home, 0, t, "d-1", "s-1", t, "docs"),
        _record(home, 1, t + 30_000, "d-1", "s-1", t + 30_000, "slides"),
        _record(home, 1, t + 30_000, "d-1", "s-1", t + 30_000, "slides"),  # a repeat: counts once
        _record(other, 0, t, "d-1", "s-1", t, "misrouted"),  # re-routed by the worker: read at home
        _record(
            partition_of(f"{PROBE_DISTRICT}:p".encode(), parts), 0, t, PROBE_DISTRICT, "p", t, "x"
        ),
    ]
    intervals = replay_intervals(records, parts, UsageRules(), Limits())
    per_app = {}
    for _key, start, end, app, _sub in intervals:
        per_app[app] = per_app.get(app, 0) + end - start
    assert per_app == {"docs": 30_000, "slides": 60_000}
    rows = rebuilt_rows(intervals, DAY, DAY)
    assert sum(r[4] for r in rows) == 90_000 and len({r[3] for r in rows}) == 1
    assert rebuilt_rows(intervals, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1)) == []
