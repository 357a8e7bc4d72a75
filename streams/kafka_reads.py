"""Reading back from Kafka by offset with one assigned consumer: a partition's tail, an offset
range, the first offsets. The worker's recovery uses these (not the group consumer)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.partition import Record


async def read_tail(reader: AIOKafkaConsumer, tp: TopicPartition, tail: int | None) -> list[Any]:
    """The last ``tail`` messages of ``tp`` (all of them when ``tail`` is None), in offset order."""
    reader.assign([tp])
    end = (await reader.end_offsets([tp]))[tp]
    begin = (await reader.beginning_offsets([tp]))[tp]
    start = begin if tail is None else max(begin, end - tail)
    out: list[Any] = []
    if start >= end:
        return out
    reader.seek(tp, start)
    while True:
        got = await reader.getmany(tp, timeout_ms=1000)
        for m in got.get(tp, []):
            if m.offset < end:
                out.append(m)
        if (out and out[-1].offset >= end - 1) or await reader.position(tp) >= end:
            return out


async def read_range(
    reader: AIOKafkaConsumer, tp: TopicPartition, first: int, last: int
) -> list[Record]:
    """The records of ``tp`` with ``first <= offset <= last`` (gaps skipped)."""
    if first > last:
        return []
    reader.assign([tp])
    reader.seek(tp, first)
    out: list[Record] = []
    while True:
        got = await reader.getmany(tp, timeout_ms=1000)
        for m in got.get(tp, []):
            if first <= m.offset <= last:
                out.append((m.offset, m.key, m.value, tuple(m.headers)))
        if await reader.position(tp) > last:
            return out


async def beginnings(
    reader: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The first offsets of ``tps``, in one request."""
    offsets = await reader.beginning_offsets(tps)
    return {tp: int(o) for tp, o in offsets.items()}
