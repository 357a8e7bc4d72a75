"""The engine's order (intent and outputs in one transaction, snapshot) survives a crash at every
point, and fences a stalled owner, in memory.

:class:`BatchRunner` runs over in-memory adapters of its four protocols (the transactions roll
back what a crashed or fenced transaction wrote, and an ``open`` bumps the partition's epoch as
Kafka's InitProducerId does); the test kills the run after the k-th intent append, in the middle
and at the end of the k-th output send, and just before the k-th snapshot (recovery included: a
crash while recovering is also a crash). After each crash a fresh runner recovers from what the
log and the outputs hold, like a restarted worker, and the poll loop goes on. The outputs must be
those of an uncrashed run: every usage partial once (by ``src``), the same usage totals, the same
final presence, every DLQ record once, nothing processed twice into the state.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest

from schemas.decoder import Limits, encode_event
from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import PresenceChange
from schemas.routing import partition_for_key
from streams.batch_log import Intent, LogTail
from streams.ordering import Batch, BatchRunner, Fenced
from streams.partition import Params, Record
from streams.usage import UsageRules, to_rows

T0 = 1_767_225_600_000
PARTS = [0, 1]
PARAMS = Params(
    len(PARTS), 60_000, UsageRules(close_after_ms=5_000), Limits(), "act", refresh_ms=30_000
)
PER_POLL = 7  # records per partition per poll
POLLS = 45
KILL_POINTS = ["after_intent", "mid_outputs", "after_outputs", "before_snapshot"]


class Crash(Exception):
    """The process died here."""


class Killer:
    """Raises :class:`Crash` at the ``nth`` time the run passes ``point`` (once)."""

    def __init__(self, point: str | None = None, nth: int = 0) -> None:
        self.point, self.nth = point, nth
        self.seen: Counter[str] = Counter()
        self.fired = False

    def at(self, point: str) -> None:
        self.seen[point] += 1
        if not self.fired and point == self.point and self.seen[point] == self.nth:
            self.fired = True
            raise Crash(f"{point} #{self.nth}")


class Store:
    """What survives a crash: the input topics, the batch log, everything emitted."""

    def __init__(self, act: dict[int, list[Record]], roster: dict[int, list[Record]]) -> None:
        self.act, self.roster = act, roster
        self.log: dict[int, list[tuple[str, object]]] = defaultdict(list)
        self.partials: list[tuple[tuple[int, int, int], list[tuple[int, str, str, int, int]]]] = []
        self.presence: list[PresenceChange] = []
        self.dlq: list[tuple[int, bytes, bytes]] = []  # (partition, source_offset, source_index)
        self.zombie = False  # log every intent twice
        self.epochs: Counter[int] = Counter()  # per partition: bumped by every open (new owner)

    def sizes(self, p: int) -> tuple[int, ...]:
        return len(self.log[p]), len(self.partials), len(self.presence), len(self.dlq)

    def roll_back(self, p: int, sizes: tuple[int, ...]) -> None:
        del self.log[p][sizes[0] :], self.partials[sizes[1] :]
        del self.presence[sizes[2] :], self.dlq[sizes[3] :]


class MemoryTxn:
    """Transactions of one runner: a crash or a fence inside one rolls back what it wrote."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.epochs: dict[int, int] = {}

    async def open(self, partition: int) -> None:
        self.store.epochs[partition] += 1
        self.epochs[partition] = self.store.epochs[partition]

    async def close(self, partition: int) -> None:
        self.epochs.pop(partition, None)

    @contextlib.asynccontextmanager
    async def transaction(self, partition: int) -> AsyncIterator[None]:
        if self.epochs.get(partition) != self.store.epochs[partition]:
            raise Fenced(partition)
        sizes = self.store.sizes(partition)
        try:
            yield
        except BaseException:
            self.store.roll_back(partition, sizes)
            raise


class MemoryLog:
    def __init__(self, store: Store, killer: Killer) -> None:
        self.store, self.killer = store, killer

    async def append_intents(self, intents: list[Intent]) -> None:
        for intent in intents:
            for _copy in range(2 if self.store.zombie else 1):
                self.store.log[intent.partition].append(("intent", intent))
        self.killer.at("after_intent")

    async def append_snapshot(self, partition: int, snapshot: bytes) -> None:
        self.killer.at("before_snapshot")
        self.store.log[partition].append(("snap", snapshot))

    async def tail(self, partition: int) -> LogTail:
        entries = self.store.log[partition]
        at = max((i for i, (kind, _v) in enumerate(entries) if kind == "snap"), default=-1)
        snapshot = entries[at][1] if at >= 0 else None
        intents = [v for kind, v in entries[at + 1 :] if kind == "intent"]
        assert snapshot is None or isinstance(snapshot, bytes)
        return LogTail(snapshot, [i for i in intents if isinstance(i, Intent)])


