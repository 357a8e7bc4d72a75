"""The presence and usage rules (CONTRACT §4, §5) over plain JSON values, for the peers' state stores.

A peer keeps these values in its own state (faust Tables, Quix Streams state) and calls these functions per
event, as an application written for that framework would. They follow the rules of
:mod:`producers.truth`: per device, the first arrival of an event id counts; an event is late when the
device has accepted one with ``ts > this.ts + lateness``; a buffered event is attributed once its successor
can no longer change (successor ``ts <= newest - lateness``), and the rest when the input ends.

Values:
- presence ``[ts, kind, app, sub_app, [tie ids]]``;
- device ``{"n": newest ts, "ids": {event_id: ts}, "buf": [[ts, active, app, sub_app], ...]}``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from schemas.clock import split_minutes
from schemas.event import ACTIVE_KINDS, ActivityEvent

Emit = Callable[[int, str, str, int], None]  # (minute_s, app, sub_app, ms) of one student


def presence_update(cur: list[Any] | None, ev: ActivityEvent) -> list[Any] | None:
    """The student's new presence value, or ``None`` if ``ev`` changes nothing."""
    if cur is None or ev.ts > cur[0]:
        return [ev.ts, ev.kind, ev.app, ev.sub_app, [ev.event_id]]
    if ev.ts == cur[0] and ev.event_id not in cur[4]:
        return [ev.ts, ev.kind, ev.app, ev.sub_app, [*cur[4], ev.event_id]]
    return None


def presence_view(value: list[Any], now_ms: int, timeout_ms: int) -> tuple[bool, str, str, int]:
    """``(online, app, sub_app, ts)`` at ``now_ms``."""
    online = value[1] in ACTIVE_KINDS and now_ms - value[0] <= timeout_ms
    return online, value[2] if online else "", value[3] if online else "", value[0]


def device_event(
    dev: dict[str, Any] | None, ev: ActivityEvent, lateness_ms: int, gap_ms: int, emit: Emit
) -> tuple[dict[str, Any] | None, bool]:
    """Apply ``ev`` to a device value: ``(new value or None if unchanged, is a duplicate)``."""
    if dev is None:
        dev = {"n": ev.ts, "ids": {}, "buf": []}
    ids = dev["ids"]
    if ev.event_id in ids:
        return None, True
    newest = dev["n"]
    if newest > ev.ts + lateness_ms:
        return None, False  # late: dropped from usage
    ids[ev.event_id] = ev.ts
    buf = dev["buf"]
    row = [ev.ts, ev.kind in ACTIVE_KINDS, ev.app, ev.sub_app]
    at = bisect_right([b[0] for b in buf], ev.ts) if buf and ev.ts < buf[-1][0] else len(buf)
    buf.insert(at, row)
    if ev.ts > newest:
        dev["n"] = newest = ev.ts
    safe = newest - lateness_ms
    while len(buf) > 1 and buf[1][0] <= safe:
        _attribute(buf.pop(0), buf[0][0], gap_ms, emit)
    if len(ids) > 16:  # ids older than the window can only come back as late events
        dev["ids"] = {i: t for i, t in ids.items() if t >= safe}
    return dev, False


def device_close(dev: dict[str, Any], gap_ms: int, emit: Emit) -> None:
    """Attribute every buffered event (the input has ended)."""
    buf = dev["buf"]
    for i, row in enumerate(buf):
        _attribute(row, buf[i + 1][0] if i + 1 < len(buf) else None, gap_ms, emit)
    dev["buf"] = []


def _attribute(row: list[Any], next_ts: int | None, gap_ms: int, emit: Emit) -> None:
    ts, active, app, sub_app = row
    if not active:
        return
    end = ts + gap_ms if next_ts is None else min(next_ts, ts + gap_ms)
    for minute_s, ms in split_minutes(ts, end):
        emit(minute_s, app, sub_app, ms)


def cells_of(contributions: dict[tuple[int, str, str, str], int]) -> dict[str, list[int]]:
    """``{"minute|app|sub_app": [active_ms, students]}`` from per-student contributions."""
    cells: dict[str, list[int]] = {}
    for (minute, app, sub_app, _student), ms in contributions.items():
        cell = cells.setdefault(f"{minute}|{app}|{sub_app}", [0, 0])
        cell[0] += ms
        cell[1] += ms > 0
    return cells
