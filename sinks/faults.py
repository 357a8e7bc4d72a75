"""Test-only fault injection for the sinks: a wrapper around any sink, enabled only by the
``SINK_FAULT_INJECTION`` setting (:func:`with_faults`).

``fail_inserts=N`` makes the next N batch writes raise a transient error before touching the backend;
``crash_after_insert=N`` raises :class:`SimulatedCrash` after the N-th successful write, before its offsets are
committed (the process "dies" there); ``slow_insert_ms=N`` sleeps N ms before each write. A flush with nothing
buffered writes nothing, so it is neither failed nor counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord

from sinks.shape import BatchSink, FlushResult


class SimulatedCrash(BaseException):  # noqa: N818 - a crash, not an error anyone may catch and go on
    """Stands for a process dying; a BaseException so no ``except Exception`` recovers from it."""


class InjectedFailure(ConnectionError):
    """A transient write failure injected by a test."""


@dataclass(slots=True)
class SinkFaults:
    """Pending injected faults; mutated as they fire."""

    fail_inserts: int = 0
    crash_after_insert: int = 0
    slow_insert_ms: int = 0

    @classmethod
    def parse(cls, spec: str) -> SinkFaults:
        """Parse ``name=value,...``; an empty string means no faults."""
        faults = cls()
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = item.partition("=")
            if name not in ("fail_inserts", "crash_after_insert", "slow_insert_ms"):
                raise ValueError(f"unknown fault {name!r} in SINK_FAULT_INJECTION")
            setattr(faults, name, int(value))
        return faults

    def before_write(self) -> float:
        """Raise an injected failure if one is due; return seconds to sleep first."""
        if self.fail_inserts > 0:
            self.fail_inserts -= 1
            raise InjectedFailure("injected write failure")
        return self.slow_insert_ms / 1000

    def after_write(self) -> None:
        """Crash here (after the write, before the commit) if that is due."""
        if self.crash_after_insert > 0:
            self.crash_after_insert -= 1
            if self.crash_after_insert == 0:
                raise SimulatedCrash("injected crash after write, before offset commit")


class FaultySink:
    """``sink`` with ``faults`` injected around each write; everything else goes straight to ``sink``."""

    def __init__(self, sink: BatchSink, faults: SinkFaults) -> None:
        self.sink = sink
        self.faults = faults
        self.name = sink.name

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        self.sink.add(record)

    def __len__(self) -> int:
        return len(self.sink)

    async def flush(self) -> FlushResult:
        if not len(self.sink):
            return await self.sink.flush()
        delay = self.faults.before_write()
        if delay:
            await asyncio.sleep(delay)
        result = await self.sink.flush()
        self.faults.after_write()
        return result

    def discard(self) -> None:
        self.sink.discard()

    async def on_assign(self, partitions: set[int]) -> None:
        await self.sink.on_assign(partitions)


def with_faults(sink: BatchSink, spec: str) -> BatchSink:
    """``sink`` itself when ``spec`` (``SINK_FAULT_INJECTION``) is empty, else wrapped in a :class:`FaultySink`."""
    faults = SinkFaults.parse(spec)
    if faults == SinkFaults():
        return sink
    return FaultySink(sink, faults)
