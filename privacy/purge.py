"""``csync purge --district D``: dispose of every trace of a district's students (privacy policy, Disposal).

What holds district data, and how each store is purged:

- **Redis** (CONTRACT §4): ``{prefix}:presence:{D}:*`` hashes and ``{prefix}:class:{D}:*`` sets, found with SCAN
  and UNLINKed. Done last and repeated in the settle loop, because the Redis sink may still apply a change the
  worker emitted just before the purge.
- **roster.v1** (compacted): a tombstone for every key ``D:*`` whose latest value is a record. Compaction then
  removes the records; the tombstones themselves go after ``delete.retention.ms`` (1 day).
- **Worker state** (``streams``): the worker keeps no per-student changelog, so tombstones cannot reach it. A
  roster tombstone is the signal the worker already honours (``streams.presence.apply_roster`` drops the
  student and emits a ``deleted`` change), so every student of D seen anywhere (roster, presence topic, Redis)
  gets one, even without a roster record. Once a partition's latest snapshot in ``topic_worker_state`` holds
  nothing of D (:func:`privacy.worker_forget.district_entries`), every older record of that partition is
  deleted (Kafka DeleteRecords), taking the older snapshots with it. Until the lead wires
  :func:`privacy.worker_forget.forget_student` into the roster-tombstone path, per-device usage state lasts
  until ``USAGE_EVICT_AFTER_S``: the report then says *pending* and a re-run finishes the job.
- **Presence topic** (internal, ``compact,delete``): for every key ``D:*`` with a live value, a ``deleted``
  presence change and then a tombstone. The ``deleted`` change matters: the Redis sink ignores tombstones, and
  when Redis restarts empty it replays the topic from the start — before compaction has run that replay would
  otherwise resurrect the district; with the ``deleted`` change after the old records, the replay ends deleted.
- **DLQ** — *let expire*. Rejected records are raw bytes that may hold a district's identifiers (and possibly
  fields that minimisation would have dropped); Kafka cannot delete single records of a ``delete``-policy topic,
  and rewriting the DLQ without them would have to delete every other district's records too. Its retention is
  short (``RETENTION_DLQ_MS``) and checked against the broker by ``csync retention``; the purge counts D's
  records and prints the time by which the last is gone: newest record time + ``retention.ms`` +
  ``segment.ms`` (a segment is deleted only after it rolls).
- **Raw input** ``device-activity.v1`` — *short retention, and no reader keeps it*. Crypto-shredding (a key per
  district, destroyed on purge) would change the public record format of CONTRACT §1/§2 that kcat and district
  producers write, so it is not an option for v1. Instead: retention ``RETENTION_ACTIVITY_MS`` (checked by
  ``csync retention``), and the only reader is the stream worker, whose state is purged above (a registry test,
  ``tests/unit/privacy/test_raw_readers.py``, fails when a new module starts reading raw input). The purge reports
  the time by which raw records written up to now are gone.
- **Usage rollups** (topic ``usage-cells``, ClickHouse): no district, school or student identifier, tokens under
  daily keys that are destroyed; nothing to remove. The daily-key topic holds no district data either.

A purge is idempotent and safe to re-run; a dry run only counts. Revoke the district's collector token first so
no new data arrives while it runs. Every run (dry or not) is appended to the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from csync.kafka_client import consumer_options, kafka_options, producer_options
from csync.redis_client import AnyRedis, redis_client
from csync.settings import Settings
from privacy.audit import AuditLog
from privacy.kafka_scan import (
    Latest,
    latest_by_key,
    new_reader,
    partitions_of,
    scan_records,
    topic_configs,
)
from privacy.worker_forget import district_entries
from schemas.internal import InternalFormatError, PresenceChange
from schemas.roster import is_valid_id
from streams.batch_log import SNAPSHOT_KEY  # the worker's snapshot record key

DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000  # Kafka's default segment.ms


@dataclass(slots=True)
class StoreResult:
    """What the purge found and did in one store."""

    store: str
    found: int = 0
    removed: int = 0
    remaining: int = 0
    note: str = ""


@dataclass(slots=True)
class PurgeReport:
    """The outcome of one purge run."""

    district: str
    dry_run: bool
    stores: list[StoreResult] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Nothing of the district is left in a store we can delete from (expiring stores excluded)."""
        return all(s.remaining == 0 for s in self.stores if not s.store.endswith("(expires)"))

    def store(self, name: str) -> StoreResult:
        return next(s for s in self.stores if s.store == name)

    def lines(self) -> list[str]:
        head = "DRY RUN — nothing changed" if self.dry_run else "purge"
        out = [f"{head}: district {self.district}"]
        for s in self.stores:
            line = f"  {s.store:28} found {s.found:6}  removed {s.removed:6}  remaining {s.remaining:6}"
            out.append(line + (f"  {s.note}" if s.note else ""))
        if not self.dry_run:
            out.append("  status: " + ("complete" if self.complete else "PENDING — re-run later"))
        return out


