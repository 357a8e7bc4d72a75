"""Fault scenario: abuse of the device collector, against the real broker.

Bad or missing tokens, a district's token sending another district's events, an oversized body (declared and
as a gzip bomb), malformed gzip, and a flood of requests from one token: the flood is answered 429 with a
Retry-After while another district's token keeps being served.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from csync.settings import Settings
from producers.collector import Collector, add_token, load_tokens, make_app, make_producer
from tests.integration.e2e_harness import Pipeline, say

pytestmark = [pytest.mark.faults, pytest.mark.kafka]


def _events(district: str, n: int, tag: str) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {"v": 1, "event_id": f"{tag}-{i}", "kind": "heartbeat", "ts": now - i,
         "district_id": district, "student_id": f"s{i % 7}", "device_id": f"cb{i % 7}",
         "app": "docs"}
        for i in range(n)
    ]  # fmt: skip


async def test_collector_under_abuse(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(collector_token_rate=500.0, collector_max_events=100)
    tokens = tmp_path / "tokens.json"
    add_token(tokens, "token-of-a", "d-a")
    add_token(tokens, "token-of-b", "d-b")
    producer = make_producer(settings)
    await producer.start()
    a = {"Authorization": "Bearer token-of-a"}
    b = {"Authorization": "Bearer token-of-b"}
    try:
        collector = Collector(settings, load_tokens(tokens), producer)
        await collector.start()
        async with TestClient(TestServer(make_app(collector))) as http:
            body = orjson.dumps(_events("d-a", 5, "ok"))
            # Missing, unknown, malformed and wrong-scheme tokens.
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer "},
                            {"Authorization": "Basic dG9rZW4tb2YtYQ=="},
                            {"Authorization": "token-of-a"}):  # fmt: skip
                resp = await http.post("/v1/events", data=body, headers=headers)
                assert resp.status == 401, headers
            # District A's token with district B's events: each is rejected, none is produced.
            resp = await http.post(
                "/v1/events", data=orjson.dumps(_events("d-b", 4, "spoof")), headers=a
            )
            assert resp.status == 200
            answer = await resp.json()
            assert (answer["accepted"], answer["rejected"]) == (0, 4)
            assert {r["reason"] for r in answer["results"]} == {"wrong_district"}
            # Oversized: declared length, and a gzip bomb that only exceeds the limit once decoded.
            big = b"[" + b" " * (settings.collector_max_body_bytes + 10) + b"]"
            resp = await http.post("/v1/events", data=big, headers=a)
            assert resp.status == 413
            bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")
            assert len(bomb) < settings.collector_max_body_bytes
            resp = await http.post(
                "/v1/events", data=bomb, headers={**a, "Content-Encoding": "gzip"}
            )
            assert resp.status == 413
            # Malformed gzip, and gzip cut short. The server answers 400 and then closes the
            # connection (aiohttp cannot drain a body it cannot decode), so no keep-alive reuse here.
            for data in (
                b"\x1f\x8b\x08\x00garbage-not-deflate",
                gzip.compress(body)[: len(gzip.compress(body)) // 2],
            ):
                resp = await http.post(
                    "/v1/events",
                    data=data,
                    headers={**a, "Content-Encoding": "gzip", "Connection": "close"},
                )
                assert resp.status == 400, await resp.text()
            resp = await http.post(
                "/v1/events", data=orjson.dumps(_events("d-a", 101, "many")), headers=a
            )
            assert resp.status == 413

            # Flood from token A (20 events per request, 500 events/s allowed) while B sends normally.
            flood: Counter[int] = Counter()
            retry_after: set[str] = set()
            b_status: list[int] = []
            flood_body = orjson.dumps(_events("d-a", 20, "flood"))
            stop = asyncio.Event()

            async def flooder() -> None:
                while not stop.is_set():
                    r = await http.post("/v1/events", data=flood_body, headers=a)
                    flood[r.status] += 1
                    if r.status == 429:
                        retry_after.add(r.headers.get("Retry-After", ""))
                    r.release()

            async def district_b() -> None:
                for i in range(20):
                    r = await http.post(
                        "/v1/events", data=orjson.dumps(_events("d-b", 10, f"b{i}")), headers=b
                    )
                    b_status.append(r.status)
                    r.release()
                    await asyncio.sleep(0.1)

            started = time.monotonic()
            tasks = [asyncio.create_task(flooder()) for _ in range(50)]
            await district_b()
            stop.set()
            await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
            health = await http.get("/healthz")
            assert health.status == 200
    finally:
        await producer.stop()

    requests = sum(flood.values())
    assert flood[429] > 0 and flood[200] > 0
    assert set(flood) <= {200, 429}, flood
    assert "" not in retry_after
    assert b_status == [200] * 20, b_status
    # At most the bucket's burst plus the refill was accepted from A during the flood.
    assert flood[200] * 20 <= max(500.0, 100) + 500.0 * elapsed + 20

    pipeline = Pipeline(settings, tmp_path / "read")
    dlq = await pipeline.read_topic_with_headers(settings.topic_dlq)
    spoofed = [v for _k, v, h in dlq if h.get("error") == b"wrong_district"]
    assert len(spoofed) == 4
    activity = await pipeline.read_topic(settings.topic_activity)
    assert not [v for *_rest, v in activity if v and b"spoof-" in v]
    say(
        f"collector abuse: flood of {requests} requests from one token in {elapsed:.1f}s "
        f"({requests / elapsed:,.0f} req/s reached in-process): {dict(flood)}, Retry-After "
        f"{sorted(retry_after)}; the other district's 20 requests all 200; 4 spoofed events in the "
        f"DLQ as wrong_district, none in the activity topic"
    )
