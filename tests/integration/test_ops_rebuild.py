"""``csync usage rebuild`` on the real stack: a corrupted closed day is rebuilt from the raw topic and equals
the simulator's truth; a rerun changes nothing; the live day keeps flowing and loses or doubles nothing.

A school day 4.5 days ago is simulated and ingested by a worker running with ``MAX_EVENT_AGE_H=200`` (as a
late buffered upload would be); the worker is then restarted with the default 72 h, so that day is closed.
While devices of another district keep reporting today, the ClickHouse sink is stopped (chDB has one owner),
the old day's rows are corrupted on purpose (a cell deleted, a bogus one added), the day is rebuilt twice, the
sink is restarted, and every cell of ClickHouse — the rebuilt day and the live one — equals the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from csync.topics import create_topics
from privacy.kafka_scan import new_reader, scan_records
from producers.simulator import SendReport, run_simulation
from producers.truth import Truth, TruthParams, ground_truth
from schemas.event import ActivityEvent
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    ROOT,
    Pipeline,
    expected_cells,
    expected_public,
    pipeline_settings,
    process_env,
    say,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]
PAST_S = 4.5 * 86_400

CORRUPT = """
import sys
from sinks.clickhouse_client import clickhouse_client
path, db, day, app = sys.argv[1:5]
c = clickhouse_client(f"chdb://{path}")
c.command(f"ALTER TABLE {db}.app_minute DELETE WHERE toDate(minute) = toDate('{day}') AND app = '{app}'",
          settings={"mutations_sync": 2})
c.command(f"INSERT INTO {db}.app_minute SELECT toDateTime('{day} 12:00:00', 'UTC'), 'bogus', '', "
          "999999, uniqState(toUInt64(1))")
"""


def utc_day(epoch_s: int) -> dt.date:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).date()


def rebuild(pipeline: Pipeline, first: dt.date, last: dt.date) -> subprocess.CompletedProcess[str]:
    env = process_env(pipeline.s, clickhouse_url=f"chdb://{pipeline.chdb_path}")
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "csync.cli", "usage", "rebuild", "--from", str(first), "--to", str(last)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


async def simulate_the_past(settings: Settings) -> SendReport:
    """A school day of 4.5 days ago whose records also *arrived* then: simulated into a staging topic, then
    copied to the activity topic with record timestamps moved back by the same 4.5 days."""
    staging = settings.replace(topic_activity=f"{settings.topic_activity}-staging")
    await create_topics(staging)
    # No invalid events: the simulator's "a day in the future" ones would be in the past by the time this
    # worker reads them, which no real history can produce.
    config = dataclasses.replace(E2E_CONFIG, invalid_rate=0.0)
    report = await run_simulation(
        staging, config, DEFAULT_OPTIONS, clock=lambda: time.time() - PAST_S, progress=None
    )
    reader = new_reader(settings.kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True)
    await reader.start()
    await producer.start()
    try:
        futures = [
            await producer.send(
                settings.topic_activity,
                m.value,
                key=m.key,
                partition=m.partition,
                timestamp_ms=m.timestamp - int(PAST_S * 1000),
            )  # fmt: skip
            async for m in scan_records(reader, staging.topic_activity)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
        await reader.stop()
    return report


async def live_devices(settings: Settings, stop: asyncio.Event, sent: list[ActivityEvent]) -> None:
    """Today's devices of district d-live: an app_focus or heartbeat every 0.2 s, round robin."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            s = f"s-live-{n % 6}"
            ev = ActivityEvent(f"live-{n}", "app_focus" if n % 5 == 0 else "heartbeat",
                               int(time.time() * 1000), "d-live", s, f"dev-{s}",
                               "docs" if n % 10 < 5 else "slides", "")  # fmt: skip
            value = {"v": 1, "event_id": ev.event_id, "kind": ev.kind, "ts": ev.ts,
                     "district_id": ev.district_id, "student_id": s, "device_id": ev.device_id,
                     "app": ev.app}  # fmt: skip
            await producer.send_and_wait(
                settings.topic_activity, orjson.dumps(value), key=f"d-live:{s}".encode()
            )
            sent.append(ev)
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await producer.stop()


