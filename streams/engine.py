"""One worker process: the Kafka clients, partition assignment, the poll loop and its metrics.

Crash safety — why not ``processing_guarantee="exactly_once"``: faust-streaming's transactional mode
has open reports of duplicates after a kill (faust-streaming/faust#517), sends outside the
transaction (#177), crashes on rebalance (#323) and at start (#440); its at-least-once commit
tracking has an open bug committing past an in-flight message (#606). So the hot path is plain
aiokafka inside the faust app, with Kafka transactions of our own:
:func:`streams.partition.process_batch` is a deterministic function of (state, intent, records),
and :class:`streams.ordering.BatchRunner` commits each batch's intent together with all its
outputs in one transaction of the partition's producer (:mod:`streams.kafka_io` holds the Kafka
adapters). Recovery restores the last snapshot and replays the committed intents after it
without emitting anything: their outputs were committed with them. Every reader of what the
worker writes is ``read_committed`` (:func:`csync.kafka_client.consumer_options`).

Fencing: each input partition has one transactional producer, ``transactional_id =
{WORKER_GROUP}-p{partition}``, whichever worker owns it (:mod:`streams.fencing`). A worker that
is assigned a partition starts that producer before it reads the partition's log; Kafka then
bumps the id's epoch, aborts the previous owner's open transaction and fences its producer. A
worker that stalled (a long GC, SIGSTOP, a frozen VM) past ``session.timeout.ms`` and resumes
after its partitions moved finds its commits refused (``ProducerFenced``): the partition is
dropped quietly (:class:`streams.ordering.Fenced`) and nothing of that batch — intent, usage
partial, presence change, DLQ record, re-routed event — lands; its offset commits are refused
by the group coordinator (stale generation). It rejoins the group as a new member and goes on
with whatever it is assigned then. A zombie's commit that happens before the new owner starts
the producer is part of the log the new owner reads, so it is replayed, not lost or doubled.

The committed group offsets (:mod:`streams.progress`, about once a second, just past the last
committed batch and past transaction markers) are for lag monitoring only: the state after
recovery is exactly the state consistent with the committed intents, whatever they say.

Assignment: the group consumer subscribes to the activity and roster topics and deals them with
:class:`streams.assignor.CoPartitionedAssignor`, so roster partition ``p`` is always owned by the
member that owns activity partition ``p`` (any number of workers, any generation); a partition's
state reads both from the offsets its intents recorded (``act_next``, ``roster_next``), whatever
the committed offsets say.

A DLQ flood (:class:`schemas.dlq.DlqLimit`, per partition, from settings) makes :meth:`Engine.run`
raise :class:`schemas.dlq.DlqRateExceeded`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from csync import metrics
from csync.kafka_client import consumer_options, producer_options
from csync.settings import Settings
from csync.topics import check_topics, worker_topic_specs
from schemas.dlq import DlqLimit
from streams.assignor import CoPartitionedAssignor
from streams.close_policy import InputHealth, closes, settled_ends
from streams.fencing import PartitionProducers
from streams.kafka_io import KafkaBatchLog, KafkaInputs, KafkaOutputs
from streams.keys import DayKeyExchange
from streams.ordering import Batch, BatchRunner
from streams.partition import Outputs, PartitionState, Record, params_of
from streams.progress import Progress

log = logging.getLogger(__name__)
ONLINE_EXPORT_S = 5.0  # how often the online-students gauge is recounted (a pass over the states)
TRIM_EVERY_S = 1.0
# A partition fenced while the group still deals it here (its transaction timed out, no rebalance
# came) would never be processed again: after this long without a rebalance the worker exits and
# its supervisor restarts it.
FENCED_ASSIGNED_S = 60.0
try:  # glibc only; elsewhere trimming is skipped
    _trim: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _trim = None


def _malloc_trim() -> None:
    """Give the memory freed by past polls back to the OS.

    A poll's records, decoded events and snapshot documents are freed after the poll, but glibc
    keeps the freed heap pages: without this the RSS stays at the peak of the largest poll.
    ``malloc_trim(0)`` takes a few ms; we call it at most once a second.
    """
    if _trim is not None:
        _trim(0)


class Engine(ConsumerRebalanceListener):  # type: ignore[misc]
    """One worker process: consumes its partitions, processes, emits, snapshots."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.params = params_of(settings)
        self._lock = asyncio.Lock()
        self._dlq_limit = DlqLimit.from_settings(settings)
        self.processed_events = 0
        self.invalid_events = 0
        self._online_exported = 0.0
        self._input = InputHealth(self.params.rules.close_after_ms, int(time.time() * 1000))
        self._online_districts: set[str] = set()
        self.producer: AIOKafkaProducer | None = None  # day keys only (not a partition's)
        self.producers = PartitionProducers(settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.reader: AIOKafkaConsumer | None = None
        self.keys: DayKeyExchange | None = None
        self.runner: BatchRunner | None = None
        self.progress: Progress[TopicPartition] | None = None
        self._stopping = False
        self._recovering = False
        self._last_trim = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self.started = False  # start() finished: clients connected, subscribed
        self.failed = False  # run() raised: the process must stop

    @property
    def states(self) -> dict[int, PartitionState]:
        """The partition states of this worker (empty before start)."""
        return self.runner.states if self.runner is not None else {}

    @property
    def assigned(self) -> bool:
        """Partitions are assigned and recovered (readiness): false while a rebalance recovers
        partitions, which it does one by one before any of them is processed."""
        return bool(self.states) and not self._recovering

    # --- lifecycle

    async def start(self) -> None:
        s = self.s
        # Provisioning is `csync topics create`'s: a missing or different topic stops the worker.
        await check_topics(s, worker_topic_specs(s))
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, **producer_options(s))
        await self.producer.start()
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **consumer_options(s),
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=64 * 1024 * 1024,
        )
        await self.reader.start()
        self.keys = DayKeyExchange(s, self.producer)
        await self.keys.start()
        self.runner = BatchRunner(
            self.params,
            KafkaBatchLog(s, self.producers, self.reader),
            KafkaOutputs(s, self.producers, self.keys),
            KafkaInputs(s, self.reader),
            self.producers,
            s.worker_snapshot_s,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **consumer_options(s),  # activity holds re-routed events, written in transactions
            group_id=s.worker_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=s.worker_fetch_bytes,
            fetch_max_bytes=s.worker_fetch_bytes * 4,
            fetch_max_wait_ms=s.worker_fetch_wait_ms,
            # roster p with activity p on one member (one protocol only: see streams.assignor)
            partition_assignment_strategy=(CoPartitionedAssignor,),
        )
        await self.consumer.start()
        self.progress = Progress(self._commit, s.worker_commit_interval_s)
        self.consumer.subscribe([s.topic_activity, s.topic_roster], listener=self)
        # A poll decodes up to ~100k events into short-lived tuples; with CPython's default
        # thresholds (700, 10, 10) the cyclic GC re-scanned the long-lived state and the libraries
        # on every poll. Freeze what start-up made, collect the young less often (the hot path
        # makes no reference cycles).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.started = True

    def request_stop(self) -> None:
        """Make :meth:`run` return after the batch in progress."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        async with self._lock:
            if self.runner is not None:
                for p in list(self.runner.states):
                    await self.runner.close(p)
            if self.progress is not None:
                await self.progress.flush()
        await self.producers.close_all()
        for client in (self.consumer, self.reader, self.keys, self.producer):
            if client is not None:
                await client.stop()

    async def run(self) -> None:
        """Consume and process until cancelled. Raises :class:`~schemas.dlq.DlqRateExceeded` on
        a DLQ flood."""
        assert self.consumer is not None and self.progress is not None  # noqa: S101 - start()
        try:
            while not self._stopping:
                batch = await self.consumer.getmany(
                    timeout_ms=self.s.worker_batch_ms, max_records=self.s.worker_batch_max
                )
                async with self._lock:
                    await self._handle(batch)
                    await self._mark_positions()
                self._check_fenced()
                self.progress.tick()
                if time.monotonic() - self._last_trim >= TRIM_EVERY_S:
                    self._last_trim = time.monotonic()
                    _malloc_trim()
        except Exception:
            self.failed = True
            raise

    # --- rebalance

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        runner, progress = self.runner, self.progress
        assert runner is not None and progress is not None  # noqa: S101 - started
        async with self._lock:
            for tp in revoked:
                if tp.topic == self.s.topic_activity:
                    await runner.close(tp.partition)  # snapshot, forget, close (no-op if gone)
                    self._dlq_limit.forget(tp.partition)
            await progress.flush()  # the last offsets processed here, before another worker
            progress.forget(revoked)
            runner.fenced_at.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        runner = self.runner
        assert runner is not None and self.consumer is not None  # noqa: S101 - started
        async with self._lock:
            self._recovering = True
            try:
                todo = [
                    tp.partition
                    for tp in assigned
                    if tp.topic == self.s.topic_activity and tp.partition not in runner.states
                ]
                # Fence the previous owners of all of them at once (the recoveries are one by one).
                await asyncio.gather(*map(self.producers.open, todo))
                firsts: dict[int, tuple[int, int]] = {}
                for p in todo:
                    n = await runner.recover(p, todo, firsts)
                    log.info("partition %d recovered: %d intents replayed", p, n)
                    self._mark_processed(p)
            finally:
                self._recovering = False
            for tp in assigned:
                state = runner.states.get(tp.partition)
                if state is None and tp.partition in todo:
                    continue  # fenced while recovering: taken over already, the next rebalance
                if state is None:  # never with the co-partitioning assignor
                    log.warning("roster partition %d assigned without its activity partition",
                                tp.partition)  # fmt: skip
                    continue
                nxt = state.act_next if tp.topic == self.s.topic_activity else state.roster_next
                self.consumer.seek(tp, nxt)

    # --- the hot path

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        runner = self.runner
        assert runner is not None  # noqa: S101 - started
        now = int(time.time() * 1000)
        act, roster = self._split(batch)
        due = [
            p
            for p, state in runner.states.items()
            if now - state.last_close_ms >= self.params.close_every_ms
        ]
        ends = await settled_ends(self._input, self._end_offsets, due, now) if due else {}
        done: list[Batch] = []
        for p, state in list(runner.states.items()):
            a, r = act.get(p, []), roster.get(p, [])
            read_to = a[-1][0] + 1 if a else state.act_next
            if p in ends and read_to < ends[p]:  # read past the transaction markers after it?
                read_to = max(read_to, await self._position(p))
            close = closes(p, read_to, ends)
            if not a and not r and not close:
                continue
            b = runner.batch(p, a, r, now, close)
            if b is not None:
                done.append(b)
        if time.monotonic() - self._online_exported >= ONLINE_EXPORT_S:
            self._export_online()  # also when nothing is emitted: timeouts change who is online
        if not done:
            return
        rows = await runner.emit(done)
        for (intent, out), n in zip(done, rows, strict=True):
            if n is None:  # fenced: another worker owns the partition now, nothing landed
                self._dlq_limit.forget(intent.partition)
                continue
            self._metrics(intent.partition, out, n)
            self.processed_events += out.valid
            self._mark_processed(intent.partition)
            await runner.maybe_snapshot(intent.partition)

    def _split(
        self, batch: dict[TopicPartition, list[Any]]
    ) -> tuple[dict[int, list[Record]], dict[int, list[Record]]]:
        """The polled records of our partitions not processed yet: (activity, roster)."""
        states = self.states
        act: dict[int, list[Record]] = {}
        roster: dict[int, list[Record]] = {}
        for tp, msgs in batch.items():
            metrics.EVENTS_CONSUMED.labels(tp.topic).inc(len(msgs))
            state = states.get(tp.partition)
            if state is None:
                continue
            is_act = tp.topic == self.s.topic_activity
            floor = state.act_next if is_act else state.roster_next
            recs = [(m.offset, m.key, m.value, tuple(m.headers)) for m in msgs if m.offset >= floor]
            if recs:
                (act if is_act else roster).setdefault(tp.partition, []).extend(recs)
        return act, roster

    async def _position(self, p: int) -> int:
        """The group consumer's next offset of activity partition ``p``: past the commit markers
        of the transactions (re-routed events) its last records belonged to. The end offsets are
        ``read_committed`` ones (the last stable offset), so a partition read to its end has its
        position there, while its state's offset stops at the last record."""
        assert self.consumer is not None  # noqa: S101 - started
        tp = TopicPartition(self.s.topic_activity, p)
        return int(await self.consumer.position(tp)) if tp in self.consumer.assignment() else 0

    async def _end_offsets(self, partitions: list[int]) -> dict[int, int]:
        assert self.reader is not None  # noqa: S101 - started
        tps = [TopicPartition(self.s.topic_activity, p) for p in partitions]
        ends = await self.reader.end_offsets(tps)
        return {tp.partition: int(end) for tp, end in ends.items()}

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets of partitions this worker still owns (never another's)."""
        assert self.consumer is not None  # noqa: S101 - started
        owned = self.consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in owned}
        if mine:
            await self.consumer.commit(mine)

    def _check_fenced(self) -> None:
        """Raise when a partition fenced ``FENCED_ASSIGNED_S`` ago is still dealt here (see
        ``FENCED_ASSIGNED_S``); a fenced zombie is re-dealt by a rebalance long before."""
        assert self.consumer is not None and self.runner is not None  # noqa: S101 - started
        now = time.monotonic()
        owned = {tp.partition for tp in self.consumer.assignment()}
        fenced = self.runner.fenced_at.items()
        stuck = sorted(p for p, t in fenced if now - t > FENCED_ASSIGNED_S)
        if set(stuck) & owned:
            raise RuntimeError(f"partitions {stuck} fenced but still assigned here, no rebalance")

    async def _mark_positions(self) -> None:
        """Mark the consumer's positions where they passed the states' offsets: every record a
        poll returned was processed, so what lies between is transaction markers (aborted
        records too), and committing the position keeps the group's lag at 0 behind them."""
        assert self.consumer is not None and self.progress is not None  # noqa: S101 - started
        for tp in self.consumer.assignment():
            state = self.states.get(tp.partition)
            if state is None:
                continue
            nxt = state.act_next if tp.topic == self.s.topic_activity else state.roster_next
            position = await self.consumer.position(tp)
            if position > nxt:
                self.progress.mark(tp, position)

    def _mark_processed(self, p: int) -> None:
        """The outputs of ``p`` up to its state's offsets are committed: commit the offsets soon."""
        state = self.states.get(p)
        if state is None:  # fenced while recovering: another worker has it
            return
        assert self.progress is not None  # noqa: S101 - started
        self.progress.mark(TopicPartition(self.s.topic_activity, p), state.act_next)
        if state.roster_next:
            self.progress.mark(TopicPartition(self.s.topic_roster, p), state.roster_next)

    def _export_online(self) -> None:
        """Students shown online, per district, as a gauge: counts only, never an id."""
        self._online_exported = time.monotonic()
        counts: dict[str, int] = dict.fromkeys(self._online_districts, 0)
        for state in self.states.values():
            for student in state.presence.states.values():
                if student.shown.online:
                    counts[student.district_id] = counts.get(student.district_id, 0) + 1
        for district, n in counts.items():
            metrics.ONLINE_STUDENTS.labels(district).set(n)
        self._online_districts = set(counts)

    def _metrics(self, p: int, out: Outputs, rows: int) -> None:
        metrics.EVENTS_VALID.inc(out.valid)
        for reason, n in out.invalid.items():
            metrics.EVENTS_INVALID.labels(reason).inc(n)
            metrics.DLQ_RECORDS.labels(reason).inc(n)
        for f, n in out.dropped_fields.items():
            metrics.FIELDS_DROPPED.labels(f).inc(n)
        metrics.LATE_EVENTS.inc(out.late)
        metrics.PRESENCE_CHANGES.inc(len(out.presence))
        metrics.USAGE_ROWS.inc(rows)
        metrics.REROUTED_EVENTS.inc(len(out.reroute))
        invalid = sum(out.invalid.values())
        self.invalid_events += invalid
        self._dlq_limit.record(p, out.valid + len(out.reroute), invalid)
