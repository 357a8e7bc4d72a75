"""``csync retention`` against the real broker and redis-server: reads what is in force, flags excess."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from csync.redis_client import redis_client
from csync.settings import Settings
from csync.topics import create_topics, worker_topic_specs
from privacy.retention import EXCEEDS, MISSING, OK, WARN, retention_report

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def test_retention_reads_the_broker_and_redis_and_flags_what_exceeds_settings(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    settings = make_settings(
        topic_worker_state=f"t{unique}-worker-state.v1",
        topic_day_keys=f"t{unique}-day-keys.v1",
        retention_dlq_ms=3_600_000,
    )
    await create_topics(settings, worker_topic_specs(settings))
    redis = redis_client(settings)
    try:
        await redis.hset(f"{settings.key_prefix}:presence:d1:s1", mapping={"name": "A"})
        await redis.expire(f"{settings.key_prefix}:presence:d1:s1", 60)

        rows = {r.store: r for r in await retention_report(settings, clickhouse=False)}
        dlq = rows[f"kafka {settings.topic_dlq}"]
        # Topics as csync creates them bound the time on disk too (segment.ms, compaction lag).
        assert dlq.status == OK, dlq
        assert "delete 1h" in dlq.actual
        assert rows[f"kafka {settings.topic_roster}"].status == OK
        assert rows["redis presence hashes"].status == OK
        assert "60s" in rows["redis presence hashes"].actual

        async def alter_dlq(configs: dict[str, str]) -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
            await admin.start()
            try:
                responses = await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, settings.topic_dlq, configs=configs)]
                )
                errors = [r[:2] for resp in responses for r in resp.resources if r[0]]
                assert errors == []
            finally:
                await admin.close()

        # 1 h retention but 7-day segments: records can stay on disk for a week.
        week = str(7 * 86_400_000)
        await alter_dlq({"retention.ms": "3600000", "segment.ms": week, "cleanup.policy": "delete"})
        for _ in range(50):  # the broker applies a config change through its metadata log
            rows = {r.store: r for r in await retention_report(settings, clickhouse=False)}
            if rows[f"kafka {settings.topic_dlq}"].status != OK:
                break
            await asyncio.sleep(0.2)
        assert rows[f"kafka {settings.topic_dlq}"].status == WARN

        month = str(30 * 86_400_000)
        await alter_dlq({"retention.ms": month, "segment.ms": week, "cleanup.policy": "delete"})
        await redis.hset(f"{settings.key_prefix}:presence:d1:s2", mapping={"name": "B"})  # no TTL

        for _ in range(50):  # the broker applies a config change through its metadata log
            rows = {r.store: r for r in await retention_report(settings, clickhouse=False)}
            if rows[f"kafka {settings.topic_dlq}"].status != WARN:
                break
            await asyncio.sleep(0.2)
        assert rows[f"kafka {settings.topic_dlq}"].status == EXCEEDS
        assert "30d" in rows[f"kafka {settings.topic_dlq}"].actual
        assert rows["redis presence hashes"].status == EXCEEDS
        assert rows[f"kafka {settings.topic_activity}"].status in (OK, WARN)

        missing = settings.replace(topic_usage_cells=f"t{unique}-never-created")
        rows = {r.store: r for r in await retention_report(missing, clickhouse=False)}
        assert rows[f"kafka t{unique}-never-created"].status == MISSING
    finally:
        await redis.aclose()
