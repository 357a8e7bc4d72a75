"""Reading back by offset (the worker's recovery reads) on a real broker: tails, ranges, firsts."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from csync.settings import Settings
from streams.kafka_reads import beginnings, read_range, read_tail


@pytest.mark.kafka
async def test_tail_range_and_beginnings(kafka_settings: Settings) -> None:
    s = kafka_settings
    topic = s.topic_usage_cells
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(30):
            await producer.send(topic, b"v%d" % n, key=b"k%d" % n, partition=1)
        await producer.flush()
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        tp, empty = TopicPartition(topic, 1), TopicPartition(topic, 2)
        assert [m.value for m in await read_tail(reader, tp, 3)] == [b"v27", b"v28", b"v29"]
        assert len(await read_tail(reader, tp, None)) == 30
        assert await read_tail(reader, empty, 5) == []
        got = await read_range(reader, tp, 4, 7)
        assert [(o, k, v) for o, k, v, _h in got] == [
            (n, b"k%d" % n, b"v%d" % n) for n in (4, 5, 6, 7)
        ]
        assert await read_range(reader, tp, 5, 4) == []
        assert await beginnings(reader, [tp, empty]) == {tp: 0, empty: 0}
    finally:
        await reader.stop()
