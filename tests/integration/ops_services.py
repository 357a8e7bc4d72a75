"""Real Prometheus and Alertmanager processes for the operations tests (importable helpers, not tests).

:func:`prometheus_with_rules` runs ``/usr/bin/prometheus`` with the project's rule files, scraping given
targets every second and sending its alerts to an Alertmanager; :func:`alertmanager` runs the Debian
``prometheus-alertmanager`` with ``deploy/alertmanager/alertmanager.yml``, where only the receivers' URL and
the grouping timers are changed for the test; :class:`WebhookReceiver` is the HTTP endpoint a receiver posts
to. All on free 127.0.0.1 ports, stopped at the end.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from csync import stack as local_stack
from csync.settings import PROJECT_ROOT

PROM_DIR = PROJECT_ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = PROJECT_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own process
                return
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(args: list[str], log: Path, ready_url: str) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        _wait_ready(ready_url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def alertmanager_config_for_test(webhook_url: str, workdir: Path) -> Path:
    """The deployed config with every webhook pointed at ``webhook_url`` and 1–2 s grouping timers.

    Routes, matchers, inhibitions and receivers stay as deployed; only waiting is shortened (the deployed
    30 s / 5 min would make the test wait minutes for a resolved notification).
    """
    text = ALERTMANAGER_CONFIG.read_text()
    text, urls = re.subn(r'url: "http://[^"]+"', f'url: "{webhook_url}"', text)
    assert urls >= 1, "no webhook receiver in the deployed config"
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", text)
    text = re.sub(r"group_interval: \S+", "group_interval: 2s", text)
    path = workdir / "alertmanager.yml"
    path.write_text(text)
    return path


@contextmanager
def alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """A real Alertmanager (no cluster) on a free port; yields its base URL."""
    port = local_stack.free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _process(args, workdir / "alertmanager.log", f"{base}/-/ready"):
        yield base


@contextmanager
def prometheus_with_rules(
    targets: dict[str, str], alertmanager_url: str, workdir: Path, rule_files: list[Path]
) -> Iterator[str]:
    """A real Prometheus evaluating ``rule_files`` every second and alerting ``alertmanager_url``."""
    port = local_stack.free_port()
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    rules = "".join(f"  - {path}\n" for path in rule_files)
    am_target = alertmanager_url.removeprefix("http://")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_target}']\n"
        f"scrape_configs:\n{jobs}"
    )
    base = f"http://127.0.0.1:{port}"
    args = [
        "/usr/bin/prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with _process(args, workdir / "prometheus.log", f"{base}/-/ready"):
        yield base


class WebhookReceiver:
    """An HTTP endpoint that keeps every Alertmanager webhook notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/alerts", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = local_stack.free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/alerts"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def matching(self, status: str, alertname: str) -> list[dict[str, Any]]:
        """Notifications of ``status`` ("firing"/"resolved") holding an alert named ``alertname``."""
        return [
            n
            for n in self.notifications
            if n.get("status") == status
            and any(a["labels"].get("alertname") == alertname for a in n.get("alerts", ()))
        ]
