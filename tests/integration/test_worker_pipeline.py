"""``csync worker`` (the faust shell) end to end on the test broker, fed by the simulator library.

Input: the simulator's items (duplicates, reordering within the lateness, invalid events) as
per-partition envelopes and single-event records, plus the envelopes of three students always sent
to the wrong partition (a misconfigured producer). Output read back from the presence, usage-cells
and DLQ topics and compared with :func:`producers.truth.ground_truth`: presence per student
including ``ts`` (everyone is offline at the end, so the ts must be the state's event exactly),
``active_ms`` per ``(minute, app, sub_app)``, distinct tokens = distinct students per cell, DLQ
reasons. Then roster changes (a rename + class change, a tombstone) and /metrics, /healthz,
/readyz, and a clean SIGTERM. A DLQ flood must stop the worker loudly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from csync.settings import Settings
from csync.stack import free_port
from csync.topics import create_topics, worker_topic_specs
from producers.simulator import SendOptions, build_records, simulated_span_ms
from producers.simulator_model import (
    InvalidEvent,
    SimItem,
    SimulationConfig,
    Student,
    build_population,
    generate,
    valid_events,
)
from producers.truth import Truth, TruthParams, ground_truth
from schemas.event import ActivityEvent
from schemas.internal import PresenceChange, UsagePartial
from schemas.roster import RosterRecord, roster_key
from streams.worker import worker_command, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
CONFIG = SimulationConfig(
    seed=11, schools_per_district=1, classes_per_school=4, students_per_class=25,
    classes_per_student=1, dup_rate=0.05, reorder_rate=0.1, invalid_rate=0.02,
)  # fmt: skip
ITEMS = 4000

Raw = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


def worker_settings(make_settings: Callable[..., Settings], unique: str) -> Settings:
    return make_settings(
        topic_worker_state=f"t{unique}-state.v1",
        topic_day_keys=f"t{unique}-keys.v1",
        worker_group=f"csync-t{unique}",
        presence_timeout_s=15,
        presence_ts_refresh_s=2,
        usage_close_after_s=5,
        worker_snapshot_s=1,
        worker_batch_max=200,
    )


def start_worker(s: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``csync worker`` as its own process, configured through the environment like production."""
    return subprocess.Popen(
        worker_command(),
        cwd=ROOT,
        env=worker_env(s, port),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


async def wait_ready(ports: list[int], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a worker exited during start"
        try:
            if all(http_get(port, "/readyz")[0] == 200 for port in ports):
                return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError("workers not ready within 90 s")


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


async def read_all(s: Settings, topic: str) -> list[Raw]:
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Raw] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            got = await consumer.getmany(timeout_ms=500)
            for tp, msgs in got.items():
                out.extend(
                    (tp.partition, m.offset, m.key, m.value, tuple(m.headers))
                    for m in msgs
                    if m.offset < end[tp]
                )
        return out
    finally:
        await consumer.stop()


def sim_input(s: Settings, now_ms: int) -> tuple[list[SimItem], list[Student], set[str]]:
    """The simulator's first ITEMS items, placed so the newest events are ``now``."""
    population = build_population(CONFIG)
    span = simulated_span_ms(CONFIG, population, SendOptions(count=ITEMS))
    items = generate(CONFIG, now_ms - span, ITEMS)
    misrouted = {population[i].student_id for i in (5, 17, 29)}
    return items, population, misrouted


async def produce(s: Settings, items: list[SimItem], misrouted: set[str], seed: int) -> None:
    """Items in windows like the simulator's send loop: envelopes, sometimes single records."""
    rnd = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        i = 0
        while i < len(items):
            window = items[i : i + rnd.randrange(20, 300)]
            i += len(window)
            wrong = [m for m in window if _student(m) in misrouted]
            right = [m for m in window if _student(m) not in misrouted]
            records = build_records(right, s.partitions, single=rnd.random() < 0.25)
            records += [
                ((p + 1) % s.partitions, key, value, members)  # always the wrong partition
                for p, key, value, members in build_records(wrong, s.partitions, single=False)
            ]
            for partition, key, value, _members in records:
                futures.append(
                    await producer.send(s.topic_activity, value, key=key, partition=partition)
                )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _student(item: SimItem) -> str:
    if isinstance(item, InvalidEvent):
        return item.key.partition(":")[2]
    return item.student_id


async def produce_roster(s: Settings, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(s.topic_roster, value, key=key)
    finally:
        await producer.stop()


async def presence_now(s: Settings) -> dict[tuple[str, str], PresenceChange]:
    """The last change per student as the Redis sink applies them (equal ts: later wins)."""
    last: dict[tuple[str, str], PresenceChange] = {}
    for _p, _o, _k, value, _h in sorted(await read_all(s, s.topic_presence)):
        assert value is not None
        ch = PresenceChange.decode(value)
        key = (ch.district_id, ch.student_id)
        if key not in last or ch.ts >= last[key].ts or ch.deleted:
            last[key] = ch
    return last


async def usage_now(
    s: Settings,
) -> tuple[dict[tuple[int, str, str], int], dict[tuple[int, str, str], int]]:
    """(active_ms, distinct tokens) per cell, partials deduplicated by ``src`` like the sink."""
    seen: set[tuple[int, int, int]] = set()
    ms: dict[tuple[int, str, str], int] = {}
    tokens: dict[tuple[int, str, str], set[int]] = {}
    for _p, _o, _k, value, _h in await read_all(s, s.topic_usage_cells):
        assert value is not None
        partial = UsagePartial.decode(value)
        src = (partial.partition, partial.first_offset, partial.last_offset)
        if src in seen:
            continue
        seen.add(src)
        for minute, app, sub, token, active in partial.rows:
            ms[(minute, app, sub)] = ms.get((minute, app, sub), 0) + active
            tokens.setdefault((minute, app, sub), set()).add(token)
    return ms, {k: len(v) for k, v in tokens.items()}


PresenceView = dict[tuple[str, str], tuple[bool, str, str, int]]
Cells = dict[tuple[int, str, str], int]
Outputs = tuple[PresenceView, Cells, Cells]


def expected(truth: Truth) -> Outputs:
    presence = {k: (p.online, p.app, p.sub_app, p.ts) for k, p in truth.presence.items()}
    ms = {k: c.active_ms for k, c in truth.cells.items()}
    students = {k: len(c.students) for k, c in truth.cells.items()}
    return presence, ms, students


async def converge(s: Settings, events: list[ActivityEvent]) -> tuple[Outputs, Outputs]:
    """Poll the output topics until they equal the truth at the current clock (or time out)."""
    params = TruthParams.from_settings(s)
    deadline = time.monotonic() + 120
    while True:
        want = expected(ground_truth(events, params, int(time.time() * 1000)))
        last = await presence_now(s)
        presence = {k: (c.online, c.app, c.sub_app, c.ts) for k, c in last.items() if k in want[0]}
        ms, students = await usage_now(s)
        got = (presence, ms, students)
        if got == want or time.monotonic() > deadline:
            return got, want
        await asyncio.sleep(2)


@pytest.mark.parametrize("workers", [1, 2])
async def test_worker_outputs_equal_the_truth(
    workers: int, make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    s = worker_settings(make_settings, unique)
    await create_topics(s, worker_topic_specs(s))
    ports = [free_port() for _ in range(workers)]
    procs = [start_worker(s, port, tmp_path / f"worker{i}.log") for i, port in enumerate(ports)]
    try:
        await wait_ready(ports, procs)
        items, population, misrouted = sim_input(s, int(time.time() * 1000))
        await produce_roster(
            s,
            [(roster_key(st.district_id, st.student_id), st.roster_record.encode())
             for st in population],
        )  # fmt: skip
        await produce(s, items, misrouted, seed=workers)
        events = valid_events(items)
        # everyone's timeout and ts refresh pass: all offline, ts must be the state's event
        newest = max(e.ts for e in events)
        await asyncio.sleep(max(0.0, (newest + 18_000) / 1000 - time.time()))
        got, want = await converge(s, events)
        assert want[0] and not any(online for online, *_ in want[0].values())
        assert got[0] == want[0]
        assert got[1] == want[1]
        assert got[2] == want[2]

        last = await presence_now(s)
        names = {(st.district_id, st.student_id): st.name for st in population}
        assert {k: c.name for k, c in last.items()} == {k: names[k] for k in last}
        assert set(names) <= set(last)  # the roster alone makes every student known
        invalid = Counter(i.reason for i in items if isinstance(i, InvalidEvent))
        dlq = await read_all(s, s.topic_dlq)
        assert Counter(dict(h)["error"].decode() for *_, h in dlq) == invalid

        texts = []
        for port in ports:
            assert http_get(port, "/healthz")[0] == 200
            assert http_get(port, "/readyz")[0] == 200
            status, body = http_get(port, "/metrics")
            assert status == 200
            texts.append(body.decode())
        valid = sum(metric_sum(t, "csync_events_valid_total") for t in texts)
        rerouted = sum(metric_sum(t, "csync_rerouted_events_total") for t in texts)
        dlq_metric = sum(metric_sum(t, "csync_dlq_records_total") for t in texts)
        assert valid == len(events)
        assert rerouted == sum(1 for e in events if e.student_id in misrouted)
        assert dlq_metric == sum(invalid.values())
        consumed = sum(metric_sum(t, "csync_events_consumed_total") for t in texts)
        assert consumed >= len(items) // 1000  # records (envelopes count once)
        # Online students per district: a count series per district, never an id; everyone is
        # offline by now (the gauge is recounted every few seconds).
        deadline = time.monotonic() + 15
        while True:
            texts = [http_get(port, "/metrics")[1].decode() for port in ports]
            series = [
                line
                for t in texts
                for line in t.splitlines()
                if line.startswith("csync_online_students{")
            ]
            online = sum(metric_sum(t, "csync_online_students") for t in texts)
            if (series and online == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert series and online == 0, series
        assert {line.split('"')[1] for line in series} <= {st.district_id for st in population}

        # roster: a rename with a class change, and a tombstone
        gone, renamed = population[0], population[1]
        classes = (renamed.classes[0], "c-new")
        await produce_roster(
            s,
            [
                (roster_key(gone.district_id, gone.student_id), None),
                (
                    roster_key(renamed.district_id, renamed.student_id),
                    RosterRecord("Renamed Student", classes).encode(),
                ),
            ],
        )
        g, r = (gone.district_id, gone.student_id), (renamed.district_id, renamed.student_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            last = await presence_now(s)
            if last[g].deleted and last[r].name == "Renamed Student":
                break
            await asyncio.sleep(1)
        assert last[g].deleted and last[g].classes_remove == gone.classes
        assert last[r].name == "Renamed Student" and not last[r].online
        assert last[r].classes_add == tuple(sorted(classes))
        assert last[r].classes_remove == tuple(c for c in renamed.classes if c not in classes)
        assert last[r].ts == want[0][r][3]
    finally:
        codes = [stop_worker(p) for p in procs]
    assert codes == [0] * workers, [p.read_text()[-2000:] for p in tmp_path.glob("worker*.log")]


async def test_dlq_flood_stops_the_worker_loudly(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    s = worker_settings(make_settings, unique)
    await create_topics(s, worker_topic_specs(s))
    port = free_port()
    log = tmp_path / "worker.log"
    proc = start_worker(s, port, log)
    try:
        await wait_ready([port], [proc])
        population = build_population(CONFIG)
        start = int(time.time() * 1000) - 600_000
        span = simulated_span_ms(CONFIG, population, SendOptions(count=500))
        good = valid_events(generate(CONFIG, start, 500))
        flood_config = dataclasses.replace(CONFIG, invalid_rate=1.0)
        flood = [
            i for i in generate(flood_config, start + span, 6000) if isinstance(i, InvalidEvent)
        ]
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            batches: list[list[SimItem]] = [list(good), list(flood)]
            for items in batches:
                for p, key, value, _m in build_records(items, s.partitions, single=True):
                    await producer.send(s.topic_activity, value, key=key, partition=p)
            await producer.flush()
        finally:
            await producer.stop()
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert "CRITICAL" in text and "DlqRateExceeded" in text, text[-3000:]
    dlq = len(await read_all(s, s.topic_dlq))
    # stopped at the flood (after at least one partition's run of invalid events), did not drain
    # it into the DLQ
    assert s.worker_dlq_max_consecutive <= dlq < len(flood) - 1000
