"""Every panel of deploy/grafana/classroomsync.json, evaluated by a real Prometheus scraping real processes.

Running here: ``csync lag serve`` and a stream worker (``csync worker``, its
/metrics) fed with valid and invalid events. The sinks are not started, and nothing sets the online-students
gauge yet, so the panels in ``NOT_RUN_HERE`` are only checked to be valid queries (status success).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from csync import stack as local_stack
from csync.settings import PROJECT_ROOT, Settings
from csync.topics import create_topics
from streams.worker import worker_command, worker_env
from tests.integration.test_lag_serve import lag_serve

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "classroomsync.json"
NOT_RUN_HERE = {
    "Sink batch latency p95",
    "Sink rows /s, failures and retries",
    "Online students by district",
}


def panel_queries() -> list[tuple[str, list[str]]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], [t["expr"] for t in p["targets"]]) for p in dash["panels"]]


@contextmanager
def prometheus(targets: dict[str, str], workdir: Path, rules: Path | None = None) -> Iterator[str]:
    """A real Prometheus on a free port, scraping ``{job: host:port}`` every second and evaluating the
    alert ``rules`` file, if given, every second."""
    port = local_stack.free_port()
    config = workdir / "prometheus.yml"
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n  - {rules}\n" if rules is not None else "")
        + f"scrape_configs:\n{jobs}"
    )
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):  # noqa: S310
                    break
            except OSError:
                assert proc.poll() is None, (workdir / "prometheus.log").read_text()
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own Prometheus
        result: dict[str, Any] = json.loads(resp.read())
    return result


def events(n: int, batch: int) -> list[tuple[bytes, bytes]]:
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        student = f"s{(batch * n + i) % 40}"
        event = {
            "v": 1,
            "event_id": f"e{batch}-{i}",
            "kind": "heartbeat" if i % 3 else "app_focus",
            "ts": now_ms + i,
            "district_id": "d1",
            "student_id": student,
            "device_id": f"dev-{student}",
            "app": "web",
            "url": "https://www.example.org/lesson",
            "email": "dropped@example.org",  # not in the contract: minimised away, counted by field
        }
        out.append((f"d1:{student}".encode(), orjson.dumps(event)))
    out.append((b"d1:s0", b"not json"))  # one invalid record per batch: the DLQ panels
    return out


@pytest.mark.kafka
@pytest.mark.prometheus
async def test_every_panel_returns_data_from_a_real_prometheus(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    settings = make_settings(worker_group=f"t{unique}-worker", worker_snapshot_s=1)
    await create_topics(settings)
    worker_port = local_stack.free_port()
    env = worker_env(settings, worker_port, data_dir=str(tmp_path / "worker"))
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        worker_command(), stdout=subprocess.DEVNULL, stderr=worker_log, env=env
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        with (
            lag_serve(settings, f"t{unique}-", tmp_path, window=12) as lag_url,
            prometheus(
                {
                    "csync-lag": lag_url.removeprefix("http://"),
                    "csync-worker": f"127.0.0.1:{worker_port}",
                },
                tmp_path,
            ) as prom,
        ):
            empty: dict[str, list[str]] = {}
            deadline = time.monotonic() + 90
            batch = 0
            while time.monotonic() < deadline:
                for key, value in events(30, batch):
                    await producer.send(settings.topic_activity, key=key, value=value)
                await producer.flush()
                batch += 1
                empty = {}
                for title, exprs in panel_queries():
                    results = [await asyncio.to_thread(query, prom, e) for e in exprs]
                    assert all(r["status"] == "success" for r in results), (title, results)
                    if not any(r["data"]["result"] for r in results):
                        empty[title] = exprs
                if set(empty) <= NOT_RUN_HERE:
                    break
                await asyncio.sleep(1)
            print("panels without data (processes not run here):", sorted(empty))
            assert set(empty) <= NOT_RUN_HERE, (
                f"panels without data: {empty}\nworker log:\n"
                + (tmp_path / "worker.log").read_text()[-3000:]
            )
            # The worker's group has exactly one current status. Which one is the worker's business: seen
            # OK, and STALL in ~1 of 3 runs right after start (its committed offset did not move for 6 s).
            status = query(prom, "csync_lag_group_status == 1")["data"]["result"]
            worker_status = [
                s["metric"]["status"] for s in status if s["metric"]["group"] == f"t{unique}-worker"
            ]
            print("worker group status:", worker_status)
            assert len(worker_status) == 1, status
            targets = query(prom, "up")["data"]["result"]
            assert {t["metric"]["job"]: t["value"][1] for t in targets} == {
                "csync-lag": "1",
                "csync-worker": "1",
            }
    finally:
        await producer.stop()
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()


def test_dashboard_has_the_required_panels() -> None:
    titles = " | ".join(t for t, _ in panel_queries())
    for needed in ("events", "lag (records)", "time lag", "status", "DLQ", "latency", "Online"):
        assert re.search(re.escape(needed), titles, re.IGNORECASE), needed
    for _, exprs in panel_queries():
        for expr in exprs:
            assert not re.search(r"student_id|device_id|school", expr)
