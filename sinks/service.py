"""The long-running sink processes: ``csync sink clickhouse`` and ``csync sink redis``.

Each reads its internal topic with its own consumer group and manual commits (see :mod:`sinks.runner`),
serves ``/metrics``, ``/healthz`` and ``/readyz`` (:class:`ops.endpoints.OpsServer`) on ``127.0.0.1``
(``SINK_CLICKHOUSE_METRICS_PORT`` / ``SINK_REDIS_METRICS_PORT``) and stops cleanly on SIGINT/SIGTERM after
a last flush and commit. Ready means: partitions assigned and the last write to the backend succeeded.

Neither sink provisions anything: each checks at start that its input topic exists as settings say
(:func:`csync.topics.check_topics`) and the ClickHouse sink that every migration was applied, and stops with
one line naming the command to run (``csync topics create``, ``csync clickhouse migrate``) otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from csync.kafka_client import check_credentials, consumer_options
from csync.redis_client import redis_client
from csync.settings import Settings
from csync.topics import TopicsNotProvisioned, check_topics, worker_topic_specs
from ops.endpoints import OpsServer
from sinks.clickhouse_client import clickhouse_client, redact_url
from sinks.clickhouse_sink import ClickHouseUsageSink
from sinks.faults import with_faults
from sinks.migrate import check_identifier, load_migrations
from sinks.redis_presence import RedisPresenceSink
from sinks.runner import SinkLoop
from sinks.shape import BatchSink
from sinks.usage_read import read_app

log = logging.getLogger(__name__)


def _consumer(settings: Settings, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **consumer_options(settings),  # read_committed: the worker writes in transactions
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.sink_max_batch,
        fetch_max_wait_ms=settings.sink_fetch_wait_ms,
    )


async def _run(
    settings: Settings,
    sink: BatchSink,
    topic: str,
    group: str,
    stop: asyncio.Event,
    ops: OpsServer,
    *,
    flush_interval_s: float,
    flush_when_idle: bool = False,
) -> None:
    consumer = _consumer(settings, group)
    loop = SinkLoop(
        consumer,
        sink,
        flush_interval_s=flush_interval_s,
        max_batch=settings.sink_max_batch,
        flush_when_idle=flush_when_idle,
    )
    ops.add_readiness("partitions", lambda: bool(consumer.assignment()))
    ops.add_readiness("backend", lambda: loop.backend_ok)
    consumer.subscribe([topic], listener=loop.listener())
    await ops.start()
    await check_credentials(settings)  # a rejected login: one clear error, at once
    await consumer.start()
    try:
        await loop.run(stop)
    finally:
        await consumer.stop()
        await ops.stop()


class NotProvisioned(TopicsNotProvisioned):
    """The usage database lacks migrations: ``csync clickhouse migrate`` has not run."""


async def _check_topic(settings: Settings, topic: str) -> None:
    await check_topics(settings, [t for t in worker_topic_specs(settings) if t.name == topic])


def _check_migrated(client: Any, db: str) -> None:
    """Raise :class:`NotProvisioned` unless every shipped migration was applied to ``db``."""
    db = check_identifier(db)
    try:
        rows = client.query(f"SELECT version FROM {db}.schema_migrations").result_rows  # noqa: S608
    except Exception as exc:  # noqa: BLE001 - no database or table: nothing was migrated
        log.debug("schema_migrations unreadable: %s", exc)
        rows = []
    missing = sorted({m.version for m in load_migrations()} - {int(r[0]) for r in rows})
    if missing:
        raise NotProvisioned(
            f"ClickHouse database {db} lacks migrations {missing} — run `csync clickhouse migrate`"
        )


def _stop_on_signals(stop: asyncio.Event) -> None:
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(sig, stop.set)


async def run_clickhouse_sink(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Write usage partials to ClickHouse until stopped (once topics and migrations are checked);
    serves the analysts' endpoint."""
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    log.info("ClickHouse sink: %s, database %s", redact_url(settings.clickhouse_url),
             settings.clickhouse_database)  # fmt: skip
    await _check_topic(settings, settings.topic_usage_cells)
    client = await asyncio.to_thread(clickhouse_client, settings.clickhouse_url)
    await asyncio.to_thread(_check_migrated, client, settings.clickhouse_database)
    ops = OpsServer(
        "sink-clickhouse",
        settings.sink_clickhouse_metrics_port,
        host=settings.sink_clickhouse_metrics_host,
    )
    runner = web.AppRunner(read_app(client, settings.clickhouse_database))
    await runner.setup()
    await web.TCPSite(runner, settings.usage_read_host, settings.usage_read_port).start()
    sink = with_faults(
        ClickHouseUsageSink(client, settings.clickhouse_database), settings.sink_fault_injection
    )
    try:
        # About one insert per second whatever the load: ClickHouse wants few, large inserts.
        await _run(
            settings, sink, settings.topic_usage_cells, settings.sink_group_clickhouse, stop, ops,
            flush_interval_s=settings.sink_flush_interval_s,
        )  # fmt: skip
    finally:
        await runner.cleanup()


async def run_redis_sink(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Write presence changes to Redis until stopped."""
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    await _check_topic(settings, settings.topic_presence)
    ops = OpsServer(
        "sink-redis", settings.sink_redis_metrics_port, host=settings.sink_redis_metrics_host
    )
    redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
    sink = with_faults(
        RedisPresenceSink(redis, key_prefix=settings.key_prefix, ttl_s=settings.presence_ttl_s),
        settings.sink_fault_injection,
    )
    try:
        # A teacher waits for this one: flush often, and at once when nothing more is waiting.
        await _run(
            settings, sink, settings.topic_presence, settings.sink_group_redis, stop, ops,
            flush_interval_s=settings.sink_redis_flush_interval_s, flush_when_idle=True,
        )  # fmt: skip
    finally:
        await redis.aclose()
