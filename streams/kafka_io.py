"""The Kafka adapters of :class:`streams.ordering.BatchRunner`: the batch log on the internal
state topic, the outputs on the public and internal topics, and the input records for replay.

Everything of input partition ``p`` is sent by ``p``'s transactional producer
(:class:`streams.fencing.PartitionProducers`) inside its open transaction, and every send waits
for the broker's acknowledgement before the call returns; the batch log's slot of ``p`` is
partition ``p`` of the state topic, and its usage partials go to partition ``p`` of the
usage-cells topic, in intent order. The reader is ``read_committed``
(:func:`csync.kafka_client.consumer_options`): the log tail and the input ranges hold committed
transactions only.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from csync.settings import Settings
from schemas.clock import day_of_ms
from schemas.internal import UsagePartial
from streams.batch_log import (
    INTENT_KEY,
    SNAPSHOT_KEY,
    Intent,
    LogTail,
    decode_intent,
    encode_intent,
)
from streams.fencing import PartitionProducers
from streams.kafka_reads import beginnings, read_range, read_tail
from streams.keys import DayKeyExchange
from streams.ordering import Batch
from streams.partition import Record
from streams.usage import to_rows

LOG_TAIL = 2000  # records of the state topic read first when looking for the last snapshot


class KafkaBatchLog:
    """The batch log on ``TOPIC_WORKER_STATE``."""

    def __init__(self, settings: Settings, producers: PartitionProducers, reader: AIOKafkaConsumer):
        self.s, self.producers, self.reader = settings, producers, reader

    async def append_intents(self, intents: list[Intent]) -> None:
        acks = [
            await self.producers.producer(intent.partition).send(
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
            await self.producers.producer(partition).send(
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

    def __init__(self, settings: Settings, producers: PartitionProducers, keys: DayKeyExchange):
        self.s, self.producers, self.keys = settings, producers, keys
        self._keys_lock = asyncio.Lock()  # partitions commit concurrently; one key exchange

    async def send(self, batches: list[Batch]) -> list[int]:
        s = self.s
        days = {
            day_of_ms(t)
            for _intent, out in batches
            for _k, start, end, _a, _s in out.intervals
            for t in (start, end - 1)
        }
        if days:
            async with self._keys_lock:
                await self.keys.ensure(days)
        token = self.keys.store.token
        rows = [to_rows(out.intervals, token) if out.intervals else [] for _i, out in batches]
        futs = []
        for (intent, out), batch_rows in zip(batches, rows, strict=True):
            producer = self.producers.producer(intent.partition)
            if batch_rows:
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
