"""The I/O of ``csync usage rebuild``: the raw topic's horizons and records, and the atomic swap of days.

The swap builds a new generation of ``{db}.app_minute`` — every row of the other days as they are, plus the
rebuilt days' rows — in ``app_minute_rebuild`` and exchanges the two tables in one ``EXCHANGE TABLES``
(atomic), so a reader sees either the old table or the new one, never a half-built day; a run that dies before
the exchange leaves ``app_minute`` untouched (its leftovers are dropped by the next run). The sink's
materialized view writes to ``app_minute`` by name, so it writes to the new generation afterwards. With chDB
the store has one owner: stop the ClickHouse sink first (the worker keeps running; its cells wait in Kafka
and the sink's progress table makes it skip what it had written); with a ClickHouse server stop it too, or
rows it inserts between the copy and the exchange would be lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client

from csync.kafka_client import consumer_options, kafka_options
from csync.settings import Settings
from ops.rebuild import RawRecord
from privacy.kafka_scan import new_reader, partitions_of, scan_records, topic_configs
from schemas.internal import UsageRow
from sinks.migrate import check_identifier

STAGE_COLUMNS = ["minute", "app", "sub_app", "student_token", "active_ms"]


async def raw_horizons(settings: Settings) -> tuple[int, int | None]:
    """``(retention_ms, timestamp of the oldest raw record kept or None when nothing was deleted)``."""
    topic = settings.topic_activity
    retention = int(
        (await topic_configs(settings.kafka_bootstrap, [topic], **kafka_options(settings)))
        .get(topic, {})
        .get("retention.ms", "-1")
    )
    reader = new_reader(settings.kafka_bootstrap, **consumer_options(settings))
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(reader, topic)]
        begins = await reader.beginning_offsets(tps)
        trimmed = {tp.partition: off for tp, off in begins.items() if off > 0}
        first_kept: int | None = None
        for partition, offset in trimmed.items():
            async for m in scan_records(reader, topic, {partition: offset}):
                first_kept = max(first_kept or 0, m.timestamp)
                break
    finally:
        await reader.stop()
    return retention, first_kept


async def read_raw(settings: Settings, since_ms: int) -> list[RawRecord]:
    """Every raw record that arrived at or after ``since_ms`` (log order per partition), up to now's end."""
    topic = settings.topic_activity
    reader = new_reader(settings.kafka_bootstrap, **consumer_options(settings))
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(reader, topic)]
        found = await reader.offsets_for_times(dict.fromkeys(tps, since_ms))
        ends = await reader.end_offsets(tps)
        start = {tp.partition: (o.offset if o is not None else ends[tp]) for tp, o in found.items()}
        return [
            (m.partition, m.offset, m.timestamp, m.key, m.value)
            async for m in scan_records(reader, settings.topic_activity, start)
        ]
    finally:
        await reader.stop()


def swap_days(
    client: Client, db: str, first: dt.date, last: dt.date, rows: Sequence[UsageRow]
) -> None:
    """Replace the rows of ``first..last`` in ``{db}.app_minute`` by ``rows``, atomically."""
    db = check_identifier(db)
    table, generation, stage = f"{db}.app_minute", f"{db}.app_minute_rebuild", f"{db}.rebuild_in"
    for leftover in (generation, stage):  # a run that died before its exchange
        client.command(f"DROP TABLE IF EXISTS {leftover}")
    client.command(f"CREATE TABLE {generation} AS {table}")
    client.command(
        f"CREATE TABLE {stage} (minute DateTime('UTC'), app String, sub_app String, "
        "student_token UInt64, active_ms UInt64) ENGINE = MergeTree ORDER BY tuple()"
    )
    staged = [
        [dt.datetime.fromtimestamp(m, dt.UTC), app, sub, token, ms]
        for m, app, sub, token, ms in rows
    ]
    if staged:
        client.insert(stage, staged, column_names=STAGE_COLUMNS)
    client.command(
        f"INSERT INTO {generation} SELECT * FROM {table} "  # noqa: S608 - checked identifier, dates
        f"WHERE toDate(minute) < toDate('{first.isoformat()}') "
        f"OR toDate(minute) > toDate('{last.isoformat()}')"
    )
    client.command(
        f"INSERT INTO {generation} SELECT minute, app, sub_app, sum(active_ms), "  # noqa: S608
        f"uniqState(student_token) FROM {stage} GROUP BY minute, app, sub_app"
    )
    client.command(f"EXCHANGE TABLES {table} AND {generation}")
    client.command(f"DROP TABLE {generation}")
    client.command(f"DROP TABLE {stage}")
