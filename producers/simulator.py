"""Send simulated device activity to Kafka (``csync simulate``), pacing it like a real school day.

The model (:mod:`producers.simulator_model`) gives items in delivery order. Here they are paced
(the school-day schedule compressed by ``speed``, capped at ``rate`` events/s), grouped into
per-partition envelopes (CONTRACT §2a) or sent one per record with key
``{district_id}:{student_id}``, and produced with an idempotent aiokafka producer. The ground
truth is computed over exactly the valid events whose records Kafka acknowledged.

Event times: the simulated day is placed so that it catches up with the wall clock at the end of
the run (``start = now - span + span / speed``): no event is ever in the future, and with
``speed == 1`` the events are live.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from producers.partitioner import partition_for_key
from producers.simulator_model import (
    ActivityGenerator,
    InvalidEvent,
    SimItem,
    SimulationConfig,
    Student,
    build_population,
    generate_relative,
    shift_items,
    span_of,
    wire_object,
)
from producers.truth import TruthParams, ground_truth, save_truth
from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS
from schemas.event import ActivityEvent
from schemas.roster import roster_key

# A count up to this many items is generated before sending (about 0.5 KiB of memory per item);
# larger counts are generated while sending, after a dry run that measures the day's span.
MAX_ITEMS_AHEAD = 5_000_000
# Items per batch when sending unpaced (speed 0, no rate cap).
_UNPACED_BATCH = 20_000


@dataclass(frozen=True)
class SendOptions:
    """How much to send and how fast."""

    count: int | None = None
    duration_s: float | None = None
    rate: float = 0.0
    """Events per second at most; 0 = no cap."""
    speed: float = 1.0
    """Simulated seconds per wall second; 0 = no schedule (as fast as ``rate`` allows)."""
    single: bool = False
    """One event per record (key ``{district_id}:{student_id}``) instead of envelopes."""
    batch_window_ms: int = 20
    linger_ms: int = 10
    compression: str = field(default_factory=lambda: default_compression())
    """lz4 when aiokafka can use it (it needs the ``cramjam`` package), else gzip."""
    with_roster: bool = True
    """Produce the population's roster records (roster.v1) before the events."""


@dataclass
class SendReport:
    """What was sent and acknowledged."""

    events_sent: int = 0
    invalid_sent: int = 0
    records_sent: int = 0
    roster_records: int = 0
    elapsed_s: float = 0.0
    acked_events: list[ActivityEvent] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return (self.events_sent + self.invalid_sent) / self.elapsed_s if self.elapsed_s else 0.0


def default_compression() -> str:
    """``lz4`` if aiokafka has its codec (``cramjam``), else ``gzip`` (always available)."""
    from aiokafka.codec import has_lz4

    return "lz4" if has_lz4() else "gzip"


def simulated_span_ms(
    config: SimulationConfig, population: list[Student], options: SendOptions
) -> int:
    """Event-time span of the run: ``duration * speed``, or measured by a dry run of ``count``."""
    if options.duration_s is not None:
        return int(options.duration_s * 1000 * (options.speed or 1))
    last = 0
    for sent, item in enumerate(ActivityGenerator(config, population, 0).items(), start=1):
        if isinstance(item, ActivityEvent):
            last = max(last, item.ts)
        if sent >= (options.count or 0):
            break
    return last + 1000


def place_day(now_ms: int, span_ms: int, speed: float) -> int:
    """``start_ms`` of the simulated day so that its events catch up with ``now_ms`` at the end."""
    return int(now_ms - span_ms + (span_ms / speed if speed else 0))


def _record_key(item: SimItem) -> bytes:
    if isinstance(item, InvalidEvent):
        return item.key.encode()
    return item.student_key.encode()


def _partitions_of(items: list[SimItem], partitions: int) -> list[int]:
    """Each item's partition; computed once per student of the batch, not once per item."""
    known: dict[tuple[str, str], int] = {}
    out: list[int] = []
    append = out.append
    for item in items:
        if type(item) is ActivityEvent:
            student = (item[3], item[4])  # (district_id, student_id)
            partition = known.get(student)
            if partition is None:
                partition = partition_for_key(item.student_key.encode(), partitions)
                known[student] = partition
            append(partition)
        else:
            append(partition_for_key(_record_key(item), partitions))
    return out


