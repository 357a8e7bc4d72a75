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
from collections.abc import Callable
from dataclasses import dataclass, field
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
    wire_object,
)
from producers.truth import TruthParams, ground_truth, save_truth
from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS
from schemas.event import ActivityEvent
from schemas.roster import roster_key


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


def build_records(
    items: list[SimItem], partitions: int, single: bool
) -> list[tuple[int, bytes | None, bytes, list[SimItem]]]:
    """``(partition, key, value, items)`` records: single events, or per-partition envelopes."""
    if single:
        return [
            (
                partition_for_key(_record_key(i), partitions),
                _record_key(i),
                orjson.dumps(wire_object(i)),
                [i],
            )
            for i in items
        ]
    groups: dict[int, list[tuple[bytes, SimItem]]] = {}
    for item in items:
        encoded = orjson.dumps(wire_object(item))
        groups.setdefault(partition_for_key(_record_key(item), partitions), []).append(
            (encoded, item)
        )
    records: list[tuple[int, bytes | None, bytes, list[SimItem]]] = []
    for partition, members in groups.items():
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
    """Simulate, send and return what Kafka acknowledged (see the module docstring)."""
    if options.count is None and options.duration_s is None:
        raise ValueError("give a count or a duration")
    population = build_population(config)
    span_ms = simulated_span_ms(config, population, options)
    start_ms = place_day(int(clock() * 1000), span_ms, options.speed)
    generator = ActivityGenerator(config, population, start_ms)
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
        await _send_loop(producer, settings, generator, options, partitions, start_ms, report,
                         clock, progress)  # fmt: skip
    finally:
        await producer.stop()
    return report


async def _send_loop(
    producer: AIOKafkaProducer,
    settings: Settings,
    generator: ActivityGenerator,
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
    items = generator.items()
    pending: list[tuple[Any, list[SimItem]]] = []
    last_report = wall_start
    sent = 0
    lag_s = 0.0
    done = False
    while not done:
        batch_end = clock() + window_s
        batch: list[SimItem] = []
        while True:
            item = next(items)
            if isinstance(item, ActivityEvent) and options.speed:
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
        for partition, key, value, members in build_records(batch, partitions, options.single):
            future = await producer.send(
                settings.topic_activity, value, key=key, partition=partition
            )
            pending.append((future, members))
            report.records_sent += 1
        for member in batch:
            if isinstance(member, InvalidEvent):
                report.invalid_sent += 1
            else:
                report.events_sent += 1
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


async def _collect(pending: list[tuple[Any, list[SimItem]]], report: SendReport) -> None:
    """Await acknowledgements in send order; only acknowledged events enter the truth."""
    for future, members in pending:
        try:
            await future
        except Exception as exc:  # noqa: BLE001 - a failed record is reported, not raised
            sys.stderr.write(f"record of {len(members)} events failed: {exc!r}\n")
            continue
        report.acked_events.extend(m for m in members if isinstance(m, ActivityEvent))
    pending.clear()


def write_truth(path: Path | str, report: SendReport, settings: Settings, now_ms: int) -> None:
    """The ground truth of the acknowledged events (see :mod:`producers.truth`)."""
    params = TruthParams.from_settings(settings)
    save_truth(path, ground_truth(report.acked_events, params, now_ms), params, now_ms)
