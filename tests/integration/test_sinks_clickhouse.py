"""ClickHouse sink against the real embedded engine (chDB): schema, dedup on replay, failures, the public view.

chDB allows one data path per process, so the whole session shares one path; every test gets its own
database.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client

from schemas.internal import UsagePartial, UsageRow
from sinks.clickhouse_client import clickhouse_client
from sinks.clickhouse_sink import ClickHouseUsageSink
from sinks.faults import FaultySink, SimulatedCrash, SinkFaults
from sinks.migrate import migrate
from sinks.shape import FlushResult, PermanentSinkError

pytestmark = pytest.mark.clickhouse

TOPIC = "cs-usage-cells.v1"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="session")
def chdb_client(chdb_path: Path) -> Client:
    """On the session's one chDB path (tests/conftest.py): chDB allows one path per process."""
    return clickhouse_client(f"chdb://{chdb_path}")


@pytest.fixture
def db(chdb_client: Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    migrate(chdb_client, name, ttl_days=730, k_anonymity=10)
    yield name
    chdb_client.command(f"DROP DATABASE IF EXISTS {name}")


def record(partition: int, offset: int, rows: list[UsageRow]) -> ConsumerRecord[bytes, bytes]:
    value = UsagePartial(partition, offset * 10, offset * 10 + 9, tuple(rows)).encode()
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, None, value, None, 0, len(value), [])


def make_records(n_records: int, partitions: int = 3) -> list[ConsumerRecord[bytes, bytes]]:
    """Deterministic usage partials spread over partitions; offsets contiguous per partition."""
    out = []
    next_offset = [0] * partitions
    for i in range(n_records):
        p = i % partitions
        rows: list[UsageRow] = [
            (T0 + 60 * (j % 5), "docs" if j % 2 else "web", f"s{j % 3}", 1000 + i * 7 + j, 500 + j)
            for j in range(4)
        ]
        out.append(record(p, next_offset[p], rows))
        next_offset[p] += 1
    return out


def expected(
    records: list[ConsumerRecord[bytes, bytes]],
) -> dict[tuple[int, str, str], tuple[int, int]]:
    ms: dict[tuple[int, str, str], int] = defaultdict(int)
    students: dict[tuple[int, str, str], set[int]] = defaultdict(set)
    for r in records:
        assert r.value is not None
        for m, a, s, t, active in UsagePartial.decode(r.value).rows:
            ms[(m, a, s)] += active
            students[(m, a, s)].add(t)
    return {k: (ms[k], len(students[k])) for k in ms}


def totals(client: Client, db: str) -> dict[tuple[int, str, str], tuple[int, int]]:
    rows = client.query(
        f"SELECT toUnixTimestamp(minute), app, sub_app, sum(active_ms), uniqMerge(students) "
        f"FROM {db}.app_minute GROUP BY minute, app, sub_app"
    ).result_rows
    return {(int(m), a, s): (int(ms), int(n)) for m, a, s, ms, n in rows}


def column_types(client: Client, db: str, table: str) -> list[tuple[str, str]]:
    return [
        (n, t)
        for n, t in client.query(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s "
            "ORDER BY position",
            parameters={"db": db, "t": table},
        ).result_rows
    ]


def test_migrate_creates_the_contract_tables_exactly(chdb_client: Client, db: str) -> None:
    assert column_types(chdb_client, db, "app_minute") == [
        ("minute", "DateTime('UTC')"),
        ("app", "LowCardinality(String)"),
        ("sub_app", "String"),
        ("active_ms", "UInt64"),
        ("students", "AggregateFunction(uniq, UInt64)"),
    ]
    assert column_types(chdb_client, db, "app_daily_public") == [
        ("day", "Date"),
        ("app", "LowCardinality(String)"),
        ("sub_app", "String"),
        ("active_seconds", "Float64"),
        ("students", "UInt64"),
    ]
    assert migrate(chdb_client, db, ttl_days=730, k_anonymity=10) == []  # idempotent
    versions = chdb_client.query(f"SELECT version FROM {db}.schema_migrations").result_rows
    assert versions == [(1,)]