def build_records(
    items: list[SimItem], partitions: int, single: bool
) -> list[tuple[int, bytes | None, bytes, list[SimItem]]]:
    """``(partition, key, value, items)`` records: single events, or per-partition envelopes.

    Envelopes are cut at 1,000 events or 1 MiB, in order, so a student's events stay in order.
    """
    if single:
        return [
            (partition_for_key(_record_key(i), partitions), _record_key(i),
             orjson.dumps(wire_object(i)), [i])
            for i in items
        ]  # fmt: skip
    groups: dict[int, list[SimItem]] = {}
    for partition, item in zip(_partitions_of(items, partitions), items, strict=True):
        group = groups.get(partition)
        if group is None:
            groups[partition] = [item]
        else:
            group.append(item)
    records: list[tuple[int, bytes | None, bytes, list[SimItem]]] = []
    for partition, members in groups.items():
        for start in range(0, len(members), MAX_ENVELOPE_EVENTS):
            chunk = members[start : start + MAX_ENVELOPE_EVENTS]
            # One orjson call per envelope; its bytes equal "[" + ",".join(each member) + "]".
            value = orjson.dumps(list(map(wire_object, chunk)))
            if len(value) < MAX_ENVELOPE_BYTES:
                records.append((partition, None, value, chunk))
            else:  # rare: large members; the rest of the partition is cut by size too
                records.extend(_cut_by_size(partition, members[start:]))
                break
    return records


def _cut_by_size(
    partition: int, items: list[SimItem]
) -> list[tuple[int, bytes | None, bytes, list[SimItem]]]:
    """Envelopes of ``items`` cut in order at 1,000 events or (just under) 1 MiB."""
    members = [(orjson.dumps(wire_object(i)), i) for i in items]
    records: list[tuple[int, bytes | None, bytes, list[SimItem]]] = []
    start, size = 0, 2
    for i, (encoded, _) in enumerate(members):
        if i > start and (
            i - start >= MAX_ENVELOPE_EVENTS or size + len(encoded) + 1 > MAX_ENVELOPE_BYTES
        ):
            records.append(_envelope(partition, members[start:i]))
            start, size = i, 2
        size += len(encoded) + 1
    records.append(_envelope(partition, members[start:]))
    return records


def _envelope(
    partition: int, members: list[tuple[bytes, SimItem]]
) -> tuple[int, bytes | None, bytes, list[SimItem]]:
    value = b"[" + b",".join(e for e, _ in members) + b"]"
    return (partition, None, value, [i for _, i in members])


async def produce_roster(producer: AIOKafkaProducer, topic: str, students: list[Student]) -> int:
    """Roster records of ``students`` (names are synthetic), acknowledged."""
    futures = [
        await producer.send(
            topic, s.roster_record.encode(), key=roster_key(s.district_id, s.student_id)
        )
        for s in students
    ]
    await asyncio.gather(*futures)
    return len(futures)


async def run_simulation(
    settings: Settings,
    config: SimulationConfig,
    options: SendOptions,
    *,
    clock: Callable[[], float] = time.time,
    progress: TextIO | None = sys.stderr,
) -> SendReport:
    """Simulate, send and return what Kafka acknowledged (see the module docstring).

    With a ``count``, the items are generated before sending starts (one pass that also measures
    the span of the day) and ``report.elapsed_s`` covers the sending only; with a duration they are
    generated while sending.
    """
    if options.count is None and options.duration_s is None:
        raise ValueError("give a count or a duration")
    population = build_population(config)
    ahead: list[SimItem] | None = None
    if options.duration_s is None and (options.count or 0) <= MAX_ITEMS_AHEAD:
        ahead = generate_relative(config, population, max(options.count or 0, 1))
        span_ms = span_of(ahead)
    else:
        span_ms = simulated_span_ms(config, population, options)
    start_ms = place_day(int(clock() * 1000), span_ms, options.speed)
    items: Iterator[SimItem]
    if ahead is not None:
        items = iter(shift_items(ahead, start_ms))
    else:
        items = ActivityGenerator(config, population, start_ms).items()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type=options.compression,
        linger_ms=options.linger_ms,
        max_batch_size=2 * 1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    report = SendReport()
    try:
        partitions = len(await producer.partitions_for(settings.topic_activity))
        if options.with_roster:
            report.roster_records = await produce_roster(
                producer, settings.topic_roster, population
            )
        await _send_loop(producer, settings, items, options, partitions, start_ms, report,
                         clock, progress)  # fmt: skip
    finally:
        await producer.stop()
    return report


