"""The ground truth of CONTRACT §4 (presence) and §5 (usage) for a known input, as a pure function.

Tests and benchmarks of the pipeline compare what it wrote (Redis, ClickHouse) with this. It is
written for clarity, not speed: it keeps every event in memory and re-sorts per device.

Rules, exactly as applied here:

- Duplicates: per device ``(district_id, student_id, device_id)`` only the first arrival of an
  ``event_id`` counts; later arrivals are counted in ``duplicates`` and ignored everywhere (presence
  included: "a repeat … changes nothing").
- Late events: an event is late when, at its arrival, the device has already accepted (not
  duplicate, not late) an event with ``ts > this.ts + allowed_lateness_ms``. Late events are counted
  in ``late_events`` and dropped from usage entirely (they attribute nothing and are nobody's
  ``t_next``). The duplicate check comes first: a resent late event counts as a duplicate.
- Usage: the device's remaining events sorted by ``ts`` (stable: equal ``ts`` keep arrival order);
  an ``app_focus``/``heartbeat`` at ``t`` attributes ``[t, min(t_next, t + max_gap))`` to its
  ``(app, sub_app)``, ``t_next`` being the next remaining event's ``ts`` of any kind; split at UTC
  minutes. A student counts in a cell only if they contributed more than 0 ms to it.
- Presence: per student, the non-duplicate event with the greatest ``ts`` (ties: later arrival);
  online iff it is active and ``now_ms - ts <= presence_timeout``; offline means ``app``/``sub_app``
  are ``""``. Late events take part (they can never be a student's newest event anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from schemas.clock import split_minutes
from schemas.event import ACTIVE_KINDS, ActivityEvent

CellKey = tuple[int, str, str]  # (minute_epoch_s, app, sub_app)
StudentKey = tuple[str, str]  # (district_id, student_id)


class TruthParams(NamedTuple):
    """The rule parameters of CONTRACT §4/§5, in seconds like ``Settings``."""

    max_gap_s: int = 60
    allowed_lateness_s: int = 60
    presence_timeout_s: int = 60

    @classmethod
    def from_settings(cls, settings: Any) -> TruthParams:
        """``settings`` is a :class:`csync.settings.Settings`."""
        return cls(settings.max_gap_s, settings.allowed_lateness_s, settings.presence_timeout_s)


class PresenceTruth(NamedTuple):
    """What a teacher should see for one student (the roster name is not known here)."""

    district_id: str
    student_id: str
    online: bool
    app: str
    sub_app: str
    ts: int


class UsageCell(NamedTuple):
    """Attributed milliseconds and the distinct students who contributed to one cell."""

    active_ms: int
    students: frozenset[StudentKey]


class Truth(NamedTuple):
    """The expected final state after all ``events`` were processed."""

    presence: dict[StudentKey, PresenceTruth]
    cells: dict[CellKey, UsageCell]
    late_events: int
    duplicates: int


def ground_truth(events: Iterable[ActivityEvent], params: TruthParams, now_ms: int) -> Truth:
    """Presence and usage cells for valid ``events`` given in arrival order."""
    lateness_ms = params.allowed_lateness_s * 1000
    seen_ids: dict[tuple[str, str, str], set[str]] = {}
    newest_ts: dict[tuple[str, str, str], int] = {}
    kept: dict[tuple[str, str, str], list[ActivityEvent]] = {}
    latest: dict[StudentKey, ActivityEvent] = {}
    late = duplicates = 0
    for event in events:
        device = event.device_key
        ids = seen_ids.setdefault(device, set())
        if event.event_id in ids:
            duplicates += 1
            continue
        ids.add(event.event_id)
        student = (event.district_id, event.student_id)
        current = latest.get(student)
        if current is None or event.ts >= current.ts:
            latest[student] = event
        newest = newest_ts.get(device)
        if newest is not None and newest > event.ts + lateness_ms:
            late += 1
            continue
        newest_ts[device] = event.ts if newest is None else max(newest, event.ts)
        kept.setdefault(device, []).append(event)

    cells = _usage_cells(kept, params.max_gap_s * 1000)
    timeout_ms = params.presence_timeout_s * 1000
    presence = {student: _presence(event, now_ms, timeout_ms) for student, event in latest.items()}
    return Truth(presence, cells, late, duplicates)


def _presence(event: ActivityEvent, now_ms: int, timeout_ms: int) -> PresenceTruth:
    online = event.kind in ACTIVE_KINDS and now_ms - event.ts <= timeout_ms
    return PresenceTruth(
        event.district_id,
        event.student_id,
        online,
        event.app if online else "",
        event.sub_app if online else "",
        event.ts,
    )


def _usage_cells(
    kept: dict[tuple[str, str, str], list[ActivityEvent]], max_gap_ms: int
) -> dict[CellKey, UsageCell]:
    active_ms: dict[CellKey, int] = {}
    students: dict[CellKey, set[StudentKey]] = {}
    for (district_id, student_id, _device), device_events in kept.items():
        ordered = sorted(device_events, key=lambda e: e.ts)  # stable: ties keep arrival order
        for i, event in enumerate(ordered):
            if event.kind not in ACTIVE_KINDS:
                continue
            end = event.ts + max_gap_ms
            if i + 1 < len(ordered):
                end = min(end, ordered[i + 1].ts)
            for minute_s, ms in split_minutes(event.ts, end):
                key = (minute_s, event.app, event.sub_app)
                active_ms[key] = active_ms.get(key, 0) + ms
                students.setdefault(key, set()).add((district_id, student_id))
    return {key: UsageCell(ms, frozenset(students[key])) for key, ms in active_ms.items()}


def truth_document(truth: Truth, params: TruthParams, now_ms: int) -> dict[str, Any]:
    """The JSON-ready form of ``truth``: cells carry only counts of students, never identifiers."""
    return {
        "params": params._asdict(),
        "now_ms": now_ms,
        "late_events": truth.late_events,
        "duplicates": truth.duplicates,
        "presence": [p._asdict() for _, p in sorted(truth.presence.items())],
        "cells": [
            {
                "minute": minute,
                "app": app,
                "sub_app": sub_app,
                "active_ms": cell.active_ms,
                "students": len(cell.students),
            }
            for (minute, app, sub_app), cell in sorted(truth.cells.items())
        ],
    }


def save_truth(path: Path | str, truth: Truth, params: TruthParams, now_ms: int) -> None:
    """Write the truth file (see :func:`truth_document`) atomically."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(orjson.dumps(truth_document(truth, params, now_ms), option=orjson.OPT_INDENT_2))
    tmp.replace(target)


def load_truth(path: Path | str) -> dict[str, Any]:
    """Read a truth file written by :func:`save_truth`."""
    document: dict[str, Any] = orjson.loads(Path(path).read_bytes())
    return document
