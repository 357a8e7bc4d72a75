"""A 3-node Kafka cluster (KRaft, replication factor 3, ``min.insync.replicas=2``) under load.

The simulator and the HTTP collector send (``acks=all`` + idempotence, :func:`csync.kafka_client.
producer_options`) while a worker and both sinks run, and

1. the leader of the busiest activity partition is killed with ``kill -9``;
2. every node is restarted in turn (SIGTERM, start, wait until every replica is back in sync).

Then every acknowledged event — the simulator's and those the collector answered ``accepted`` — is counted
exactly once in Redis and ClickHouse (the e2e harness's truth check), and no producer or process gave up:
the collector's devices retried ``503`` answers until accepted, the harness fails on any exited process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from csync import stack as local_stack
from csync import stack_kafka_cluster as kc
from csync.settings import Settings
from csync.topics import create_topics, worker_topic_specs
from tests.integration.cluster_load import Load, all_in_sync, partition_leaders
from tests.integration.e2e_harness import Pipeline, pipeline_settings, say, verify

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[kc.KafkaCluster]:
    ports = [local_stack.free_port() for _ in range(3)]
    cluster = kc.start_kafka_cluster(tmp_path / "kafka", ports)
    try:
        yield cluster
    finally:
        kc.stop_kafka_cluster(cluster)


def _settings(make_settings: Callable[..., Settings], cluster: kc.KafkaCluster) -> Settings:
    base = make_settings(
        kafka_bootstrap=cluster.bootstrap, replication_factor=3, min_insync_replicas=2
    )
    return pipeline_settings(base, usage_close_after_s=6)


async def _start(settings: Settings, tmp_path: Path) -> Pipeline:
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    await pipeline.create_topics()
    again = await create_topics(settings, worker_topic_specs(settings))
    assert {r.action for r in again} == {"exists"}, again  # min.insync.replicas=2 is in force
    for _partition, (_leader, isr) in (
        await partition_leaders(settings, settings.topic_activity)
    ).items():
        assert len(isr) == 3
    pipeline.start_all(workers=1)
    return pipeline


async def _busiest_partition(pipeline: Pipeline) -> int:
    ends = await pipeline.end_offsets(pipeline.s.topic_activity)
    return max(ends, key=lambda p: ends[p])


def _topics(settings: Settings) -> list[str]:
    return [settings.topic_activity, settings.topic_presence, settings.topic_usage_cells,
            settings.topic_worker_state, "__consumer_offsets"]  # fmt: skip


async def test_leader_killed_under_load(
    make_settings: Callable[..., Settings], kafka_cluster: kc.KafkaCluster, tmp_path: Path
) -> None:
    settings = _settings(make_settings, kafka_cluster)
    pipeline = await _start(settings, tmp_path)
    load = Load(pipeline, tmp_path)
    try:
        await pipeline.wait_for("the worker to commit", _worker_committed(pipeline), 120, 0.2)
        await asyncio.sleep(3)
        partition = await _busiest_partition(pipeline)
        leader, _isr = (await partition_leaders(settings, settings.topic_activity))[partition]
        killed = time.monotonic()
        kc.kill_node(kafka_cluster, leader)
        moved_s = await pipeline.wait_for(
            "the partition's leadership to move",
            _leader_moved(settings, partition, leader),
            60,
            0.2,
        )
        await pipeline.wait_for("the collector to accept again", _accepts_after(load, killed), 60)
        collector_s = load.collector.first_accept_after(killed) or 0.0
        assert load.sending(), "the simulator finished before the leader moved: send longer"
        restart_s = await asyncio.to_thread(kc.start_node, kafka_cluster, leader)
        sync_s = await pipeline.wait_for(
            "replicas in sync", lambda: all_in_sync(settings, _topics(settings)), 120
        )
        report, population = await load.finish()
        complete_s = await pipeline.wait_complete(timeout_s=300)
        verdict = await verify(pipeline, report, population)
    finally:
        await load.cancel()
        pipeline.close()
    say(
        f"kill -9 of node {leader} (leader of activity partition {partition}): leadership moved after "
        f"{moved_s:.1f}s, collector accepted again after {collector_s:.1f}s; node back in {restart_s:.1f}s, "
        f"replicas in sync {sync_s:.1f}s later; pipeline complete {complete_s:.1f}s after the load; "
        f"producer retries {load.retries()}, collector 503s {load.collector.unavailable} of "
        f"{load.collector.posts} posts, {len(load.collector.accepted)} collector events; "
        f"{len(report.acked_events)} acked events, {verdict.cells} cells exact"
    )


async def test_rolling_restart_under_load(
    make_settings: Callable[..., Settings], kafka_cluster: kc.KafkaCluster, tmp_path: Path
) -> None:
    settings = _settings(make_settings, kafka_cluster)
    pipeline = await _start(settings, tmp_path)
    load = Load(pipeline, tmp_path)
    steps = []
    try:
        await pipeline.wait_for("the worker to commit", _worker_committed(pipeline), 120, 0.2)
        for node in kafka_cluster.nodes:
            stop_s = await asyncio.to_thread(kc.stop_node, kafka_cluster, node.node_id)
            start_s = await asyncio.to_thread(kc.start_node, kafka_cluster, node.node_id)
            sync_s = await pipeline.wait_for(
                "replicas in sync", lambda: all_in_sync(settings, _topics(settings)), 120
            )
            steps.append(
                f"node {node.node_id}: stop {stop_s:.1f}s, start {start_s:.1f}s, in sync {sync_s:.1f}s"
            )
        assert load.sending(), "the simulator finished before the last restart: send longer"
        report, population = await load.finish()
        complete_s = await pipeline.wait_complete(timeout_s=300)
        verdict = await verify(pipeline, report, population)
    finally:
        await load.cancel()
        pipeline.close()
    say(
        f"rolling restart: {'; '.join(steps)}; pipeline complete {complete_s:.1f}s after the load; "
        f"producer retries {load.retries()}, collector 503s {load.collector.unavailable} of "
        f"{load.collector.posts} posts; {len(report.acked_events)} acked events, {verdict.cells} cells exact"
    )


def _worker_committed(pipeline: Pipeline) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        done = await pipeline.committed(pipeline.s.worker_group, pipeline.s.topic_activity)
        return sum(done.values()) > 0

    return check  # type: ignore[return-value]


def _leader_moved(
    settings: Settings, partition: int, old: int
) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        leader, _isr = (await partition_leaders(settings, settings.topic_activity))[partition]
        return leader not in (old, -1)

    return check  # type: ignore[return-value]


def _accepts_after(load: Load, moment: float) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        return load.collector.first_accept_after(moment) is not None

    return check  # type: ignore[return-value]
