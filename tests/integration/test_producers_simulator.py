"""The simulator against the real broker: keys, partitions, envelopes, roster, acknowledged truth."""

from __future__ import annotations

import io
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from csync.settings import Settings
from producers import simulator
from producers.simulator import SendOptions, run_simulation
from producers.simulator_model import SimulationConfig
from producers.truth import TruthParams, ground_truth
from schemas.decoder import decode_record
from schemas.event import ActivityEvent
from schemas.roster import decode_roster
from schemas.routing import partition_for_key

Record = tuple[int, bytes | None, bytes | None, dict[str, bytes]]


async def read_all(settings: Settings, topic: str) -> list[Record]:
    """Every record of ``topic``: (partition, key, value, headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + 30

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            assert time.monotonic() < deadline, "timed out reading back"
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                records.extend(
                    (tp.partition, m.key, m.value, dict(m.headers or ())) for m in messages
                )
        return records
    finally:
        await consumer.stop()


def _per_student(events: list[ActivityEvent]) -> dict[str, list[ActivityEvent]]:
    students: dict[str, list[ActivityEvent]] = {}
    for event in events:
        students.setdefault(event.student_key, []).append(event)
    return students


CONFIG = SimulationConfig(
    seed=11, schools_per_district=1, classes_per_school=2, students_per_class=15,
    dup_rate=0.02, reorder_rate=0.05, invalid_rate=0.01,
)  # fmt: skip


@pytest.mark.kafka
@pytest.mark.parametrize("single", [False, True], ids=["envelopes", "single"])
@pytest.mark.parametrize("streamed", [False, True], ids=["prepared", "streamed"])
async def test_simulator_sends_what_its_truth_says(
    kafka_settings: Settings, single: bool, streamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if streamed:
        # Generated while sending (as a count too large to prepare is), in several steps whose
        # envelopes carry over from one step to the next.
        monkeypatch.setattr(simulator, "MAX_ITEMS_AHEAD", 0)
        monkeypatch.setattr(simulator, "UNPACED_BATCH", 700)
    options = SendOptions(count=3000, speed=0, single=single)
    report = await run_simulation(kafka_settings, CONFIG, options, progress=io.StringIO())
    assert report.events_sent + report.invalid_sent == 3000
    assert len(report.acked_events) == report.events_sent

    now_ms = int(time.time() * 1000)
    records = await read_all(kafka_settings, kafka_settings.topic_activity)
    assert len(records) == report.records_sent
    arrived: list[ActivityEvent] = []
    rejected = 0
    for partition, key, value, _ in records:
        assert value is not None
        if single:
            assert key is not None
            assert partition == partition_for_key(key, kafka_settings.partitions)
        else:
            assert value.startswith(b"[")
        for outcome in decode_record(value, now_ms):
            if outcome.event is None:
                rejected += 1
                continue
            event = outcome.event
            assert partition == partition_for_key(event.student_key.encode(), 4)
            arrived.append(event)
    assert rejected == report.invalid_sent
    assert sorted(arrived) == sorted(report.acked_events)
    # A student's events arrive in the order they were sent (one partition, records in order).
    assert _per_student(arrived) == _per_student(report.acked_events)
    params = TruthParams()
    assert (
        ground_truth(arrived, params, now_ms).cells
        == ground_truth(report.acked_events, params, now_ms).cells
    )

    roster = await read_all(kafka_settings, kafka_settings.topic_roster)
    assert len(roster) == report.roster_records > 0
    for _, key, value, _ in roster:
        assert key is not None and key.startswith(b"d-001:s-")
        record = decode_roster(value)
        assert record is not None and record.name and record.classes


@pytest.mark.kafka
async def test_simulator_paces_a_compressed_school_day(kafka_settings: Settings) -> None:
    options = SendOptions(duration_s=2.0, speed=30, with_roster=False)
    started = time.time()
    report = await run_simulation(kafka_settings, CONFIG, options, progress=io.StringIO())
    elapsed = time.time() - started
    assert 1.5 <= elapsed <= 10
    events = report.acked_events
    span_s = (max(e.ts for e in events) - min(e.ts for e in events)) / 1000
    # 2 wall seconds at speed 30: about a minute of school day, and nothing in the future
    assert 30 <= span_s <= 90
    assert max(e.ts for e in events) <= time.time() * 1000 + 1000
