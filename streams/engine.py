"""The worker's Kafka loop: deterministic batches, a write-ahead intent log and partition snapshots.

Crash safety — why not ``processing_guarantee="exactly_once"``: faust-streaming's transactional mode
has open reports of duplicates after a kill (faust-streaming/faust#517), sends outside the
transaction (#177), crashes on rebalance (#323) and at start (#440); its at-least-once commit
tracking has an open bug committing past an in-flight message (#606). And faust's per-record
overhead (≈4k records/s) is far below our target. So the hot path is plain aiokafka inside the faust
app, and exactness comes from determinism instead of transactions:

1. A batch of one partition is an :class:`~streams.partition.Intent`: the offset ranges of the
   activity and roster records it covers and the clock ``now_ms`` it uses.
   :func:`~streams.partition.process_batch` is a deterministic function of (state, intent, records).
2. Before emitting anything of a batch, the worker writes its intent to the partition's slot of the
   internal state topic and waits for the ack. Only then it emits the batch's presence changes,
   usage partial (``src = (partition, first_offset, last_offset)``), DLQ records and re-routed
   events, and waits for their acks before the next intent of that partition. Every few seconds it
   writes a snapshot of the partition state (after the outputs of every earlier intent were acked).
3. Recovery of a partition (start, rebalance, after ``kill -9``): load the last snapshot, replay
   every later intent over exactly the same records with the recorded ``now_ms``. All but the last
   intent had their outputs acked: they are replayed silently. The last one is replayed *with* its
   outputs, except a usage partial already found among the last records of its usage-cells
   partition (:meth:`Engine._partial_landed`); a re-sent partial is byte-identical and has the same
   ``src``, which the ClickHouse sink also drops among the recent records it saw (in memory, as a
   second line of defence). Presence changes are idempotent (last write wins by ``ts``). DLQ
   records and re-routed events of that one batch may appear twice: a re-routed duplicate is
   dropped by the receiving partition's event-id dedup or lateness rule.

So the state after recovery is exactly the state consistent with the intents, whatever the committed
group offsets say (we commit them for lag monitoring only: about once a second, the position whose
outputs were acked). Limitation: without transactions nothing fences a zombie worker still writing
after losing its partition; replay skips intents that do not continue the state's offsets, which
covers duplicate intents but not diverging ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
import uuid
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from csync import metrics
from csync.kafka_client import kafka_options
from csync.settings import Settings
from csync.topics import TopicSpec, create_topics, topic_specs
from schemas.decoder import Limits
from schemas.internal import InternalFormatError, UsagePartial
from streams.keys import DayKeyExchange
from streams.partition import (
    Intent,
    Outputs,
    Params,
    PartitionState,
    Record,
    continuing,
    decode_snapshot,
    encode_snapshot,
    new_state,
    process_batch,
)
from streams.usage import UsageRules, to_rows

log = logging.getLogger(__name__)
ONLINE_EXPORT_S = 5.0  # how often the online-students gauge is recounted (a pass over the states)
# The group's committed offsets follow what was processed (outputs acked) this closely, so lag monitoring
# measures processing, not the snapshot cadence. Recovery never reads them.
COMMIT_EVERY_S = 1.0
INTENT_KEY = b"intent"
SNAPSHOT_KEY = b"snap"


TRIM_EVERY_S = 1.0
try:  # glibc only; elsewhere trimming is skipped
    _trim: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _trim = None


def _malloc_trim() -> None:
    """Give the memory freed by past polls back to the OS.

    A poll's records, decoded events and snapshot documents are freed after the poll, but glibc
    keeps the freed heap pages: without this the RSS stays at the peak of the largest poll
    (measured: ~2x the state itself). ``malloc_trim(0)`` takes a few ms; we call it at most once a
    second.
    """
    if _trim is not None:
        _trim(0)


# A gap this long between two end-offset probes is a period nobody watched the input (the loop was
# blocked, e.g. awaiting acks from a broker that went away): it counts as unhealthy.
PROBE_GAP_MS = 5_000


class InputHealth:
    """Whether a silent device may be closed: the input has been watched and healthy, without a
    break, for ``close_after_ms``.

    Watched means end-offset probes answered, each within :data:`PROBE_GAP_MS` of the previous
    one. A failed probe, or a gap between probes (the loop stuck in ``_emit`` while the broker was
    down never probes at all), starts the window again: producers may have been buffering events
    the whole time, and a device's next events may still be on their way.
    """

    __slots__ = ("close_after_ms", "_since", "_last_ok")

    def __init__(self, close_after_ms: int, now_ms: int) -> None:
        self.close_after_ms = close_after_ms
        self._since = now_ms  # start of the current healthy window (the worker's start)
        self._last_ok = now_ms

    def failed(self, now_ms: int) -> bool:
        """A probe failed. Returns whether that is news (no failure in the last second: log it)."""
        was = now_ms - self._since > 1000
        self._since = now_ms
        return was

    def answered(self, now_ms: int) -> bool:
        """A probe answered. Returns whether closing silent devices is safe now."""
        if now_ms - self._last_ok > PROBE_GAP_MS:
            self._since = now_ms  # nobody watched the input in between
        self._last_ok = now_ms
        return now_ms - self._since >= self.close_after_ms


class DlqRateExceeded(RuntimeError):
    """Most recent events are invalid: a bug upstream or here; stop loudly instead of emptying the
    stream."""


def params_of(settings: Settings) -> Params:
    """Rule parameters from settings."""
    rules = UsageRules(
        max_gap_ms=settings.max_gap_s * 1000,
        lateness_ms=settings.allowed_lateness_s * 1000,
        close_after_ms=settings.usage_close_after_s * 1000,
        evict_after_ms=settings.usage_evict_after_s * 1000,
    )
    return Params(
        settings.partitions,
        settings.presence_timeout_s * 1000,
        rules,
        Limits.from_settings(settings),
        settings.topic_activity,
        refresh_ms=settings.presence_ts_refresh_s * 1000,
    )


def worker_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The public topics plus the worker's internal ones (state log, day keys)."""
    day = 86_400_000
    return [
        *topic_specs(settings),
        TopicSpec(
            settings.topic_worker_state,
            settings.partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(day),
                "max.message.bytes": str(64 * 1024 * 1024),
            },
            "internal: per-partition intents and snapshots of the stream workers",
        ),
        TopicSpec(
            settings.topic_day_keys,
            1,
            {"cleanup.policy": "compact", "delete.retention.ms": "60000"},
            "internal: daily student-token keys, destroyed after the day closes",
        ),
    ]


