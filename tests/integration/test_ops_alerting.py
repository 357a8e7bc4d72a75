"""Alerts reach someone: real worker → ``csync lag serve`` → real Prometheus (our rules) → real Alertmanager
(our routes) → a webhook receiver started by the test; and the Alertmanager config's routing by severity.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from tests.integration.e2e_harness import Pipeline, pipeline_settings, say
from tests.integration.ops_services import (
    ALERTMANAGER_CONFIG,
    PROM_DIR,
    WebhookReceiver,
    alertmanager,
    alertmanager_config_for_test,
    prometheus_with_rules,
)
from tests.integration.test_grafana_dashboard import query
from tests.integration.test_lag_serve import lag_serve

pytestmark = pytest.mark.prometheus
STALL_ALERT = "CsyncConsumerStalledOrStopped"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed binary, our own arguments
        ["/usr/bin/amtool", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_alertmanager_config_is_valid_and_routes_by_severity() -> None:
    checked = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routes = {
        ("severity=page", "alertname=CsyncConsumerTimeLagHigh"): "ops-pager",
        ("severity=warning", "alertname=CsyncDlqRate"): "ops-email",
        ("severity=page", "alertname=CsyncNoEventsReceived"): "ops-pager",
        ("alertname=Unknown",): "ops-email",
    }
    for labels, receiver in routes.items():
        got = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
        assert got.stdout.strip() == receiver, (labels, got.stdout, got.stderr)


async def _keep_producing(settings: Settings, stop: asyncio.Event) -> None:
    """Valid heartbeats of a few students, 5 per second: lag grows while the worker is gone."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            student = f"s{n % 8}"
            event = {
                "v": 1, "event_id": f"e{n}", "kind": "heartbeat", "ts": int(time.time() * 1000),
                "district_id": "d1", "student_id": student, "device_id": f"dev-{student}",
                "app": "docs",
            }  # fmt: skip
            await producer.send_and_wait(
                settings.topic_activity, orjson.dumps(event), key=f"d1:{student}".encode()
            )
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await producer.stop()


async def _keeping_up(pipeline: Pipeline) -> bool:
    """The worker committed on every partition and is at most a few records behind."""
    s = pipeline.s
    committed = await pipeline.committed(s.worker_group, s.topic_activity)
    behind = await pipeline.group_behind(s.worker_group, s.topic_activity)
    return len(committed) == s.partitions and behind < 20


def _retention_series(prom_url: str) -> dict[str, float]:
    result = query(prom_url, "csync_topic_retention_seconds")["data"]["result"]
    return {r["metric"]["topic"]: float(r["value"][1]) for r in result}


async def _wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s: {what}"
        await asyncio.sleep(0.5)
    return time.monotonic() - started


@pytest.mark.kafka
async def test_stopped_worker_pages_the_webhook_then_resolves(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings())
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    receiver = WebhookReceiver()
    stop = asyncio.Event()
    producing: asyncio.Task[None] | None = None
    try:
        await pipeline.create_topics()
        pipeline.start_worker(0)
        producing = asyncio.create_task(_keep_producing(settings, stop))
        await pipeline.wait_for("the worker to keep up", lambda: _keeping_up(pipeline), 120)
        url = await receiver.start()
        config = alertmanager_config_for_test(url, tmp_path)
        rules = [PROM_DIR / "alerts.yml", PROM_DIR / "ops-alerts.yml"]
        with (
            lag_serve(settings, settings.worker_group, tmp_path) as lag_url,
            alertmanager(config, tmp_path) as am_url,
            prometheus_with_rules(
                {"csync-lag": lag_url.removeprefix("http://")}, am_url, tmp_path, rules
            ) as prom_url,
        ):
            await asyncio.sleep(5)  # a few healthy samples and evaluations first
            # The lag-vs-retention rule's denominator: the activity topic's retention.ms, as seconds.
            want = {settings.topic_activity: settings.retention_activity_ms / 1000}
            await _wait_for(
                "the activity topic's retention in Prometheus",
                lambda: _retention_series(prom_url) == want,
                timeout_s=30,
            )
            assert receiver.matching("firing", STALL_ALERT) == []
            pipeline.workers[0].kill9()  # the worker dies; devices keep sending
            pipeline.expected_dead.add(pipeline.workers[0].pid)
            fired = await _wait_for(
                "the stall alert at the webhook",
                lambda: bool(receiver.matching("firing", STALL_ALERT)),
                timeout_s=180,
            )
            say(f"alerting: worker stopped → firing notification after {fired:.1f}s")
            note = receiver.matching("firing", STALL_ALERT)[0]
            assert note["receiver"] == "ops-pager"
            alert = next(a for a in note["alerts"] if a["labels"]["alertname"] == STALL_ALERT)
            assert alert["labels"]["group"] == settings.worker_group
            assert alert["labels"]["severity"] == "page"
            assert alert["labels"]["status"] in {"STOP", "STALL"}
            assert settings.worker_group in alert["annotations"]["summary"]

            pipeline.start_worker(0)  # recovery: the group catches up, the status turns OK
            resolved = await _wait_for(
                "the resolved notification at the webhook",
                lambda: bool(receiver.matching("resolved", STALL_ALERT)),
                timeout_s=180,
            )
            say(f"alerting: worker restarted → resolved notification after {resolved:.1f}s")
            done = receiver.matching("resolved", STALL_ALERT)[0]
            assert done["receiver"] == "ops-pager"
            assert all(a["status"] == "resolved" for a in done["alerts"])
    finally:
        stop.set()
        if producing is not None:
            await producing
        await receiver.stop()
        pipeline.close()
