"""The order that makes the worker crash-safe and fences a stalled one, independent of Kafka.

Per partition, a batch's :class:`~streams.batch_log.Intent` and all its outputs are written in one
transaction of the partition's :class:`Transactions`: they land together or not at all. A
snapshot (its own transaction) follows the commit of every earlier intent. Recovery first opens
the partition's transactions — which fences the previous owner: nothing it still sends lands —
then restores the last snapshot and replays the later committed intents over the same input
records with their recorded clock, silently: their outputs are committed already ("replay all,
emit none"). A fenced partition (:class:`Fenced`) is dropped quietly: its new owner has it.
:class:`BatchRunner` does all of this over four protocols — the
:class:`~streams.batch_log.BatchLog`, an :class:`OutputSink`, an :class:`InputReader` and the
:class:`Transactions` — so the order is tested with in-memory adapters and run with the Kafka ones
(:mod:`streams.kafka_io`, :mod:`streams.fencing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from streams.batch_log import BatchLog, Intent, recovery_plan
from streams.partition import Outputs, Params, PartitionState, Record, new_state, process_batch
from streams.snapshot import decode_snapshot, encode_snapshot

log = logging.getLogger(__name__)
SNAPSHOT_AFTER_INTENTS = 500  # a snapshot at least this often, whatever the clock says

Batch = tuple[Intent, Outputs]


class Fenced(Exception):
    """A newer owner of the partition fenced this worker's transactions: nothing more of the
    partition may land from here."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} fenced by its new owner")
        self.partition = partition


class Transactions(Protocol):
    """Per partition, the atomic unit of the log and the outputs."""

    async def open(self, partition: int) -> None:
        """Become the partition's writer: fence its previous owner and settle whatever that one
        left open, so the log read afterwards is final (a no-op when open already)."""

    async def close(self, partition: int) -> None:
        """Stop writing the partition (revoked)."""

    def transaction(self, partition: int) -> AbstractAsyncContextManager[None]:
        """Everything appended or sent for ``partition`` inside lands together or not at all;
        raises :class:`Fenced` when a newer owner fenced this writer."""


class OutputSink(Protocol):
    """Where a batch's outputs go (presence, usage partial, DLQ, re-routed events)."""

    async def send(self, batches: list[Batch]) -> list[int]:
        """Send the outputs of these batches (inside their partition's transaction) and return
        once all were acknowledged; returns the usage rows sent per batch."""


