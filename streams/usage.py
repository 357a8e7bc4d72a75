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

import re
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import ge, itemgetter
from typing import Any

from schemas.clock import DAY_S, MINUTE_MS, NEVER
from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import UsageRow

DeviceKey = tuple[str, str, str]
# What a buffered event attributes: (active, app, sub_app), one shared object per distinct value.
Label = tuple[bool, str, str]
# One buffered event as snapshots and tests see it: (ts, active, app, sub_app). In memory the
# buffer is two parallel sequences (see DeviceUsage).
Buffered = tuple[int, bool, str, str]
# Maps (district_id, student_id, minute_epoch_s) to the de-identified student token of that
# minute's day.
Tokenizer = Callable[[str, str, int], int]


# Labels repeat across devices (a few hundred apps and sites): one tuple each instead of one per
# buffered event. Bounded: when full it starts over (sharing is lost for a while, nothing else).
_labels: dict[Label, Label] = {}
_LABELS_MAX = 1 << 16


# (kind, app, sub_app) of an event -> its label: one lookup per buffered event on the hot path.
_kind_labels: dict[tuple[str, str, str], Label] = {}


def _event_label(kind: str, app: str, sub_app: str) -> Label:
    """The shared label of an event's ``(kind, app, sub_app)`` (the same object as :func:`_label`)."""
    key = (kind, app, sub_app)
    got = _kind_labels.get(key)
    if got is None:
        if len(_kind_labels) >= _LABELS_MAX:
            _kind_labels.clear()
        got = _kind_labels[key] = _label(kind in ACTIVE_KINDS, sys.intern(app), sys.intern(sub_app))
    return got


def _label(active: bool, app: str, sub_app: str) -> Label:
    key = (active, app, sub_app)
    got = _labels.get(key)
    if got is None:
        if len(_labels) >= _LABELS_MAX:
            _labels.clear()
        got = _labels[key] = key
    return got


def _seen_entries(seen: str) -> Iterable[tuple[str, int]]:
    """The ``(event_id, ts)`` entries of a ``seen`` string, in order.

    ``seen`` holds one entry ``" {event_id}:{ts}"`` per remembered id. CONTRACT §2 ids are
    ``[A-Za-z0-9_-]{1,64}`` (the decoder rejects anything else), so neither separator occurs in an
    id: ``" {id}:"`` occurs in ``seen`` exactly when ``id`` is one of its entries' whole id.
    """
    for entry in seen.split(" ")[1:]:
        event_id, _, ts = entry.rpartition(":")
        yield event_id, int(ts)


# The ts of every entry of a ``seen`` string: the digits after each ":" (ids hold no ":").
_SEEN_TS = re.compile(r":(-?[0-9]+)")


def _seen_since(seen: str, since: int) -> str:
    """``seen`` without the ids of events older than ``since`` (in their order).

    Runs once per device and batch, so it is made of C-level calls only: the entries and their
    ``ts`` are split out whole, compared with ``since`` as one column and the survivors joined.
    """
    keep = list(map(ge, map(int, _SEEN_TS.findall(seen)), repeat(since)))
    if all(keep):
        return seen
    kept = list(compress(seen[1:].split(" "), keep))
    return " " + " ".join(kept) if kept else ""


