"""Any number of ``csync worker`` processes on 8 partitions gives exactly the simulator's truth.

Each count (1, 2, 3, 5, 8 workers) runs the whole pipeline — simulator (roster first, then events
with duplicates, reordering and invalid ones) → N workers → the Redis and ClickHouse sinks — and
compares Redis (every student's name, online, app, sub_app, ts; every class set) and ClickHouse
(active_ms and distinct students per cell, the analysts' view) with the truth. Counts that do not
divide 8 are the ones where Kafka's round-robin assignor put roster partition ``p`` on another
worker than activity partition ``p`` and names and class sets were lost.

The rolling scenario changes the group while events flow: 3 workers, 2 more join (5), then 3
leave with a clean stop (2): every rebalance moves partitions and their roster with them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from producers.simulator import SendOptions
from producers.simulator_model import SimulationConfig, Student
from schemas.roster import roster_key
from schemas.routing import partition_for_key
from tests.integration.e2e_harness import Pipeline, pipeline_settings, say, verify

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.clickhouse,
    pytest.mark.timeout(420),
]

PARTITIONS = 8
# 1 district, 2 schools, 52 students in 8 classes: students on every one of the 8 partitions.
CONFIG = SimulationConfig(
    seed=13, districts=1, schools_per_district=2, classes_per_school=4, students_per_class=20,
    dup_rate=0.03, reorder_rate=0.05, invalid_rate=0.01,
)  # fmt: skip


def scale_settings(make_settings: Callable[..., Settings]) -> Settings:
    return pipeline_settings(make_settings(partitions=PARTITIONS))


async def wait_workers_ready(pipeline: Pipeline, count: int, timeout_s: float = 120) -> None:
    """The group is stable with ``count`` members, dealt by the co-partitioning assignor."""

    async def dealt() -> bool:
        state, protocol, members = await pipeline.group_state(pipeline.s.worker_group)
        if state == "Stable" and members == count:
            assert protocol == "csync-copartitioned"
            return True
        return False

    await pipeline.wait_for(f"{count} workers in the group", dealt, timeout_s)


def partition_of(student: Student) -> int:
    return partition_for_key(roster_key(student.district_id, student.student_id), PARTITIONS)


async def tombstones_are_applied_on_every_partition(
    pipeline: Pipeline, population: list[Student]
) -> None:
    """A roster tombstone (a purge, a student who left) on each partition removes the student's
    hash and class memberships."""
    gone = {partition_of(st): st for st in population}
    assert sorted(gone) == list(range(PARTITIONS)), "the population must cover every partition"
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.s.kafka_bootstrap)
    await producer.start()
    try:
        for st in gone.values():
            await producer.send_and_wait(
                pipeline.s.topic_roster, None, key=roster_key(st.district_id, st.student_id)
            )
    finally:
        await producer.stop()
    left = {(st.district_id, st.student_id) for st in gone.values()}

    async def removed() -> bool:
        state = pipeline.read_redis()
        members = {(d, s) for (d, _c), ids in state.classes.items() for s in ids}
        return not (left & set(state.presence)) and not (left & members)

    await pipeline.wait_for("tombstones on every partition to be applied", removed, 60)


@pytest.mark.parametrize("workers", [1, 2, 3, 5, 8])
async def test_worker_count_gives_the_truth(
    workers: int, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = scale_settings(make_settings)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    started = time.monotonic()
    try:
        await pipeline.provision()
        pipeline.start_all(workers=workers)
        await wait_workers_ready(pipeline, workers)
        report, population = await pipeline.simulate(
            CONFIG, SendOptions(count=3000, speed=0, rate=1500)
        )
        await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
        await tombstones_are_applied_on_every_partition(pipeline, population)
    finally:
        pipeline.close()
    assert verdict.students == len(population) and verdict.cells > 0
    say(f"{workers} workers on {PARTITIONS} partitions: exact, {time.monotonic() - started:.0f}s")


@pytest.mark.faults
async def test_rolling_scale_up_and_down_while_events_flow(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = scale_settings(make_settings)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.provision()
        pipeline.start_all(workers=3)
        await wait_workers_ready(pipeline, 3)
        sending = asyncio.create_task(
            pipeline.simulate(CONFIG, SendOptions(count=6000, speed=0, rate=300))
        )
        await asyncio.sleep(4)
        pipeline.start_worker(3)
        pipeline.start_worker(4)
        await wait_workers_ready(pipeline, 5)
        say(f"5 workers (sending done: {sending.done()})")
        await asyncio.sleep(3)
        for index in (0, 1, 2):  # a rolling removal: one clean stop after another
            proc = pipeline.workers[index]
            pipeline.expected_dead.add(proc.pid)
            assert await asyncio.to_thread(proc.stop) == 0, proc.tail()
        await wait_workers_ready(pipeline, 2)
        say(f"2 workers (sending done: {sending.done()})")
        report, population = await sending
        await pipeline.wait_complete()
        await verify(pipeline, report, population)
    finally:
        pipeline.close()
