"""Worker end to end on a real Kafka: exact presence and usage vs producers.truth, across kill -9.

Input: envelopes grouped by partition plus single-event records, duplicates, reordering within
lateness, misrouted envelope members and invalid events. Output is read back from the presence and
usage-cells topics and compared with the ground truth: presence per student, active_ms per cell,
distinct tokens = distinct students.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from csync.stack import free_port
from csync.topics import create_topics, worker_topic_specs
from producers.truth import TruthParams, ground_truth
from schemas.decoder import encode_event
from schemas.event import ActivityEvent
from schemas.routing import partition_for_key
from streams.worker import worker_command, worker_env
from tests.integration.test_worker_pipeline import presence_now, usage_now

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
MISROUTED = {"s27", "s28", "s29"}


def _settings(make_settings: Callable[..., Settings]) -> Settings:
    # The session's broker and this test's own topic and group names (tests/conftest.py).
    return make_settings(
        partitions=4,
        usage_close_after_s=3,
        worker_snapshot_s=1,
        worker_batch_max=50,
    )


def _events(now: int, rnd: random.Random) -> list[ActivityEvent]:
    """Arrival order: per device ts increasing by 1-15 s, shuffled within < lateness, with
    duplicates."""
    out: list[tuple[int, ActivityEvent]] = []
    for s in range(30):
        for d in range(rnd.choice([1, 1, 2])):
            t = now - 40 * 60_000 + rnd.randrange(0, 60_000)
            for i in range(rnd.randrange(20, 120)):
                t += rnd.randrange(1000, 15_000)
                kind = rnd.choice(["heartbeat"] * 6 + ["app_focus"] * 2 + ["idle", "logout"])
                app = rnd.choice(["docs", "web", "math"])
                ev = ActivityEvent(
                    f"e{s}-{d}-{i}",
                    kind,
                    min(t, now),
                    "d1",
                    f"s{s}",
                    f"dev{d}",
                    app if kind in ("heartbeat", "app_focus") else "",
                    "khan.org" if app == "web" and kind in ("heartbeat", "app_focus") else "",
                )
                out.append((t + rnd.randrange(0, 50_000), ev))
                if rnd.random() < 0.05:
                    out.append((t + rnd.randrange(0, 50_000), ev))  # device retry
    out.sort(key=lambda p: p[0])
    return [e for _, e in out]


async def _produce(s: Settings, events: list[ActivityEvent], rnd: random.Random) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5)
    await producer.start()
    invalid = 0
    try:
        i = 0
        while i < len(events):
            chunk = events[i : i + rnd.randrange(1, 40)]
            i += len(chunk)
            by_p: dict[int, list[dict[str, object]]] = {}
            for e in chunk:
                key = e.student_key.encode()
                p = partition_for_key(key, s.partitions)
                if e.student_id in MISROUTED:  # misconfigured producer: always the wrong one
                    await producer.send(
                        s.topic_activity, encode_event(e), key=key, partition=(p + 1) % s.partitions
                    )
                elif rnd.random() < 0.3:
                    await producer.send(s.topic_activity, encode_event(e), key=key)
                else:
                    by_p.setdefault(p, []).append(orjson.loads(encode_event(e)))
            for p, members in by_p.items():
                if rnd.random() < 0.2:
                    members.append({"v": 1, "kind": "heartbeat", "ts": "soon"})
                    invalid += 1
                await producer.send(
                    s.topic_activity, orjson.dumps(members), key=b"env", partition=p
                )
        await producer.send(s.topic_activity, b"not json", key=b"x", partition=0)
        invalid += 1
        await producer.flush()
    finally:
        await producer.stop()
    return invalid


def _log(s: Settings, port: int) -> IO[bytes]:
    """The worker's log, in this test's own data folder (kept by pytest for a failed test)."""
    folder = Path(s.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"worker-{port}.log").open("ab")


def _start_worker(s: Settings, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command(),
        cwd=ROOT,
        env=worker_env(s, port),
        stdout=subprocess.DEVNULL,
        stderr=_log(s, port),
    )


@pytest.mark.parametrize("workers,kills", [(1, 0), (1, 2), (2, 2)])
async def test_worker_exact_across_kill9(
    workers: int, kills: int, make_settings: Callable[..., Settings]
) -> None:
    s = _settings(make_settings)
    await create_topics(s, worker_topic_specs(s))
    rnd = random.Random(workers * 100 + kills)
    now = int(time.time() * 1000)
    events = _events(now, rnd)
    ports = [free_port() for _ in range(workers)]
    procs = [_start_worker(s, port) for port in ports]
    try:
        produce = asyncio.create_task(_produce(s, events, rnd))
        for _ in range(kills):
            await asyncio.sleep(rnd.uniform(1.0, 3.0))
            victim = rnd.randrange(workers)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            procs[victim] = _start_worker(s, ports[victim])
        await produce
        await asyncio.sleep(s.usage_close_after_s + 25)  # lateness close + replays settle
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()

    truth = ground_truth(events, TruthParams.from_settings(s), int(time.time() * 1000))
    # usage: partials deduplicated by src like the sink, then summed per cell
    ms, students = await usage_now(s)
    expected_ms = {k: c.active_ms for k, c in truth.cells.items()}
    assert ms == expected_ms
    assert students == {k: len(c.students) for k, c in truth.cells.items()}
    # presence: last change per student, as the compacted topic would keep it
    last = await presence_now(s)
    # all events are > 60 s old by now except the newest; compare what the truth says now
    got = {k: (v.online, v.app, v.sub_app) for k, v in last.items()}
    want = {k: (p.online, p.app, p.sub_app) for k, p in truth.presence.items()}
    assert got == want
