"""The shared sink loop against a scripted consumer: when it flushes, and that it commits only after a flush."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from sinks.runner import SinkLoop

TP = TopicPartition("t", 0)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"v", None, 0, 1, [])


class ScriptedConsumer:
    """Answers each getmany with the next scripted batch (then nothing); records what the loop did."""

    def __init__(self, script: list[list[int]], stop: asyncio.Event) -> None:
        self.script = script
        self.stop = stop
        self.log: list[tuple[str, Any]] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.log.append(("poll", timeout_ms))
        if self.script:
            offsets = self.script.pop(0)
            return {TP: [_record(o) for o in offsets]} if offsets else {}
        self.stop.set()
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", offsets[TP]))

    def assignment(self) -> set[TopicPartition]:
        return {TP}


class ListSink:
    name = "test"

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.buffer: list[int] = []
        self.log = log

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        self.buffer.append(record.offset)

    def __len__(self) -> int:
        return len(self.buffer)

    async def flush(self) -> None:
        self.log.append(("flush", list(self.buffer)))
        self.buffer.clear()

    def discard(self) -> None:
        self.buffer.clear()

    async def on_assign(self, partitions: set[int]) -> None:
        pass


async def _run(script: list[list[int]], **kw: Any) -> list[tuple[str, Any]]:
    stop = asyncio.Event()
    consumer = ScriptedConsumer(script, stop)
    loop = SinkLoop(consumer, ListSink(consumer.log), **kw)
    await asyncio.wait_for(loop.run(stop), 5)
    return [entry for entry in consumer.log if entry[0] != "poll"]


async def test_flush_when_idle_writes_as_soon_as_nothing_more_is_fetched() -> None:
    log = await _run([[0, 1], [2], [], [3]], flush_interval_s=60, flush_when_idle=True)
    # Records that arrive back to back share a flush; an empty poll flushes; each flush is then committed.
    assert log == [("flush", [0, 1, 2]), ("commit", 3), ("flush", [3]), ("commit", 4)]


async def test_an_idle_check_does_not_wait() -> None:
    stop = asyncio.Event()
    consumer = ScriptedConsumer([[0], []], stop)
    loop = SinkLoop(consumer, ListSink(consumer.log), flush_interval_s=60, flush_when_idle=True)
    await asyncio.wait_for(loop.run(stop), 5)
    polls = [t for kind, t in consumer.log if kind == "poll"]
    assert polls[1] == 0  # with a record buffered, the loop only takes what is already fetched
    assert polls[0] > 0 and polls[2] > 0  # with nothing buffered, it waits for records


async def test_without_flush_when_idle_an_empty_poll_does_not_flush() -> None:
    # The ClickHouse sink's shape: one flush per interval, here only the final one on the way out.
    log = await _run([[0, 1], [], [2], []], flush_interval_s=60)
    assert log == [("flush", [0, 1, 2]), ("commit", 3)]
