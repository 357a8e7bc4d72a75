"""Test fixtures: a real local stack for the whole session, and per-test names so tests never share data.

The session starts its own Kafka broker and redis-server on free ports in a temporary folder, the first time a
test marked ``kafka`` or ``redis`` asks for them, and stops them at the end even on failure. With
``CSYNC_TEST_STACK=reuse`` it uses the stack ``make up`` started instead (and leaves it running).
``CSYNC_TEST_BROKERS=3`` makes that private stack a 3-node KRaft cluster (topics with replication factor 3
and ``min.insync.replicas`` 2). ``CSYNC_TEST_REDIS=cluster`` points every ``redis`` test at a private Redis Cluster (3 masters + 3 replicas)
instead of the single server; the cluster tests ask for it (``redis_cluster``) whatever the option says.

Guard: the service fixtures fail a test that is not marked for that service, so ``-m "not kafka"`` really runs
without Kafka and a unit test cannot silently reach a server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csync import stack as local_stack
from csync.settings import Settings
from csync.stack_redis_cluster import RedisClusterInfo, start_redis_cluster, stop_redis_cluster
from csync.topics import create_topics

SERVICE_MARKERS = ("kafka", "redis", "clickhouse", "prometheus")


def _require_marker(request: pytest.FixtureRequest, marker: str) -> None:
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(
            f"{request.node.nodeid} uses the real {marker} service but is not marked "
            f"@pytest.mark.{marker}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def local_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_stack.Stack]:
    """The real Kafka + Redis of this test session."""
    import os

    if os.environ.get("CSYNC_TEST_STACK") == "reuse":
        running = local_stack.Stack.load(Path(Settings.from_env().data_dir))
        if running is None:
            pytest.fail("CSYNC_TEST_STACK=reuse but no stack is running: make up", pytrace=False)
        yield running
        return
    root = tmp_path_factory.mktemp("stack")
    brokers = int(os.environ.get("CSYNC_TEST_BROKERS", "1"))
    started = local_stack.up(
        root,
        redis_port=local_stack.free_port(),
        persist_redis=False,
        kafka_ports=[local_stack.free_port() for _ in range(brokers)],
    )
    try:
        yield started
    finally:
        local_stack.down(root)


@pytest.fixture
def kafka_bootstrap(request: pytest.FixtureRequest, local_services: local_stack.Stack) -> str:
    _require_marker(request, "kafka")
    return local_services.kafka_bootstrap


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, local_services: local_stack.Stack) -> str:
    import os

    _require_marker(request, "redis")
    if os.environ.get("CSYNC_TEST_REDIS") == "cluster":
        cluster: RedisClusterInfo = request.getfixturevalue("redis_cluster")
        return cluster.url
    return local_services.redis_url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterInfo]:
    """A real Redis Cluster (6 redis-server processes) for the session, started when first asked for."""
    root = tmp_path_factory.mktemp("redis-cluster")
    cluster = start_redis_cluster(root, [local_stack.free_port() for _ in range(6)])
    try:
        yield cluster
    finally:
        stop_redis_cluster(cluster)


@pytest.fixture
def redis_cluster_url(request: pytest.FixtureRequest, redis_cluster: RedisClusterInfo) -> str:
    _require_marker(request, "redis")
    return redis_cluster.url


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chDB data path for the test process (chDB allows one path per process)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def clickhouse_url(request: pytest.FixtureRequest, chdb_path: Path) -> str:
    _require_marker(request, "clickhouse")
    return f"chdb://{chdb_path}"


@pytest.fixture
def unique() -> str:
    """A short unique suffix for this test's topics, key prefix and database."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_settings(
    request: pytest.FixtureRequest, unique: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for this test: its own topic names, Redis key prefix, ClickHouse database and data folder.

    Service addresses are filled in only for the services the test is marked for; the others point at a
    closed port, so an unmarked use fails loudly instead of reaching a shared server.
    """

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap": "127.0.0.1:1",
            "redis_url": "redis://127.0.0.1:1/0",
            "clickhouse_url": f"chdb://{tmp_path / 'no-chdb'}",
            "topic_activity": f"t{unique}-device-activity.v1",
            "topic_roster": f"t{unique}-roster.v1",
            "topic_dlq": f"t{unique}-device-activity.dlq.v1",
            "topic_presence": f"t{unique}-presence.v1",
            "topic_usage_cells": f"t{unique}-usage-cells.v1",
            "topic_worker_state": f"t{unique}-worker-state.v1",
            "topic_day_keys": f"t{unique}-day-keys.v1",
            "worker_group": f"csync-worker-{unique}",
            "sink_group_clickhouse": f"csync-sink-clickhouse-{unique}",
            "sink_group_redis": f"csync-sink-redis-{unique}",
            "partitions": 4,
            "key_prefix": f"cs{unique}",
            "clickhouse_database": f"usage_{unique}",
            "data_dir": str(tmp_path / "data"),
        }
        if request.node.get_closest_marker("kafka"):
            values["kafka_bootstrap"] = request.getfixturevalue("kafka_bootstrap")
            replicas = request.getfixturevalue("local_services").env()
            values["replication_factor"] = int(replicas.get("REPLICATION_FACTOR", "1"))
            values["min_insync_replicas"] = int(replicas.get("MIN_INSYNC_REPLICAS", "1"))
        if request.node.get_closest_marker("redis"):
            values["redis_url"] = request.getfixturevalue("redis_url")
        if request.node.get_closest_marker("clickhouse"):
            values["clickhouse_url"] = request.getfixturevalue("clickhouse_url")
        values.update(overrides)
        return Settings.from_env(env={}, **values)

    return build


@pytest.fixture
def kafka_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings of a ``kafka`` test whose contract topics already exist (its own names)."""
    settings = make_settings()
    asyncio.run(create_topics(settings))
    return settings