class Engine(ConsumerRebalanceListener):  # type: ignore[misc]
    """One worker process: consumes its partitions, processes, emits, snapshots."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.params = params_of(settings)
        self.states: dict[int, PartitionState] = {}
        self._intents_since_snap: dict[int, int] = {}
        self._last_snap: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._invalid_window: deque[bool] = deque(maxlen=1000)
        self.processed_events = 0
        self._online_exported = 0.0
        self._input = InputHealth(self.params.rules.close_after_ms, int(time.time() * 1000))
        self._online_districts: set[str] = set()
        self.invalid_events = 0
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.reader: AIOKafkaConsumer | None = None
        self.keys: DayKeyExchange | None = None
        self._stopping = False
        self._recovering = False
        self._last_trim = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self.started = False  # start() finished: clients connected, subscribed
        self.failed = False  # run() raised: the process must stop

    @property
    def assigned(self) -> bool:
        """Partitions are assigned and recovered (readiness): false while a rebalance recovers
        partitions, which it does one by one before any of them is processed."""
        return bool(self.states) and not self._recovering

    # --- lifecycle

    async def start(self) -> None:
        s = self.s
        await create_topics(s, worker_topic_specs(s))
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_options(s),
            acks="all",
            enable_idempotence=True,
            linger_ms=s.worker_linger_ms,
            max_request_size=64 * 1024 * 1024,
            max_batch_size=1024 * 1024,
        )
        await self.producer.start()
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_options(s),
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=64 * 1024 * 1024,
        )
        await self.reader.start()
        self.keys = DayKeyExchange(s, self.producer)
        await self.keys.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_options(s),
            group_id=s.worker_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=s.worker_fetch_bytes,
            fetch_max_bytes=s.worker_fetch_bytes * 4,
        )
        await self.consumer.start()
        self.consumer.subscribe([s.topic_activity, s.topic_roster], listener=self)
        # A poll decodes up to ~100k events into short-lived tuples; with CPython's default
        # thresholds (700, 10, 10) the cyclic GC ran ~15-25 % of a poll's time, re-scanning the
        # long-lived state and the libraries. Freeze what start-up made, collect the young less
        # often (the hot path makes no reference cycles).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.started = True

    def request_stop(self) -> None:
        """Make :meth:`run` return after the batch in progress."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        async with self._lock:
            for p in list(self.states):
                await self._snapshot(p)
        for client in (self.consumer, self.reader, self.keys, self.producer):
            if client is not None:
                await client.stop()

    async def run(self) -> None:
        """Consume and process until cancelled. Raises :class:`DlqRateExceeded` on a DLQ flood."""
        assert self.consumer is not None  # noqa: S101 - start() first
        try:
            while not self._stopping:
                batch = await self.consumer.getmany(
                    timeout_ms=self.s.worker_batch_ms, max_records=self.s.worker_batch_max
                )
                async with self._lock:
                    await self._handle(batch)
                if time.monotonic() - self._last_trim >= TRIM_EVERY_S:
                    self._last_trim = time.monotonic()
                    _malloc_trim()
        except Exception:
            self.failed = True
            raise

    # --- rebalance

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                if tp.topic == self.s.topic_activity and tp.partition in self.states:
                    await self._snapshot(tp.partition)
                    del self.states[tp.partition]

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._lock:
            self._recovering = True
            try:
                todo = [
                    tp.partition
                    for tp in assigned
                    if tp.topic == self.s.topic_activity and tp.partition not in self.states
                ]
                beginnings: dict[TopicPartition, int] = {}
                for p in todo:
                    await self._recover(p, todo, beginnings)
            finally:
                self._recovering = False
            assert self.consumer is not None  # noqa: S101
            for tp in assigned:
                state = self.states.get(tp.partition)
                if state is None:
                    continue  # roster partition without its activity partition: not ours
                nxt = state.act_next if tp.topic == self.s.topic_activity else state.roster_next
                self.consumer.seek(tp, nxt)

    # --- the hot path

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = int(time.time() * 1000)
        act: dict[int, list[Record]] = {}
        roster: dict[int, list[Record]] = {}
        for tp, msgs in batch.items():
            metrics.EVENTS_CONSUMED.labels(tp.topic).inc(len(msgs))
            state = self.states.get(tp.partition)
            if state is None:
                continue
            is_act = tp.topic == self.s.topic_activity
            floor = state.act_next if is_act else state.roster_next
            recs = [(m.offset, m.key, m.value, tuple(m.headers)) for m in msgs if m.offset >= floor]
            if recs:
                (act if is_act else roster).setdefault(tp.partition, []).extend(recs)
        done: list[tuple[Intent, Outputs]] = []
        due = [
            p
            for p, state in self.states.items()
            if now - state.last_close_ms >= self.params.close_every_ms
        ]
        ends = await self._settled_ends(due, now) if due else {}
        for p, state in list(self.states.items()):
            a, r = act.get(p, []), roster.get(p, [])
            # Silent devices are closed by the arrival clock only when no arrival can be pending:
            # the partition is read to its end (fresh end offsets) and the input path has been
            # healthy for USAGE_CLOSE_AFTER_S. Behind a backlog (restart, rebalance) or across a
            # broker outage (producers buffer and re-send), a device's next events may still come,
            # and closing it would attribute a full MAX_GAP to the old app.
            read_to = a[-1][0] + 1 if a else state.act_next
            close = p in ends and read_to >= ends[p]
            if not a and not r and not close:
                continue
            intent = Intent(
                p,
                state.act_next,  # not a[0][0]: a gap (compaction, txn markers) stays covered
                a[-1][0] if a else state.act_next - 1,
                state.roster_next,
                r[-1][0] if r else state.roster_next - 1,
                now,
                close,
                0 if a else state.ticks + 1,
            )
            out = process_batch(state, a, r, intent, self.params)
            if not a and not r and out.empty():
                continue
            done.append((intent, out))
        if time.monotonic() - self._online_exported >= ONLINE_EXPORT_S:
            self._export_online()  # also when nothing is emitted: timeouts change who is online
        if done:
            await self._emit(done, write_intent=True)
            for intent, out in done:
                self.processed_events += out.valid
                await self._maybe_snapshot(intent.partition)
        # Also after an idle poll: the last batch's commit may still be due.
        if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            await self._commit_processed()

    async def _commit_processed(self) -> None:
        """Commit each partition's processed position (outputs acked), if it moved: monitoring only."""
        self._last_commit = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        for p, state in self.states.items():
            offsets[TopicPartition(self.s.topic_activity, p)] = state.act_next
            if state.roster_next:
                offsets[TopicPartition(self.s.topic_roster, p)] = state.roster_next
        self._committed = {tp: o for tp, o in self._committed.items() if tp in offsets}
        moved = {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}
        if not moved or self.consumer is None:
            return
        try:
            await self.consumer.commit(moved)
            self._committed.update(moved)
        except Exception:  # noqa: BLE001 - informational only (lag monitoring)
            log.warning("offset commit failed", exc_info=True)

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

    async def _emit(
        self,
        batches: list[tuple[Intent, Outputs]],
        write_intent: bool,
        skip_partial: bool = False,
    ) -> None:
        """Emit the outputs of one batch per partition.

        Per partition the order of the module docstring holds (its intent acked before any of its
        outputs is sent; its outputs acked before its next intent); partitions do not wait for each
        other, so a poll costs two round trips instead of two per partition.
        """
        producer, s = self.producer, self.s
        assert producer is not None and self.keys is not None  # noqa: S101
        days: set[int] = set()
        for _intent, out in batches:
            for _k, start, end, _a, _s in out.intervals:
                days.add(start // 86_400_000)
                days.add((end - 1) // 86_400_000)
        if days:
            await self.keys.ensure(days)
        token = self.keys.store.token
        rows = [to_rows(out.intervals, token) if out.intervals else [] for _i, out in batches]
        if write_intent:
            acks = []
            for intent, _out in batches:
                acks.append(
                    await producer.send(
                        s.topic_worker_state,
                        _encode_intent(intent),
                        key=INTENT_KEY,
                        partition=intent.partition,
                    )
                )
                self._intents_since_snap[intent.partition] = (
                    self._intents_since_snap.get(intent.partition, 0) + 1
                )
            await asyncio.gather(*acks)
        futs = []
        for (intent, out), batch_rows in zip(batches, rows, strict=True):
            if batch_rows and not skip_partial:
                partial = UsagePartial(intent.partition, *intent.src[1:], rows=tuple(batch_rows))
                futs.append(
                    await producer.send(
                        s.topic_usage_cells, partial.encode(), partition=intent.partition
                    )
                )
            for ch in out.presence:
                futs.append(await producer.send(s.topic_presence, ch.encode(), key=ch.key))
            for key, raw, headers in out.dlq:
                futs.append(
                    await producer.send(
                        s.topic_dlq, raw, key=key, headers=headers, partition=intent.partition
                    )
                )
            for target, key, raw in out.reroute:
                futs.append(await producer.send(s.topic_activity, raw, key=key, partition=target))
        if futs:
            await asyncio.gather(*futs)
        for (_intent, out), batch_rows in zip(batches, rows, strict=True):
            self._metrics(out, len(batch_rows))

    def _metrics(self, out: Outputs, rows: int) -> None:
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
        self._invalid_window.extend([True] * min(invalid, 1000))
        self._invalid_window.extend([False] * min(out.valid + len(out.reroute), 1000))
        window = self._invalid_window
        if len(window) == window.maxlen and sum(window) * 2 > len(window):
            raise DlqRateExceeded(
                f"{sum(window)} of the last {len(window)} events were invalid: stopping"
            )

    # --- snapshots and recovery

    async def _maybe_snapshot(self, p: int) -> None:
        last = self._last_snap.get(p, 0.0)
        if (
            time.monotonic() - last >= self.s.worker_snapshot_s
            or self._intents_since_snap.get(p, 0) >= 500
        ):
            await self._snapshot(p)

    async def _snapshot(self, p: int) -> None:
        state = self.states.get(p)
        if state is None or self.producer is None:
            return
        await (
            await self.producer.send(
                self.s.topic_worker_state, encode_snapshot(state), key=SNAPSHOT_KEY, partition=p
            )
        )
        self._last_snap[p] = time.monotonic()
        self._intents_since_snap[p] = 0
        if self.consumer is not None:
            offsets = {TopicPartition(self.s.topic_activity, p): state.act_next}
            if state.roster_next:
                offsets[TopicPartition(self.s.topic_roster, p)] = state.roster_next
            try:
                await self.consumer.commit(offsets)
            except Exception:  # noqa: BLE001 - informational only (lag monitoring)
                log.warning("offset commit failed for partition %d", p, exc_info=True)

    async def _recover(
        self, p: int, partitions: list[int], beginnings: dict[TopicPartition, int]
    ) -> None:
        """Rebuild partition ``p`` from its last snapshot and the intents after it.

        ``beginnings`` caches the first offsets of the input topics for all ``partitions`` being
        recovered: one request for all of them (each request costs about 0.5 s).
        """
        records = await self._read(TopicPartition(self.s.topic_worker_state, p), tail=2000)
        snap_at = max((i for i, m in enumerate(records) if m.key == SNAPSHOT_KEY), default=-1)
        if snap_at < 0 and records and records[0].offset > 0:
            records = await self._read(TopicPartition(self.s.topic_worker_state, p), tail=None)
            snap_at = max((i for i, m in enumerate(records) if m.key == SNAPSHOT_KEY), default=-1)
        if snap_at >= 0:
            state = decode_snapshot(records[snap_at].value, self.params)
        else:
            state = new_state(p, self.params)
            act, ros = (
                TopicPartition(self.s.topic_activity, p),
                TopicPartition(self.s.topic_roster, p),
            )
            if act not in beginnings:
                beginnings.update(await self._beginnings(partitions))
            state.act_next, state.roster_next = beginnings[act], beginnings[ros]
        intents = [_decode_intent(m.value) for m in records[snap_at + 1 :] if m.key == INTENT_KEY]
        intents = continuing(intents, state.act_next, state.roster_next)  # drop stale duplicates
        for n, intent in enumerate(intents):
            act = await self._range(self.s.topic_activity, p, intent.act_first, intent.act_last)
            ros = await self._range(self.s.topic_roster, p, intent.roster_first, intent.roster_last)
            out = process_batch(state, act, ros, intent, self.params)
            if n == len(intents) - 1:
                # The last intent's outputs may or may not have been sent before the crash. Presence
                # changes are idempotent; the usage partial is not re-sent when it already landed.
                sent = await self._partial_landed(p, intent.src)
                await self._emit([(intent, out)], write_intent=False, skip_partial=sent)
        self.states[p] = state
        self._last_snap[p] = 0.0
        log.info("partition %d recovered: %d intents replayed", p, len(intents))
        await self._snapshot(p)

    async def _settled_ends(self, partitions: list[int], now: int) -> dict[int, int]:
        """End offsets of these activity partitions when closing silent devices is safe, else {}.

        Safe means: the broker answers now, and has answered every probe, without a gap, for the
        last ``USAGE_CLOSE_AFTER_S`` (:class:`InputHealth`).
        """
        assert self.reader is not None  # noqa: S101 - started
        tps = [TopicPartition(self.s.topic_activity, p) for p in partitions]
        try:
            ends = await asyncio.wait_for(self.reader.end_offsets(tps), timeout=2.0)
        except Exception as exc:  # the broker is away: producers may be buffering events
            if self._input.failed(now):
                log.warning("end offsets unavailable (%s): closing silent devices paused", exc)
            return {}
        if not self._input.answered(now):
            return {}
        return {tp.partition: int(end) for tp, end in ends.items()}

    async def _partial_landed(self, p: int, src: tuple[int, int, int]) -> bool:
        """Whether a usage partial with ``src`` is among the last records of its usage-cells partition.

        Partials of partition ``p`` go to usage-cells partition ``p`` in intent order, and an intent is
        written only after the previous batch's outputs were acknowledged: the last intent's partial, if
        it was sent at all, is among the last few records there.
        """
        tail = await self._read(TopicPartition(self.s.topic_usage_cells, p), tail=64)
        for m in tail:
            with contextlib.suppress(InternalFormatError):
                partial = UsagePartial.decode(m.value)
                if (partial.partition, partial.first_offset, partial.last_offset) == src:
                    return True
        return False

    async def _beginnings(self, partitions: list[int]) -> dict[TopicPartition, int]:
        assert self.reader is not None  # noqa: S101
        topics = (self.s.topic_activity, self.s.topic_roster)
        offsets = await self.reader.beginning_offsets(
            [TopicPartition(t, p) for t in topics for p in partitions]
        )
        return {tp: int(o) for tp, o in offsets.items()}

    async def _read(self, tp: TopicPartition, tail: int | None) -> list[Any]:
        assert self.reader is not None  # noqa: S101
        reader = self.reader
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

    async def _range(self, topic: str, p: int, first: int, last: int) -> list[Record]:
        if first > last:
            return []
        assert self.reader is not None  # noqa: S101
        tp = TopicPartition(topic, p)
        reader = self.reader
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


def _encode_intent(i: Intent) -> bytes:
    return orjson.dumps(list(i))


def _decode_intent(raw: bytes) -> Intent:
    return Intent(*orjson.loads(raw))


def new_worker_id() -> str:
    """A random id for logs."""
    return uuid.uuid4().hex[:8]
