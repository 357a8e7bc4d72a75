"""The local stack is the real thing: Apache Kafka 4.x semantics, a real redis-server, the ClickHouse engine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import clickhouse_connect
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from csync import stack as local_stack
from csync.redis_client import sync_redis_client
from csync.settings import Settings
from csync.stack_redis_cluster import masters
from csync.topics import apply_topic_configs, create_topics, worker_topic_specs


@pytest.mark.kafka
def test_broker_speaks_the_kafka_4_api(kafka_bootstrap: str) -> None:
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    versions = local_stack.api_versions(port)
    assert local_stack.is_kafka4_api(versions)
    # KIP-896: a 4.x broker no longer serves Fetch v0-v3.
    assert versions[local_stack.API_FETCH][0] >= 4


@pytest.mark.kafka
async def test_topics_are_created_with_contract_settings_and_twice_is_harmless(
    kafka_settings: Settings,
) -> None:
    again = await create_topics(kafka_settings)
    assert {r.action for r in again} == {"exists"}, again
    assert {r.name for r in again} == {s.name for s in worker_topic_specs(kafka_settings)}


@pytest.mark.kafka
async def test_topic_with_other_settings_is_reported_not_accepted(kafka_settings: Settings) -> None:
    wrong = kafka_settings.replace(retention_activity_ms=1234)
    reports = {r.name: r for r in await create_topics(wrong)}
    assert reports[wrong.topic_activity].action == "differs"
    assert "retention.ms" in reports[wrong.topic_activity].detail
    # `csync topics create --alter` brings the existing topic to the settings.
    await apply_topic_configs(wrong, [wrong.topic_activity])
    reports = {r.name: r for r in await create_topics(wrong)}
    assert reports[wrong.topic_activity].action == "exists", reports[wrong.topic_activity]


@pytest.mark.kafka
async def test_idempotent_producer_and_group_commit_resume(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_activity
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_settings.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"d1:s1")
    finally:
        await producer.stop()

    async def read(n: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_settings.kafka_bootstrap,
            group_id=f"{topic}-group",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, f"no records after {len(got)} of {n}"
                for records in batch.values():
                    got += [r.value for r in records]
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    first = await read(4)
    assert len(first) >= 4
    # A new consumer of the same group resumes after the committed offset: no record is read twice.
    second = await read(10 - len(first))
    assert first + second == [f"m{i}".encode() for i in range(10)]


@pytest.mark.kafka
async def test_transactional_producer_commits_and_aborts(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_usage_cells
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_settings.kafka_bootstrap, transactional_id=f"{topic}-tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed", partition=0)
        await producer.begin_transaction()
        await producer.send(topic, b"aborted", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"after", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < 2 and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen += [r.value for r in records]
        assert seen == [b"committed", b"after"]
    finally:
        await consumer.stop()


@pytest.mark.redis
def test_redis_round_trip(redis_url: str, unique: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"cs{unique}:probe"
    client.hset(key, mapping={"online": "1"})
    assert client.hgetall(key) == {b"online": b"1"}
    assert client.info("server")["redis_version"].split(".")[0] >= "6"
    client.delete(key)


@pytest.mark.clickhouse
def test_chdb_create_insert_query_through_clickhouse_connect(
    clickhouse_url: str, unique: str
) -> None:
    client = clickhouse_connect.get_client(dsn=clickhouse_url)
    db = f"probe_{unique}"
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(f"CREATE TABLE {db}.t (k String, v UInt64) ENGINE = MergeTree ORDER BY k")
    client.insert(f"{db}.t", [["a", 1], ["b", 2], ["a", 3]], column_names=["k", "v"])
    rows = client.query(f"SELECT k, sum(v) FROM {db}.t GROUP BY k ORDER BY k").result_rows
    assert rows == [("a", 4), ("b", 2)]
    version = client.query("SELECT version()").result_rows[0][0]
    assert int(str(version).split(".")[0]) >= 24
    assert Path(clickhouse_url.removeprefix("chdb://")).is_dir()


def _free_run(count: int) -> int:
    """A port such that it and the next ``count - 1`` are free (the stack's Redis Cluster takes
    REDIS_PORT … REDIS_PORT+5)."""
    for _ in range(50):
        base = local_stack.free_port()
        if base + count < 65536 and not any(local_stack.port_open(base + i) for i in range(count)):
            return base
    raise AssertionError("no run of free ports")


def _csync(env: dict[str, str], *args: str) -> str:
    csync = Path(sys.executable).with_name("csync")
    done = subprocess.run(  # noqa: S603
        [str(csync), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.kafka
@pytest.mark.redis
def test_stack_up_redis_cluster_points_redis_url_at_it_and_down_stops_it(tmp_path: Path) -> None:
    redis_port = _free_run(6)
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "KAFKA_PORT": str(local_stack.free_port()),
        "REDIS_PORT": str(redis_port),
    }
    env.pop("REDIS_URL", None)
    env.pop("KAFKA_BOOTSTRAP", None)
    try:
        out = _csync(env, "stack", "up", "--redis-cluster")
        nodes = [f"127.0.0.1:{redis_port + i}" for i in range(6)]
        url = "redis+cluster://" + ",".join(nodes)
        assert f"REDIS_URL={url}" in out, out
        # The stack's env is what every csync command of this data dir uses.
        running = local_stack.Stack.load(tmp_path / "data")
        assert running is not None
        assert running.env()["REDIS_URL"] == url
        settings = Settings.from_env(env={**running.env(), "DATA_DIR": env["DATA_DIR"]})
        client = sync_redis_client(settings)
        try:
            keys = [f"probe:{i}" for i in range(20)]  # spread over the three masters' slots
            for i, key in enumerate(keys):
                client.set(key, str(i))
            assert [client.get(k) for k in keys] == [str(i).encode() for i in range(20)]
            assert len(masters(redis_port)) == 3
            assert all(replicas for replicas in masters(redis_port).values())
        finally:
            client.close()
        status = _csync(env, "stack", "status")
        assert sum(f"redis  up    {n}" in status for n in nodes) == 6, status
        # Asking for one redis-server while the cluster runs is an error, not a silent no.
        again = subprocess.run(  # noqa: S603
            [str(Path(sys.executable).with_name("csync")), "stack", "up"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert again.returncode != 0 and "stack down" in again.stderr, again.stderr
        pids = [n.pid for n in running.redis_nodes]
    finally:
        down = _csync(env, "stack", "down")
    assert sum("redis-cluster (pid" in part for part in down.split(", ")) == 6, down
    assert not any(local_stack.pid_alive(pid) for pid in pids)
    assert not any(local_stack.port_open(redis_port + i) for i in range(6))