def test_migrate_follows_ttl_and_k_settings(chdb_client: Client, db: str) -> None:
    migrate(chdb_client, db, ttl_days=30, k_anonymity=2)
    ddl = str(chdb_client.command(f"SHOW CREATE TABLE {db}.app_minute"))
    assert "toIntervalDay(30)" in ddl
    sink = ClickHouseUsageSink(chdb_client, db)
    now = int(time.time()) // 60 * 60  # rows older than the 30-day TTL would be dropped on insert
    # Two students in one cell: hidden at K=10, shown at K=2.
    sink.add(record(0, 0, [(now, "docs", "a", 1, 60_000), (now, "docs", "a", 2, 30_000)]))
    sink._insert()
    assert chdb_client.query(f"SELECT students FROM {db}.app_daily_public").result_rows == [(2,)]
    migrate(chdb_client, db, ttl_days=30, k_anonymity=3)
    assert chdb_client.query(f"SELECT count() FROM {db}.app_daily_public").result_rows == [(0,)]


async def test_crash_after_insert_then_replay_adds_nothing(chdb_client: Client, db: str) -> None:
    records = make_records(30)
    # First life: the batch is inserted, then the process "dies" before committing offsets.
    first = FaultySink(ClickHouseUsageSink(chdb_client, db), SinkFaults(crash_after_insert=1))
    await first.on_assign({0, 1, 2})
    for r in records[:20]:
        first.add(r)
    with pytest.raises(SimulatedCrash):
        await first.flush()
    assert totals(chdb_client, db) == expected(records[:20])

    # Second life: nothing was committed, so everything is read again — batched differently this time.
    second = ClickHouseUsageSink(chdb_client, db)
    await second.on_assign({0, 1, 2})
    for r in records[:7]:
        second.add(r)
    await second.flush()
    for r in records[7:]:
        second.add(r)
    await second.flush()
    assert totals(chdb_client, db) == expected(records)

    # A restart replaying the whole topic once more changes nothing either.
    third = ClickHouseUsageSink(chdb_client, db)
    await third.on_assign({0, 1, 2})
    for r in records:
        third.add(r)
    assert len(third) == 0
    assert await third.flush() == FlushResult(
        replays=len(records)
    )  # what the loop counts as skipped
    assert totals(chdb_client, db) == expected(records)


async def test_merges_keep_every_student(chdb_client: Client, db: str) -> None:
    # Background merges must add active_ms AND merge the uniq states: a table engine that keeps the
    # first row's state at a merge (SummingMergeTree(active_ms)) loses distinct students.
    records = make_records(30)
    sink = ClickHouseUsageSink(chdb_client, db)
    await sink.on_assign({0, 1, 2})
    for i, r in enumerate(records):
        sink.add(r)
        if i % 5 == 4:
            await sink.flush()  # several parts, so OPTIMIZE has rows to merge
    await sink.flush()
    before = totals(chdb_client, db)
    assert before == expected(records)
    chdb_client.command(f"OPTIMIZE TABLE {db}.app_minute FINAL")
    assert totals(chdb_client, db) == before


async def test_same_batch_inserted_twice_is_deduplicated_by_token(
    chdb_client: Client, db: str
) -> None:
    """The second line of defence alone: no progress skip (no on_assign), same batch → same token."""
    records = make_records(12)
    for _ in range(3):
        sink = ClickHouseUsageSink(chdb_client, db)
        for r in records:
            sink.add(r)
        await sink.flush()
    assert totals(chdb_client, db) == expected(records)
    # ... while a different batch is not taken for a duplicate.
    sink = ClickHouseUsageSink(chdb_client, db)
    more = make_records(15)[12:]
    for r in more:
        sink.add(r)
    await sink.flush()
    assert totals(chdb_client, db) == expected(records + more)


async def test_transient_failures_keep_the_batch_for_retry(chdb_client: Client, db: str) -> None:
    records = make_records(9)
    sink = FaultySink(ClickHouseUsageSink(chdb_client, db), SinkFaults(fail_inserts=2))
    for r in records:
        sink.add(r)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await sink.flush()
        assert len(sink) == 9
    await sink.flush()
    assert len(sink) == 0
    assert totals(chdb_client, db) == expected(records)


