"""Both sinks driven by their real loop from real Kafka topics: crash before commit, replay, outage."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from csync.redis_client import redis_client
from csync.settings import Settings
from schemas.internal import PresenceChange, UsagePartial, UsageRow
from sinks.clickhouse_client import clickhouse_client
from sinks.clickhouse_sink import ClickHouseUsageSink
from sinks.faults import FaultySink, SimulatedCrash, SinkFaults
from sinks.migrate import migrate
from sinks.redis_presence import RedisPresenceSink
from sinks.runner import SinkLoop
from sinks.shape import BatchSink
from sinks.usage_read import fetch_from_sink, read_app

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


async def produce(settings: Settings, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def run_loop(
    settings: Settings, topic: str, group: str, sink: BatchSink, until: Callable[[], bool]
) -> None:
    """Run the sink's loop until ``until()`` holds (or the sink crashes), at most 60 s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    loop = SinkLoop(consumer, sink, flush_interval_s=0.2, max_batch=7)
    consumer.subscribe([topic], listener=loop.listener())
    await consumer.start()
    stop = asyncio.Event()

    async def watch() -> None:
        while not until():
            await asyncio.sleep(0.05)
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(loop.run(stop), timeout=60)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await consumer.stop()


def partials(n: int) -> list[UsagePartial]:
    out = []
    for i in range(n):
        rows: list[UsageRow] = [
            (T0 + 60 * (j % 4), "docs", f"s{j % 2}", 100 + (i * 3 + j) % 25, 1_000)
            for j in range(5)
        ]
        out.append(UsagePartial(0, i * 10, i * 10 + 9, tuple(rows)))
    return out


@pytest.mark.kafka
@pytest.mark.clickhouse
async def test_clickhouse_sink_crash_before_commit_replays_without_double_count(
    make_settings: Callable[..., Settings],
) -> None:
    from csync.topics import create_topics

    settings = make_settings()
    await create_topics(settings)
    client = clickhouse_client(settings.clickhouse_url)
    db = settings.clickhouse_database
    migrate(client, db, ttl_days=730, k_anonymity=10)
    data = partials(40)
    await produce(settings, settings.topic_usage_cells, [(None, p.encode()) for p in data])

    def total_ms() -> int:
        return int(client.query(f"SELECT sum(active_ms) FROM {db}.app_minute").result_rows[0][0])

    expected_ms = sum(ms for p in data for *_, ms in p.rows)
    group = settings.sink_group_clickhouse
    # First life: crash after the second insert, before its commit.
    first = FaultySink(ClickHouseUsageSink(client, db), SinkFaults(crash_after_insert=2))
    with pytest.raises(SimulatedCrash):
        await run_loop(settings, settings.topic_usage_cells, group, first, lambda: False)
    written = total_ms()
    assert 0 < written < expected_ms
    # Second life: the uncommitted records come again; the result is as if nothing had happened.
    second = ClickHouseUsageSink(client, db)
    await run_loop(
        settings, settings.topic_usage_cells, group, second, lambda: total_ms() >= expected_ms
    )
    await asyncio.sleep(0.5)  # anything extra would have landed by now
    assert total_ms() == expected_ms
    students = client.query(
        f"SELECT uniqMerge(students) FROM {db}.app_minute WHERE minute = toDateTime({T0}, 'UTC')"
    ).result_rows[0][0]
    assert students == 25

    # The analysts' endpoint served by the sink process answers from the public view only.
    migrate(client, db, ttl_days=730, k_anonymity=20)
    runner = web.AppRunner(read_app(client, db))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        rows = await asyncio.to_thread(
            fetch_from_sink, port, dt.date(2026, 1, 1), dt.date(2026, 1, 1), "docs"
        )
    finally:
        await runner.cleanup()
    assert rows is not None
    assert {(r["sub_app"], r["students"]) for r in rows} == {("s0", 25), ("s1", 25)}
    assert sum(r["active_seconds"] for r in rows) == expected_ms / 1000


@pytest.mark.kafka
@pytest.mark.redis
async def test_redis_sink_loop_survives_failures_and_redelivery(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    from csync.topics import create_topics

    settings = make_settings()
    await create_topics(settings)
    changes = [
        PresenceChange("d1", f"s{i % 9}", f"N{i % 9}", i % 3 != 0, "docs", f"x{i}", 1_000 + i,
                       classes_add=(f"c{i % 2}",))
        for i in range(60)
    ]  # fmt: skip
    await produce(settings, settings.topic_presence, [(c.key, c.encode()) for c in changes])
    redis = redis_client(settings, decode_responses=True)
    prefix = settings.key_prefix
    try:
        # Three injected write failures, then a crash after the first successful batch (before commit).
        sink = FaultySink(
            RedisPresenceSink(redis, key_prefix=prefix),
            SinkFaults(fail_inserts=3, crash_after_insert=1),
        )
        with pytest.raises(SimulatedCrash):
            await run_loop(settings, settings.topic_presence, "g-redis", sink, lambda: False)
        sink = RedisPresenceSink(redis, key_prefix=prefix)

        async def state() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for i in range(9):
                out[f"s{i}"] = await redis.hgetall(f"{prefix}:presence:d1:s{i}")
            return out

        done = asyncio.Event()
        last_of = {f"s{i}": max(j for j in range(60) if j % 9 == i) for i in range(9)}

        async def check() -> None:
            while True:
                s = await state()
                if all(v.get("ts") == str(1_000 + last_of[k]) for k, v in s.items()):
                    done.set()
                    return
                await asyncio.sleep(0.05)

        checker = asyncio.create_task(check())
        await run_loop(settings, settings.topic_presence, "g-redis", sink, done.is_set)
        await checker
        final = await state()
        for i in range(9):
            last = max(j for j in range(60) if j % 9 == i)
            online = last % 3 != 0
            assert final[f"s{i}"] == {
                "name": f"N{i}", "online": "1" if online else "0",
                "app": "docs" if online else "", "sub_app": f"x{last}" if online else "",
                "ts": str(1_000 + last),
            }  # fmt: skip
        assert await redis.smembers(f"{prefix}:class:d1:c0") == {f"s{i}" for i in range(9)}
    finally:
        await redis.aclose()
