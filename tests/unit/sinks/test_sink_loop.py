"""The shared sink loop against a scripted consumer: when it flushes, that it commits only after a flush, what it
does on failures, and that it records the metrics of what each flush reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from sinks.runner import Backoff, SinkLoop
from sinks.shape import FlushResult, PermanentSinkError, SourceRewind

TP = TopicPartition("t", 0)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"v", None, 0, 1, [])


class ScriptedConsumer:
    """Answers each getmany with the next scripted batch (then nothing); records what the loop did.

    ``markers`` are offsets of transaction markers: the position moves past those that follow a
    returned record, as a ``read_committed`` consumer's does."""

    def __init__(
        self, script: list[list[int]], stop: asyncio.Event, markers: frozenset[int] = frozenset()
    ) -> None:
        self.script = script
        self.stop = stop
        self.markers = markers
        self.next = 0
        self.log: list[tuple[str, Any]] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.log.append(("poll", timeout_ms))
        if self.script:
            offsets = self.script.pop(0)
            if offsets:
                self.next = offsets[-1] + 1
                while self.next in self.markers:
                    self.next += 1
            return {TP: [_record(o) for o in offsets]} if offsets else {}
        self.stop.set()
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", offsets[TP]))

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def position(self, tp: TopicPartition) -> int:
        return self.next


class ListSink:
    name = "test"

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.buffer: list[int] = []
        self.log = log

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        self.buffer.append(record.offset)

    def __len__(self) -> int:
        return len(self.buffer)

    async def flush(self) -> FlushResult:
        self.log.append(("flush", list(self.buffer)))
        written = len(self.buffer)
        self.buffer.clear()
        return FlushResult(batches=1, rows=written)

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


async def test_the_commit_moves_past_the_transaction_markers_after_the_records() -> None:
    # Records 0-1 and 3, each transaction followed by its commit marker (2, 4): committing the last
    # record + 1 would leave the group one behind the end forever.
    stop = asyncio.Event()
    consumer = ScriptedConsumer([[0, 1], [3]], stop, markers=frozenset({2, 4}))
    loop = SinkLoop(consumer, ListSink(consumer.log), flush_interval_s=60, flush_when_idle=True)
    await asyncio.wait_for(loop.run(stop), 5)
    log = [entry for entry in consumer.log if entry[0] != "poll"]
    assert log == [("flush", [0, 1, 3]), ("commit", 5)]


class FailingSink(ListSink):
    """Raises the scripted exceptions on its first flushes, then writes; reports ``report`` per write."""

    def __init__(
        self, log: list[tuple[str, Any]], errors: list[Exception], report: FlushResult
    ) -> None:
        super().__init__(log)
        self.errors = errors
        self.report = report
        self.name = f"test-{id(self)}"

    async def flush(self) -> FlushResult:
        if self.errors:
            self.log.append(("fail", list(self.buffer)))
            raise self.errors.pop(0)
        await super().flush()
        return self.report


class RewindingConsumer(ScriptedConsumer):
    def pause(self, *tps: TopicPartition) -> None:
        self.log.append(("pause", len(tps)))

    def resume(self, *tps: TopicPartition) -> None:
        self.log.append(("resume", len(tps)))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.log.append(("seek", offset))


def _sample(name: str, sink: str) -> float:
    value = REGISTRY.get_sample_value(name, {"sink": sink})
    return 0.0 if value is None else value


async def test_a_transient_failure_is_retried_and_nothing_is_committed_before_the_write() -> None:
    stop = asyncio.Event()
    consumer = RewindingConsumer([[0, 1]], stop)
    sink = FailingSink(consumer.log, [ConnectionError("down")], FlushResult(batches=1, rows=2))
    loop = SinkLoop(consumer, sink, flush_interval_s=60, backoff=Backoff(first=0.001))
    await asyncio.wait_for(loop.run(stop), 5)
    log = [entry for entry in consumer.log if entry[0] != "poll"]
    assert log == [("fail", [0, 1]), ("pause", 1), ("flush", [0, 1]), ("resume", 1), ("commit", 2)]
    assert (
        REGISTRY.get_sample_value(
            "csync_sink_failures_total", {"sink": sink.name, "kind": "transient"}
        )
        == 1
    )
    assert _sample("csync_sink_retries_total", sink.name) == 1
    assert loop.backend_ok


async def test_a_rewind_drops_the_buffer_commits_nothing_and_reads_from_the_start() -> None:
    stop = asyncio.Event()
    consumer = RewindingConsumer([[5, 6]], stop)
    sink = FailingSink(consumer.log, [SourceRewind("store lost its state")], FlushResult())
    loop = SinkLoop(consumer, sink, flush_interval_s=60)
    await asyncio.wait_for(loop.run(stop), 5)
    log = [entry for entry in consumer.log if entry[0] != "poll"]
    assert log == [("fail", [5, 6]), ("seek", 0)]
    assert sink.buffer == []


async def test_a_permanent_failure_stops_the_loop_without_a_commit() -> None:
    stop = asyncio.Event()
    consumer = RewindingConsumer([[0]], stop)
    sink = FailingSink(consumer.log, [PermanentSinkError("schema")], FlushResult())
    loop = SinkLoop(consumer, sink, flush_interval_s=60)
    with pytest.raises(PermanentSinkError):
        await asyncio.wait_for(loop.run(stop), 5)
    assert not any(kind == "commit" for kind, _ in consumer.log)
    assert not loop.backend_ok


async def test_the_loop_records_what_each_flush_reports() -> None:
    stop = asyncio.Event()
    consumer = ScriptedConsumer([[0, 1, 2]], stop)
    report = FlushResult(batches=1, rows=40, stale=3, replays=2)
    sink = FailingSink(consumer.log, [], report)
    stale_before = REGISTRY.get_sample_value("csync_sink_stale_changes_total") or 0.0
    await asyncio.wait_for(SinkLoop(consumer, sink, flush_interval_s=60).run(stop), 5)
    assert _sample("csync_sink_batches_total", sink.name) == 1
    assert _sample("csync_sink_rows_total", sink.name) == 40
    assert _sample("csync_sink_replay_skipped_total", sink.name) == 2
    assert REGISTRY.get_sample_value("csync_sink_stale_changes_total") == stale_before + 3
    assert _sample("csync_sink_batch_seconds_count", sink.name) == 1


async def test_a_flush_that_wrote_nothing_counts_no_batch() -> None:
    # Every record was a replay already in the store: the flush skips them and writes nothing.
    stop = asyncio.Event()
    consumer = ScriptedConsumer([[0, 1]], stop)
    sink = FailingSink(consumer.log, [], FlushResult(replays=2))
    await asyncio.wait_for(SinkLoop(consumer, sink, flush_interval_s=60).run(stop), 5)
    assert _sample("csync_sink_batches_total", sink.name) == 0
    assert _sample("csync_sink_replay_skipped_total", sink.name) == 2
    assert ("commit", 2) in consumer.log
