"""The operator endpoints: /metrics serves the registry, /readyz reflects the registered checks."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from ops.endpoints import OpsServer


async def test_port_zero_binds_a_free_port_and_serves_metrics() -> None:
    registry = CollectorRegistry()
    Counter("csync_test_things_total", "things", registry=registry).inc(3)
    async with OpsServer("test", 0, registry=registry) as a, OpsServer("other", 0) as b:
        assert a.port != 0 and a.port != b.port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{a.url}/metrics") as resp:
                assert resp.status == 200
                assert "text/plain" in resp.headers["Content-Type"]
                assert "csync_test_things_total 3.0" in await resp.text()
            async with http.get(f"{a.url}/healthz") as resp:
                assert resp.status == 200


async def test_readiness_follows_sync_and_async_checks() -> None:
    state = {"kafka": False}

    async def slow_backend() -> bool:
        await asyncio.sleep(5)
        return True

    def broken() -> bool:
        raise ConnectionError("redis down")

    server = OpsServer("test", 0, check_timeout_s=0.2)
    server.add_readiness("kafka", lambda: state["kafka"])
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
                assert await resp.json() == {"ready": False, "checks": {"kafka": False}}
            state["kafka"] = True
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200
            server.add_readiness("backend", slow_backend)
            server.add_readiness("redis", broken)
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["checks"] == {
                    "kafka": True,
                    "backend": False,
                    "redis": False,
                }
    finally:
        await server.stop()
