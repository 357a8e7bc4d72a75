"""``csync retention``: the retention actually in force in every store, checked against settings.

Policy promise: "enforce strict limits on data retention". Settings say what the limits are; this module reads
what the stores really do and flags a store that keeps data longer:

- **Kafka topics** — ``cleanup.policy``, ``retention.ms``, ``segment.ms`` and ``delete.retention.ms`` from the
  broker (admin DescribeConfigs), for every topic the pipeline creates. A ``delete`` topic keeps a record up to
  ``retention.ms`` *after its segment rolls*, so the real bound is ``retention.ms + segment.ms``; a
  ``segment.ms`` longer than the retention is flagged as a warning (the broker default is 7 days). Compacted
  topics without ``delete`` keep the latest record per key until a tombstone (roster, day keys — by design).
- **Redis** — ``PRESENCE_TTL_S`` and the TTLs of a sample of real presence hashes: a hash without a TTL, or with
  more than the setting, is flagged. Class sets have no TTL (CONTRACT §4): the roster owns them.
- **ClickHouse** — the ``TTL`` clause of ``usage.app_minute`` from its DDL, against ``USAGE_TTL_DAYS``.

Rules are pure (:func:`judge_topic`, :func:`judge_ttls`, :func:`judge_table_ttl`); the readers only fetch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from csync.kafka_client import kafka_options
from csync.redis_client import redis_client
from csync.settings import Settings
from csync.topics import TopicSpec
from privacy.kafka_scan import topic_configs
from schemas.clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000
# A purge's tombstones must reach the disk within this long for disposal to have a bound.
MAX_COMPACTION_LAG_MS = 7 * 24 * 3600 * 1000
OK, WARN, EXCEEDS, MISSING = "ok", "warn", "EXCEEDS", "missing"


@dataclass(frozen=True, slots=True)
class RetentionRow:
    """The retention of one store: what settings want, what is in force, and the verdict."""

    store: str
    wanted: str
    actual: str
    status: str
    note: str = ""


def _ms(value: int) -> str:
    if value < 0:
        return "forever"
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("min", MINUTE_MS), ("s", SECOND_MS)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}ms"


def judge_topic(spec: TopicSpec, actual: dict[str, str] | None) -> RetentionRow:
    """Compare a topic's broker config with the spec settings derive (pure)."""
    store = f"kafka {spec.name}"
    want_policy = spec.config.get("cleanup.policy", "delete")
    want_ms = int(spec.config.get("retention.ms", "-1"))
    wanted = f"{want_policy} {_ms(want_ms)}" if "delete" in want_policy else want_policy
    if actual is None:
        return RetentionRow(store, wanted, "-", MISSING, "topic does not exist")
    policy = actual.get("cleanup.policy", "delete")
    ms = int(actual.get("retention.ms", "-1"))
    segment = int(actual.get("segment.ms", str(DEFAULT_SEGMENT_MS)))
    shown = f"{policy} {_ms(ms)} segment {_ms(segment)}"
    if "delete" in want_policy:
        if "delete" not in policy or ms < 0:
            return RetentionRow(store, wanted, shown, EXCEEDS, "records never expire")
        if ms > want_ms:
            return RetentionRow(store, wanted, shown, EXCEEDS, f"retention.ms {ms} > {want_ms}")
        if segment > ms:
            return RetentionRow(
                store,
                wanted,
                shown,
                WARN,
                f"a record may live up to retention + segment.ms = {_ms(ms + segment)}; "
                "set segment.ms <= retention.ms",
            )
        return RetentionRow(store, wanted, shown, OK, f"bound {_ms(ms + segment)}")
    if policy != want_policy:
        return RetentionRow(
            store, wanted, shown, EXCEEDS, f"cleanup.policy {policy} != {want_policy}"
        )
    tomb = actual.get("delete.retention.ms", "?")
    lag = int(actual.get("max.compaction.lag.ms", str(2**63 - 1)))
    if lag > MAX_COMPACTION_LAG_MS:
        # A tombstone hides a purged record at once, but the bytes stay on disk until the cleaner compacts
        # the segment, which only a bounded max.compaction.lag.ms (and segment.ms) forces.
        note = f"purged records stay on disk until compaction: max.compaction.lag.ms={_ms(lag) if lag < 2**62 else 'unbounded'}"
        return RetentionRow(store, wanted, f"{policy}", WARN, note)
    note = f"latest per key until a tombstone; compaction within {_ms(lag)}; tombstones {tomb} ms"
    return RetentionRow(store, wanted, f"{policy}", OK, note)


def judge_ttls(ttls: list[int], ttl_s: int) -> RetentionRow:
    """Sampled Redis TTLs (``-1`` = none, ``-2`` = gone meanwhile) against ``PRESENCE_TTL_S`` (pure)."""
    wanted = f"TTL {ttl_s}s"
    live = [t for t in ttls if t != -2]
    if not live:
        return RetentionRow("redis presence hashes", wanted, "no keys sampled", OK, "")
    forever = sum(1 for t in live if t == -1)
    actual = f"max sampled TTL {max(live)}s of {len(live)} keys"
    if forever:
        return RetentionRow(
            "redis presence hashes", wanted, actual, EXCEEDS, f"{forever} without TTL"
        )
    if max(live) > ttl_s:
        return RetentionRow("redis presence hashes", wanted, actual, EXCEEDS, "TTL above setting")
    return RetentionRow("redis presence hashes", wanted, actual, OK, "")


