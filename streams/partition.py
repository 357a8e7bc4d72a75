"""Everything one input partition's processing does, as a deterministic function of (state, batch).

:func:`process_batch` takes the partition's state, the activity and roster records of one batch and
the batch's clock ``now_ms`` and returns what to emit. It reads no clock, awaits nothing and never
raises on input: a bad event becomes a DLQ record. Given the same state and the same
:class:`Intent`, it returns the same outputs and leaves the same state — which is what makes the
worker crash-safe (see ``streams.engine``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
import zstandard
from aiokafka.partitioner import murmur2

from schemas.decoder import EventOutcome, Limits, decode_record, encode_event
from schemas.event import ActivityEvent
from schemas.internal import PresenceChange
from schemas.probe import RESERVED_DISTRICT_PREFIX as PROBE_PREFIX
from streams.presence import NEVER, PresenceBook, StudentPresence, View
from streams.usage import DeviceUsage, Interval, UsageBook, UsageRules

# A consumed record: (offset, key, value, headers)
Record = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


@lru_cache(maxsize=1 << 12)
def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka): CONTRACT §1.

    aiokafka's murmur2 is pure Python (~9 µs); the hot path looks students up in
    :func:`_route_table` first and calls this once per student.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


# partitions -> {"district:student": partition}: a worker sees the same students over and over.
_routes: dict[int, dict[str, int]] = {}
_ROUTES_MAX = 1 << 18


_device_of = itemgetter(5)  # ActivityEvent.device_id


def _route_table(partitions: int) -> dict[str, int]:
    table = _routes.get(partitions)
    if table is None:
        table = _routes[partitions] = {}
    elif len(table) >= _ROUTES_MAX:
        table.clear()  # bounded; the hot students come back at once
    return table


class Intent(NamedTuple):
    """What a batch is, written durably before any of its output: replaying it reproduces the
    output.

    Offsets are inclusive; ``act_first > act_last`` means no activity record (a timer batch, the
    ``tick``-th since offset ``act_first - 1``). ``close`` says whether silent devices were closed.
    """

    partition: int
    act_first: int
    act_last: int
    roster_first: int
    roster_last: int
    now_ms: int
    close: bool
    tick: int

    @property
    def src(self) -> tuple[int, int, int]:
        """The ``UsagePartial.src`` of this batch: unique per batch (timer batches: first >
        last)."""
        if self.act_first <= self.act_last:
            return (self.partition, self.act_first, self.act_last)
        return (self.partition, self.act_first, self.act_first - self.tick)


def continuing(intents: list[Intent], act_next: int, roster_next: int) -> list[Intent]:
    """The intents, in log order, that continue a state reading ``act_next``/``roster_next`` next.

    Each kept intent moves the expected offsets on (as :func:`process_batch` moves the state's), so
    a chain of batches is replayed whole; an intent that does not start where the chain stands (a
    stale duplicate, e.g. of a zombie worker) is skipped.
    """
    kept: list[Intent] = []
    for i in intents:
        if i.act_first != act_next or i.roster_first != roster_next:
            continue
        kept.append(i)
        if i.act_first <= i.act_last:
            act_next = i.act_last + 1
        if i.roster_first <= i.roster_last:
            roster_next = i.roster_last + 1
    return kept


@dataclass(slots=True)
class Outputs:
    """What one batch emits, plus counts for metrics."""

    presence: list[PresenceChange] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    dlq: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    reroute: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, value)
    invalid: Counter[str] = field(default_factory=Counter)
    dropped_fields: Counter[str] = field(default_factory=Counter)
    valid: int = 0
    late: int = 0
    changed: bool = False  # state changed (evictions, closes) even if nothing is emitted

    def empty(self) -> bool:
        return not (self.presence or self.intervals or self.dlq or self.reroute or self.changed)


@dataclass(slots=True)
class PartitionState:
    """The state of one input partition; ``act_next``/``roster_next`` are the next offsets to
    read."""

    partition: int
    presence: PresenceBook
    usage: UsageBook
    act_next: int = 0
    roster_next: int = 0
    ticks: int = 0  # timer batches since the last activity record
    last_close_ms: int = 0


class Params(NamedTuple):
    """Rule parameters a partition needs."""

    partitions: int
    timeout_ms: int
    rules: UsageRules
    limits: Limits
    topic_activity: str
    close_every_ms: int = 1000
    refresh_ms: int = 30_000  # presence ts-only refresh, at most once per student per this


def new_state(partition: int, params: Params) -> PartitionState:
    """An empty partition state (no snapshot yet)."""
    return PartitionState(
        partition, PresenceBook(params.timeout_ms, params.refresh_ms), UsageBook(params.rules)
    )


def _roster(rec: Record) -> tuple[str, str, str | None, tuple[str, ...]] | None:
    offset, key, value, _ = rec
    if key is None:
        return None
    district, sep, student = key.decode("utf-8", "replace").partition(":")
    if not sep:
        return None
    if value is None:
        return district, student, None, ()
    try:
        obj: Any = orjson.loads(value)
        name = obj["name"]
        classes = tuple(c for c in obj.get("classes", ()) if isinstance(c, str))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return (district, student, name, classes) if isinstance(name, str) else None


def _reject(
    out: Outputs,
    outcome: EventOutcome,
    offset: int,
    key: bytes | None,
    value: bytes,
    partition: int,
    topic: str,
) -> None:
    """Turn a rejected event into its DLQ record (CONTRACT §1 headers) and count it."""
    rej = outcome.rejection
    reason = rej.reason.value if rej is not None else "unknown"
    out.invalid[reason] += 1
    headers = [
        ("error", reason.encode()),
        ("error_detail", (rej.detail if rej is not None else "").encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
        ("source_index", str(outcome.source_index).encode()),
    ]
    out.dlq.append((key, outcome.raw or value, headers))


_CHUNK_EVENTS = 20_000


def _apply(
    state: PartitionState,
    groups: dict[str, list[ActivityEvent]],
    now: int,
    partitions: int,
    out: Outputs,
) -> None:
    """Route each student's events; apply the presence and usage rules to this partition's."""
    presence, usage, me = state.presence, state.usage, state.partition
    routes = _route_table(partitions)
    intervals = out.intervals
    for skey, events in groups.items():
        target = routes.get(skey)
        if target is None:
            target = routes[skey] = int(murmur2(skey.encode()) & 0x7FFFFFFF) % partitions
        if target != me:
            raw_key = skey.encode()
            out.reroute.extend((target, raw_key, encode_event(ev)) for ev in events)
            continue
        out.valid += len(events)
        first = events[0]
        change = presence.on_events(skey, first.district_id, first.student_id, events, now)
        if change is not None:
            out.presence.append(change)
        # Device keys share the strings of the student's presence state (memory).
        student = presence.states[skey]
        district_id, student_id = student.district_id, student.student_id
        if district_id.startswith(PROBE_PREFIX):
            continue  # the end-to-end probe: presence only, never usage (schemas.probe)
        if len(events) == 1 or len(set(map(_device_of, events))) == 1:
            usage.on_events((district_id, student_id, first.device_id), events, now, intervals)
            continue
        per_device: dict[str, list[ActivityEvent]] = {}
        for ev in events:
            per_device.setdefault(ev.device_id, []).append(ev)
        for device_id, device_events in per_device.items():
            usage.on_events((district_id, student_id, device_id), device_events, now, intervals)


def process_batch(
    state: PartitionState,
    activity: list[Record],
    roster: list[Record],
    intent: Intent,
    params: Params,
) -> Outputs:
    """Apply one batch to ``state`` and return its outputs. Never raises on bad input."""
    out = Outputs()
    now = intent.now_ms
    presence, usage = state.presence, state.usage
    left: set[tuple[str, str]] = set()
    for rec in roster:
        parsed = _roster(rec)
        if parsed is not None:
            change = presence.on_roster(parsed[0], parsed[1], parsed[2], parsed[3], now)
            if change is not None:
                out.presence.append(change)
            if parsed[2] is None:  # a tombstone: the student left the roster or was purged
                left.add((parsed[0], parsed[1]))
    if left:
        # Forget their devices' usage state too (reorder buffers, event ids), so the next snapshot
        # holds nothing of them (privacy: disposal on request). One pass for the whole batch.
        for device in [k for k in usage.devices if (k[0], k[1]) in left]:
            del usage.devices[device]
    late_before = usage.late_events
    me, n = state.partition, params.partitions
    # Group the valid events per student (arrival order kept within a student) in one pass, then
    # run the rules once per student and device, not once per event. Groups are applied every
    # _CHUNK_EVENTS events, in arrival order: a poll can hold ~100k events, and holding all of them
    # decoded at once made the worker's RSS peak several times its state.
    groups: dict[str, list[ActivityEvent]] = {}
    pending = 0
    dropped = out.dropped_fields
    for offset, key, value, _headers in activity:
        if value is None:
            continue
        outcomes = decode_record(value, now, params.limits)
        for outcome in outcomes:
            ev = outcome.event
            if ev is None:
                _reject(out, outcome, offset, key, value, me, params.topic_activity)
                continue
            if outcome.dropped_fields:
                for f in outcome.dropped_fields:
                    dropped[f] += 1
            skey = f"{ev.district_id}:{ev.student_id}"
            group = groups.get(skey)
            if group is None:
                groups[skey] = [ev]
            else:
                group.append(ev)
        pending += len(outcomes)
        if pending >= _CHUNK_EVENTS:
            _apply(state, groups, now, n, out)
            groups, pending = {}, 0
    _apply(state, groups, now, n, out)
    out.late = usage.late_events - late_before
    out.presence.extend(presence.expire(now))
    if intent.close:
        before = len(usage)
        out.changed = usage.close_silent(now, out.intervals) > 0 or len(usage) != before
        state.last_close_ms = now
    if intent.act_first <= intent.act_last:
        state.act_next = intent.act_last + 1
        state.ticks = 0
    elif not out.empty():
        state.ticks = intent.tick
    if intent.roster_first <= intent.roster_last:
        state.roster_next = intent.roster_last + 1
    return out


# --- snapshots: the whole partition state as compressed JSON


def _buffer_doc(device: DeviceUsage) -> list[tuple[Any, ...]]:
    """A device's buffer as snapshots have always written it: ``[ts, q, active, app, sub_app]``
    entries in buffer order.

    The state no longer keeps an arrival number per buffered event (the buffer's order is the
    arrival order of equal ``ts``); ``q`` is the position, which sorts the entries the same way and
    is below the book's ``seq``. So a worker still running the previous release can read a snapshot
    written by this one (a rolling upgrade moves partitions both ways).
    """
    if device.ts is None or device.labels is None:
        return []
    return [
        (t, q, *label) for q, (t, label) in enumerate(zip(device.ts, device.labels, strict=True))
    ]


_SNAPSHOT_ROWS = 1024  # students or devices serialised at a time


def _json_rows(rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """The JSON of ``rows`` as the members of an array, ``_SNAPSHOT_ROWS`` at a time.

    A partition's rows all built at once (the previous encoder) were a transient of ~2 KB per
    student, allocated right after every few seconds of input: the worker's RSS peaked there and
    the freed pools stayed scattered among the state's objects.
    """
    chunk: list[list[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _SNAPSHOT_ROWS:
            yield orjson.dumps(chunk)[1:-1]
            chunk.clear()
    if chunk:
        yield orjson.dumps(chunk)[1:-1]


def encode_snapshot(state: PartitionState) -> bytes:
    """Serialise a partition state (zstd-compressed JSON, the same document as ever)."""
    head = {
        "p": state.partition,
        "act_next": state.act_next,
        "roster_next": state.roster_next,
        "ticks": state.ticks,
        "last_close_ms": state.last_close_ms,
        "seq": state.usage._seq,
        "late": state.usage.late_events,
    }
    students = (
        [s.district_id, s.student_id, s.name, s.classes, s.ts, s.kind, s.app, s.sub_app,
         s.tie_ids, tuple(s.shown), s.shown_ts, s.shown_at]
        for s in state.presence.states.values()
    )  # fmt: skip
    devices = (
        [k, _buffer_doc(d), d.max_ts, orjson.Fragment(d.seen_json()), d.attributed_until,
         d.last_arrival_ms]
        for k, d in state.usage.devices.items()
    )  # fmt: skip
    doc = b"".join(
        [
            orjson.dumps(head)[:-1],
            b',"students":[',
            b",".join(_json_rows(students)),
            b'],"devices":[',
            b",".join(_json_rows(devices)),
            b"]}",
        ]
    )
    return zstandard.ZstdCompressor(level=1).compress(doc)


def decode_snapshot(raw: bytes, params: Params) -> PartitionState:
    """Rebuild a partition state from :func:`encode_snapshot` output."""
    doc = orjson.loads(zstandard.ZstdDecompressor().decompress(raw))
    state = new_state(doc["p"], params)
    state.act_next, state.roster_next = doc["act_next"], doc["roster_next"]
    state.ticks, state.last_close_ms = doc["ticks"], doc["last_close_ms"]
    state.usage._seq, state.usage.late_events = doc["seq"], doc["late"]
    book = state.presence
    intern = sys.intern
    for d, s, name, classes, ts, kind, app, sub, ties, shown, *emitted in doc["students"]:
        # snapshots before the ts refresh lack (shown_ts, shown_at): treat the ts as emitted
        shown_ts, shown_at = emitted if emitted else (ts, NEVER)
        st = StudentPresence(
            d, s, name, tuple(classes), ts, kind, intern(app), intern(sub), tuple(ties),
            View(*shown), shown_ts, shown_at,
        )  # fmt: skip
        book.restore(f"{d}:{s}", st)
    devices, students = state.usage.devices, book.states
    for (d, s, device), buf, max_ts, seen, until, arrival in doc["devices"]:
        student = students.get(f"{d}:{s}")
        if student is not None:  # share the id strings with the presence state
            d, s = student.district_id, student.student_id
        # The entries are in buffer order; their arrival numbers q are not needed (see _buffer_doc).
        buffered = [(t, a, app, sub) for t, _q, a, app, sub in buf]
        devices[(d, s, device)] = DeviceUsage(buffered, max_ts, seen, until, arrival)
    return state