class InputReader(Protocol):
    """Input records by offset, for replay."""

    async def records(self, activity: bool, partition: int, first: int, last: int) -> list[Record]:
        """Activity (else roster) records of ``partition`` with ``first <= offset <= last``."""

    async def beginnings(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """The first (activity, roster) offsets of ``partitions``."""


class BatchRunner:
    """The partitions of one worker: their states, batches, emits, snapshots and recovery."""

    def __init__(
        self,
        params: Params,
        log: BatchLog,
        sink: OutputSink,
        inputs: InputReader,
        txn: Transactions,
        snapshot_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.log, self.sink, self.inputs, self.txn = log, sink, inputs, txn
        self.snapshot_s = snapshot_s
        self._clock = clock
        self.states: dict[int, PartitionState] = {}
        self._intents_since_snap: dict[int, int] = {}
        self._last_snap: dict[int, float] = {}
        self.fenced_at: dict[int, float] = {}  # fenced partitions -> when (the caller clears it)

    def batch(
        self, p: int, act: list[Record], roster: list[Record], now_ms: int, close: bool
    ) -> Batch | None:
        """Apply one batch of partition ``p`` to its state: its intent and outputs, or None when
        it changed nothing (a timer batch with nothing to emit)."""
        state = self.states[p]
        intent = Intent(
            p,
            state.act_next,  # not act[0][0]: a gap (compaction, txn markers) stays covered
            act[-1][0] if act else state.act_next - 1,
            state.roster_next,
            roster[-1][0] if roster else state.roster_next - 1,
            now_ms,
            close,
            0 if act else state.ticks + 1,
        )
        out = process_batch(state, act, roster, intent, self.params)
        if not act and not roster and out.empty():
            return None
        return intent, out

    async def emit(self, batches: list[Batch]) -> list[int | None]:
        """Commit each batch's intent and outputs in its partition's transaction; returns the
        usage rows sent per batch, None where the partition was fenced (and dropped).
        Partitions do not wait for each other."""
        results = await asyncio.gather(*map(self._commit, batches), return_exceptions=True)
        rows: list[int | None] = []
        for (intent, _out), result in zip(batches, results, strict=True):
            if isinstance(result, Fenced):
                await self._fenced(intent.partition)
                rows.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                p = intent.partition
                self._intents_since_snap[p] = self._intents_since_snap.get(p, 0) + 1
                rows.append(result)
        return rows

    async def _commit(self, batch: Batch) -> int:
        async with self.txn.transaction(batch[0].partition):
            await self.log.append_intents([batch[0]])
            return (await self.sink.send([batch]))[0]

    async def _fenced(self, p: int) -> None:
        log.warning("partition %d was taken over by another worker: dropped here", p)
        self.fenced_at.setdefault(p, self._clock())
        self.drop(p)
        await self.txn.close(p)

    async def maybe_snapshot(self, p: int) -> None:
        """Snapshot ``p`` if its last snapshot is ``snapshot_s`` old or 500 intents behind."""
        if (
            self._clock() - self._last_snap.get(p, 0.0) >= self.snapshot_s
            or self._intents_since_snap.get(p, 0) >= SNAPSHOT_AFTER_INTENTS
        ):
            await self.snapshot(p)

    async def snapshot(self, p: int) -> None:
        """Append the state of ``p`` to the log (every earlier intent is committed)."""
        state = self.states.get(p)
        if state is None:
            return
        try:
            async with self.txn.transaction(p):
                await self.log.append_snapshot(p, encode_snapshot(state))
        except Fenced:
            await self._fenced(p)
            return
        self._last_snap[p] = self._clock()
        self._intents_since_snap[p] = 0

    async def close(self, p: int) -> None:
        """``p`` is revoked: snapshot it, forget it and stop writing it."""
        await self.snapshot(p)
        self.drop(p)
        await self.txn.close(p)

    def drop(self, p: int) -> None:
        """Forget ``p`` (revoked or fenced)."""
        self.states.pop(p, None)
        self._intents_since_snap.pop(p, None)
        self._last_snap.pop(p, None)

    async def recover(
        self, p: int, partitions: list[int], firsts: dict[int, tuple[int, int]]
    ) -> int:
        """Fence the previous owner of ``p``, then rebuild ``p`` from its last snapshot and the
        committed intents after it; returns the number of intents replayed.

        ``firsts`` caches the first input offsets of all ``partitions`` being recovered: one
        request for all of them (each costs about 0.5 s).
        """
        await self.txn.open(p)  # before the tail read: the previous owner can land nothing after
        tail = await self.log.tail(p)
        if tail.snapshot is not None:
            state = decode_snapshot(tail.snapshot, self.params)
        else:
            state = new_state(p, self.params)
            if p not in firsts:
                firsts.update(await self.inputs.beginnings(partitions))
            state.act_next, state.roster_next = firsts[p]
        # Every committed intent's outputs were committed with it: replay all, emit none.
        replay = recovery_plan(tail.intents, state.act_next, state.roster_next)
        for intent in replay:
            await self._replay(state, intent)
        self.states[p] = state
        self._last_snap[p] = 0.0
        await self.snapshot(p)
        return len(replay)

    async def _replay(self, state: PartitionState, intent: Intent) -> Outputs:
        p = intent.partition
        act = await self.inputs.records(True, p, intent.act_first, intent.act_last)
        ros = await self.inputs.records(False, p, intent.roster_first, intent.roster_last)
        return process_batch(state, act, ros, intent, self.params)
