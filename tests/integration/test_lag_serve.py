"""``csync lag serve`` as its own process: /metrics with the lag of our groups (promtool-clean), /readyz."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from csync.settings import Settings
from ops.promtool import check_metrics_text
from tests.integration.test_lag import commit_zero, produce


@contextmanager
def lag_serve(
    settings: Settings, prefix: str, workdir: Path, window: int = 4, **extra: str
) -> Iterator[str]:
    """Run ``csync lag serve`` on a free port for groups starting with ``prefix``; yield its base URL.
    ``extra`` are more environment variables (``LAG_MIN_SPAN_S="5"``); they win over the defaults here."""
    log = workdir / "lag-serve.log"
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        LAG_GROUP_PREFIX=prefix,
        LAG_SAMPLE_INTERVAL_S="0.5",
        LAG_WINDOW=str(window),
        LAG_MIN_SPAN_S="2",
        DATA_DIR=str(workdir),
    )
    env.update(extra)
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "csync.cli", "lag", "serve", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text())
            port = int(found.group(1)) if found else None
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert port, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own 127.0.0.1 server
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for_metric(base: str, pattern: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    body = ""
    while time.monotonic() < deadline:
        _, body = get(f"{base}/metrics")
        if re.search(pattern, body, re.MULTILINE):
            return body
        time.sleep(0.3)
    raise AssertionError(f"/metrics never matched {pattern!r}:\n{body[-3000:]}")


@pytest.mark.kafka
@pytest.mark.prometheus
async def test_lag_serve_exports_lag_and_status_promtool_clean(
    kafka_settings: Settings, unique: str, tmp_path: Path
) -> None:
    group = f"t{unique}-served"
    await commit_zero(kafka_settings, group)
    per_partition = await produce(kafka_settings, 40)
    with lag_serve(kafka_settings, f"t{unique}-", tmp_path) as base:
        assert get(f"{base}/healthz")[0] == 200
        busy = max(per_partition, key=lambda p: per_partition[p])
        body = wait_for_metric(
            base,
            rf'^csync_lag_offsets{{group="{group}",partition="{busy}",'
            rf'topic="{kafka_settings.topic_activity}"}} {per_partition[busy]}\.0$',
        )
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("csync_lag_offsets{") and f'group="{group}"' in line
        )
        assert total == 40
        body = wait_for_metric(
            base, rf'^csync_lag_group_status{{group="{group}",status="STOP"}} 1\.0$'
        )
        assert check_metrics_text(body) == []
        status, ready = get(f"{base}/readyz")
        assert status == 200, ready


def test_check_metrics_text_reports_lint_problems() -> None:
    """The helper other teams use must flag a bad exposition, not pass everything."""
    bad = "# HELP csync_things_total x\n# TYPE csync_things_total counter\ncsync_things 1\n"
    bad += "# HELP csyncBadName y\n# TYPE csyncBadName gauge\ncsyncBadName 1\n"
    assert check_metrics_text(bad) != []
    good = "# HELP csync_things_total Things.\n# TYPE csync_things_total counter\ncsync_things_total 1\n"
    assert check_metrics_text(good) == []