class PurgeError(ValueError):
    """The purge cannot run (bad district id)."""


def presence_key_pattern(prefix: str, district: str) -> str:
    return f"{prefix}:presence:{district}:*"


def class_key_pattern(prefix: str, district: str) -> str:
    return f"{prefix}:class:{district}:*"


async def scan_keys(redis: AnyRedis, pattern: str) -> list[str]:
    """Every key matching ``pattern`` (SCAN, never KEYS: the teacher view keeps serving)."""
    return [
        k.decode() if isinstance(k, bytes) else str(k)
        async for k in redis.scan_iter(match=pattern, count=1000)
    ]


async def _unlink(redis: AnyRedis, keys: list[str]) -> int:
    removed = 0
    for i in range(0, len(keys), 500):
        removed += int(await redis.unlink(*keys[i : i + 500]))
    return removed


def _live(latest: dict[bytes, Latest]) -> dict[bytes, Latest]:
    return {k: v for k, v in latest.items() if v.value is not None}


def _deleted_change(key: bytes, value: bytes) -> PresenceChange:
    district, _, student = key.decode().partition(":")
    try:
        old = PresenceChange.decode(value)
        classes = tuple(dict.fromkeys(old.classes_add + old.classes_remove))
        ts = old.ts
    except InternalFormatError:
        classes, ts = (), 0
    return PresenceChange(district, student, "", False, "", "", ts, (), classes, deleted=True)


