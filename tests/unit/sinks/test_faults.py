"""The fault-injection wrapper: faults fire around the wrapped sink's write, and only around a real one."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from sinks.faults import FaultySink, InjectedFailure, SimulatedCrash, SinkFaults, with_faults
from sinks.shape import FlushResult


class CountingSink:
    name = "counting"

    def __init__(self) -> None:
        self.buffer: list[int] = []
        self.written: list[int] = []
        self.assigned: set[int] = set()

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        self.buffer.append(record.offset)

    def __len__(self) -> int:
        return len(self.buffer)

    async def flush(self) -> FlushResult:
        if not self.buffer:
            return FlushResult()
        self.written += self.buffer
        rows = len(self.buffer)
        self.buffer.clear()
        return FlushResult(batches=1, rows=rows)

    def discard(self) -> None:
        self.buffer.clear()

    async def on_assign(self, partitions: set[int]) -> None:
        self.assigned |= partitions


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"v", None, 0, 1, [])


async def test_an_injected_failure_leaves_the_buffer_unwritten_for_the_retry() -> None:
    inner = CountingSink()
    sink = FaultySink(inner, SinkFaults(fail_inserts=2))
    sink.add(_record(0))
    for _ in range(2):
        with pytest.raises(InjectedFailure):
            await sink.flush()
        assert (len(sink), inner.written) == (1, [])
    assert await sink.flush() == FlushResult(batches=1, rows=1)
    assert inner.written == [0]


async def test_the_crash_comes_after_the_nth_write_and_only_once() -> None:
    inner = CountingSink()
    sink = FaultySink(inner, SinkFaults(crash_after_insert=2))
    sink.add(_record(0))
    await sink.flush()
    sink.add(_record(1))
    with pytest.raises(SimulatedCrash):
        await sink.flush()
    assert inner.written == [0, 1]  # written, then the "process" died before the commit
    sink.add(_record(2))
    await sink.flush()
    assert inner.written == [0, 1, 2]


async def test_an_empty_flush_neither_fails_nor_counts_as_a_write() -> None:
    inner = CountingSink()
    sink = FaultySink(inner, SinkFaults(fail_inserts=1, crash_after_insert=1))
    assert await sink.flush() == FlushResult()
    sink.add(_record(0))
    with pytest.raises(InjectedFailure):  # the failure is still pending for the first real write
        await sink.flush()
    with pytest.raises(SimulatedCrash):
        await sink.flush()


async def test_everything_else_goes_to_the_wrapped_sink() -> None:
    inner = CountingSink()
    sink = FaultySink(inner, SinkFaults(slow_insert_ms=1))
    await sink.on_assign({3})
    sink.add(_record(0))
    sink.discard()
    assert (sink.name, inner.assigned, len(inner)) == ("counting", {3}, 0)


def test_no_fault_spec_means_the_sink_itself() -> None:
    inner = CountingSink()
    assert with_faults(inner, "") is inner
    wrapped = with_faults(inner, "fail_inserts=1")
    assert isinstance(wrapped, FaultySink) and wrapped.faults == SinkFaults(fail_inserts=1)
    with pytest.raises(ValueError, match="unknown fault"):
        with_faults(inner, "drop_everything=1")
