"""Send simulated device activity to Kafka (``csync simulate``), pacing it like a real school day.

The model (:mod:`producers.simulator_model`) gives items in delivery order. Here they are paced
(the school-day schedule compressed by ``speed``, capped at ``rate`` events/s), made into records
(:mod:`producers.simulator_records`: per-partition envelopes, CONTRACT §2a, or one event per record with key
``{district_id}:{student_id}``) and produced with an idempotent aiokafka producer. The ground
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
from typing import Any, TextIO, cast

from aiokafka import AIOKafkaProducer

from csync.kafka_client import producer_options
from csync.settings import Settings
from producers.envelopes import EnvelopeBuilder
from producers.simulator_model import (
    ActivityGenerator,
    SimItem,
    SimulationConfig,
    Student,
    build_population,
    generate_relative,
    shift_items,
    span_of,
)
from producers.simulator_records import (
    UNPACED_BATCH,
    Record,
    build_records,
    partitions_of,
    prepare_records,
)
from producers.simulator_wire import wire_bytes
from producers.truth import TruthParams, ground_truth, save_truth
from schemas.event import ActivityEvent
from schemas.roster import roster_key

# A count up to this many items is generated before sending (about 0.5 KiB of memory per item, plus
# ~0.2 KiB of envelope bytes when an unpaced burst is prepared whole: ~1.4 GB at the limit); larger
# counts are generated while sending, after a dry run that measures the day's span.
MAX_ITEMS_AHEAD = 2_000_000


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
    """The codec of the activity topic's producers: ``zstd`` if aiokafka has its codec, else ``lz4``,
    else ``gzip`` (always available)."""
    from aiokafka.codec import has_lz4, has_zstd

    # zstd: more envelope events/s acknowledged and fewer bytes than aiokafka's lz4 for the same
    # records (docs/benchmarks.md, "Compression of the activity topic").
    if has_zstd():
        return "zstd"
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
    generated while sending. Unpaced (``speed`` and ``rate`` 0) with a ``count``, the records too
    are made before sending starts (:func:`prepare_records`): the send phase is then producing
    and acknowledgements only.
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
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        **producer_options(settings),
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
        if ahead is not None and not (options.speed or options.rate):
            # A burst: every record is made before sending starts, as a load generator prepares
            # its payloads, so the send rate is the producer's and Kafka's, not the model's.
            placed, ahead = shift_items(ahead, start_ms), None
            records = prepare_records(placed, partitions, options.single)
            await _send_prepared(producer, settings.topic_activity, records, report, clock,
                                 progress)  # fmt: skip
            return report
        items: Iterator[SimItem]
        if ahead is not None:
            items = iter(shift_items(ahead, start_ms))
        else:
            items = ActivityGenerator(config, population, start_ms).items()
        await _send_loop(producer, settings, items, options, partitions, start_ms, report,
                         clock, progress)  # fmt: skip
    finally:
        await producer.stop()
    return report


async def _send_prepared(
    producer: AIOKafkaProducer,
    topic: str,
    records: list[Record],
    report: SendReport,
    clock: Callable[[], float],
    progress: TextIO | None,
) -> None:
    """Produce ready records as fast as Kafka takes them; the truth gets the acknowledged ones."""
    pending: list[tuple[Any, list[ActivityEvent]]] = []
    wall_start = last_report = clock()
    for partition, key, value, members in records:
        pending.append((await producer.send(topic, value, key=key, partition=partition),
                        valid := _valid(members)))  # fmt: skip
        report.records_sent += 1
        report.events_sent += len(valid)
        report.invalid_sent += len(members) - len(valid)
        if len(pending) > 2000:
            await _collect(pending, report)
        if progress is not None and clock() - last_report >= 1:
            last_report = clock()
            _write_progress(progress, report, last_report - wall_start, 0.0)
    await _collect(pending, report)
    report.elapsed_s = clock() - wall_start
    if progress is not None:
        _write_progress(progress, report, report.elapsed_s, 0.0)


def _write_progress(progress: TextIO, report: SendReport, elapsed: float, lag_s: float) -> None:
    total = report.events_sent + report.invalid_sent
    progress.write(
        f"sent {total} events ({report.invalid_sent} invalid) in {report.records_sent} records, "
        f"{total / max(elapsed, 1e-9):,.0f}/s, lag behind schedule {lag_s:.1f}s\n"
    )
    progress.flush()


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
    envelopes = EnvelopeBuilder[SimItem]()
    known: dict[tuple[str, str], int] = {}
    last_report = wall_start
    sent = 0
    lag_s = 0.0
    done = False
    while not done:
        batch_end = clock() + window_s
        batch: list[SimItem] = []
        if not paced:
            # Unpaced: take a whole batch without per-item clock reads; the deadline is checked
            # per batch of at most UNPACED_BATCH items (a few milliseconds of work).
            want = UNPACED_BATCH
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
        batch_wires = wire_bytes(batch)
        if options.single:
            records = build_records(batch, partitions, True, batch_wires)
        else:
            # Full envelopes leave at once; a paced window also sends its partial ones.
            records = envelopes.add(partitions_of(batch, partitions, known), batch, batch_wires)
            if paced or done:
                records += envelopes.flush()
        for partition, key, value, members in records:
            future = await producer.send(
                settings.topic_activity, value, key=key, partition=partition
            )
            pending.append((future, _valid(members)))
        valid_count = list(map(type, batch)).count(ActivityEvent)
        report.records_sent += len(records)
        report.invalid_sent += len(batch) - valid_count
        report.events_sent += valid_count
        if len(pending) > 2000 or done:
            await _collect(pending, report)
        else:
            # send() returns without yielding while there is room: let the producer's sender
            # take the lingered batches to Kafka before the next chunk is generated and routed.
            await asyncio.sleep(0)
        now = clock()
        if progress is not None and (now - last_report >= 1 or done):
            last_report = now
            _write_progress(progress, report, now - wall_start, lag_s)
    report.elapsed_s = clock() - wall_start


def _valid(members: list[SimItem]) -> list[ActivityEvent]:
    """The valid events of a record (only they enter the truth); most records hold no other."""
    if list(map(type, members)).count(ActivityEvent) == len(members):
        return cast(list[ActivityEvent], members)
    return [m for m in members if type(m) is ActivityEvent]


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