class _Purger:
    def __init__(self, settings: Settings, district: str, dry_run: bool) -> None:
        self.s = settings
        self.district = district
        self.dry_run = dry_run
        self.prefix = f"{district}:".encode()
        self.reader: AIOKafkaConsumer = new_reader(
            settings.kafka_bootstrap, **consumer_options(settings)
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            **producer_options(settings),
        )
        self.redis = redis_client(settings)
        self.admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=15000,
            **kafka_options(settings),
        )

    async def __aenter__(self) -> _Purger:
        await self.reader.start()
        await self.producer.start()
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reader.stop()
        await self.producer.stop()
        await self.admin.close()
        await self.redis.aclose()

    # --- Kafka helpers

    async def _tombstone(self, topic: str, keys: Iterable[tuple[bytes, int | None]]) -> int:
        futures = [
            await self.producer.send(topic, None, key=key, partition=partition)
            for key, partition in keys
        ]
        await asyncio.gather(*futures)
        return len(futures)

    async def roster_live(self) -> dict[bytes, Latest]:
        return _live(await latest_by_key(self.reader, self.s.topic_roster, self.prefix))

    async def presence_live(self) -> dict[bytes, Latest]:
        return _live(await latest_by_key(self.reader, self.s.topic_presence, self.prefix))

    async def redis_keys(self) -> tuple[list[str], list[str]]:
        kp = self.s.key_prefix
        return (
            await scan_keys(self.redis, presence_key_pattern(kp, self.district)),
            await scan_keys(self.redis, class_key_pattern(kp, self.district)),
        )

    async def purge_presence_topic(self, live: dict[bytes, Latest]) -> int:
        """``deleted`` change then tombstone for each live key, in the key's partition."""
        futures = []
        for key, latest in live.items():
            assert latest.value is not None  # noqa: S101 - _live filtered
            change = _deleted_change(key, latest.value)
            futures.append(
                await self.producer.send(
                    self.s.topic_presence, change.encode(), key=key, partition=latest.partition
                )
            )
            futures.append(
                await self.producer.send(
                    self.s.topic_presence, None, key=key, partition=latest.partition
                )
            )
        await asyncio.gather(*futures)
        return len(live)

    async def worker_snapshots(self) -> dict[int, tuple[int, int]]:
        """Per partition of the worker state topic: (latest snapshot offset, entries of D in it)."""
        from streams.partition import params_of  # the worker's own decoding of its snapshots
        from streams.snapshot import decode_snapshot

        params = params_of(self.s)
        topic = self.s.topic_worker_state
        found: dict[int, tuple[int, int]] = {}
        for p in await partitions_of(self.reader, topic):
            snap = await self._latest_snapshot(TopicPartition(topic, p))
            if snap is not None:
                offset, raw = snap
                found[p] = (offset, district_entries(decode_snapshot(raw, params), self.district))
        return found

    async def _latest_snapshot(self, tp: TopicPartition) -> tuple[int, bytes] | None:
        begin = (await self.reader.beginning_offsets([tp]))[tp]
        end = (await self.reader.end_offsets([tp]))[tp]
        window = 64
        while True:
            start = max(begin, end - window)
            last: tuple[int, bytes] | None = None
            async for m in scan_records(self.reader, tp.topic, {tp.partition: start}):
                if m.key == SNAPSHOT_KEY:
                    last = (m.offset, m.value)
            if last is not None or start == begin:
                return last
            window *= 8

    async def delete_before(self, topic: str, offsets: dict[int, int]) -> int:
        """DeleteRecords below ``offsets[partition]``; returns how many records went."""
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        begins = await self.reader.beginning_offsets(list(tps))
        todo = {tp: RecordsToDelete(o) for tp, o in tps.items() if begins[tp] < o}
        if not todo:
            return 0
        await self.admin.delete_records(todo)
        return sum(tps[tp] - begins[tp] for tp in todo)

    async def count_dlq(self) -> tuple[int, int]:
        """(records of D in the DLQ, timestamp ms of the newest)."""
        count, newest = 0, 0
        needle = b'"district_id":"' + self.district.encode() + b'"'
        async for m in scan_records(self.reader, self.s.topic_dlq):
            key_match = m.key is not None and m.key.startswith(self.prefix)
            value = m.value or b""
            if key_match or needle in value.replace(b" ", b""):
                count += 1
                newest = max(newest, int(m.timestamp))
        return count, newest


def _expiry_note(configs: dict[str, str], newest_ms: int) -> str:
    retention = int(configs.get("retention.ms", "-1"))
    segment = int(configs.get("segment.ms", str(DEFAULT_SEGMENT_MS)))
    if retention < 0:
        return "retention.ms=-1: NEVER expires"
    gone = dt.datetime.fromtimestamp((newest_ms + retention + segment) / 1000, dt.UTC)
    return f"let expire: retention.ms={retention} + segment.ms={segment} → gone by {gone:%Y-%m-%dT%H:%MZ}"


