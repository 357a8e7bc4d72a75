"""The usage-time rule (CONTRACT §5) as pure, deterministic state transitions.

Per device ``(district_id, student_id, device_id)`` a :class:`DeviceUsage` keeps a reorder buffer
sorted by ``(ts, arrival)``, the greatest ``ts`` seen (``max_ts``), the ids of the events still
inside the lateness window (dedup, bounded) and ``attributed_until``. An active event ``e`` at ``t``
attributes ``[max(t, attributed_until), min(t_next, t + gap))`` to its ``(app, sub_app)``; ``e`` is
finalised once its successor ``n`` is in the buffer and ``n.ts <= max_ts - lateness`` (no future
non-late event can sort between them). So, for any arrival order within the lateness, the
attribution equals the batch truth.

The last event of a device is finalised (attributing the full gap) only when the device has had no
*arrival* for ``close_after_ms`` of the arrival clock — never by comparing a clock with event time,
which would break replays and devices uploading old buffered events. After such a close
``attributed_until = t + gap`` so that a later event inside that range never counts twice (the same
app continuing gives exactly the same totals). Devices without arrivals for ``evict_after_ms`` are
forgotten (bounded memory).

Output rows are :data:`~schemas.internal.UsageRow` ``(minute_epoch_s, app, sub_app, student_token,
active_ms)``, split at UTC minute boundaries and summed per flush. No clock is read here: callers
pass the arrival clock ``now_ms``.
"""

from __future__ import annotations

import sys
from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import UsageRow

MINUTE_MS = 60_000
NEVER = -(2**62)  # "no time yet"

DeviceKey = tuple[str, str, str]
# One buffered event: (ts, arrival_seq, active, app, sub_app). Sorting by the tuple = by ts, stable
# by arrival.
Buffered = tuple[int, int, bool, str, str]
# Maps (district_id, student_id, minute_epoch_s) to the de-identified student token of that
# minute's day.
Tokenizer = Callable[[str, str, int], int]


