"""The collector against the real broker: events and DLQ records as a consumer reads them back."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from csync.settings import Settings
from producers.collector import Collector, add_token, load_tokens, make_app, make_producer
from producers.partitioner import partition_for_key
from schemas.decoder import decode_record
from tests.integration.test_producers_simulator import read_all


@pytest.mark.kafka
async def test_collector_produces_events_and_dlq_records(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    add_token(tokens, "secret-d1", "d-1")
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        collector = Collector(kafka_settings, load_tokens(tokens), producer)
        await collector.start()
        async with TestClient(TestServer(make_app(collector))) as http:
            now = int(time.time() * 1000)
            body = [
                {"v": 1, "event_id": f"e{i}", "kind": "heartbeat", "ts": now - i,
                 "district_id": "d-1", "student_id": f"s{i % 9}", "device_id": f"cb{i % 9}",
                 "app": "web", "url": f"https://www.pbs.org/{i}", "email": "x@example.org"}
                for i in range(300)
            ]  # fmt: skip
            body[7]["ts"] = "yesterday"
            resp = await http.post(
                "/v1/events", data=orjson.dumps(body), headers={"Authorization": "Bearer secret-d1"}
            )
            assert resp.status == 200
            answer = await resp.json()
            assert (answer["accepted"], answer["rejected"]) == (299, 1)
    finally:
        await producer.stop()

    records = await read_all(kafka_settings, kafka_settings.topic_activity)
    ids = []
    for partition, _key, value, _ in records:
        assert value is not None and b"email" not in value and b"url" not in value
        for outcome in decode_record(value, int(time.time() * 1000)):
            assert outcome.event is not None
            assert partition_for_key(outcome.event.student_key.encode(), 4) == partition
            ids.append(outcome.event.event_id)
    assert sorted(ids) == sorted(f"e{i}" for i in range(300) if i != 7)

    dlq = await read_all(kafka_settings, kafka_settings.topic_dlq)
    assert len(dlq) == 1
    _, key, value, headers = dlq[0]
    assert orjson.loads(value or b"")["ts"] == "yesterday"
    assert key is None  # the original event had no valid key to carry
    assert headers == {
        "error": b"wrong_type",
        "error_detail": b"ts must be an integer (epoch ms)",
        "source_topic": b"collector",
        "source_partition": b"-1",
        "source_offset": b"-1",
        "source_index": b"7",
    }
