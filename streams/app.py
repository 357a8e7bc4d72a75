"""The faust app of the stream workers: ``faust -A streams.app worker`` or ``csync worker``.

faust supplies the process shell only: lifecycle, signal handling (SIGTERM/SIGINT stop cleanly),
logging and the service tree. Everything else of faust is switched off by :class:`ShellBoot`: no
faust consumer, conductor, tables, leader assignor or sensors (they would join their own consumer
group, need their own topics and cost per-record overhead); the processing is
:class:`streams.engine.Engine` on plain aiokafka (see its docstring for why not faust agents,
tables or ``exactly_once``). faust's aiohttp web stack is replaced by :class:`WorkerWeb`, the
shared :class:`ops.endpoints.OpsServer` (``/metrics``, ``/healthz``, ``/readyz``) on
``WORKER_WEB_HOST:WORKER_WEB_PORT``.

Configuration comes from :class:`csync.settings.Settings` when faust configures the app (not at
import time). A DLQ flood (:class:`~schemas.dlq.DlqRateExceeded`) or any other engine failure
crashes the worker: a CRITICAL log line and exit status 1, nothing drained silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import Service

from csync.settings import Settings
from csync.topics import TopicsNotProvisioned
from ops.endpoints import OpsServer
from streams.engine import Engine

log = logging.getLogger(__name__)


class ShellBoot(BootStrategy):
    """Start only what the shell needs: no faust Kafka clients, tables or sensors."""

    enable_kafka = False
    enable_sensors = False


app = faust.App("csync-worker-app", autodiscover=False, web_enabled=True)
app.boot_strategy = ShellBoot(app)
_settings: list[Settings] = []
_engine: list[Engine] = []


@app.on_configured.connect  # type: ignore[arg-type]
def _configure(app: faust.App, conf: Any, **kwargs: Any) -> None:
    s = Settings.from_env()
    _settings.append(s)
    conf.broker = [f"kafka://{b}" for b in s.kafka_bootstrap.split(",")]
    conf.store = "memory://"
    datadir = Path(s.data_dir) / "faust-worker"
    datadir.mkdir(parents=True, exist_ok=True)
    conf.datadir = str(datadir)
    conf.web_host, conf.web_port, conf.web_bind = (
        s.worker_web_host,
        s.worker_web_port,
        s.worker_web_host,
    )
    conf.topic_allow_declare = False


def engine() -> Engine:
    """The engine of this process (created on first use, after faust configured the app)."""
    if not _engine:
        _engine.append(Engine(_settings[-1] if _settings else Settings.from_env()))
    return _engine[-1]


@app.service
class EngineService(Service):
    """Runs :class:`Engine` as a child of the faust app; crashes the worker if it fails."""

    _task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        try:
            await engine().start()
        except TopicsNotProvisioned as exc:  # one line that says what to run, then exit 1
            log.critical("worker stopping: %s", exc)
            await self.crash(exc)
            return
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            await engine().run()
        except Exception as exc:  # the engine's failure is the worker's: stop loudly
            log.critical("worker stopping: %s: %s", type(exc).__name__, exc)
            await self.crash(exc)

    async def on_stop(self) -> None:
        # Let the current batch finish (never cancel it half-emitted: the snapshot that stop()
        # writes must follow acked outputs), then stop at the next poll (<= WORKER_BATCH_MS).
        engine().request_stop()
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine().stop()


@app.web_server
class WorkerWeb(Service):
    """``/metrics``, ``/healthz``, ``/readyz`` of this worker (see :mod:`ops.endpoints`)."""

    async def on_start(self) -> None:
        s = _settings[-1] if _settings else Settings.from_env()
        self.server = OpsServer("worker", s.worker_web_port, host=s.worker_web_host)
        eng = engine()
        self.server.add_readiness("kafka", lambda: eng.started)
        self.server.add_readiness("partitions", lambda: eng.assigned)
        self.server.add_liveness("engine", lambda: not eng.failed)
        await self.server.start()

    async def on_stop(self) -> None:
        await self.server.stop()