def split_minutes(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Split ``[start_ms, end_ms)`` at UTC minute boundaries: ``[(minute_epoch_s, ms), ...]``."""
    out: list[tuple[int, int]] = []
    t = start_ms
    while t < end_ms:
        minute = t - t % MINUTE_MS
        nxt = min(minute + MINUTE_MS, end_ms)
        out.append((minute // 1000, nxt - t))
        t = nxt
    return out


class DeviceUsage:
    """Usage state of one device (see the module docstring); ``__slots__``: one small object per
    device.

    ``seen`` maps the ids of the events still inside the lateness window to their ``ts`` (dedup;
    older ids can only come back as late events, so they are pruned).
    """

    __slots__ = ("buffer", "max_ts", "seen", "attributed_until", "last_arrival_ms")

    def __init__(
        self,
        buffer: list[Buffered] | None = None,
        max_ts: int = NEVER,
        seen: dict[str, int] | None = None,
        attributed_until: int = NEVER,
        last_arrival_ms: int = 0,
    ) -> None:
        self.buffer: list[Buffered] = [] if buffer is None else buffer
        self.max_ts = max_ts
        self.seen: dict[str, int] = {} if seen is None else seen
        self.attributed_until = attributed_until
        self.last_arrival_ms = last_arrival_ms

    def fields(self) -> tuple[Any, ...]:
        """All fields in ``__init__`` order (snapshots, equality in tests)."""
        return (self.buffer, self.max_ts, self.seen, self.attributed_until, self.last_arrival_ms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceUsage) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"DeviceUsage{self.fields()!r}"


@dataclass(frozen=True, slots=True)
class UsageRules:
    """The rule's parameters in milliseconds."""

    max_gap_ms: int = 60_000
    lateness_ms: int = 60_000
    close_after_ms: int = 120_000
    evict_after_ms: int = 3_600_000


# An interval attributed to a device: (device key, start_ms, end_ms, app, sub_app)
Interval = tuple[DeviceKey, int, int, str, str]


class UsageBook:
    """Usage states of the devices one worker owns; emits attributed intervals as they become
    final."""

    __slots__ = ("devices", "rules", "late_events", "duplicate_events", "_seq")

    def __init__(self, rules: UsageRules) -> None:
        self.rules = rules
        self.devices: dict[DeviceKey, DeviceUsage] = {}
        self.late_events = 0  # cumulative, for metrics
        self.duplicate_events = 0
        self._seq = 0  # arrival sequence: stable order of equal ts

    def on_event(self, ev: ActivityEvent, now_ms: int, out: list[Interval]) -> bool:
        """Add one valid event arriving at ``now_ms``; append finalised intervals to ``out``.

        Returns ``False`` when the event is late (dropped) or a duplicate.
        """
        return self.on_events(ev.device_key, (ev,), now_ms, out) == 1

    def on_events(
        self, key: DeviceKey, events: Sequence[ActivityEvent], now_ms: int, out: list[Interval]
    ) -> int:
        """Add one batch's valid events of device ``key``, in arrival order, arriving at
        ``now_ms``; append finalised intervals to ``out``. Returns how many were kept (neither
        late nor duplicates).

        Finalising once after the batch instead of after every event gives the same intervals: an
        event is finalised only when no future non-late event can sort before its successor, and
        the late and duplicate decisions depend on ``max_ts`` and ``seen`` only, not on the buffer.
        In-order arrival (the common case) appends to the buffer instead of inserting.
        """
        dev = self.devices.get(key)
        if dev is None:
            dev = self.devices[key] = DeviceUsage()
        if now_ms > dev.last_arrival_ms:
            dev.last_arrival_ms = now_ms
        lateness = self.rules.lateness_ms
        max_ts, seen, buf, seq = dev.max_ts, dev.seen, dev.buffer, self._seq
        kept = 0
        intern = sys.intern
        for event_id, kind, ts, _district, _student, _device, app, sub_app in events:
            if ts < max_ts - lateness:
                self.late_events += 1
                continue
            if event_id in seen:
                self.duplicate_events += 1
                continue
            seen[event_id] = ts
            seq += 1
            kept += 1
            entry = (ts, seq, kind in ACTIVE_KINDS, intern(app), intern(sub_app))
            if not buf or ts >= buf[-1][0]:
                buf.append(entry)  # (ts, seq) is greater than every buffered one
            else:
                insort(buf, entry)
            if ts > max_ts:
                max_ts = ts
        self._seq = seq
        dev.max_ts = max_ts
        safe_ts = max_ts - lateness
        if len(seen) > 8:  # prune ids that can only come back as late events
            dev.seen = {i: t for i, t in seen.items() if t >= safe_ts}
        if len(buf) > 1 and buf[1][0] <= safe_ts:
            self._finalise(key, dev, safe_ts, out)
        return kept

    def _finalise(
        self, key: DeviceKey, dev: DeviceUsage, safe_ts: int, out: list[Interval]
    ) -> None:
        """Finalise buffered events whose successor has ``ts <= safe_ts``."""
        buf = dev.buffer
        n = 1
        while n < len(buf) and buf[n][0] <= safe_ts:
            n += 1
        self._attribute(key, dev, n - 1, out)

    def _attribute(self, key: DeviceKey, dev: DeviceUsage, count: int, out: list[Interval]) -> None:
        """Attribute and drop the first ``count`` buffered events; the successor of the last one is
        the next buffered event, if any (else the full gap).

        Contiguous intervals of the same ``(app, sub_app)`` (a run of heartbeats) are appended as
        one: rows are sums per minute cell, so this changes no row and makes fewer intervals.
        """
        buf = dev.buffer
        gap = self.rules.max_gap_ms
        until = dev.attributed_until
        run: list[Any] | None = None  # [start, end, app, sub_app] of the pending interval
        for i in range(count):
            ts, _seq, active, app, sub_app = buf[i]
            if not active:
                if ts > until:
                    until = ts
                continue
            end = ts + gap
            if i + 1 < len(buf) and buf[i + 1][0] < end:
                end = buf[i + 1][0]
            start = ts if ts > until else until
            if start < end:
                if run is not None and run[1] == start and run[2] == app and run[3] == sub_app:
                    run[1] = end
                else:
                    if run is not None:
                        out.append((key, run[0], run[1], run[2], run[3]))
                    run = [start, end, app, sub_app]
            if end > until:
                until = end
        if run is not None:
            out.append((key, run[0], run[1], run[2], run[3]))
        dev.attributed_until = until
        del buf[:count]

    def close_silent(self, now_ms: int, out: list[Interval]) -> int:
        """Finalise every buffered event of devices without arrival for ``close_after_ms``.

        Also forgets devices without arrival for ``evict_after_ms``. Returns the number of devices
        closed.
        Cost is linear in the number of devices; callers run it about once a second.
        """
        closed = 0
        close_before = now_ms - self.rules.close_after_ms
        evict_before = now_ms - self.rules.evict_after_ms
        evict: list[DeviceKey] = []
        for key, dev in self.devices.items():
            if dev.last_arrival_ms > close_before:
                continue
            if dev.buffer:
                self._attribute(key, dev, len(dev.buffer), out)
                closed += 1
            if dev.last_arrival_ms <= evict_before:
                evict.append(key)
        for key in evict:
            del self.devices[key]
        return closed

    def __len__(self) -> int:
        return len(self.devices)


def to_rows(intervals: Iterable[Interval], tokenize: Tokenizer) -> list[UsageRow]:
    """De-identify and pre-aggregate intervals into rows, sorted (deterministic output).

    Each interval is split at UTC minute boundaries (as :func:`split_minutes`); tokens are looked
    up once per device and day.
    """
    cells: dict[tuple[int, str, str, int], int] = {}
    tokens: dict[tuple[DeviceKey, int], int] = {}
    get = cells.get
    for key, start, end, app, sub_app in intervals:
        t = start
        while t < end:
            minute = t - t % MINUTE_MS
            nxt = minute + MINUTE_MS
            if nxt > end:
                nxt = end
            minute_s = minute // 1000
            day_key = (key, minute_s // 86_400)
            token = tokens.get(day_key)
            if token is None:
                token = tokens[day_key] = tokenize(key[0], key[1], minute_s)
            cell = (minute_s, app, sub_app, token)
            cells[cell] = get(cell, 0) + nxt - t
            t = nxt
    return [(m, a, s, t, ms) for (m, a, s, t), ms in sorted(cells.items())]
