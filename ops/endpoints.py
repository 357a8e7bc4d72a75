"""``/metrics``, ``/healthz`` and ``/readyz`` for any long-running csync process (an aiohttp server).

Usage, inside the process's asyncio loop::

    from ops.endpoints import OpsServer

    server = OpsServer("sink-redis", settings.sink_redis_metrics_port)
    server.add_readiness("kafka", lambda: consumer_started)          # plain callable …
    server.add_readiness("partitions", lambda: bool(consumer.assignment()))
    server.add_readiness("redis", redis_ping)                          # … or an async one
    port = await server.start()   # the bound port (``0`` in settings = a free one, logged)
    ...
    await server.stop()

Or as a context manager: ``async with OpsServer("worker", port) as server: ...``.

- ``GET /metrics`` — Prometheus text format of ``registry`` (default: the process's global registry, where
  every metric of :mod:`csync.metrics` lives).
- ``GET /healthz`` — liveness: 200 while the event loop answers and every liveness check passes (none by
  default); an orchestrator restarts the process on failure, so only register what a restart fixes.
- ``GET /readyz`` — readiness: 200 when every readiness check returns true within ``check_timeout_s``, else 503.
  The body is JSON ``{"ready": bool, "checks": {name: bool}}`` so an operator sees which dependency is down.

Each process binds ``host`` (127.0.0.1 by default: metrics carry no personal data, but nothing outside the host
needs them unless an operator says so) on its own port setting, so several processes on one host never collide.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]


class OpsServer:
    """The three operator endpoints of one process; see the module docstring for the API."""

    def __init__(
        self,
        name: str,
        port: int,
        host: str = "127.0.0.1",
        registry: CollectorRegistry = REGISTRY,
        check_timeout_s: float = 2.0,
    ) -> None:
        self.name = name
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.check_timeout_s = check_timeout_s
        self._readiness: dict[str, Check] = {}
        self._liveness: dict[str, Check] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def add_readiness(self, name: str, check: Check) -> None:
        """Register a readiness check (sync or async, returns bool; an exception counts as not ready)."""
        self._readiness[name] = check

    def add_liveness(self, name: str, check: Check) -> None:
        """Register a liveness check: failing it asks the orchestrator to restart the process."""
        self._liveness[name] = check

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("OpsServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> int:
        """Bind and serve; return the port (a free one when the requested port is 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        log.info("%s: /metrics /healthz /readyz on http://%s:%d", self.name, self.host, self._port)
        return self._port

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run_checks(self, checks: dict[str, Check]) -> dict[str, bool]:
        """Run ``checks`` concurrently; a check that raises or times out is false."""
        names = list(checks)
        results = await asyncio.gather(*(self._run_one(checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run_one(self, check: Check) -> bool:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.check_timeout_s)
            return bool(result)
        except Exception:  # a broken check means "not ready", never a 500
            log.debug("%s: check failed", self.name, exc_info=True)
            return False

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        results = await self.run_checks(self._liveness)
        alive = all(results.values())
        return web.json_response({"alive": alive, "checks": results}, status=200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await self.run_checks(self._readiness)
        ready = all(results.values())
        return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)
