"""Fault scenario: kill -9 of workers at random moments while the simulator sends; totals and presence exact.

The moments come from a seeded ``random.Random`` whose seed is logged (re-run a failure with the same seed by
setting ``CSYNC_FAULT_SEED``). One worker killed and restarted ≥ 5 times; then two workers where only one is
killed, so every kill is also a rebalance onto the survivor (and back when the victim restarts).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from csync.settings import Settings
from producers.simulator import SendOptions
from tests.integration.e2e_harness import (
    E2E_CONFIG,
    Pipeline,
    pipeline_settings,
    say,
    verify,
)

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]

# ~6,000 events over ~20 s: long enough for 5 kills with restarts in between.
OPTIONS = SendOptions(count=6000, speed=0, rate=300)
# A device's arrivals are at most ~1 s of wall time apart at this rate (a reordered event is held at
# most half the lateness, 30 s of event time ≈ 1 s here). A device silent for USAGE_CLOSE_AFTER_S while
# its partition is read to the end gets its last interval closed with the full gap (README, "The last
# interval of a device"), so the window must exceed that ~1 s with room for the stalls that kills and
# rebalances cause on two cores.
CLOSE_AFTER_S = 4


@pytest.mark.parametrize(("workers", "kills"), [(1, 6), (2, 5)], ids=["one-worker", "two-workers"])
async def test_worker_kill9_while_sending_is_exact(
    make_settings: Callable[..., Settings], tmp_path: Path, workers: int, kills: int
) -> None:
    seed = int(os.environ.get("CSYNC_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
    say(f"worker kill -9 scenario: workers={workers} kills={kills} seed={seed}")
    rnd = random.Random(seed)
    settings = pipeline_settings(make_settings(), usage_close_after_s=CLOSE_AFTER_S)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    started = time.monotonic()
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=workers)
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, OPTIONS))
        moments = []
        for _ in range(kills):
            await asyncio.sleep(rnd.uniform(1.0, 4.0))
            victim = (
                0  # with two workers, only worker 0 is ever killed: worker 1 takes its partitions
            )
            moments.append(round(time.monotonic() - started, 1))
            pipeline.workers[victim].kill9()
            pipeline.start_worker(victim)
        say(f"kills at t={moments} s (sending done: {sending.done()})")
        report, population = await sending
        waited = await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    say(
        f"worker kill -9 (workers={workers}, seed={seed}): {kills} kills, "
        f"{len(report.acked_events)} valid events, recovered and complete {waited:.1f}s after the "
        f"simulator finished, {verdict.cells} cells exact, test {time.monotonic() - started:.0f}s"
    )


async def test_worker_restarted_behind_a_backlog_is_exact(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A worker restarted after an outage longer than ``USAGE_CLOSE_AFTER_S``, behind a backlog it reads in
    several polls, must attribute exactly: CONTRACT §5 — replaying input after a crash never adds to
    ``active_ms``, and a replay of old input gets exactly the attribution it would have had live.

    The worker is killed mid-run and restarted once the simulator has finished (the backlog holds the rest
    of the run); it reads at most 50 records per poll, so its first batches hold only part of the backlog.
    """
    settings = pipeline_settings(make_settings(), worker_batch_max=50)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, OPTIONS))
        await pipeline.wait_for(
            "the worker to commit", _worker_committed(pipeline), timeout_s=60, poll_s=0.2
        )
        pipeline.workers[0].kill9()
        down_at = time.monotonic()
        report, population = await sending
        behind = await pipeline.group_behind(settings.worker_group, settings.topic_activity)
        pipeline.start_worker(0)
        say(
            f"worker down {time.monotonic() - down_at:.1f}s (USAGE_CLOSE_AFTER_S="
            f"{settings.usage_close_after_s}), restarted {behind} records behind"
        )
        await pipeline.wait_complete()
        await verify(pipeline, report, population)
    finally:
        pipeline.close()


def _worker_committed(pipeline: Pipeline) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        done = await pipeline.committed(pipeline.s.worker_group, pipeline.s.topic_activity)
        return sum(done.values()) > 0

    return check
