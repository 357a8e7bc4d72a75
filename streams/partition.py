"""Everything one input partition's processing does, as a deterministic function of (state, batch).

:func:`process_batch` takes the partition's state, the activity and roster records of one batch and
the batch's clock ``now_ms`` and returns what to emit. It reads no clock, awaits nothing and never
raises on input: a bad event becomes a DLQ record. Given the same state and the same
:class:`~streams.batch_log.Intent`, it returns the same outputs and leaves the same state — which
is what makes the worker crash-safe (see ``streams.engine``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any, NamedTuple

import orjson

from csync.settings import Settings
from schemas.decoder import EventOutcome, Limits, encode_event
from schemas.dlq import DlqRecord, dlq_record
from schemas.event import ActivityEvent
from schemas.internal import PresenceChange
from schemas.probe import RESERVED_DISTRICT_PREFIX as PROBE_PREFIX
from schemas.record_batch import Notes, decode_records_within
from schemas.routing import RouteTable
from streams.batch_log import Intent
from streams.presence import PresenceBook
from streams.usage import Interval, UsageBook, UsageRules

# A consumed record: (offset, key, value, headers)
Record = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


_device_of = itemgetter(5)  # ActivityEvent.device_id
_value_of = itemgetter(2)  # a Record's value


# partitions -> its route table: a worker sees the same students over and over.
_routes: dict[int, RouteTable] = {}


def _route_table(partitions: int) -> RouteTable:
    table = _routes.get(partitions)
    if table is None:
        table = _routes[partitions] = RouteTable(partitions)
    return table


@dataclass(slots=True)
class Outputs:
    """What one batch emits, plus counts for metrics."""

    presence: list[PresenceChange] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    dlq: list[DlqRecord] = field(default_factory=list)
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


def params_of(settings: Settings) -> Params:
    """Rule parameters from settings."""
    rules = UsageRules(
        max_gap_ms=settings.max_gap_s * 1000,
        lateness_ms=settings.allowed_lateness_s * 1000,
        close_after_ms=settings.usage_close_after_s * 1000,
        evict_after_ms=settings.usage_evict_after_s * 1000,
    )
    return Params(
        settings.partitions,
        settings.presence_timeout_s * 1000,
        rules,
        Limits.from_settings(settings),
        settings.topic_activity,
        refresh_ms=settings.presence_ts_refresh_s * 1000,
    )


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
    out.dlq.append(
        dlq_record(
            key,
            outcome.raw or value,
            reason,
            rej.detail if rej is not None else "",
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_index=outcome.source_index,
        )
    )


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
    route = _route_table(partitions).of
    intervals = out.intervals
    for skey, events in groups.items():
        target = route(skey)
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


# Single-event records are decoded together, up to this many (64-1,000 measured alike); an envelope
# ends a run, so at most this many plus one envelope's events are decoded at once.
_RECORDS_PER_DECODE = 256


def _decoded(
    activity: list[Record], min_ts: int, max_ts: int
) -> Iterator[tuple[list[Record], list[ActivityEvent], Notes]]:
    """The batch's records with a value, a few at a time, and their valid events and notes (each
    with its record's position in the few)."""
    records = activity
    values: list[bytes] = list(map(_value_of, records))
    if None in values:  # tombstones carry no event
        records = [rec for rec in activity if rec[2] is not None]
        values = list(map(_value_of, records))
    count = len(values)
    # A chunk ends after each record that is not one event object (an envelope, or a failure).
    not_single = map(not_, map(bytes.startswith, values, repeat(b"{")))
    start = 0
    for end in [*compress(range(1, count + 1), not_single), count]:
        for first in range(start, end, _RECORDS_PER_DECODE):
            last = min(first + _RECORDS_PER_DECODE, end)
            yield records[first:last], *decode_records_within(values[first:last], min_ts, max_ts)
        start = end


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
    # _CHUNK_EVENTS events, in arrival order, so a big poll is never held decoded all at once
    # (the worker's memory stays near its state).
    groups: dict[str, list[ActivityEvent]] = {}
    pending = 0
    dropped = out.dropped_fields
    min_ts, max_ts = params.limits.ts_window(now)
    # The decoder gives the valid events and the notes (rejections, dropped fields) apart, for
    # runs of records at once, so this loop, which runs once per event, only groups. ev[3] and
    # ev[4] are ActivityEvent.district_id and student_id.
    for records, events, notes in _decoded(activity, min_ts, max_ts):
        for pos, note in notes:
            if note[1] is None:
                offset, key, value, _headers = records[pos]
                _reject(out, note, offset, key, value or b"", me, params.topic_activity)
            else:
                for f in note[3]:
                    dropped[f] += 1
        for ev in events:
            skey = f"{ev[3]}:{ev[4]}"
            group = groups.get(skey)
            if group is None:
                groups[skey] = [ev]
            else:
                group.append(ev)
        pending += len(events) + len(notes)
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
