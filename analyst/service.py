"""Running ``csync analyst-api``: settings → the service's parts → an aiohttp site until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from analyst.api import Service, analyst_app
from analyst.catalog import load_catalog
from analyst.signin import codes_path
from analyst.source import reader_for
from analyst.tokens import AnalystBook, Sessions, tokens_path
from csync.settings import Settings
from csync.sign_in_throttle import SignInThrottle
from privacy.audit import AuditLog

log = logging.getLogger("csync.analyst")


def build_service(settings: Settings) -> Service:
    """The service's parts from settings (the catalog is validated now: a bad file stops the start)."""
    return Service(
        reader=reader_for(settings),
        k=settings.k_anonymity,
        catalog=load_catalog(settings.analyst_catalog_path),
        book=AnalystBook(tokens_path(settings)),
        sessions=Sessions(ttl_s=settings.analyst_session_ttl_s),
        audit=AuditLog.from_settings(settings),
        codes=codes_path(settings),
        throttle=SignInThrottle.from_settings(settings),
    )


async def run_analyst_api(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``)."""
    runner = web.AppRunner(analyst_app(build_service(settings)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.analyst_api_host, settings.analyst_api_port)
    await site.start()
    log.info("analyst API on http://%s:%d/", settings.analyst_api_host, settings.analyst_api_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