def _token(district: str, student: str, minute_s: int) -> int:
    return hash((district, student, minute_s // 86_400)) & 0xFFFF


class MemorySink:
    def __init__(self, store: Store, killer: Killer) -> None:
        self.store, self.killer = store, killer

    async def send(self, batches: list[Batch]) -> list[int]:
        sends = []
        rows_sent = []
        for intent, out in batches:
            rows = to_rows(out.intervals, _token) if out.intervals else []
            rows_sent.append(len(rows))
            if rows:
                sends.append(lambda s=intent.src, r=rows: self.store.partials.append((s, r)))
            for change in out.presence:
                sends.append(lambda c=change: self.store.presence.append(c))
            for _key, _raw, headers in out.dlq:
                h = dict(headers)
                coords = (intent.partition, h["source_offset"], h["source_index"])
                sends.append(lambda c=coords: self.store.dlq.append(c))
            assert not out.reroute, "the test input is routed to its partitions"
        for n, send in enumerate(sends):
            if n == len(sends) // 2:
                self.killer.at("mid_outputs")
            send()
        self.killer.at("after_outputs")
        return rows_sent


class MemoryInputs:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def records(self, activity: bool, partition: int, first: int, last: int) -> list[Record]:
        topic = self.store.act if activity else self.store.roster
        return [r for r in topic[partition] if first <= r[0] <= last]

    async def beginnings(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return dict.fromkeys(partitions, (0, 0))


def _input(seed: int) -> tuple[dict[int, list[Record]], dict[int, list[Record]]]:
    """Single-event records of 16 students (some invalid), and a roster record per student."""
    rnd = random.Random(seed)
    act: dict[int, list[Record]] = {p: [] for p in PARTS}
    roster: dict[int, list[Record]] = {p: [] for p in PARTS}
    for n in range(16):
        key = f"d1:s{n}".encode()
        p = partition_for_key(key, len(PARTS))
        roster[p].append((len(roster[p]), key, b'{"name": "S %d", "classes": ["c1"]}' % n, ()))
    ts = T0
    for i in range(POLLS * PER_POLL):
        ts += rnd.randrange(0, 900)
        student = f"s{rnd.randrange(16)}"
        key = f"d1:{student}".encode()
        p = partition_for_key(key, len(PARTS))
        if rnd.random() < 0.04:
            value = b'{"v": 1, "kind": "nonsense"}'
        else:
            kind = rnd.choice(["app_focus", "heartbeat", "heartbeat", "idle"])
            app = rnd.choice(["docs", "math"]) if kind in ACTIVE_KINDS else ""
            event = ActivityEvent(f"e{i}", kind, ts, "d1", student, "dev", app, "")
            value = encode_event(event)
        act[p].append((len(act[p]), key, value, ()))
    return act, roster


async def _run(store: Store, killer: Killer) -> int:
    """The worker's poll loop over ``store``, restarted after every crash; returns the crashes."""
    crashes, poll, clock = 0, 0, [0.0]
    while True:
        runner = BatchRunner(
            PARAMS,
            MemoryLog(store, killer),
            MemorySink(store, killer),
            MemoryInputs(store),
            MemoryTxn(store),
            snapshot_s=3.0,
            clock=lambda: clock[0],
        )
        try:
            firsts: dict[int, tuple[int, int]] = {}
            for p in PARTS:
                await runner.recover(p, PARTS, firsts)
            while poll <= POLLS:
                clock[0] += 1.0
                now = T0 + poll * 2_000 + (20_000 if poll == POLLS else 0)
                poll += 1
                done = []
                for p in PARTS:
                    state = runner.states[p]
                    act = store.act[p][state.act_next : state.act_next + PER_POLL]
                    ros = store.roster[p][state.roster_next : state.roster_next + 1]
                    batch = runner.batch(p, act, ros, now, close=poll > POLLS)
                    if batch is not None:
                        done.append(batch)
                if done:
                    await runner.emit(done)
                    for intent, _out in done:
                        await runner.maybe_snapshot(intent.partition)
            return crashes
        except Crash:
            crashes += 1


def _usage(store: Store) -> Counter[tuple[int, str, str, int]]:
    total: Counter[tuple[int, str, str, int]] = Counter()
    for _src, rows in store.partials:
        for minute, app, sub, token, ms in rows:
            total[(minute, app, sub, token)] += ms
    return total


def _presence(store: Store) -> dict[bytes, tuple[str, bool, str, str]]:
    return {c.key: (c.name, c.online, c.app, c.sub_app) for c in store.presence}


@pytest.fixture(scope="module")
def uncrashed() -> Store:
    import asyncio

    store = Store(*_input(7))
    assert asyncio.run(_run(store, Killer())) == 0
    assert store.partials and store.presence and store.dlq
    return store


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("nth", [1, 2, 5, 11, 20])
async def test_a_crash_loses_and_doubles_nothing(uncrashed: Store, point: str, nth: int) -> None:
    store = Store(*_input(7))
    killer = Killer(point, nth)
    assert await _run(store, killer) == 1, "the kill point was reached"
    srcs = [src for src, _rows in store.partials]
    assert len(srcs) == len(set(srcs)), "a usage partial was sent twice"
    assert _usage(store) == _usage(uncrashed)
    assert _presence(store) == _presence(uncrashed)
    assert Counter(store.dlq) == Counter(uncrashed.dlq)  # each once: a crashed batch never landed


async def test_stale_duplicate_intents_are_skipped(uncrashed: Store) -> None:
    """Every intent logged twice (as a zombie worker would): recovery replays the chain once."""
    store = Store(*_input(7))
    store.zombie = True
    assert await _run(store, Killer("after_intent", 20)) == 1
    srcs = [src for src, _rows in store.partials]
    assert len(srcs) == len(set(srcs))
    assert _usage(store) == _usage(uncrashed)
    assert _presence(store) == _presence(uncrashed)


def _runner(store: Store, clock: list[float]) -> BatchRunner:
    return BatchRunner(
        PARAMS,
        MemoryLog(store, Killer()),
        MemorySink(store, Killer()),
        MemoryInputs(store),
        MemoryTxn(store),
        snapshot_s=3.0,
        clock=lambda: clock[0],
    )


def _batches(runner: BatchRunner, store: Store, poll: int) -> list[Batch]:
    """One poll of every partition ``runner`` owns (as :func:`_run` polls)."""
    now = T0 + poll * 2_000 + (20_000 if poll == POLLS else 0)
    done = []
    for p, state in list(runner.states.items()):
        act = store.act[p][state.act_next : state.act_next + PER_POLL]
        ros = store.roster[p][state.roster_next : state.roster_next + 1]
        batch = runner.batch(p, act, ros, now, close=poll >= POLLS)
        if batch is not None:
            done.append(batch)
    return done


async def test_a_stalled_owner_is_fenced_and_lands_nothing(uncrashed: Store) -> None:
    """Worker A stalls holding a processed poll; worker B takes partition 0 over (its recovery
    fences A). A resumes: partition 0's batch lands nothing and A drops it, partition 1's lands;
    B and A go on with one partition each, and the outputs are those of an uncrashed run."""
    store, clock = Store(*_input(7)), [0.0]
    a = _runner(store, clock)
    for p in PARTS:
        await a.recover(p, PARTS, {})
    for poll in range(10):
        clock[0] += 1.0
        await a.emit(_batches(a, store, poll))
    stalled = _batches(a, store, 10)  # processed, not committed: then A stops for a while
    assert {intent.partition for intent, _out in stalled} == {0, 1}
    b = _runner(store, clock)
    await b.recover(0, [0], {})
    before = store.sizes(0)
    rows = await a.emit(stalled)  # A resumes
    assert [n is None for n in rows] == [intent.partition == 0 for intent, _out in stalled]
    assert 0 not in a.states and 1 in a.states and set(a.fenced_at) == {0}
    assert len(store.log[0]) == before[0], "the fenced batch's intent landed"
    assert len(store.partials) == before[1] + sum(1 for n in rows if n), "a fenced partial landed"
    for poll in range(11, POLLS + 1):
        clock[0] += 1.0
        for runner in (a, b):
            await runner.emit(_batches(runner, store, poll))
    srcs = [src for src, _rows in store.partials]
    assert len(srcs) == len(set(srcs))
    assert _usage(store) == _usage(uncrashed)
    assert _presence(store) == _presence(uncrashed)
    assert Counter(store.dlq) == Counter(uncrashed.dlq)