async def test_rebuild_repairs_a_corrupted_closed_day_while_the_live_day_flows(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # The replay equals the live rows when closing a silent device cannot change what it attributes: the
    # close time (2 s here, for a quick test) must exceed the maximum gap, as the defaults' 120 s > 60 s do.
    base = pipeline_settings(make_settings(), max_gap_s=1)
    pipeline = Pipeline(base.replace(max_event_age_h=200), tmp_path / "pipeline")
    stop = asyncio.Event()
    live: list[ActivityEvent] = []
    producing: asyncio.Task[None] | None = None
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        past = await simulate_the_past(pipeline.s)
        await pipeline.wait_complete()
        params = TruthParams.from_settings(base)
        truth_past = ground_truth(past.acked_events, params, int(time.time() * 1000))
        days = sorted({utc_day(m) for m, _a, _s in truth_past.cells})
        first, last = days[0], days[-1]
        want_past = expected_cells(truth_past)
        say(f"rebuild: simulated day(s) {first}..{last}, {len(truth_past.cells)} cells")

        # The live pipeline from now on: default settings (the old day is closed), devices reporting today.
        pipeline.workers[0].stop()
        pipeline.expected_dead.add(pipeline.workers[0].pid)
        pipeline.s = base
        pipeline.start_worker(0)
        producing = asyncio.create_task(live_devices(base, stop, live))
        await asyncio.sleep(3)

        assert pipeline.stop_clickhouse_sink() == 0
        before = pipeline.read_clickhouse().cells
        victim = max((k for k in before if utc_day(k[0]) == first),
                     key=lambda k: before[k][0])[1]  # fmt: skip
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", CORRUPT, str(pipeline.chdb_path), base.clickhouse_database,
             str(first), victim], cwd=ROOT, check=True, timeout=120,
        )  # fmt: skip
        corrupted = pipeline.read_clickhouse().cells
        assert corrupted != before and any(k[1] == "bogus" for k in corrupted)

        today = dt.datetime.now(dt.UTC).date()
        refused = rebuild(pipeline, today, today)
        assert refused.returncode != 0 and "still open to late events" in refused.stderr
        expired = rebuild(pipeline, today - dt.timedelta(days=10), today - dt.timedelta(days=10))
        assert expired.returncode != 0 and "expired from the raw topic on" in expired.stderr

        started = time.monotonic()
        done = rebuild(pipeline, first, last)
        assert done.returncode == 0, done.stdout + done.stderr
        say(f"rebuild: {done.stdout.strip().splitlines()[0]} in {time.monotonic() - started:.1f}s")
        rebuilt = pipeline.read_clickhouse().cells
        # The rebuilt days equal the truth (the corruption is gone); every other cell is as it was.
        assert {k: v for k, v in rebuilt.items() if utc_day(k[0]) in days} == want_past
        assert {k: v for k, v in rebuilt.items() if utc_day(k[0]) not in days} == {
            k: v for k, v in before.items() if utc_day(k[0]) not in days
        }
        again = rebuild(pipeline, first, last)
        assert again.returncode == 0, again.stderr
        assert pipeline.read_clickhouse().cells == rebuilt  # a rerun changes nothing

        pipeline.start_clickhouse_sink()
        await asyncio.sleep(2)
        stop.set()
        await producing
        await pipeline.wait_complete()
        assert pipeline.stop_clickhouse_sink() == 0
        final = pipeline.read_clickhouse()
    finally:
        stop.set()
        if producing is not None and not producing.done():
            await producing
        pipeline.close()

    # Every cell — the rebuilt day and the live one, written after the swap — equals the truth.
    truth_live = ground_truth(live, params, int(time.time() * 1000))
    assert not set(truth_live.cells) & set(truth_past.cells)
    truth = Truth({}, {**truth_past.cells, **truth_live.cells}, 0, 0)
    want = expected_cells(truth)
    diff = {k: (final.cells.get(k), want.get(k)) for k in set(final.cells) | set(want)
            if final.cells.get(k) != want.get(k)}  # fmt: skip
    assert not diff, f"{len(diff)} cells differ (got, want): {sorted(diff.items())[:8]}"
    rounded = {k: (round(sec, 3), n) for k, (sec, n) in final.public.items()}
    want_public = expected_public(truth, base.k_anonymity)
    assert rounded == {k: (round(sec, 3), n) for k, (sec, n) in want_public.items()}
    say(f"rebuild: {len(want)} cells equal the truth ({len(truth_live.cells)} of the live day)")
