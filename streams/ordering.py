"""The order that makes the worker crash-safe, independent of Kafka.

Per partition: a batch's :class:`~streams.batch_log.Intent` is in the log (acknowledged) before
any of its outputs is sent; its outputs are acknowledged before the partition's next intent; a
snapshot is appended only after the outputs of every earlier intent were acknowledged. Recovery
restores the last snapshot and replays the later intents over the same input records with their
recorded clock: silently, except the last one, whose outputs are emitted again (its usage partial
only if it did not land). :class:`BatchRunner` does all of this over three protocols — the
:class:`~streams.batch_log.BatchLog`, an :class:`OutputSink` and an :class:`InputReader` — so the
order is tested with in-memory adapters and run with the Kafka ones (:mod:`streams.kafka_io`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from streams.batch_log import BatchLog, Intent, recovery_plan
from streams.partition import Outputs, Params, PartitionState, Record, new_state, process_batch
from streams.snapshot import decode_snapshot, encode_snapshot

SNAPSHOT_AFTER_INTENTS = 500  # a snapshot at least this often, whatever the clock says

Batch = tuple[Intent, Outputs]


class OutputSink(Protocol):
    """Where a batch's outputs go (presence, usage partial, DLQ, re-routed events)."""

    async def send(self, batches: list[Batch], skip_partial: bool) -> list[int]:
        """Send the outputs of these batches (one per partition) and return once all were
        acknowledged; returns the usage rows sent per batch."""

    async def partial_landed(self, partition: int, src: tuple[int, int, int]) -> bool:
        """Whether the usage partial with ``src`` is already among the partition's last outputs."""


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
        snapshot_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.log, self.sink, self.inputs = log, sink, inputs
        self.snapshot_s = snapshot_s
        self._clock = clock
        self.states: dict[int, PartitionState] = {}
        self._intents_since_snap: dict[int, int] = {}
        self._last_snap: dict[int, float] = {}

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

    async def emit(self, batches: list[Batch]) -> list[int]:
        """Log the intents (one per partition), then send their outputs: returns once all were
        acknowledged. Partitions do not wait for each other: two round trips per poll."""
        await self.log.append_intents([intent for intent, _out in batches])
        for intent, _out in batches:
            p = intent.partition
            self._intents_since_snap[p] = self._intents_since_snap.get(p, 0) + 1
        return await self.sink.send(batches, skip_partial=False)

    async def maybe_snapshot(self, p: int) -> None:
        """Snapshot ``p`` if its last snapshot is ``snapshot_s`` old or 500 intents behind."""
        if (
            self._clock() - self._last_snap.get(p, 0.0) >= self.snapshot_s
            or self._intents_since_snap.get(p, 0) >= SNAPSHOT_AFTER_INTENTS
        ):
            await self.snapshot(p)

    async def snapshot(self, p: int) -> None:
        """Append the state of ``p`` to the log (every earlier intent's outputs are acked)."""
        state = self.states.get(p)
        if state is None:
            return
        await self.log.append_snapshot(p, encode_snapshot(state))
        self._last_snap[p] = self._clock()
        self._intents_since_snap[p] = 0

    def drop(self, p: int) -> None:
        """Forget ``p`` (revoked; snapshot it first)."""
        self.states.pop(p, None)
        self._intents_since_snap.pop(p, None)
        self._last_snap.pop(p, None)

    async def recover(
        self, p: int, partitions: list[int], firsts: dict[int, tuple[int, int]]
    ) -> int:
        """Rebuild ``p`` from its last snapshot and the intents after it; returns the number of
        intents replayed.

        ``firsts`` caches the first input offsets of all ``partitions`` being recovered: one
        request for all of them (each costs about 0.5 s).
        """
        tail = await self.log.tail(p)
        if tail.snapshot is not None:
            state = decode_snapshot(tail.snapshot, self.params)
        else:
            state = new_state(p, self.params)
            if p not in firsts:
                firsts.update(await self.inputs.beginnings(partitions))
            state.act_next, state.roster_next = firsts[p]
        plan = recovery_plan(tail.intents, state.act_next, state.roster_next)
        for intent in plan.silent:
            await self._replay(state, intent)
        if plan.last is not None:
            out = await self._replay(state, plan.last)
            # Its outputs may or may not have been sent before the crash. Presence changes are
            # idempotent; the usage partial is not re-sent when it already landed.
            landed = await self.sink.partial_landed(p, plan.last.src)
            await self.sink.send([(plan.last, out)], skip_partial=landed)
        self.states[p] = state
        self._last_snap[p] = 0.0
        await self.snapshot(p)
        return len(plan.silent) + (plan.last is not None)

    async def _replay(self, state: PartitionState, intent: Intent) -> Outputs:
        p = intent.partition
        act = await self.inputs.records(True, p, intent.act_first, intent.act_last)
        ros = await self.inputs.records(False, p, intent.roster_first, intent.roster_last)
        return process_batch(state, act, ros, intent, self.params)