_TTL_RE = re.compile(r"TTL\s+minute\s*\+\s*toIntervalDay\((\d+)\)", re.IGNORECASE)
_TTL_RE_PLAIN = re.compile(r"TTL\s+minute\s*\+\s*INTERVAL\s+(\d+)\s+DAY", re.IGNORECASE)


def table_ttl_days(ddl: str) -> int | None:
    """The day count of ``TTL minute + INTERVAL N DAY`` in a table's DDL, or ``None`` when there is no TTL."""
    match = _TTL_RE.search(ddl) or _TTL_RE_PLAIN.search(ddl)
    return int(match[1]) if match else None


def judge_table_ttl(table: str, ddl: str | None, ttl_days: int) -> RetentionRow:
    """A ClickHouse table's TTL against ``USAGE_TTL_DAYS`` (pure)."""
    store = f"clickhouse {table}"
    wanted = f"TTL {ttl_days}d"
    if ddl is None:
        return RetentionRow(store, wanted, "-", MISSING, "table does not exist (not migrated)")
    days = table_ttl_days(ddl)
    if days is None:
        return RetentionRow(store, wanted, "no TTL", EXCEEDS, "rows never expire")
    status = EXCEEDS if days > ttl_days else OK
    return RetentionRow(store, wanted, f"TTL {days}d", status, "de-identified rollups")


async def kafka_rows(settings: Settings, specs: list[TopicSpec]) -> list[RetentionRow]:
    """One row per topic, from the broker's configs."""
    configs = await topic_configs(
        settings.kafka_bootstrap, [s.name for s in specs], **kafka_options(settings)
    )
    return [judge_topic(spec, configs.get(spec.name)) for spec in specs]


async def redis_rows(settings: Settings, sample: int = 50) -> list[RetentionRow]:
    """TTLs of up to ``sample`` presence hashes, and the class sets' rule."""
    redis = redis_client(settings)
    try:
        keys: list[bytes] = []
        async for key in redis.scan_iter(match=f"{settings.key_prefix}:presence:*", count=500):
            keys.append(key)
            if len(keys) >= sample:
                break
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.ttl(key)
        ttls = [int(t) for t in await pipe.execute()] if keys else []
    finally:
        await redis.aclose()
    return [
        judge_ttls(ttls, settings.presence_ttl_s),
        RetentionRow(
            "redis class sets",
            "roster-driven",
            "no TTL",
            OK,
            "student ids only; removed by roster tombstones and csync purge",
        ),
    ]


def clickhouse_rows(settings: Settings) -> list[RetentionRow]:
    """The TTL of ``app_minute`` from its DDL (the public view is a view: it stores nothing)."""
    from sinks.clickhouse_client import ChdbPathBusy, clickhouse_client
    from sinks.migrate import check_identifier

    db = check_identifier(settings.clickhouse_database)
    table = f"{db}.app_minute"
    try:
        client = clickhouse_client(settings.clickhouse_url)
    except ChdbPathBusy as exc:
        return [
            RetentionRow(
                f"clickhouse {table}", f"TTL {settings.usage_ttl_days}d", "?", WARN, str(exc)
            )
        ]
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = 'app_minute'",
        parameters={"d": db},
    ).result_rows[0][0]
    ddl = str(client.command(f"SHOW CREATE TABLE {table}")) if exists else None
    return [judge_table_ttl(table, ddl, settings.usage_ttl_days)]


def audit_row(settings: Settings) -> RetentionRow:
    """The audit log keeps at most ``(AUDIT_KEEP_FILES + 1) × AUDIT_MAX_BYTES`` (it holds no student data)."""
    cap = (settings.audit_keep_files + 1) * settings.audit_max_bytes
    return RetentionRow("audit log", f"<= {cap} bytes", "size-rotated", OK, "no student data")


async def retention_report(
    settings: Settings, *, clickhouse: bool = True, sample: int = 50
) -> list[RetentionRow]:
    """Every store's retention row (Kafka, Redis, ClickHouse, audit)."""
    from csync.topics import worker_topic_specs  # the worker's internal topics too

    rows = await kafka_rows(settings, worker_topic_specs(settings))
    rows += await redis_rows(settings, sample)
    if clickhouse:
        rows += clickhouse_rows(settings)
    rows.append(audit_row(settings))
    return rows


def format_rows(rows: list[RetentionRow]) -> list[str]:
    """A plain table for the terminal."""
    header = ("store", "wanted", "in force", "status", "note")
    table = [header, *[(r.store, r.wanted, r.actual, r.status, r.note) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in table
    ]
