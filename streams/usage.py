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

from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import UsageRow

MINUTE_MS = 60_000

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


@dataclass(slots=True)
class DeviceUsage:
    """Usage state of one device (see the module docstring)."""

    buffer: list[Buffered] = field(default_factory=list)
    max_ts: int = -(2**62)
    seen: dict[str, int] = field(default_factory=dict)  # event_id -> ts, within the lateness window
    attributed_until: int = -(2**62)
    last_arrival_ms: int = 0


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
        key = ev.device_key
        dev = self.devices.get(key)
        if dev is None:
            dev = self.devices[key] = DeviceUsage()
        lateness = self.rules.lateness_ms
        dev.last_arrival_ms = max(dev.last_arrival_ms, now_ms)
        if ev.ts < dev.max_ts - lateness:
            self.late_events += 1
            return False
        if ev.event_id in dev.seen:
            self.duplicate_events += 1
            return False
        dev.seen[ev.event_id] = ev.ts
        self._seq += 1
        insort(dev.buffer, (ev.ts, self._seq, ev.kind in ACTIVE_KINDS, ev.app, ev.sub_app))
        if ev.ts > dev.max_ts:
            dev.max_ts = ev.ts
            horizon = ev.ts - lateness
            if len(dev.seen) > 8:  # prune ids that can only come back as late events
                dev.seen = {i: t for i, t in dev.seen.items() if t >= horizon}
        self._finalise(key, dev, dev.max_ts - lateness, out)
        return True

    def _finalise(
        self, key: DeviceKey, dev: DeviceUsage, safe_ts: int, out: list[Interval]
    ) -> None:
        """Finalise buffered events whose successor has ``ts <= safe_ts``."""
        buf = dev.buffer
        n = 0
        while n + 1 < len(buf) and buf[n + 1][0] <= safe_ts:
            self._attribute(key, dev, buf[n], buf[n + 1][0], out)
            n += 1
        if n:
            del buf[:n]

    def _attribute(
        self, key: DeviceKey, dev: DeviceUsage, e: Buffered, t_next: int | None, out: list[Interval]
    ) -> None:
        ts, _, active, app, sub_app = e
        if not active:
            dev.attributed_until = max(dev.attributed_until, ts)
            return
        end = ts + self.rules.max_gap_ms
        if t_next is not None and t_next < end:
            end = t_next
        start = max(ts, dev.attributed_until)
        if start < end:
            out.append((key, start, end, app, sub_app))
        dev.attributed_until = max(dev.attributed_until, end)

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
                buf = dev.buffer
                for i, e in enumerate(buf):
                    self._attribute(key, dev, e, buf[i + 1][0] if i + 1 < len(buf) else None, out)
                buf.clear()
                closed += 1
            if dev.last_arrival_ms <= evict_before:
                evict.append(key)
        for key in evict:
            del self.devices[key]
        return closed

    def __len__(self) -> int:
        return len(self.devices)


def to_rows(intervals: Iterable[Interval], tokenize: Tokenizer) -> list[UsageRow]:
    """De-identify and pre-aggregate intervals into rows, sorted (deterministic output)."""
    cells: dict[tuple[int, str, str, int], int] = {}
    for (district_id, student_id, _device), start, end, app, sub_app in intervals:
        for minute_s, ms in split_minutes(start, end):
            cell = (minute_s, app, sub_app, tokenize(district_id, student_id, minute_s))
            cells[cell] = cells.get(cell, 0) + ms
    return [(m, a, s, t, ms) for (m, a, s, t), ms in sorted(cells.items())]
