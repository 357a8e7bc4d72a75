"""``csync purge``: every trace of one district goes, the other district's data stays exactly as it was.

Districts ``d1`` (purged) and ``d10`` (kept) share a prefix on purpose: a purge matching ``d1*`` instead of
``d1:`` would show here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from csync.redis_client import redis_client
from csync.settings import Settings
from csync.topics import create_topics, worker_topic_specs
from privacy.audit import AuditLog
from privacy.kafka_scan import latest_by_key, new_reader, scan_records
from privacy.purge import PurgeError, purge_district
from privacy.worker_forget import district_entries
from schemas.internal import PresenceChange
from schemas.roster import make_record, roster_key
from sinks.redis_presence import RedisPresenceSink
from streams.batch_log import SNAPSHOT_KEY
from streams.partition import new_state, params_of
from streams.presence import new_student
from streams.snapshot import decode_snapshot, encode_snapshot
from streams.usage import DeviceUsage

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

GONE, KEPT = "d1", "d10"
ROSTER = {
    (GONE, "s1"): ("Ada Lovelace", ["c-1"]),
    (GONE, "s2"): ("Alan Turing", ["c-1", "c-2"]),
    (KEPT, "s1"): ("Grace Hopper", ["c-1"]),
    (KEPT, "s9"): ("Edsger Dijkstra", ["c-7"]),
}
# Presence of d1:s3 exists although s3 has no roster record (events before the roster arrived).
PRESENCE = [(GONE, "s1", "c-1"), (GONE, "s3", ""), (KEPT, "s1", "c-1"), (KEPT, "s9", "c-7")]


def _snapshot(partition: int, settings: Settings, students: list[tuple[str, str]]) -> bytes:
    state = new_state(partition, params_of(settings))
    for district, student in students:
        state.presence.states[f"{district}:{student}"] = new_student(district, student)._replace(
            name="X", classes=("c-1",)
        )
        state.usage.devices[(district, student, "dev-1")] = DeviceUsage()
    return encode_snapshot(state)


async def _seed(settings: Settings) -> None:
    await create_topics(settings, worker_topic_specs(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        futures = []
        for (district, student), (name, classes) in ROSTER.items():
            value = make_record(name, classes).encode()
            futures.append(
                await producer.send(settings.topic_roster, value, key=roster_key(district, student))
            )
        for district, student, cls in PRESENCE:
            change = PresenceChange(
                district, student, "N", True, "math", "fractions", 1000, (cls,) if cls else ()
            )
            futures.append(
                await producer.send(settings.topic_presence, change.encode(), key=change.key)
            )
        dlq = [(b"d1:s1", b'{"v":1,"district_id":"d1"}'), (None, b'{"district_id": "d1"}')]
        dlq.append((b"d10:s1", b'{"v":1,"district_id":"d10"}'))
        for key, raw in dlq:
            futures.append(await producer.send(settings.topic_dlq, raw, key=key))
        # Worker state: partition 0 has an old snapshot with d1 and a newer clean one; partition 1 only d10.
        state_topic = settings.topic_worker_state
        old = _snapshot(0, settings, [(GONE, "s1"), (KEPT, "s1")])
        new = _snapshot(0, settings, [(KEPT, "s1")])
        for partition, raw in ((0, old), (0, new), (1, _snapshot(1, settings, [(KEPT, "s9")]))):
            futures.append(
                await producer.send(state_topic, raw, key=SNAPSHOT_KEY, partition=partition)
            )
        futures.append(await producer.send(state_topic, b"[0]", key=b"intent", partition=0))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    redis = redis_client(settings)
    try:
        sink = RedisPresenceSink(redis, key_prefix=settings.key_prefix, rewind_when_empty=False)
        for district, student, cls in PRESENCE:
            sink.add_change(
                PresenceChange(
                    district, student, "N", True, "math", "f", 1000, (cls,) if cls else ()
                )
            )
        await sink.flush()
    finally:
        await redis.aclose()


async def _redis_dump(settings: Settings) -> dict[str, Any]:
    redis = redis_client(settings, decode_responses=True)
    try:
        out: dict[str, Any] = {}
        async for key in redis.scan_iter(match=f"{settings.key_prefix}:*"):
            kind = await redis.type(key)
            if kind == "hash":
                out[key] = await redis.hgetall(key)
            elif kind == "set":
                out[key] = sorted(await redis.smembers(key))
        return out
    finally:
        await redis.aclose()


async def _latest(settings: Settings, topic: str) -> dict[bytes, bytes | None]:
    reader = new_reader(settings.kafka_bootstrap)
    await reader.start()
    try:
        return {k: v.value for k, v in (await latest_by_key(reader, topic)).items()}
    finally:
        await reader.stop()


async def _snapshots(settings: Settings) -> list[tuple[int, int, int]]:
    """(partition, offset, entries of d1) of every snapshot still in the worker state topic."""
    reader = new_reader(settings.kafka_bootstrap)
    await reader.start()
    try:
        params = params_of(settings)
        return [
            (m.partition, m.offset, district_entries(decode_snapshot(m.value, params), GONE))
            async for m in scan_records(reader, settings.topic_worker_state)
            if m.key == SNAPSHOT_KEY
        ]
    finally:
        await reader.stop()


def _of(mapping: dict[Any, Any], district: str) -> dict[Any, Any]:
    def owner(key: Any) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        parts = text.split(":")
        return parts[0] if isinstance(key, bytes) else parts[2]

    return {k: v for k, v in mapping.items() if owner(k) == district}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], unique: str) -> Settings:
    return make_settings(
        topic_worker_state=f"t{unique}-worker-state.v1", topic_day_keys=f"t{unique}-day-keys.v1"
    )


async def test_purge_removes_one_district_everywhere_and_leaves_the_other(
    settings: Settings, tmp_path: Path
) -> None:
    await _seed(settings)
    audit = AuditLog(tmp_path / "audit.log")
    redis_before = await _redis_dump(settings)
    roster_before = await _latest(settings, settings.topic_roster)
    presence_before = await _latest(settings, settings.topic_presence)
    assert _of(redis_before, GONE) and _of(redis_before, KEPT)

    dry = await purge_district(settings, GONE, dry_run=True, audit=audit, who="ops")
    assert dry.store("roster.v1").found == 2
    assert dry.store("presence topic").found == 2
    assert dry.store("redis").found == 3  # hashes of s1 and s3, the set of class c-1
    assert await _redis_dump(settings) == redis_before  # a dry run changes nothing
    assert await _latest(settings, settings.topic_roster) == roster_before

    report = await purge_district(settings, GONE, audit=audit, who="ops", settle_s=5)
    assert report.complete, report.lines()
    assert report.store("roster.v1").removed == 2
    assert report.store("presence topic").removed == 2
    assert report.store("redis").removed == 3
    assert report.store("worker state").removed >= 1  # the old snapshot holding d1
    assert report.store("dlq (expires)").found == 2
    assert "gone by" in report.store("dlq (expires)").note

    # A second, independent scan finds nothing of d1 ...
    redis_after = await _redis_dump(settings)
    roster_after = await _latest(settings, settings.topic_roster)
    presence_after = await _latest(settings, settings.topic_presence)
    assert _of(redis_after, GONE) == {}
    assert all(v is None for v in _of(roster_after, GONE).values())
    assert set(_of(roster_after, GONE)) >= {b"d1:s1", b"d1:s2", b"d1:s3"}  # s3: the forget signal
    assert all(v is None for v in _of(presence_after, GONE).values())
    assert [s for s in await _snapshots(settings) if s[2]] == []
    # ... while d10 is untouched in every store.
    assert _of(redis_after, KEPT) == _of(redis_before, KEPT)
    assert _of(roster_after, KEPT) == _of(roster_before, KEPT)
    assert _of(presence_after, KEPT) == _of(presence_before, KEPT)
    assert {(p, n) for p, _o, n in await _snapshots(settings)} == {(0, 0), (1, 0)}

    again = await purge_district(settings, GONE, dry_run=True)
    assert [(s.store, s.found) for s in again.stores if s.found and "expires" not in s.store] == []

    entries = [e for e in audit.entries() if e["target"] == "district:d1"]
    assert [e["action"] for e in entries] == ["purge.dry-run", "purge"]
    assert entries[1]["status"] == "complete"
    assert entries[1]["detail"]["roster_v1_removed"] == 2
    assert "Ada" not in (tmp_path / "audit.log").read_text()


async def test_purge_reports_pending_while_the_worker_still_holds_the_district(
    settings: Settings, tmp_path: Path
) -> None:
    await create_topics(settings, worker_topic_specs(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        raw = _snapshot(2, settings, [(GONE, "s1"), (KEPT, "s1")])
        await producer.send_and_wait(
            settings.topic_worker_state, raw, key=SNAPSHOT_KEY, partition=2
        )
    finally:
        await producer.stop()
    audit = AuditLog(tmp_path / "audit.log")
    report = await purge_district(settings, GONE, audit=audit, settle_s=0)
    assert not report.complete
    assert report.store("worker state").remaining == 2  # presence + one device
    assert report.store("worker state").removed == 0  # the only snapshot is never deleted
    assert "PENDING" in "\n".join(report.lines())
    assert audit.tail(1)[0]["status"] == "pending"


async def test_purge_refuses_a_district_id_that_could_match_others(settings: Settings) -> None:
    for bad in ("d*", "", "d1:s1", "x" * 65):
        with pytest.raises(PurgeError):
            await purge_district(settings, bad, dry_run=True)
