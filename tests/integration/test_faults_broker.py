"""Fault scenario: the Kafka broker stops for 20 s mid-run and starts again.

The session broker is shared with every other test, so this test starts a PRIVATE single-node KRaft broker
(``csync.stack.start_kafka`` on free ports, data under the test's tmp folder), stops it (SIGTERM, a clean
shutdown) while the simulator sends, keeps it down 20 s and starts it again on the same ports and data. The
simulator's idempotent producer retries or reports; the truth holds exactly the events Kafka acknowledged, so
"nothing acknowledged is lost" is the final comparison. The worker and the sinks must resume by themselves:
the harness fails the test if any of them exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from csync import stack as local_stack
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

DOWN_S = 20.0


async def test_broker_down_20s_mid_run(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    root = tmp_path / "private-kafka"
    port, controller = local_stack.free_port(), local_stack.free_port()
    broker = await asyncio.to_thread(local_stack.start_kafka, root, port, controller)
    settings = pipeline_settings(
        make_settings(kafka_bootstrap=f"127.0.0.1:{port}"), usage_close_after_s=6
    )
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        sending = asyncio.create_task(
            pipeline.simulate(E2E_CONFIG, SendOptions(count=6000, speed=0, rate=250))
        )
        await pipeline.wait_for(
            "the worker to commit", _committed(pipeline), timeout_s=90, poll_s=0.2
        )
        await asyncio.sleep(2)
        stopped = time.monotonic()
        await asyncio.to_thread(local_stack._terminate, broker.pid)
        stop_took = time.monotonic() - stopped
        await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))
        for proc in pipeline.procs():  # nobody gave up while the broker was away
            assert proc.alive(), f"{proc.name} exited while the broker was down:\n{proc.tail()}"
        restarted = time.monotonic()
        broker = await asyncio.to_thread(local_stack.start_kafka, root, port, controller)
        up_at = time.monotonic()
        report, population = await sending
        lost_at_producer = report.events_sent - len(report.acked_events)
        await pipeline.wait_complete(timeout_s=300)
        recovered_s = time.monotonic() - up_at
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
        local_stack._terminate(broker.pid)
    say(
        f"broker down {restarted - stopped:.1f}s (clean shutdown took {stop_took:.1f}s, restart "
        f"{up_at - restarted:.1f}s); simulator: {report.events_sent} sent, "
        f"{len(report.acked_events)} acknowledged, {lost_at_producer} reported failed; pipeline "
        f"complete {recovered_s:.1f}s after the broker was back; {verdict.cells} cells exact"
    )


def _committed(pipeline: Pipeline) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        done = await pipeline.committed(pipeline.s.worker_group, pipeline.s.topic_activity)
        return sum(done.values()) > 0

    return check  # type: ignore[return-value]
