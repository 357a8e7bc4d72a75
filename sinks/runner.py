"""The consume → batch → flush → commit loop both sinks share.

A sink has one shape (STYLE.md): ``add(record)`` buffers, ``flush()`` writes the whole buffer in one round trip.
This loop reads the sink's input topic with manual commits and, for each batch:

1. adds records until ``max_batch`` records are buffered or ``flush_interval_s`` has passed — or, with
   ``flush_when_idle`` (the Redis sink: latency matters, a pipeline is cheap), as soon as a poll finds nothing
   more to read. Under load that still batches: whatever arrives while one flush runs is the next batch;
2. flushes; a transient failure is retried with exponential backoff while the partitions are paused (so the
   consumer stays in its group and reads nothing new) — nothing is committed, nothing dropped;
3. commits the offsets just past the flushed records, and only those — or the consumer's position when that is
   further: the worker writes in transactions, the sink reads ``read_committed``, and what lies between the last
   record and the position is transaction markers (and aborted records), which committing the last record + 1
   would leave behind as a lag of 1 forever.

A :class:`~sinks.shape.PermanentSinkError` (a batch that can never be written, e.g. a schema mismatch) stops the
loop loudly; a :class:`~sinks.shape.SourceRewind` drops the buffer and re-reads every assigned partition from its
start. A rebalance flushes and commits what is buffered; if that fails, the buffer is dropped and every partition
is rewound to its last commit, so the records are read again (by whichever sink owns them next).

The loop owns every sink metric: failures, retries, latency and backend state as it sees them, and what each
flush reports (:class:`~sinks.shape.FlushResult`: batches, rows, stale changes, skipped replays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from csync import metrics
from sinks.shape import BatchSink, FlushResult, PermanentSinkError, SourceRewind

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff: ``first``, doubling, at most ``cap`` seconds."""

    def __init__(self, first: float = 0.2, cap: float = 30.0) -> None:
        self.first, self.cap, self.delay = first, cap, first

    def next(self) -> float:
        """The delay to wait now; the following one doubles."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class SinkLoop:
    """Runs one sink against one consumer until ``stop`` is set or a permanent error occurs."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        sink: BatchSink,
        *,
        flush_interval_s: float = 1.0,
        max_batch: int = 5000,
        flush_when_idle: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.flush_when_idle = flush_when_idle
        self.backoff = backoff or Backoff()
        self._next: dict[TopicPartition, int] = {}  # offset after the last buffered record
        self._lock = asyncio.Lock()  # the loop and the rebalance listener never flush at once
        self.backend_ok = True  # the last write succeeded: readiness of the sink process
        self._batch_started = time.monotonic()

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to pass to ``consumer.subscribe``."""
        return _Listener(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, flush and commit until ``stop`` is set; flush and commit once more on the way out."""
        while not stop.is_set():
            # With something buffered and flush_when_idle, only take what the consumer already fetched.
            idle_check = self.flush_when_idle and bool(self._next)
            timeout_ms = 0 if idle_check else max(1, int(self._time_left() * 1000))
            batches = await self._poll(timeout_ms)
            async with self._lock:
                got = False
                for tp, records in batches.items():
                    for record in records:
                        self.sink.add(record)
                        self._next[tp] = record.offset + 1
                        got = True
                if self._next and (
                    len(self.sink) >= self.max_batch
                    or self._time_left() <= 0
                    or (idle_check and not got)
                ):
                    await self._flush_and_commit(stop)
                elif not self._next:
                    self._batch_started = time.monotonic()
        async with self._lock:
            if self._next:
                await self._flush_and_commit(stop=None)

    async def _poll(self, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Up to ``max_batch`` records, shared between the partitions: aiokafka hands out one partition's
        fetched buffer before the next, so a sink behind on every partition would drain one while the
        others' offsets (and lag) stand still."""
        assigned = self.consumer.assignment()
        share = max(1, self.max_batch // max(1, len(assigned)))
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=share)
        if sum(map(len, batches.values())) >= share:  # capped: other partitions may wait too
            for tp in assigned - set(batches):
                batches.update(await self.consumer.getmany(tp, timeout_ms=0, max_records=share))
        return batches

    def _time_left(self) -> float:
        return self.flush_interval_s - (time.monotonic() - self._batch_started)

    async def _past_markers(self) -> dict[TopicPartition, int]:
        """The offsets to commit for what is buffered: past the buffered records, and past the transaction
        markers after them (the position: every record a poll returned is buffered)."""
        offsets = dict(self._next)
        assigned = self.consumer.assignment()
        for tp, offset in offsets.items():
            if tp in assigned:
                with contextlib.suppress(IllegalStateError):
                    offsets[tp] = max(offset, await self.consumer.position(tp))
        return offsets

    async def _flush_and_commit(self, stop: asyncio.Event | None) -> None:
        await self._flush_with_retry(stop)
        offsets = await self._past_markers()
        self._next.clear()
        self._batch_started = time.monotonic()
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group moved on while we were writing: the rows are written; the partitions' new owner
                # re-reads them, which the sinks absorb (Redis: ts compare; ClickHouse: sink_progress).
                log.warning(
                    "%s sink: offset commit failed after a rebalance: %s", self.sink.name, exc
                )

    async def _flush_with_retry(self, stop: asyncio.Event | None) -> None:
        name = self.sink.name
        paused: set[TopicPartition] = set()
        try:
            while True:
                started = time.perf_counter()
                try:
                    result = await self.sink.flush()
                except SourceRewind as exc:
                    log.warning("%s sink: %s", name, exc)
                    self.sink.discard()
                    self._next.clear()
                    # Offset 0, not seek_to_beginning (whose awaited reset can stall here): where
                    # retention removed the start, auto_offset_reset=earliest moves on to it.
                    for tp in self.consumer.assignment():
                        self.consumer.seek(tp, 0)
                    return
                except PermanentSinkError:
                    metrics.SINK_FAILURES.labels(name, "permanent").inc()
                    metrics.SINK_BACKEND_UP.labels(name).set(0)
                    self.backend_ok = False
                    log.critical("%s sink: permanent failure, stopping", name, exc_info=True)
                    raise
                except Exception as exc:
                    metrics.SINK_FAILURES.labels(name, "transient").inc()
                    metrics.SINK_BACKEND_UP.labels(name).set(0)
                    self.backend_ok = False
                    delay = self.backoff.next()
                    log.warning(
                        "%s sink: write failed (%s: %s); %d records kept, retrying in %.1fs",
                        name, type(exc).__name__, exc, len(self.sink), delay,
                    )  # fmt: skip
                    if not paused:
                        paused = set(self.consumer.assignment())
                        self.consumer.pause(*paused)
                    await self._idle(delay)
                    metrics.SINK_RETRIES.labels(name).inc()
                    continue
                metrics.SINK_BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
                self._count(result)
                metrics.SINK_BACKEND_UP.labels(name).set(1)
                self.backend_ok = True
                self.backoff.reset()
                return
        finally:
            if paused:
                still = paused & set(self.consumer.assignment())
                if still:
                    self.consumer.resume(*still)

    def _count(self, result: FlushResult) -> None:
        """Record what a successful flush did."""
        name = self.sink.name
        if result.batches:
            metrics.SINK_BATCHES.labels(name).inc(result.batches)
            metrics.SINK_ROWS.labels(name).inc(result.rows)
        if result.stale:
            metrics.SINK_STALE_CHANGES.inc(result.stale)
        if result.replays:
            metrics.SINK_REPLAY_SKIPPED.labels(name).inc(result.replays)

    async def _idle(self, delay: float) -> None:
        """Wait ``delay`` s while paused; polling (not sleeping) keeps the consumer in its group."""
        late = await self.consumer.getmany(timeout_ms=int(delay * 1000))
        for tp, records in late.items():  # fetched just before the pause: keep them, in order
            for record in records:
                self.sink.add(record)
                self._next[tp] = record.offset + 1

    async def on_revoked(self) -> None:
        """Flush and commit before partitions move; if that fails, rewind so nothing is lost."""
        async with self._lock:
            if not self._next:
                return
            try:
                result = await asyncio.wait_for(
                    self.sink.flush(), timeout=max(5.0, self.flush_interval_s)
                )
                self._count(result)
                await self.consumer.commit(await self._past_markers())
            except Exception:
                log.warning(
                    "%s sink: flush on rebalance failed; records will be re-read", self.sink.name
                )
                self.sink.discard()
                for tp in list(self._next):
                    with contextlib.suppress(Exception):
                        committed = await self.consumer.committed(tp)
                        self.consumer.seek(tp, committed if committed is not None else 0)
            self._next.clear()
            self._batch_started = time.monotonic()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: SinkLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.on_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Under the loop's lock: records of the new assignment that getmany() returns meanwhile are added
        # only after the sink loaded its per-partition state (the ClickHouse replay skip); otherwise a
        # replay after a crash could be added before the skip knows what was written, and count twice.
        async with self._loop._lock:
            await self._loop.sink.on_assign({tp.partition for tp in assigned})
