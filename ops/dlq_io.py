"""Kafka side of ``csync dlq``: read the DLQ and the redrive ledger, resolve interrupted runs, redrive.

Reads use group-less consumers that commit nothing (``privacy.kafka_scan``): looking at the DLQ never moves a
pipeline consumer. The ledger topic (``{DLQ topic}-redrives``, one partition, the DLQ's retention, so an entry
outlives the DLQ record it names) is created on first use. See :mod:`ops.dlq` for the exactly-once argument.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from csync.kafka_client import consumer_options, kafka_options, producer_options
from csync.settings import Settings
from ops.dlq import (
    REDRIVE_HEADER,
    DlqId,
    DlqRecord,
    Ledger,
    RedrivePlan,
    done_doc,
    intent_doc,
    parse_record,
    read_ledger,
)
from privacy.kafka_scan import new_reader, partitions_of, scan_records

LEDGER_CHUNK = 5000  # DLQ ids per ledger record: well below the broker's 1 MiB message limit


def ledger_topic(settings: Settings) -> str:
    return f"{settings.topic_dlq}-redrives"


async def read_dlq(settings: Settings) -> list[DlqRecord]:
    """Every DLQ record now (oldest first per partition)."""
    reader = new_reader(settings.kafka_bootstrap, **consumer_options(settings))
    await reader.start()
    try:
        return [
            parse_record(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers or ())
            async for m in scan_records(reader, settings.topic_dlq)
        ]
    finally:
        await reader.stop()


async def load_ledger(settings: Settings) -> Ledger:
    """The redrive ledger (empty when no redrive ever ran)."""
    reader = new_reader(settings.kafka_bootstrap, **consumer_options(settings))
    await reader.start()
    try:
        entries = [
            (m.timestamp, m.value)
            async for m in scan_records(reader, ledger_topic(settings))
            if m.value is not None
        ]
    finally:
        await reader.stop()
    return read_ledger(entries)


async def ensure_ledger_topic(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **kafka_options(settings)
    )
    await admin.start()
    try:
        if ledger_topic(settings) in set(await admin.list_topics()):
            return
        config = {"retention.ms": str(settings.retention_dlq_ms), "cleanup.policy": "delete"}
        topic = NewTopic(
            ledger_topic(settings), 1, settings.replication_factor, topic_configs=config
        )
        await admin.create_topics([topic])
        while ledger_topic(settings) not in set(await admin.list_topics()):
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def resolve_uncertain(settings: Settings, ledger: Ledger) -> dict[DlqId, tuple[int, int]]:
    """Settle the records of runs that died between intent and done: those whose ``redrive`` header is in
    the activity topic (read from the earliest such intent on) were sent; the others were not. Updates
    ``ledger`` and returns the ones found (the caller records them as done)."""
    if not ledger.uncertain:
        return {}
    wanted = {f"{p}:{o}".encode(): (p, o) for p, o in ledger.uncertain}
    since = (
        min(ledger.uncertain.values()) - 60_000
    )  # producer and broker clocks may differ a little
    found: dict[DlqId, tuple[int, int]] = {}
    reader = new_reader(settings.kafka_bootstrap, **consumer_options(settings))
    await reader.start()
    try:
        parts = await partitions_of(reader, settings.topic_activity)
        tps = [TopicPartition(settings.topic_activity, p) for p in parts]
        offsets = await reader.offsets_for_times(dict.fromkeys(tps, max(0, since)))
        ends = await reader.end_offsets(tps)
        start = {
            tp.partition: (o.offset if o is not None else ends[tp]) for tp, o in offsets.items()
        }
        async for m in scan_records(reader, settings.topic_activity, start):
            for name, raw in m.headers or ():
                if name == REDRIVE_HEADER and raw in wanted:
                    found[wanted[raw]] = (m.partition, m.offset)
    finally:
        await reader.stop()
    for dlq_id, where in found.items():
        ledger.sent[dlq_id] = where
        ledger.produced.add(where)
    ledger.uncertain = {}
    return found


async def write_ledger(producer: AIOKafkaProducer, topic: str, docs: Sequence[bytes]) -> None:
    for doc in docs:
        await producer.send_and_wait(topic, doc)


async def redrive(settings: Settings, plan: RedrivePlan) -> dict[DlqId, tuple[int, int]]:
    """Send ``plan.send`` (intent first, done after every send was acknowledged); DLQ id → where it went."""
    await ensure_ledger_topic(settings)
    run = uuid.uuid4().hex[:12]
    topic = ledger_topic(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=5,
        **producer_options(settings),
    )
    await producer.start()
    sent: dict[DlqId, tuple[int, int]] = {}
    try:
        ids = [r.id for r in plan.send]
        chunks = [ids[i : i + LEDGER_CHUNK] for i in range(0, len(ids), LEDGER_CHUNK)]
        await write_ledger(producer, topic, [intent_doc(run, c) for c in chunks])
        partitions = await producer.partitions_for(settings.topic_activity)
        futures = []
        for rec in plan.send:
            # The source partition keeps a student's events in their first order; the worker re-routes
            # any event that does not belong there (CONTRACT §1).
            partition = rec.source_partition if rec.source_partition in partitions else None
            headers = [(REDRIVE_HEADER, f"{rec.partition}:{rec.offset}".encode())]
            futures.append(
                await producer.send(
                    settings.topic_activity,
                    rec.value,
                    key=rec.key,
                    partition=partition,
                    headers=headers,
                )
            )
        for rec, meta in zip(plan.send, await asyncio.gather(*futures), strict=True):
            sent[rec.id] = (meta.partition, meta.offset)
        await write_ledger(producer, topic, _done_docs(run, sent))
    finally:
        await producer.stop()
    return sent


async def record_found(settings: Settings, found: dict[DlqId, tuple[int, int]]) -> None:
    """Write a done entry for records :func:`resolve_uncertain` found sent."""
    if not found:
        return
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **producer_options(settings)
    )
    await producer.start()
    try:
        await write_ledger(producer, ledger_topic(settings), _done_docs("resolved", found))
    finally:
        await producer.stop()


def _done_docs(run: str, sent: dict[DlqId, tuple[int, int]]) -> list[bytes]:
    items = sorted(sent.items())
    chunks = [dict(items[i : i + LEDGER_CHUNK]) for i in range(0, len(items), LEDGER_CHUNK)]
    return [done_doc(run, c) for c in chunks]
