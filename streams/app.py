"""The faust app of the stream workers: ``faust -A streams.app worker`` or ``csync worker``.

faust supplies the process: lifecycle, signals, logging, the web server (``/metrics``). The
processing
itself is :class:`streams.engine.Engine` (plain aiokafka), started as an app task — see its
docstring for why
not faust agents/tables/``exactly_once``. Configuration comes from :class:`csync.settings.Settings`
when
faust configures the app (not at import time).
"""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from csync.settings import Settings
from streams.engine import Engine

app = faust.App("csync-worker-app", autodiscover=False)
_engine: list[Engine] = []


@app.on_configured.connect  # type: ignore[arg-type]
def _configure(app: faust.App, conf: Any, **kwargs: Any) -> None:
    s = Settings.from_env()
    conf.broker = [f"kafka://{b}" for b in s.kafka_bootstrap.split(",")]
    conf.store = "memory://"
    conf.web_host, conf.web_port, conf.web_bind = (
        s.worker_web_host,
        s.worker_web_port,
        s.worker_web_host,
    )
    conf.topic_partitions = s.partitions
    conf.topic_allow_declare = False
    _engine.append(Engine(s))


@app.task  # type: ignore[untyped-decorator]
async def _run_engine() -> None:
    engine = _engine[-1]
    await engine.start()
    try:
        await engine.run()
    finally:
        await engine.stop()


@app.page("/metrics")
async def _metrics(web: Any, request: Any) -> Any:
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
