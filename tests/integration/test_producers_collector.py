"""The collector against the real broker: events and DLQ records as a consumer reads them back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from csync.settings import Settings
from csync.stack import free_port
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


def _collector_env(settings: Settings, tokens: Path, data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TOPIC_ACTIVITY": settings.topic_activity,
        "TOPIC_DLQ": settings.topic_dlq,
        "PARTITIONS": str(settings.partitions),
        "COLLECTOR_TOKENS_FILE": str(tokens),
        "DATA_DIR": str(data),
        **extra,
    }


def _start_collector(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "csync.cli", "collector"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_ready(http: aiohttp.ClientSession, ops: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(150):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{ops}/readyz") as resp:
                if resp.status == 200:
                    return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        await asyncio.sleep(0.1)
    raise AssertionError("the collector did not become ready in 15 s")


def _heartbeat(i: int) -> dict[str, object]:
    return {"v": 1, "event_id": f"e{i}", "kind": "heartbeat", "ts": int(time.time() * 1000),
            "district_id": "d-1", "student_id": f"s{i}", "device_id": f"cb{i}", "app": "docs"}  # fmt: skip


async def _accepted(http: aiohttp.ClientSession, ops: int) -> float:
    async with http.get(f"http://127.0.0.1:{ops}/metrics") as resp:
        body = await resp.text()
    found = re.search(r'^csync_collector_events_total\{outcome="accepted"\} (\S+)$', body, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.kafka
async def test_csync_collector_process_serves_devices_and_operators_on_separate_ports(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    from ops.promtool import check_metrics_text

    tokens = tmp_path / "tokens.json"
    add_token(tokens, "secret-d1", "d-1")
    api, ops = free_port(), free_port()
    env = _collector_env(kafka_settings, tokens, tmp_path / "data",
                         COLLECTOR_PORT=str(api), COLLECTOR_METRICS_PORT=str(ops))  # fmt: skip
    proc = _start_collector(env)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, ops, proc)
            async with http.post(
                f"http://127.0.0.1:{api}/v1/events",
                json=[_heartbeat(1)],
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


@pytest.mark.kafka
async def test_collector_processes_share_one_port_only_when_asked(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Two processes with COLLECTOR_REUSE_PORT=1 on one port both serve devices and every event is
    accepted once; a third without it stops with one clear line instead of a traceback."""
    tokens = tmp_path / "tokens.json"
    add_token(tokens, "secret-d1", "d-1")
    api, ops = free_port(), [free_port(), free_port()]
    procs = [
        _start_collector(_collector_env(
            kafka_settings, tokens, tmp_path / f"data{n}", COLLECTOR_PORT=str(api),
            COLLECTOR_METRICS_PORT=str(ops[n]), COLLECTOR_REUSE_PORT="1",
        ))
        for n in range(2)
    ]  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for n, proc in enumerate(procs):
                await _wait_ready(http, ops[n], proc)
            for i in range(60):  # a new connection each: the kernel spreads them over the two
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as one,
                    one.post(
                        f"http://127.0.0.1:{api}/v1/events",
                        json=[_heartbeat(i)],
                        headers={"Authorization": "Bearer secret-d1"},
                    ) as resp,
                ):
                    assert resp.status == 200
                    assert (await resp.json())["accepted"] == 1
            counts = [await _accepted(http, port) for port in ops]
        assert sum(counts) == 60
        assert min(counts) > 0, counts  # both processes served (all 60 on one: p = 2**-59)
        third = _start_collector(_collector_env(
            kafka_settings, tokens, tmp_path / "data2", COLLECTOR_PORT=str(api),
            COLLECTOR_METRICS_PORT=str(free_port()),
        ))  # fmt: skip
        _out, err = third.communicate(timeout=60)
        assert third.returncode != 0
        message = err.decode()
        assert f"cannot listen on 127.0.0.1:{api}" in message
        assert "COLLECTOR_REUSE_PORT=1" in message
        assert "Traceback" not in message
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
    records = await read_all(kafka_settings, kafka_settings.topic_activity)
    ids = [
        o.event.event_id
        for _p, _k, v, _h in records
        for o in decode_record(v or b"", int(time.time() * 1000))
        if o.event
    ]
    assert sorted(ids) == sorted(f"e{i}" for i in range(60))
