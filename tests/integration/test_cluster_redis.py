"""The pipeline against a real Redis Cluster (3 masters + 3 replicas, ``REDIS_URL=redis+cluster://…``).

1. The end-to-end truth check with presence on the cluster, then the other Redis readers on the same data:
   the teacher routes' read (``privacy.teacher_access.read_hashes``: SMEMBERS, then a pipeline of HMGETs that
   the client splits per node), ``csync retention``'s TTL sample (SCAN over every master) and a district purge
   (SCAN + UNLINK split per slot) that leaves no key of the district on any node.
2. A master is killed (``kill -9``) while the Redis sink writes: its replica takes over, the sink keeps
   running, notices the failover and replays the compacted presence topic, and the final state equals the
   truth — nothing acknowledged is lost, even writes the dead master had not replicated yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from csync import stack as local_stack
from csync import stack_redis_cluster as rc
from csync.redis_client import redis_client, sync_redis_client
from csync.settings import Settings
from privacy.audit import AuditLog
from privacy.purge import purge_district
from privacy.retention import redis_rows
from privacy.teacher_access import read_hashes, text
from producers.simulator import SendOptions
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    Pipeline,
    expected_presence,
    pipeline_settings,
    say,
    truth_of,
    verify,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]


async def test_pipeline_on_redis_cluster_equals_truth(
    make_settings: Callable[..., Settings], redis_cluster_url: str, tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings(redis_url=redis_cluster_url))
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
        await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
        want = expected_presence(truth_of(report, settings), population)
        state = pipeline.read_redis()
        assert len(_nodes_holding(settings, "*")) == 3, (
            "the keys should spread over all three masters"
        )

        # The teacher routes' read, class by class, equals the truth.
        redis = redis_client(settings)
        try:
            for (district, class_id), members in state.classes.items():
                got_members, rows = await read_hashes(
                    redis, settings.key_prefix, district, class_id, ("name", "online", "sub_app")
                )
                assert got_members == sorted(members)
                for student, row in zip(got_members, rows, strict=True):
                    w = want[(district, student)]
                    assert [text(v) for v in row] == [w["name"], w["online"], w["sub_app"]]
        finally:
            await redis.aclose()

        # Retention samples TTLs across the masters.
        ttl_row = (await redis_rows(settings))[0]
        assert ttl_row.status == "ok" and "of 50 keys" in ttl_row.actual, ttl_row

        # Purge removes every key of the district from every node.
        district = population[0].district_id
        purged = await purge_district(
            settings, district, audit=AuditLog(tmp_path / "audit.log"), settle_s=20
        )
        assert purged.store("redis").found >= len(state.presence) + len(state.classes)
        assert purged.store("redis").remaining == 0, purged.lines()
        for kind in ("presence", "class"):  # (the sink's marker key stays: it is no district data)
            assert _nodes_holding(settings, f"{kind}:{district}:*") == {}
    finally:
        pipeline.close()
    say(f"redis cluster e2e: {verdict.students} students, {verdict.cells} cells exact")


def _nodes_holding(settings: Settings, pattern: str) -> dict[str, int]:
    """Keys of this test's prefix matching ``pattern`` per master that holds any."""
    client = sync_redis_client(settings)
    try:
        counts: dict[str, int] = {}
        for node in client.get_primaries():  # type: ignore[union-attr]
            keys = client.scan_iter(  # type: ignore[call-arg]
                match=f"{settings.key_prefix}:{pattern}", count=1000, target_nodes=node
            )
            found = sum(1 for _ in keys)
            if found:
                counts[node.name] = found
        return counts
    finally:
        client.close()


@pytest.mark.faults
async def test_master_killed_while_the_sink_writes(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    ports = [local_stack.free_port() for _ in range(6)]
    cluster = await asyncio.to_thread(rc.start_redis_cluster, tmp_path / "cluster", ports)
    settings = pipeline_settings(make_settings(redis_url=cluster.url))
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        sending = asyncio.create_task(
            pipeline.simulate(E2E_CONFIG, SendOptions(count=6000, speed=0, rate=250))
        )
        await pipeline.wait_for("the Redis sink to commit", _sink_committed(pipeline), 90, 0.2)
        victim = _busiest_master(cluster)
        killed = time.monotonic()
        rc.kill_node(cluster, victim)
        failover_s = await pipeline.wait_for(
            "a replica to take over", _failed_over(cluster, victim), 60, 0.1
        )
        assert not sending.done(), "the simulator finished before the failover: send longer"
        rc.restart_node(cluster, victim)
        rejoin_s = await asyncio.to_thread(rc.wait_healthy, cluster, 3, 60)
        report, population = await sending
        await pipeline.wait_complete(timeout_s=300)
        complete_s = time.monotonic() - killed
        verdict = await verify(pipeline, report, population)
        assert pipeline.redis_sink is not None
        log = pipeline.redis_sink.log.read_text(errors="replace")
        assert "a Redis Cluster failover: replaying the presence topic" in log
        retries = log.count("retrying") + log.count("Retrying")
    finally:
        pipeline.close()
        rc.stop_redis_cluster(cluster)
    say(
        f"redis master {victim} killed: replica took over in {failover_s:.1f}s, old master back as "
        f"replica {rejoin_s:.1f}s later, pipeline complete {complete_s:.1f}s after the kill; sink "
        f"log retry lines {retries}; {verdict.students} students, {verdict.cells} cells exact"
    )


def _sink_committed(pipeline: Pipeline) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        done = await pipeline.committed(pipeline.s.sink_group_redis, pipeline.s.topic_presence)
        return sum(done.values()) > 0

    return check  # type: ignore[return-value]


def _busiest_master(cluster: rc.RedisClusterInfo) -> int:
    """The master holding the most keys now."""
    sizes = {}
    for port in rc.masters(cluster.nodes[0].port):
        reply = rc.command(port, "DBSIZE")
        sizes[port] = int(reply.strip().lstrip(":"))
    return max(sizes, key=lambda p: sizes[p])


def _failed_over(cluster: rc.RedisClusterInfo, victim: int) -> Callable[[], asyncio.Future[bool]]:
    async def check() -> bool:
        live = [n.port for n in cluster.nodes if n.port != victim]
        if any(rc.cluster_info(p).get("cluster_state") != "ok" for p in live):
            return False
        seen = rc.masters(live[0])
        return len(seen) == 3 and victim not in seen

    return check  # type: ignore[return-value]
