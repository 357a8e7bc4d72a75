"""``csync probe`` on the real pipeline: it measures Kafka → worker → Redis sink → Redis, turns ``up`` to 0
when that path breaks and back when it heals, and its events reach neither the analysts' rollups nor any
class (the rollups still equal the simulator's truth exactly)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from csync.redis_client import sync_redis_client
from csync.settings import Settings
from ops.promtool import check_metrics_text
from schemas.probe import PROBE_DISTRICT
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    ROOT,
    Pipeline,
    pipeline_settings,
    process_env,
    say,
    verify,
)
from tests.integration.test_lag_serve import wait_for_metric

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.prometheus]


@contextmanager
def probe_process(settings: Settings, workdir: Path) -> Iterator[str]:
    """``csync probe`` every 0.5 s with a 4 s timeout; yields its base URL; SIGTERM must end it cleanly."""
    log = workdir / "probe.log"
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "csync.cli", "probe", "--interval", "0.5", "--timeout", "4",
             "--port", "0"],
            cwd=ROOT, env=process_env(settings), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", log.read_text())
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert found, log.read_text()
        yield found.group(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def metric(body: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def test_probe_measures_the_path_and_stays_out_of_rollups_and_classes(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings())
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    probe_key = f"{settings.key_prefix}:presence:{PROBE_DISTRICT}:probe-student"
    client = sync_redis_client(settings, decode_responses=True)
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        with probe_process(settings, tmp_path) as base:
            report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
            body = wait_for_metric(
                base, r"^csync_probe_latency_seconds_count ([5-9]|\d\d+)\.0$", 90
            )
            assert metric(body, "csync_probe_up") == 1
            assert check_metrics_text(body) == []
            p50 = metric(body, "csync_probe_latency_seconds_sum") / metric(
                body, "csync_probe_latency_seconds_count"
            )
            say(f"probe: mean Kafka → Redis latency {p50 * 1000:.0f} ms")
            assert client.hget(probe_key, "sub_app").startswith("probe-")

            # The path breaks (the Redis sink dies): up turns 0 and timeouts are counted; it heals.
            assert pipeline.redis_sink is not None
            pipeline.redis_sink.kill9()
            pipeline.expected_dead.add(pipeline.redis_sink.pid)
            body = wait_for_metric(base, r"^csync_probe_up 0\.0$", 30)
            assert metric(body, 'csync_probe_failures_total{stage="timeout"}') >= 1
            pipeline.start_redis_sink()
            wait_for_metric(base, r"^csync_probe_up 1\.0$", 60)

        await pipeline.wait_complete()
        classes = [
            k for k in client.scan_iter(f"{settings.key_prefix}:class:*") if PROBE_DISTRICT in k
        ]
        assert classes == []
        # The probe's own presence hash is what it measures; beyond it, Redis and every usage cell must
        # equal the simulator's truth: no probe second reached a rollup.
        assert client.delete(probe_key) == 1
        await verify(pipeline, report, population)
    finally:
        client.close()
        pipeline.close()
