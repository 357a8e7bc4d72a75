"""``csync probe``: the end-to-end probe process (see :mod:`ops.probe`), with /metrics /healthz /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from csync.settings import Settings

DEFAULT_PORT = 9470


@click.command("probe")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between probes."
)
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds a probe may take."
)
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="/metrics port (0 = free)."
)
@click.option("--host", default="127.0.0.1", help="Bind address (0.0.0.0 in a container or pod).")
def probe(interval: float, timeout: float, port: int, host: str) -> None:
    """Send a synthetic probe student's events through Kafka and time their arrival in Redis."""
    from csync.config import load_settings

    if interval <= 0 or timeout <= 0:
        raise click.BadParameter("--interval and --timeout must be > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(load_settings(), interval, timeout, port, host))


async def _serve(settings: Settings, interval: float, timeout: float, port: int, host: str) -> None:
    from ops.endpoints import OpsServer
    from ops.probe import Probe

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    probe = Probe(settings, interval, timeout)
    server = OpsServer("probe", port, host=host)
    server.add_readiness("probe", lambda: probe.last_ok)
    bound = await server.start()
    # Tests and supervisors read the bound port from this line when --port 0.
    click.echo(f"probe: metrics on http://{host}:{bound}/metrics", err=True)
    try:
        await probe.start()
        task = asyncio.create_task(probe.run(stop))
        await stop.wait()
        task.cancel()  # a probe waiting for Redis must not delay the shutdown by its timeout
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await probe.stop()
        await server.stop()