async def purge_district(
    settings: Settings,
    district: str,
    *,
    dry_run: bool = False,
    settle_s: float = 10.0,
    who: str = "operator",
    audit: AuditLog | None = None,
) -> PurgeReport:
    """Purge (or with ``dry_run`` only count) every trace of ``district``; see the module docstring."""
    if not is_valid_id(district):
        raise PurgeError("district id must be 1-64 chars of [A-Za-z0-9_.-]")
    s = settings
    report = PurgeReport(district, dry_run)
    async with _Purger(s, district, dry_run) as p:
        roster = await p.roster_live()
        presence = await p.presence_live()
        hashes, classes = await p.redis_keys()
        students = {k.partition(b":")[2] for k in [*roster, *presence]}
        students |= {h.rsplit(":", 1)[1].encode() for h in hashes}
        signals = sorted(students - {k.partition(b":")[2] for k in roster})
        r_roster = StoreResult("roster.v1", found=len(roster))
        r_presence = StoreResult("presence topic", found=len(presence))
        r_redis = StoreResult("redis", found=len(hashes) + len(classes))
        r_worker = StoreResult("worker state")
        report.stores += [r_roster, r_presence, r_redis, r_worker]
        if not dry_run:
            r_roster.removed = await p._tombstone(
                s.topic_roster, [(k, v.partition) for k, v in roster.items()]
            )
            # A tombstone for students seen only in presence or Redis: the worker forgets them too.
            await p._tombstone(s.topic_roster, [(p.prefix + st, None) for st in signals])
            r_roster.note = f"+{len(signals)} forget signals" if signals else ""
            r_presence.removed = await p.purge_presence_topic(presence)
        deadline = time.monotonic() + settle_s
        again: dict[bytes, Latest] = {}
        while True:
            snaps = await p.worker_snapshots()
            pending = {part: n for part, (_o, n) in snaps.items() if n}
            r_worker.found = max(r_worker.found, sum(pending.values()))
            if not dry_run:
                clean = {part: off for part, (off, n) in snaps.items() if n == 0}
                r_worker.removed += await p.delete_before(s.topic_worker_state, clean)
                # The worker answers the tombstones with `deleted` changes: tombstone those too.
                again = await p.presence_live()
                r_presence.removed += await p.purge_presence_topic(again)
                hashes, classes = await p.redis_keys()
                r_redis.removed += await _unlink(p.redis, hashes + classes)
                again_roster = await p.roster_live()
                await p._tombstone(
                    s.topic_roster, [(k, v.partition) for k, v in again_roster.items()]
                )
            r_worker.remaining = sum(pending.values())
            settled = not pending and not dry_run and not again and not hashes and not classes
            if dry_run or settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(1.0, s.worker_snapshot_s / 2))
        if not snaps:
            r_worker.note = "no worker snapshots found"
        elif r_worker.remaining:
            r_worker.note = (
                "worker still holds entries (usage state evicts after USAGE_EVICT_AFTER_S)"
            )
        # Verification: a second, independent scan of every store.
        r_roster.remaining = len(await p.roster_live())
        r_presence.remaining = len(await p.presence_live())
        hashes, classes = await p.redis_keys()
        r_redis.remaining = len(hashes) + len(classes)
        configs = await topic_configs(
            s.kafka_bootstrap, [s.topic_dlq, s.topic_activity], **kafka_options(s)
        )
        dlq_count, dlq_newest = await p.count_dlq()
        report.stores.append(
            StoreResult(
                "dlq (expires)",
                found=dlq_count,
                remaining=dlq_count,
                note=_expiry_note(configs.get(s.topic_dlq, {}), dlq_newest) if dlq_count else "",
            )
        )
        now_ms = int(time.time() * 1000)
        report.stores.append(
            StoreResult(
                "raw activity (expires)",
                note=_expiry_note(configs.get(s.topic_activity, {}), now_ms)
                + " (not scanned; no reader keeps it)",
            )
        )
        report.stores.append(
            StoreResult("usage rollups", note="no district identity: nothing to remove")
        )
    if audit is not None:
        detail: dict[str, object] = {}
        for r in report.stores:
            tag = r.store.split(" (")[0].replace(" ", "_").replace(".", "_")
            detail[f"{tag}_found"] = r.found
            detail[f"{tag}_removed"] = r.removed
            detail[f"{tag}_remaining"] = r.remaining
        audit.append(
            who,
            "purge.dry-run" if dry_run else "purge",
            f"district:{district}",
            status="dry-run" if dry_run else ("complete" if report.complete else "pending"),
            detail=detail,
        )
    return report
