"""A replayed usage partial never adds, whatever its wire format: against the embedded engine (chDB, in process)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client

from schemas.internal import UsagePartial
from sinks.clickhouse_client import clickhouse_client
from sinks.clickhouse_sink import ClickHouseUsageSink
from sinks.faults import FaultySink, SimulatedCrash, SinkFaults
from sinks.migrate import migrate

pytestmark = pytest.mark.clickhouse

T0 = 1_767_225_600
Cells = dict[tuple[int, str, str], tuple[int, int]]


@pytest.fixture
def db(clickhouse_url: str) -> Iterator[tuple[Client, str]]:
    client = clickhouse_client(clickhouse_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    migrate(client, name, ttl_days=730, k_anonymity=10)
    yield client, name
    client.command(f"DROP DATABASE IF EXISTS {name}")


def partials(n: int) -> list[UsagePartial]:
    rnd = random.Random(n)
    out = []
    for i in range(n):
        rows = tuple(
            (T0 + 60 * rnd.randrange(4), rnd.choice(["docs", "web"]), rnd.choice(["", "a.example", "é"]),
             rnd.randrange(50), rnd.randrange(1, 60_000))
            for _ in range(rnd.randrange(0, 30))
        )  # fmt: skip
        out.append(UsagePartial(i % 2, 100 * i, 100 * i + 99, rows))
    return out


def record(partial: UsagePartial, offset: int, old_format: bool) -> ConsumerRecord[bytes, bytes]:
    if old_format:  # as a worker of the previous release wrote it
        src = [partial.partition, partial.first_offset, partial.last_offset]
        value = orjson.dumps({"src": src, "rows": partial.rows})
    else:
        value = partial.encode()
    return ConsumerRecord(
        "u", partial.partition, offset, 0, 0, None, value, None, 0, len(value), []
    )


def expected(ps: list[UsagePartial]) -> Cells:
    ms: dict[tuple[int, str, str], int] = defaultdict(int)
    students: dict[tuple[int, str, str], set[int]] = defaultdict(set)
    for p in ps:
        for m, a, s, t, active in p.rows:
            ms[(m, a, s)] += active
            students[(m, a, s)].add(t)
    return {k: (ms[k], len(students[k])) for k in ms}


def totals(client: Client, db: str) -> Cells:
    rows = client.query(
        f"SELECT toUnixTimestamp(minute), app, sub_app, sum(active_ms), uniqMerge(students) "
        f"FROM {db}.app_minute GROUP BY minute, app, sub_app"
    ).result_rows
    return {(int(m), a, s): (int(ms), int(n)) for m, a, s, ms, n in rows}


def records_of(ps: list[UsagePartial]) -> list[ConsumerRecord[bytes, bytes]]:
    """Offsets per usage-cells partition; every third record still in the previous release's format."""
    return [record(p, i // 2, old_format=i % 3 == 0) for i, p in enumerate(ps)]


async def test_replays_of_both_formats_add_nothing(db: tuple[Client, str]) -> None:
    client, name = db
    ps = partials(24)
    records = records_of(ps)
    # First life: 14 records inserted, then the process dies before committing offsets.
    first = FaultySink(ClickHouseUsageSink(client, name), SinkFaults(crash_after_insert=1))
    await first.on_assign({0, 1})
    for r in records[:14]:
        first.add(r)
    with pytest.raises(SimulatedCrash):
        await first.flush()
    assert totals(client, name) == expected(ps[:14])
    # Second life: everything is read again, in other batches.
    second = ClickHouseUsageSink(client, name)
    await second.on_assign({0, 1})
    for batch in (records[:5], records[5:]):
        for r in batch:
            second.add(r)
        await second.flush()
    assert totals(client, name) == expected(ps)
    # A third life replaying the whole topic once more changes nothing either.
    third = ClickHouseUsageSink(client, name)
    await third.on_assign({0, 1})
    for r in records:
        third.add(r)
    assert len(third) == 0
    assert any(p.rows for p in ps[14:])  # the replays had rows to add


async def test_a_partial_resent_by_a_recovering_worker_adds_nothing(db: tuple[Client, str]) -> None:
    client, name = db
    ps = partials(10)
    records = records_of(ps)
    sink = ClickHouseUsageSink(client, name)
    await sink.on_assign({0, 1})
    for r in records:
        sink.add(r)
    await sink.flush()
    # The worker re-sends the partial of record 9 (same src, same bytes) at the next offset of its
    # partition: once in a batch of its own, once beside new records.
    sink.add(record(ps[9], 5, old_format=False))
    await sink.flush()
    new = UsagePartial(1, 10_000, 10_099, ((T0, "docs", "", 1, 5),))
    sink.add(record(ps[9], 6, old_format=False))
    sink.add(record(new, 7, old_format=False))
    await sink.flush()
    assert ps[9].rows and totals(client, name) == expected([*ps, new])
    # The copies' rows (no time, a token the cell already counts) change nothing when parts merge either.
    client.command(f"OPTIMIZE TABLE {name}.app_minute FINAL")
    assert totals(client, name) == expected([*ps, new])


async def test_a_resent_partial_read_again_after_a_sink_restart_adds_nothing(
    db: tuple[Client, str],
) -> None:
    """The copy was skipped, then the sink died before committing: the restarted sink must skip it too."""
    client, name = db
    ps = partials(10)
    records = [
        *records_of(ps),
        record(ps[9], 5, old_format=False),
    ]  # the last one: a copy of record 9
    first = FaultySink(ClickHouseUsageSink(client, name), SinkFaults(crash_after_insert=1))
    await first.on_assign({0, 1})
    for r in records:
        first.add(r)
    with pytest.raises(SimulatedCrash):
        await first.flush()
    second = ClickHouseUsageSink(client, name)
    await second.on_assign({0, 1})
    for r in records:
        second.add(r)
    assert len(second) == 0
    await second.flush()
    assert ps[9].rows and totals(client, name) == expected(ps)
