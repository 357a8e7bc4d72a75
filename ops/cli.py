"""``csync lag`` (a table, ``--watch`` to refresh) and ``csync lag serve`` (the lag monitor process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import click

from csync.config import load_settings
from csync.settings import Settings


def _settings(prefix: str | None, interval: float | None) -> Settings:
    settings = load_settings()
    changes: dict[str, object] = {}
    if prefix is not None:
        changes["lag_group_prefix"] = prefix
    if interval is not None:
        changes["lag_sample_interval_s"] = interval
    return settings.replace(**changes) if changes else settings


@click.group("lag", invoke_without_command=True)
@click.option("--watch", is_flag=True, help="Refresh the table every interval until Ctrl-C.")
@click.option(
    "--interval", type=float, default=None, help="Seconds between samples (LAG_SAMPLE_INTERVAL_S)."
)
@click.option("--prefix", default=None, help="Consumer group id prefix (LAG_GROUP_PREFIX).")
@click.option("--group", "groups", multiple=True, help="Watch exactly this group (repeatable).")
@click.pass_context
def lag(
    ctx: click.Context,
    watch: bool,
    interval: float | None,
    prefix: str | None,
    groups: tuple[str, ...],
) -> None:
    """Consumer lag of our groups: offsets, seconds, Burrow-style status.

    Without --watch it samples twice, one interval apart (1 s unless --interval), so time lag and status have
    two points to go on; statuses firm up over LAG_WINDOW samples, which --watch and ``lag serve`` keep.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(prefix, interval if interval is not None else (None if watch else 1.0))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_print_lag(settings, list(groups) or None, watch))


async def _print_lag(settings: Settings, groups: list[str] | None, watch: bool) -> None:
    from ops.lag_monitor import LagMonitor, format_table

    async with LagMonitor(settings, groups) as monitor:
        if not watch:
            await monitor.sample()
            await asyncio.sleep(settings.lag_sample_interval_s)
            click.echo(format_table(await monitor.sample()))
            return
        while True:
            report = await monitor.sample()
            if sys.stdout.isatty():
                click.clear()
            click.echo(format_table(report))
            click.echo("")
            await asyncio.sleep(settings.lag_sample_interval_s)


@lag.command("serve")
@click.option(
    "--port", type=int, default=None, help="Port of /metrics (LAG_METRICS_PORT; 0 = free)."
)
@click.option(
    "--host", default=None, help="Bind address (LAG_METRICS_HOST; 0.0.0.0 in a container or pod)."
)
def serve(port: int | None, host: str | None) -> None:
    """Run the lag monitor: samples every LAG_SAMPLE_INTERVAL_S, serves /metrics /healthz /readyz."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _settings(None, None)
    if port is not None:
        settings = settings.replace(lag_metrics_port=port)
    asyncio.run(_serve(settings, settings.lag_metrics_host if host is None else host))


async def _serve(settings: Settings, host: str) -> None:
    from csync.kafka_client import KafkaSecurityError
    from ops.endpoints import OpsServer
    from ops.lag_monitor import LagMonitor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    monitor = LagMonitor(settings)
    server = OpsServer("lag", settings.lag_metrics_port, host=host)
    server.add_readiness("kafka", lambda: monitor.last_sample_ok)
    port = await server.start()
    # Tests and supervisors read the bound port from this line when LAG_METRICS_PORT=0.
    click.echo(f"lag monitor: metrics on http://{host}:{port}/metrics", err=True)
    try:
        while not stop.is_set():
            try:
                await monitor.start()
                break
            except KafkaSecurityError:
                raise  # a rejected login does not get better by retrying
            except Exception as exc:
                logging.getLogger(__name__).warning("Kafka not reachable yet: %s", exc)
                await monitor.stop()
                await asyncio.sleep(2)
        await monitor.run(stop)
    finally:
        await monitor.stop()
        await server.stop()