async def test_schema_mismatch_is_permanent(chdb_client: Client, db: str) -> None:
    # Someone changed the input table by hand: it no longer has a column the sink writes.
    chdb_client.command(f"DROP VIEW {db}.app_minute_mv")
    chdb_client.command(f"ALTER TABLE {db}.app_minute_in DROP COLUMN student_token")
    sink = ClickHouseUsageSink(chdb_client, db)
    sink.add(make_records(1)[0])
    with pytest.raises(PermanentSinkError):
        await sink.flush()
    assert len(sink) == 1  # kept: nothing is dropped, the operator sees the batch


def test_undecodable_record_is_permanent(chdb_client: Client, db: str) -> None:
    sink = ClickHouseUsageSink(chdb_client, db)
    bad = ConsumerRecord(TOPIC, 0, 0, 0, 0, None, b'{"rows": 1}', None, 0, 11, [])
    with pytest.raises(PermanentSinkError):
        sink.add(bad)


async def test_public_view_never_shows_a_cell_below_k(chdb_client: Client, db: str) -> None:
    sink = ClickHouseUsageSink(chdb_client, db)
    day2 = T0 + 86_400
    rows: list[UsageRow] = []
    # Cell (day, app, n) has n distinct students spread over several minutes of that day.
    for n in (1, 5, 9, 10, 11, 30):
        for s in range(n):
            rows.append((T0 + 60 * (s % 7), "docs", f"n{n}", 10_000 + s, 1_000))
            rows.append((day2 + 60 * (s % 3), "docs", f"n{n}", 20_000 + s, 2_000))
    # A student in many minutes counts once for the day: 9 students × many minutes stays hidden.
    for s in range(9):
        for minute in range(20):
            rows.append((T0 + 60 * minute, "web", "busy.example", 30_000 + s, 60_000))
    sink.add(record(0, 0, rows))
    await sink.flush()
    view = chdb_client.query(
        f"SELECT toString(day), app, sub_app, active_seconds, students FROM {db}.app_daily_public "
        "ORDER BY 1, 3"
    ).result_rows
    assert view == [
        ("2026-01-01", "docs", "n10", 10.0, 10),
        ("2026-01-01", "docs", "n11", 11.0, 11),
        ("2026-01-01", "docs", "n30", 30.0, 30),
        ("2026-01-02", "docs", "n10", 20.0, 10),
        ("2026-01-02", "docs", "n11", 22.0, 11),
        ("2026-01-02", "docs", "n30", 60.0, 30),
    ]
    assert all(students >= 10 for *_, students in view)


async def test_no_identifier_in_any_string_column(chdb_client: Client, db: str) -> None:
    """Whatever ids fed the pipeline, no String column of any table of the database holds one."""
    ids = ["district-9f3", "student-77ab", "device-0c1d", "Ada Lovelace"]
    sink = ClickHouseUsageSink(chdb_client, db)
    for r in make_records(10):
        sink.add(r)
    await sink.flush()
    string_columns = chdb_client.query(
        "SELECT table, name FROM system.columns WHERE database = %(db)s AND type LIKE '%%String%%' "
        "AND table IN (SELECT name FROM system.tables WHERE database = %(db)s "
        "AND engine NOT IN ('Null', 'MaterializedView'))",
        parameters={"db": db},
    ).result_rows
    assert {t for t, _ in string_columns} >= {"app_minute", "app_daily_public"}
    for table, column in string_columns:
        values = chdb_client.query(f"SELECT DISTINCT toString({column}) FROM {db}.{table}")
        for (value,) in values.result_rows:
            assert not any(i in value for i in ids), (table, column, value)
        assert values.result_rows, (table, column)  # the scan saw data


def test_one_chdb_path_per_process(chdb_client: Client, tmp_path: Path) -> None:
    from sinks.clickhouse_client import ChdbPathError

    with pytest.raises(ChdbPathError):
        clickhouse_client(f"chdb://{tmp_path / 'other'}")


async def test_against_a_real_clickhouse_server() -> None:
    url = os.environ.get("CLICKHOUSE_TEST_URL")
    if not url:
        pytest.skip("CLICKHOUSE_TEST_URL is not set: no ClickHouse server to test against")
    client = clickhouse_client(url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        migrate(client, name, ttl_days=730, k_anonymity=10)
        records = make_records(20)
        for _ in range(2):
            sink = ClickHouseUsageSink(client, name)
            await sink.on_assign({0, 1, 2})
            for r in records:
                sink.add(r)
            await sink.flush()
        assert totals(client, name) == expected(records)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")
