"""The collector's HTTP behaviour with an in-memory producer (no Kafka)."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from csync.settings import Settings
from producers.collector import Collector, add_token, load_tokens, make_app
from schemas.decoder import decode_record
from schemas.routing import partition_for_key


class FakeProducer:
    """Records sends; ``fail`` makes acknowledgements fail, ``delay`` slows them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = False
        self.delay = 0.0

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(self, topic: str, value: bytes, **kw: Any) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "value": value, **kw})
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ack() -> None:
            if self.fail:
                fut.set_exception(RuntimeError("broker down"))
            else:
                fut.set_result(None)

        asyncio.get_running_loop().call_later(self.delay, ack)
        return fut


def ev(i: int, district: str = "d-1", **changes: Any) -> dict[str, Any]:
    base = {
        "v": 1, "event_id": f"e{i}", "kind": "heartbeat", "ts": int(time.time() * 1000),
        "district_id": district, "student_id": f"s{i % 7}", "device_id": f"dev{i % 7}",
        "app": "docs",
    }  # fmt: skip
    base.update(changes)
    return base


ClientFactory = Callable[..., Any]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def build(**overrides: Any) -> tuple[TestClient[Any, Any], FakeProducer]:
        settings = Settings.from_env(env={}, data_dir=str(tmp_path), **overrides)
        add_token(tmp_path / "collector_tokens.json", "tok-d1", "d-1")
        producer = FakeProducer()
        collector = Collector(settings, load_tokens(tmp_path / "collector_tokens.json"), producer)
        await collector.start()
        test_client: TestClient[Any, Any] = TestClient(TestServer(make_app(collector)))
        await test_client.start_server()
        clients.append(test_client)
        return test_client, producer

    yield build
    for c in clients:
        await c.close()


AUTH = {"Authorization": "Bearer tok-d1"}


async def test_valid_events_go_minimised_in_per_partition_envelopes(client: ClientFactory) -> None:
    http, producer = await client()
    body = [ev(i, name="Ada", app="web", url=f"https://www.pbs.org/{i}") for i in range(40)]
    resp = await http.post("/v1/events", data=orjson.dumps(body), headers=AUTH)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["accepted"] == 40 and answer["rejected"] == 0
    assert [r["index"] for r in answer["results"]] == list(range(40))
    events = []
    for record in producer.sent:
        assert record["topic"] == "device-activity.v1"
        assert b"Ada" not in record["value"] and b"url" not in record["value"]
        for outcome in decode_record(record["value"], int(time.time() * 1000)):
            assert outcome.event is not None and outcome.event.sub_app == "pbs.org"
            key = outcome.event.student_key.encode()
            assert partition_for_key(key, 4) == record["partition"]
            events.append(outcome.event.event_id)
    assert sorted(events) == sorted(f"e{i}" for i in range(40))
    assert len(producer.sent) <= 4  # one envelope per partition


async def test_invalid_and_foreign_district_events_go_to_the_dlq(client: ClientFactory) -> None:
    http, producer = await client()
    body = [ev(0), ev(1, kind="nap"), ev(2, district="d-2"), ev(3)]
    resp = await http.post("/v1/events", data=gzip.compress(orjson.dumps(body)),
                           headers={**AUTH, "Content-Encoding": "gzip"})  # fmt: skip
    answer = await resp.json()
    assert resp.status == 200
    assert [(r["index"], r["status"], r.get("reason")) for r in answer["results"]] == [
        (0, "accepted", None),
        (1, "rejected", "unknown_kind"),
        (2, "rejected", "wrong_district"),
        (3, "accepted", None),
    ]
    dlq = [r for r in producer.sent if r["topic"] == "device-activity.dlq.v1"]
    headers = [dict(r["headers"]) for r in dlq]
    assert [(h["error"], h["source_index"]) for h in headers] == [
        (b"unknown_kind", b"1"),
        (b"wrong_district", b"2"),
    ]
    assert all(h["source_topic"] == b"collector" and h["source_offset"] == b"-1" for h in headers)
    assert orjson.loads(dlq[0]["value"])["kind"] == "nap"
    assert dlq[1]["key"] == b"d-2:s2"


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({}, b"[]", 401, "unauthorized"),
        ({"Authorization": "Bearer nope"}, b"[]", 401, "unauthorized"),
        (AUTH, b"[", 400, "not_json"),
        (AUTH, b"[]", 400, "envelope_empty"),
        (AUTH, b"42", 400, "not_object"),
        (AUTH, b"x" * 70_000, 413, "body_too_large"),
        ({**AUTH, "Content-Encoding": "gzip"}, b"plain", 400, "bad_gzip"),
        ({**AUTH, "Content-Encoding": "gzip"}, gzip.compress(b" " * 70_000), 413, "body_too_large"),
    ],
)
async def test_request_level_errors(
    client: ClientFactory, headers: dict[str, str], body: bytes, status: int, error: str
) -> None:
    http, producer = await client(collector_max_body_bytes=65_536)
    resp = await http.post("/v1/events", data=body, headers=headers)
    assert resp.status == status
    assert (await resp.json())["error"] == error
    assert producer.sent == []


async def test_too_many_events(client: ClientFactory) -> None:
    http, _ = await client(collector_max_events=10)
    resp = await http.post(
        "/v1/events", data=orjson.dumps([ev(i) for i in range(11)]), headers=AUTH
    )
    assert resp.status == 413


async def test_rate_limit_answers_429_with_retry_after(client: ClientFactory) -> None:
    http, _ = await client(collector_token_rate=20.0, collector_max_events=20)
    first = await http.post(
        "/v1/events", data=orjson.dumps([ev(i) for i in range(20)]), headers=AUTH
    )
    assert first.status == 200
    second = await http.post("/v1/events", data=orjson.dumps([ev(99)]), headers=AUTH)
    assert second.status == 429
    assert int(second.headers["Retry-After"]) >= 1


async def test_kafka_failure_is_503_and_busy_is_503(client: ClientFactory) -> None:
    http, producer = await client(collector_max_in_flight=5)
    producer.fail = True
    resp = await http.post("/v1/events", data=orjson.dumps([ev(1)]), headers=AUTH)
    assert resp.status == 503 and "Retry-After" in resp.headers
    producer.fail = False
    producer.delay = 0.5
    slow = asyncio.ensure_future(
        http.post("/v1/events", data=orjson.dumps([ev(i) for i in range(4)]), headers=AUTH)
    )
    await asyncio.sleep(0.1)
    busy = await http.post("/v1/events", data=orjson.dumps([ev(i) for i in range(4)]), headers=AUTH)
    assert busy.status == 503
    assert (await slow).status == 200


async def test_answer_waits_for_the_acknowledgement(client: ClientFactory) -> None:
    http, producer = await client()
    producer.delay = 0.3
    started = time.monotonic()
    resp = await http.post("/v1/events", data=orjson.dumps([ev(1)]), headers=AUTH)
    assert resp.status == 200
    assert time.monotonic() - started >= 0.3


async def test_health_and_openapi(client: ClientFactory) -> None:
    http, _ = await client()
    assert (await (await http.get("/healthz")).json())["status"] == "ok"
    doc = await (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/events" in doc["paths"]


def test_all_accepted_answer_is_the_generic_answer() -> None:
    from producers.collector import _all_accepted_answer

    for n in (1, 2, 500):
        results = [{"index": i, "status": "accepted"} for i in range(n)]
        assert orjson.loads(_all_accepted_answer(n)) == {
            "accepted": n, "rejected": 0, "results": results
        }  # fmt: skip
