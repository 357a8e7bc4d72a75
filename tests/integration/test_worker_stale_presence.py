"""Stale arrivals write their ``ts`` at once (CONTRACT §4: ``ts`` is the ms of the state's event).

Students known from the roster (hash written with ``ts`` 0) whose events arrive already past
``PRESENCE_TIMEOUT_S`` — a buffered upload, a backlog — change nothing a teacher sees (offline
before, offline after), but their ``ts`` must become their newest event's within one batch, not
after the ts refresh interval (set to 10 minutes here, so only the rule under test can pass).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from csync.stack import free_port
from csync.topics import create_topics, worker_topic_specs
from schemas.decoder import encode_event
from schemas.event import ActivityEvent
from schemas.roster import RosterRecord, roster_key
from tests.integration.test_worker_pipeline import (
    presence_now,
    produce_roster,
    start_worker,
    stop_worker,
    wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
STUDENTS = [f"s{i}" for i in range(6)]


async def test_events_older_than_the_timeout_write_their_ts_within_a_batch(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    s = make_settings(
        topic_worker_state=f"t{unique}-state.v1",
        topic_day_keys=f"t{unique}-keys.v1",
        presence_timeout_s=5,
        presence_ts_refresh_s=600,
        worker_snapshot_s=1,
    )
    await create_topics(s, worker_topic_specs(s))
    port = free_port()
    proc = start_worker(s, port, tmp_path / "worker.log")
    try:
        await wait_ready([port], [proc])
        await produce_roster(
            s, [(roster_key("d1", st), RosterRecord(f"Name {st}", ("c-1",)).encode())
                for st in STUDENTS],
        )  # fmt: skip
        await until(s, lambda last: all(("d1", st) in last for st in STUDENTS), "roster hashes")
        assert all(c.ts == 0 for c in (await presence_now(s)).values())

        now = int(time.time() * 1000)
        newest = {st: now - 60_000 - 1000 * i for i, st in enumerate(STUDENTS)}  # a minute old
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        await producer.start()
        try:
            for i, st in enumerate(STUDENTS):
                for n, ts in enumerate((newest[st] - 20_000, newest[st] - 10_000, newest[st])):
                    kind = "app_focus" if n == 0 else "heartbeat"
                    ev = ActivityEvent(f"e{i}-{n}", kind, ts, "d1", st, "dev1", "docs", "")
                    await producer.send(
                        s.topic_activity, encode_event(ev), key=roster_key("d1", st)
                    )
            await producer.flush()
        finally:
            await producer.stop()
        sent = time.monotonic()

        def written(last: dict[tuple[str, str], object]) -> bool:
            return all(getattr(last[("d1", st)], "ts", 0) == newest[st] for st in STUDENTS)

        await until(s, written, "stale ts written")
        took = time.monotonic() - sent
        last = await presence_now(s)
        for st in STUDENTS:
            change = last[("d1", st)]
            assert (change.name, change.online, change.app, change.sub_app) == (
                f"Name {st}", False, "", ""
            )  # fmt: skip
        assert took < 30, f"took {took:.1f}s"  # far below the 600 s refresh
    finally:
        code = stop_worker(proc)
    assert code == 0, (tmp_path / "worker.log").read_text()[-2000:]


async def until(
    s: Settings, condition: Callable[[dict[tuple[str, str], object]], bool], what: str
) -> None:
    deadline = time.monotonic() + 45
    while True:
        last: dict[tuple[str, str], object] = dict(await presence_now(s))
        if condition(last):
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {last}"
        await asyncio.sleep(0.5)
