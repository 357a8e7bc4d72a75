"""Tokens at runtime: a running ``csync collector`` reads its tokens from a folder laid out as the kubelet
mounts a Secret (timestamped folder + ``..data`` symlink), and a token revoked by updating that Secret is
refused within seconds, without a restart, while the other tokens keep working. No token is logged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from csync.settings import Settings
from csync.stack import free_port
from producers.collector import hash_token

pytestmark = [pytest.mark.kafka]

KEPT, REVOKED = "device-token-kept-5d1e", "device-token-revoked-83a0"


def write_secret(mount: Path, version: int, tokens: dict[str, str]) -> None:
    """What the kubelet does on a Secret update: a new folder, then an atomic swap of ``..data``."""
    folder = mount / f"..2026_12_04_{version:02d}"
    folder.mkdir(parents=True)
    body = "{" + ",".join(f'"{hash_token(t)}": "{d}"' for t, d in tokens.items()) + "}"
    (folder / "collector_tokens.json").write_text(body)
    (mount / "..data_tmp").symlink_to(folder.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    link = mount / "collector_tokens.json"
    if not link.is_symlink():
        link.symlink_to("..data/collector_tokens.json")


async def post(http: aiohttp.ClientSession, port: int, token: str, n: int) -> int:
    event = {"v": 1, "event_id": f"e{n}", "kind": "heartbeat", "ts": int(time.time() * 1000),
             "district_id": "d-1", "student_id": "s1", "device_id": "cb1", "app": "docs"}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"http://127.0.0.1:{port}/v1/events", json=[event], headers=headers) as r:
        return r.status


async def test_a_revoked_collector_token_is_refused_within_seconds(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    mount = tmp_path / "secret-tokens"
    write_secret(mount, 1, {KEPT: "d-1", REVOKED: "d-1"})
    api, ops = free_port(), free_port()
    env = {**os.environ, **kafka_settings.to_env(), "TOKENS_DIR": str(mount),
           "COLLECTOR_PORT": str(api), "COLLECTOR_METRICS_PORT": str(ops), "TOKEN_RELOAD_S": "1"}  # fmt: skip
    log = tmp_path / "collector.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "csync.cli", "collector"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{ops}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
            assert await post(http, api, REVOKED, 1) == 200
            assert await post(http, api, KEPT, 2) == 200

            write_secret(mount, 2, {KEPT: "d-1"})
            revoked_at = time.monotonic()
            while await post(http, api, REVOKED, 3) != 401:
                assert time.monotonic() - revoked_at < 5, "revoked token still accepted after 5 s"
                await asyncio.sleep(0.1)
            refused_after = time.monotonic() - revoked_at
            assert await post(http, api, KEPT, 4) == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log.read_text()
    assert KEPT not in text and REVOKED not in text and hash_token(KEPT) not in text
    print(f"revoked token refused after {refused_after:.2f}s")