async def _send_loop(
    producer: AIOKafkaProducer,
    settings: Settings,
    items: Iterator[SimItem],
    options: SendOptions,
    partitions: int,
    start_ms: int,
    report: SendReport,
    clock: Callable[[], float],
    progress: TextIO | None,
) -> None:
    wall_start = clock()
    deadline = wall_start + options.duration_s if options.duration_s is not None else None
    window_s = options.batch_window_ms / 1000
    paced = bool(options.speed or options.rate)
    pending: list[tuple[Any, list[ActivityEvent]]] = []
    last_report = wall_start
    sent = 0
    lag_s = 0.0
    done = False
    while not done:
        batch_end = clock() + window_s
        batch: list[SimItem] = []
        if not paced:
            # Unpaced: take a whole batch without per-item clock reads; the deadline is checked
            # per batch of at most _UNPACED_BATCH items (a few milliseconds of work).
            want = _UNPACED_BATCH
            if options.count is not None:
                want = max(1, min(want, options.count - sent))
            batch = list(islice(items, want))
            sent += len(batch)
            done = (options.count is not None and sent >= options.count) or (
                deadline is not None and clock() >= deadline
            )
        while paced:
            item = next(items)
            if options.speed and type(item) is ActivityEvent:
                due = wall_start + (item.ts - start_ms) / 1000 / options.speed
                lag_s = max(0.0, clock() - due)
                due = max(due, item.ts / 1000)  # never an event time in the future
                if due > clock():
                    await asyncio.sleep(due - clock())
            if options.rate:
                due_rate = wall_start + sent / options.rate
                if due_rate > clock():
                    await asyncio.sleep(due_rate - clock())
            batch.append(item)
            sent += 1
            if options.count is not None and sent >= options.count:
                done = True
            if deadline is not None and clock() >= deadline:
                done = True
            if done or clock() >= batch_end or len(batch) >= 20_000:
                break
        invalid = 0
        for partition, key, value, members in build_records(batch, partitions, options.single):
            future = await producer.send(
                settings.topic_activity, value, key=key, partition=partition
            )
            valid = [m for m in members if type(m) is ActivityEvent]
            invalid += len(members) - len(valid)
            pending.append((future, valid))
            report.records_sent += 1
        report.invalid_sent += invalid
        report.events_sent += len(batch) - invalid
        if len(pending) > 2000 or done:
            await _collect(pending, report)
        now = clock()
        if progress is not None and (now - last_report >= 1 or done):
            last_report = now
            elapsed = now - wall_start
            progress.write(
                f"sent {report.events_sent + report.invalid_sent} events "
                f"({report.invalid_sent} invalid) in {report.records_sent} records, "
                f"{(report.events_sent + report.invalid_sent) / max(elapsed, 1e-9):,.0f}/s, "
                f"lag behind schedule {lag_s:.1f}s\n"
            )
            progress.flush()
    report.elapsed_s = clock() - wall_start


async def _collect(pending: list[tuple[Any, list[ActivityEvent]]], report: SendReport) -> None:
    """Await acknowledgements in send order; only acknowledged events enter the truth."""
    for future, valid in pending:
        try:
            await future
        except Exception as exc:  # noqa: BLE001 - a failed record is reported, not raised
            sys.stderr.write(f"record of {len(valid)} valid events failed: {exc!r}\n")
            continue
        report.acked_events.extend(valid)
    pending.clear()


def write_truth(path: Path | str, report: SendReport, settings: Settings, now_ms: int) -> None:
    """The ground truth of the acknowledged events (see :mod:`producers.truth`)."""
    params = TruthParams.from_settings(settings)
    save_truth(path, ground_truth(report.acked_events, params, now_ms), params, now_ms)
