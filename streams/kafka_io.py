"""The Kafka adapters of :class:`streams.ordering.BatchRunner`: the batch log on the internal
state topic, the outputs on the public and internal topics, and the input records for replay.

Every send waits for the broker's acknowledgement (the producer is idempotent, ``acks=all``)
before the call returns; the batch log's slot of input partition ``p`` is partition ``p`` of the
state topic, and its usage partials go to partition ``p`` of the usage-cells topic, in intent order.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from csync.settings import Settings
from schemas.clock import day_of_ms
from schemas.internal import InternalFormatError, UsagePartial
from streams.batch_log import (
    INTENT_KEY,
    SNAPSHOT_KEY,
    Intent,
    LogTail,
    decode_intent,
    encode_intent,
)
from streams.kafka_reads import beginnings, read_range, read_tail
from streams.keys import DayKeyExchange
from streams.ordering import Batch
from streams.partition import Record
from streams.usage import to_rows

LOG_TAIL = 2000  # records of the state topic read first when looking for the last snapshot
PARTIAL_TAIL = 64  # records of usage-cells searched for the last intent's partial


class KafkaBatchLog:
    """The batch log on ``TOPIC_WORKER_STATE``."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, reader: AIOKafkaConsumer):
        self.s, self.producer, self.reader = settings, producer, reader

    async def append_intents(self, intents: list[Intent]) -> None:
        acks = [
            await self.producer.send(
                self.s.topic_worker_state,
                encode_intent(intent),
                key=INTENT_KEY,
                partition=intent.partition,
            )
            for intent in intents
        ]
        await asyncio.gather(*acks)

    async def append_snapshot(self, partition: int, snapshot: bytes) -> None:
        await (
            await self.producer.send(
                self.s.topic_worker_state, snapshot, key=SNAPSHOT_KEY, partition=partition
            )
        )

    async def tail(self, partition: int) -> LogTail:
        tp = TopicPartition(self.s.topic_worker_state, partition)
        records = await read_tail(self.reader, tp, LOG_TAIL)
        snap_at = max((i for i, m in enumerate(records) if m.key == SNAPSHOT_KEY), default=-1)
        if snap_at < 0 and records and records[0].offset > 0:
            records = await read_tail(self.reader, tp, None)
            snap_at = max((i for i, m in enumerate(records) if m.key == SNAPSHOT_KEY), default=-1)
        snapshot = records[snap_at].value if snap_at >= 0 else None
        intents = [decode_intent(m.value) for m in records[snap_at + 1 :] if m.key == INTENT_KEY]
        return LogTail(snapshot, intents)


class KafkaOutputs:
    """Presence changes, usage partials (de-identified with the day keys), DLQ records and
    re-routed events."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        reader: AIOKafkaConsumer,
        keys: DayKeyExchange,
    ):
        self.s, self.producer, self.reader, self.keys = settings, producer, reader, keys

    async def send(self, batches: list[Batch], skip_partial: bool) -> list[int]:
        producer, s = self.producer, self.s
        days = {
            day_of_ms(t)
            for _intent, out in batches
            for _k, start, end, _a, _s in out.intervals
            for t in (start, end - 1)
        }
        if days:
            await self.keys.ensure(days)
        token = self.keys.store.token
        rows = [to_rows(out.intervals, token) if out.intervals else [] for _i, out in batches]
        futs = []
        for (intent, out), batch_rows in zip(batches, rows, strict=True):
            if batch_rows and not skip_partial:
                partial = UsagePartial(intent.partition, *intent.src[1:], rows=tuple(batch_rows))
                futs.append(
                    await producer.send(
                        s.topic_usage_cells, partial.encode(), partition=intent.partition
                    )
                )
            for ch in out.presence:
                futs.append(await producer.send(s.topic_presence, ch.encode(), key=ch.key))
            for key, raw, headers in out.dlq:
                futs.append(
                    await producer.send(
                        s.topic_dlq, raw, key=key, headers=headers, partition=intent.partition
                    )
                )
            for target, key, raw in out.reroute:
                futs.append(await producer.send(s.topic_activity, raw, key=key, partition=target))
        if futs:
            await asyncio.gather(*futs)
        return [len(r) for r in rows]

    async def partial_landed(self, partition: int, src: tuple[int, int, int]) -> bool:
        """Partials of partition ``p`` go to usage-cells partition ``p`` in intent order, and an
        intent is written only after the previous batch's outputs were acknowledged: the last
        intent's partial, if it was sent at all, is among the last few records there."""
        tp = TopicPartition(self.s.topic_usage_cells, partition)
        for m in await read_tail(self.reader, tp, PARTIAL_TAIL):
            with contextlib.suppress(InternalFormatError):
                partial = UsagePartial.decode(m.value)
                if (partial.partition, partial.first_offset, partial.last_offset) == src:
                    return True
        return False


class KafkaInputs:
    """The activity and roster records a replayed intent covers."""

    def __init__(self, settings: Settings, reader: AIOKafkaConsumer):
        self.s, self.reader = settings, reader

    async def records(self, activity: bool, partition: int, first: int, last: int) -> list[Record]:
        topic = self.s.topic_activity if activity else self.s.topic_roster
        return await read_range(self.reader, TopicPartition(topic, partition), first, last)

    async def beginnings(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        act, ros = self.s.topic_activity, self.s.topic_roster
        firsts = await beginnings(
            self.reader, [TopicPartition(t, p) for t in (act, ros) for p in partitions]
        )
        return {
            p: (firsts[TopicPartition(act, p)], firsts[TopicPartition(ros, p)]) for p in partitions
        }
