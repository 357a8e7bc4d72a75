"""Fault scenarios: the sinks under faults, against the real processes and the truth.

- 8.2: both sinks crash between a write and its offset commit (``SINK_FAULT_INJECTION=crash_after_insert=N``),
  twice each, while the simulator sends; restarted, nothing is counted twice.
- 8.4: a private redis-server is down 20 s (and comes back empty: the sink rebuilds the view from the
  compacted presence topic) while ClickHouse inserts fail for ~25 s (``fail_inserts=7`` with the sink's
  doubling backoff); no offset is committed past unwritten data, and the totals end equal to the truth.
- 8.5: every ClickHouse insert takes 2 s; the backlog stays in Kafka (offset lag), the sink's peak RSS is
  bounded, and the lag drains once input stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from csync import stack as local_stack
from csync.settings import Settings
from csync.stack_redis import start_redis
from producers.simulator import SendOptions
from tests.integration.e2e_harness import (
    E2E_CONFIG,
    Pipeline,
    Proc,
    pipeline_settings,
    say,
    verify,
)

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]

OPTIONS = SendOptions(count=6000, speed=0, rate=300)  # ~20 s of sending
# The simulator compresses ~15 min of school day into ~20 s (45x), so a hiccup of the test's event loop,
# the broker or a starved worker of more than USAGE_CLOSE_AFTER_S - 60 s / 45 finalises a device's interval
# before its next event arrives (the arrival-silence rule, correct for live input). 6 s keeps the
# fault scenarios clear of hiccups on a loaded 2-core box; the e2e test runs with 2 s.
CLOSE_AFTER_S = 6


async def wait_exit(proc: Proc, timeout_s: float) -> int:
    """Wait for a process that is expected to crash; its exit status."""
    deadline = time.monotonic() + timeout_s
    while proc.alive():
        assert time.monotonic() < deadline, f"{proc.name} did not crash:\n{proc.tail()}"
        await asyncio.sleep(0.1)
    return proc.popen.returncode


async def test_sink_crash_between_insert_and_commit_counts_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings(), usage_close_after_s=CLOSE_AFTER_S)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    crashes: list[str] = []
    try:
        await pipeline.create_topics()
        pipeline.start_worker(0)
        ch = pipeline.start_clickhouse_sink(faults="crash_after_insert=3")
        rd = pipeline.start_redis_sink(faults="crash_after_insert=3")
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, OPTIONS))
        for life in (3, 4):
            ch_code, rd_code = await asyncio.gather(wait_exit(ch, 90), wait_exit(rd, 90))
            assert "SimulatedCrash" in ch.tail(80) and "SimulatedCrash" in rd.tail(80)
            crashes.append(f"clickhouse exit {ch_code}, redis exit {rd_code} (after insert {life})")
            faults = f"crash_after_insert={life + 1}" if life == 3 else ""
            ch = pipeline.start_clickhouse_sink(faults=faults)
            rd = pipeline.start_redis_sink(faults=faults)
        report, population = await sending
        waited = await pipeline.wait_complete()
        replay_skips = ch.tail(10_000).count("skip")  # informational only
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    say(
        f"sink crash after insert: {len(crashes)} crashes of each sink ({crashes}); complete "
        f"{waited:.1f}s after sending; {verdict.cells} cells exact ({verdict.active_ms} ms), "
        f"log mentions of skips {replay_skips}"
    )


async def test_redis_down_and_clickhouse_failing_then_exact(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    redis_root = tmp_path / "private-redis"
    port = local_stack.free_port()
    redis_server = start_redis(redis_root, port)
    settings = pipeline_settings(
        make_settings(redis_url=f"redis://127.0.0.1:{port}/0"), usage_close_after_s=CLOSE_AFTER_S
    )
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_worker(0)
        pipeline.start_redis_sink()
        ch = pipeline.start_clickhouse_sink(faults="fail_inserts=7")
        started = time.monotonic()
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, OPTIONS))
        await pipeline.wait_for(
            "presence in Redis", _presence_written(pipeline), timeout_s=60, poll_s=0.2
        )
        # Redis goes down for 20 s.
        await asyncio.to_thread(local_stack._terminate, redis_server.pid)
        down_at = time.monotonic()
        await asyncio.sleep(2)
        before = await pipeline.committed(settings.sink_group_redis, settings.topic_presence)
        ch_committed = await pipeline.committed(
            settings.sink_group_clickhouse, settings.topic_usage_cells
        )
        usage_end = sum((await pipeline.end_offsets(settings.topic_usage_cells)).values())
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
        after = await pipeline.committed(settings.sink_group_redis, settings.topic_presence)
        presence_end = await pipeline.end_offsets(settings.topic_presence)
        redis_server = await asyncio.to_thread(start_redis, redis_root, port)
        up_at = time.monotonic()
        # While Redis was down nothing was committed past what Redis had: the group did not move although the
        # topic grew; while ClickHouse failed, nothing at all was committed although partials were waiting.
        assert after == before, f"Redis sink committed during the outage: {before} -> {after}"
        assert sum(presence_end.values()) > sum(after.values())
        assert usage_end > 0
        assert sum(ch_committed.values()) == 0, f"ClickHouse sink committed {ch_committed}"
        report, population = await sending
        waited = await pipeline.wait_complete()
        recovered_after_up = time.monotonic() - up_at
        rd_log = pipeline.redis_sink.tail(100_000)  # type: ignore[union-attr]
        ch_log = ch.tail(100_000)
        redis_retries = rd_log.count("write failed")
        ch_retries = ch_log.count("write failed")
        rebuilt = "replaying the presence topic" in rd_log
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
        local_stack._terminate(redis_server.pid)
    assert ch_retries == 7, f"expected 7 failed ClickHouse writes, log has {ch_retries}"
    assert redis_retries >= 3
    assert rebuilt, "the Redis sink did not rebuild the view from the presence topic"
    say(
        f"Redis down 20 s + ClickHouse failing: redis retries {redis_retries}, clickhouse retries "
        f"{ch_retries} (first insert at t0, last failure ~{sum(0.2 * 2**i for i in range(7)):.1f}s of "
        f"backoff), view rebuilt from the presence topic: {rebuilt}; complete {waited:.1f}s after "
        f"sending, {recovered_after_up:.1f}s after Redis came back (run started "
        f"{time.monotonic() - started:.0f}s ago); {verdict.cells} cells exact"
    )


def _presence_written(pipeline: Pipeline) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        return bool((await asyncio.to_thread(pipeline.read_redis)).presence)

    return check  # type: ignore[return-value]


async def test_slow_clickhouse_sink_bounded_memory_and_lag_recovers(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings(), usage_close_after_s=CLOSE_AFTER_S)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    options = SendOptions(count=8000, speed=0, rate=400)
    try:
        await pipeline.create_topics()
        pipeline.start_worker(0)
        pipeline.start_redis_sink()
        # 2 s per insert and at most 100 records per batch: the sink writes ~50 records/s, slower than
        # the workers emit them while the simulator sends.
        ch = pipeline.start_clickhouse_sink(faults="slow_insert_ms=2000", sink_max_batch=100)
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, options))
        max_lag = 0
        rss_samples = []
        while not sending.done():
            pipeline.check_alive()
            lag = await pipeline.group_behind(
                settings.sink_group_clickhouse, settings.topic_usage_cells
            )
            max_lag = max(max_lag, lag)
            rss_samples.append(ch.status("VmRSS"))
            await asyncio.sleep(0.5)
        report, population = await sending
        lag_at_end = await pipeline.group_behind(
            settings.sink_group_clickhouse, settings.topic_usage_cells
        )
        max_lag = max(max_lag, lag_at_end)

        async def drained() -> bool:
            return not await pipeline.group_behind(
                settings.sink_group_clickhouse, settings.topic_usage_cells
            )

        drain_s = await pipeline.wait_for("the slow sink to drain its lag", drained, 300)
        await pipeline.wait_complete(timeout_s=300)
        peak_rss_mb = ch.status("VmHWM") / 1024
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    say(
        f"slow ClickHouse sink (2 s/insert): max offset lag {max_lag} records, lag when sending stopped "
        f"{lag_at_end}, lag 0 again {drain_s:.1f}s after sending stopped; sink peak RSS {peak_rss_mb:.0f} MB "
        f"(VmRSS samples max {max(rss_samples, default=0) / 1024:.0f} MB); {verdict.cells} cells exact"
    )
    assert max_lag > 0, "the sink was never behind: the scenario did not slow it"
    assert peak_rss_mb < 1024, f"ClickHouse sink peak RSS {peak_rss_mb:.0f} MB"