class DeviceUsage:
    """Usage state of one device (see the module docstring); ``__slots__``: one small object per
    device, and ~100k of them per worker, so every field is as compact as exactness allows.

    The reorder buffer is ``ts`` (an ``array('q')``, sorted; equal ts in arrival order) and the
    parallel list ``labels``; both are ``None`` while the buffer is empty (closed devices).
    Inserting after the last equal ``ts`` keeps arrival order without storing a sequence number.

    ``seen`` remembers the ids of the events still inside the lateness window with their ``ts``
    (dedup; older ids can only come back as late events, so they are pruned), as one string of
    entries ``" {event_id}:{ts}"`` in arrival order: exact (the ids themselves, no hashing) at
    about a third of the memory of a dict of strings.
    """

    __slots__ = ("ts", "labels", "max_ts", "seen", "attributed_until", "last_arrival_ms")

    def __init__(
        self,
        buffer: Iterable[Buffered] = (),
        max_ts: int = NEVER,
        seen: dict[str, int] | None = None,
        attributed_until: int = NEVER,
        last_arrival_ms: int = 0,
    ) -> None:
        entries = sorted(buffer, key=itemgetter(0))  # stable: arrival order of equal ts kept
        self.ts: array[int] | None = array("q", [e[0] for e in entries]) if entries else None
        self.labels: list[Label] | None = (
            [_label(a, sys.intern(app), sys.intern(sub)) for _, a, app, sub in entries]
            if entries
            else None
        )
        self.max_ts = max_ts
        self.seen = "".join(f" {i}:{t}" for i, t in seen.items()) if seen else ""
        self.attributed_until = attributed_until
        self.last_arrival_ms = last_arrival_ms

    @property
    def buffer(self) -> list[Buffered]:
        """The buffered events, ``[(ts, active, app, sub_app), ...]`` in order (a copy)."""
        if self.ts is None or self.labels is None:
            return []
        return [(t, *label) for t, label in zip(self.ts, self.labels, strict=True)]

    def seen_ids(self) -> dict[str, int]:
        """The remembered event ids and their ``ts``, in arrival order (a copy)."""
        return dict(_seen_entries(self.seen))

    def seen_json(self) -> str:
        """:meth:`seen_ids` as a JSON object (snapshots), straight from the string: the ids need
        no quoting."""
        if not self.seen:
            return "{}"
        return '{"' + self.seen[1:].replace(":", '":').replace(" ", ',"') + "}"

    def fields(self) -> tuple[Any, ...]:
        """All fields in ``__init__`` order, as plain values (snapshots, equality in tests)."""
        return (
            self.buffer, self.max_ts, self.seen_ids(), self.attributed_until, self.last_arrival_ms
        )  # fmt: skip

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
        max_ts, seen, times, labels = dev.max_ts, dev.seen, dev.ts, dev.labels
        if times is None or labels is None:
            times, labels = array("q"), []
        kept = 0
        labels_of, event_label = _kind_labels.get, _event_label
        # This batch's ids are kept apart until the end of the loop: appending each to ``seen``
        # at once copied the whole string per event (quadratic in a device's events per batch).
        ids: set[str] = set()
        added: list[str] = []
        for event_id, kind, ts, _district, _student, _device, app, sub_app in events:
            if ts < max_ts - lateness:
                self.late_events += 1
                continue
            if event_id in ids or f" {event_id}:" in seen:
                self.duplicate_events += 1
                continue
            ids.add(event_id)
            added.append(f" {event_id}:{ts}")
            kept += 1
            label = labels_of((kind, app, sub_app)) or event_label(kind, app, sub_app)
            if not times or ts >= times[-1]:
                times.append(ts)  # after every buffered event of an equal or smaller ts
                labels.append(label)
            else:
                at = bisect_right(times, ts)  # after the equal ts: arrival order
                times.insert(at, ts)
                labels.insert(at, label)
            if ts > max_ts:
                max_ts = ts
        self._seq += kept
        dev.max_ts = max_ts
        dev.ts, dev.labels = (times, labels) if times else (None, None)
        if added:
            seen += "".join(added)
        safe_ts = max_ts - lateness
        if seen.count(" ") > 8:  # prune ids that can only come back as late events
            seen = _seen_since(seen, safe_ts)
        dev.seen = seen
        if len(times) > 1 and times[1] <= safe_ts:
            self._finalise(key, dev, times, labels, safe_ts, out)
        return kept

    def _finalise(
        self,
        key: DeviceKey,
        dev: DeviceUsage,
        times: array[int],
        labels: list[Label],
        safe_ts: int,
        out: list[Interval],
    ) -> None:
        """Finalise buffered events whose successor has ``ts <= safe_ts``."""
        n = 1
        while n < len(times) and times[n] <= safe_ts:
            n += 1
        self._attribute(key, dev, times, labels, n - 1, out)

    def _attribute(
        self,
        key: DeviceKey,
        dev: DeviceUsage,
        times: array[int],
        labels: list[Label],
        count: int,
        out: list[Interval],
    ) -> None:
        """Attribute and drop the first ``count`` buffered events; the successor of the last one is
        the next buffered event, if any (else the full gap).

        Contiguous intervals of the same ``(app, sub_app)`` (a run of heartbeats) are appended as
        one: rows are sums per minute cell, so this changes no row and makes fewer intervals.
        """
        gap = self.rules.max_gap_ms
        until = dev.attributed_until
        run: list[Any] | None = None  # [start, end, app, sub_app] of the pending interval
        for i in range(count):
            ts = times[i]
            active, app, sub_app = labels[i]
            if not active:
                if ts > until:
                    until = ts
                continue
            end = ts + gap
            if i + 1 < len(times) and times[i + 1] < end:
                end = times[i + 1]
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
        if count < len(times):
            del times[:count]
            del labels[:count]
        else:  # the buffer is empty: hold no containers (most devices of a quiet hour)
            dev.ts = dev.labels = None

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
            if dev.ts is not None and dev.labels is not None:
                self._attribute(key, dev, dev.ts, dev.labels, len(dev.ts), out)
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

    Each interval is split at UTC minute boundaries (as :func:`schemas.clock.split_minutes`); tokens are looked
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
            day_key = (key, minute_s // DAY_S)
            token = tokens.get(day_key)
            if token is None:
                token = tokens[day_key] = tokenize(key[0], key[1], minute_s)
            cell = (minute_s, app, sub_app, token)
            cells[cell] = get(cell, 0) + nxt - t
            t = nxt
    return [(m, a, s, t, ms) for (m, a, s, t), ms in sorted(cells.items())]
