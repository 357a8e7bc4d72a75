"""The collector against the real broker: events and DLQ records as a consumer reads them back."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from csync.settings import Settings
from producers.collector import Collector, add_token, load_tokens, make_app, make_producer
from schemas.decoder import decode_record
from schemas.routing import partition_for_key
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


@pytest.mark.kafka
async def test_csync_collector_process_serves_devices_and_operators_on_separate_ports(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    import aiohttp

    from csync.stack import free_port
    from ops.promtool import check_metrics_text

    tokens = tmp_path / "tokens.json"
    add_token(tokens, "secret-d1", "d-1")
    api, ops = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "TOPIC_ACTIVITY": kafka_settings.topic_activity,
        "TOPIC_DLQ": kafka_settings.topic_dlq,
        "PARTITIONS": str(kafka_settings.partitions),
        "COLLECTOR_TOKENS_FILE": str(tokens),
        "COLLECTOR_PORT": str(api),
        "COLLECTOR_METRICS_PORT": str(ops),
        "DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "csync.cli", "collector"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{ops}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                await asyncio.sleep(0.1)
            now = int(time.time() * 1000)
            event = {"v": 1, "event_id": "e1", "kind": "heartbeat", "ts": now,
                     "district_id": "d-1", "student_id": "s1", "device_id": "cb1", "app": "docs"}  # fmt: skip
            async with http.post(
                f"http://127.0.0.1:{api}/v1/events",
                json=[event],
                headers={"Authorization": "Bearer secret-d1"},
            ) as resp:
                assert resp.status == 200
            # The devices' port does not serve operators' metrics; the loopback ops port does.
            async with http.get(f"http://127.0.0.1:{api}/metrics") as resp:
                assert resp.status == 404
            async with http.get(f"http://127.0.0.1:{ops}/metrics") as resp:
                body = await resp.text()
            assert 'csync_collector_events_total{outcome="accepted"} 1.0' in body
            assert check_metrics_text(body) == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
