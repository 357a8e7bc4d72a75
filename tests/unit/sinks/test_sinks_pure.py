"""Pure parts of the sinks: URL handling, batch identity, fault specs, Lua call encoding, migrations."""

from __future__ import annotations

import datetime as dt
import random
import struct
from types import SimpleNamespace

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from schemas.internal import (
    V2_HEAD,
    PresenceChange,
    UsagePartial,
    UsageRow,
    usage_header,
    usage_sections,
)
from sinks.clickhouse_client import ClickHouseUrlError, parse_clickhouse_url, redact_url
from sinks.clickhouse_sink import ClickHouseUsageSink, dedup_token
from sinks.faults import InjectedFailure, SimulatedCrash, SinkFaults
from sinks.migrate import check_identifier, daily_public_view_sql, load_migrations
from sinks.redis_presence import change_call
from sinks.runner import Backoff
from sinks.shape import FlushResult, PermanentSinkError
from sinks.usage_read import parse_range


def test_chdb_url() -> None:
    target = parse_clickhouse_url("chdb:///var/lib/csync/chdb/")
    assert (target.kind, target.path) == ("chdb", "/var/lib/csync/chdb")


@pytest.mark.parametrize("url", ["chdb://relative/path", "chdb://", "chdb:///", "ftp://h:1"])
def test_unusable_urls(url: str) -> None:
    with pytest.raises(ClickHouseUrlError):
        parse_clickhouse_url(url)


def test_http_url_with_credentials() -> None:
    t = parse_clickhouse_url("https://an%40alyst:s3cr%2Ft@ch.example:8443")
    assert (t.kind, t.host, t.port, t.username, t.password, t.secure) == (
        "http", "ch.example", 8443, "an@alyst", "s3cr/t", True,
    )  # fmt: skip
    assert "s3cr" not in repr(t)


def test_http_url_defaults() -> None:
    t = parse_clickhouse_url("http://localhost")
    assert (t.port, t.username, t.password, t.secure) == (8123, "default", "", False)
    assert parse_clickhouse_url("https://h").port == 8443


def test_http_url_with_a_path_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ClickHouseUrlError) as info:
        parse_clickhouse_url("http://u:hunter2@h:8123/usage")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:hunter2@h:8123", "http://u:***@h:8123"),
        ("https://u:hunter2@[::1]:8443", "https://u:***@[::1]:8443"),
        ("http://h:8123", "http://h:8123"),
        ("chdb:///x", "chdb:///x"),
        ("http://u:hunter2@h:notaport", "http://***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert "hunter2" not in redact_url(url)
    assert redact_url(url).startswith(shown)


def test_dedup_token_is_the_batch_identity() -> None:
    a = dedup_token({0: (10, 19, 10), 3: (5, 5, 1)})
    assert a == dedup_token({3: (5, 5, 1), 0: (10, 19, 10)})  # order of partitions does not matter
    assert a != dedup_token({0: (10, 20, 11), 3: (5, 5, 1)})
    assert a != dedup_token({0: (10, 19, 10)})
    assert len(a) <= 64


def _usage_record(
    partition: int, offset: int, src: tuple[int, int, int] | None = None
) -> ConsumerRecord[bytes, bytes]:
    """Two rows; the partial's src is ``(partition, offset, offset)`` unless given."""
    p, first, last = src or (partition, offset, offset)
    value = UsagePartial(
        p, first, last, ((60, "docs", "x", 1, 10), (60, "docs", "y", 2, 20))
    ).encode()
    return ConsumerRecord("u", partition, offset, 0, 0, None, value, None, 0, len(value), [])


def test_batching_tracks_ranges_and_skips_written_offsets() -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    sink._written = {0: 4}
    for offset in range(3, 8):
        sink.add(_usage_record(0, offset))
    sink.add(_usage_record(2, 0))
    assert len(sink) == 4 and sink.rows == 8
    assert sink._ranges == {0: (5, 7, 3), 2: (0, 0, 1)}
    assert sink.batch_token() == dedup_token({0: (5, 7, 3), 2: (0, 0, 1)})
    sink.discard()
    assert len(sink) == 0 and sink.rows == 0


def test_a_partial_sent_again_at_a_later_offset_adds_only_its_offset() -> None:
    """A recovering worker re-sends its last partial (same src, same bytes) when it cannot see it landed."""
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    sink.add(_usage_record(0, 10, src=(0, 500, 520)))
    sink.add(_usage_record(0, 11, src=(0, 521, 530)))
    sink.add(_usage_record(0, 12, src=(0, 500, 520)))  # the copy, in the same batch
    copy = sink.build_table().to_pylist()[-1]
    assert copy == {"minute": 60, "app": "docs", "sub_app": "x", "student_token": 1,
                    "active_ms": 0, "src_partition": 0, "src_offset": 12}  # fmt: skip
    assert (len(sink), sink.rows) == (3, 5)
    sink.discard()  # as after a successful insert: the srcs written are remembered
    sink.add(_usage_record(0, 13, src=(0, 521, 530)))  # a copy in a later batch
    sink.add(_usage_record(0, 14, src=(3, 521, 530)))  # another partition's batch: not a copy
    table = sink.build_table()
    assert table.column("active_ms").to_pylist() == [0, 10, 20]
    assert table.column("src_offset").to_pylist() == [13, 14, 14]
    assert sink._ranges == {0: (13, 14, 2)}


class _ProgressOnly:
    """A client that answers the progress query (partition 1 written up to offset 5) and nothing else."""

    def query(self, sql: str) -> SimpleNamespace:
        assert "sink_progress" in sql
        return SimpleNamespace(result_rows=[(1, 5)])


async def test_skipped_replays_are_reported_once_by_the_next_flush() -> None:
    sink = ClickHouseUsageSink(client=_ProgressOnly(), database="usage")  # type: ignore[arg-type]
    await sink.on_assign({1})
    for offset in range(4):  # all at or below the offset ClickHouse already holds
        sink.add(_usage_record(1, offset))
    assert len(sink) == 0
    # Nothing to insert (the client could not take an insert), but the loop learns what was skipped.
    assert await sink.flush() == FlushResult(replays=4)
    assert await sink.flush() == FlushResult()
    sink.add(_usage_record(1, 5))
    sink.discard()  # dropped buffer: its records are read again and counted then
    assert await sink.flush() == FlushResult()


def test_a_record_read_again_is_not_taken_for_a_copy_of_itself() -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    for offset in range(3):
        sink.add(_usage_record(1, offset))
    sink.discard()  # e.g. a rebalance whose flush failed: the records will be read again
    for offset in range(3):
        sink.add(_usage_record(1, offset))
    assert (len(sink), sink.rows) == (3, 6)


@pytest.mark.parametrize(
    "bad_row",
    [
        [60, "docs", "x", 1, -5],  # negative
        [60, "docs", "x", 1, 2**64 - 1 + 0.5],  # not an integer (and past UInt64)
        [2**32, "docs", "x", 1, 5],  # past the minute column's UInt32
        [60, "docs", 7, 1, 5],  # not a string
        [60, "docs", "x", None, 5],  # null
        ["60", "docs", "x", 1, 5],  # a string for a number
    ],
)
def test_an_old_format_row_that_does_not_fit_is_permanent_and_names_its_record(
    bad_row: list[object],
) -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    sink.add(_usage_record(1, 3))
    value = orjson.dumps({"src": [0, 0, 0], "rows": [[60, "docs", "x", 1, 5], bad_row]})
    with pytest.raises(PermanentSinkError, match="record 1@4 "):
        sink.add(ConsumerRecord("u", 1, 4, 0, 0, None, value, None, 0, len(value), []))
    sink.add(_usage_record(1, 5))
    assert len(sink) == 2 and sink.rows == 4  # the bad record was not buffered


def _corrupted(section: str, data: bytes) -> bytes:
    """A format-2 partial whose sizes add up but whose ``section`` starts with ``data``."""
    raw = UsagePartial(9, 0, 0, ((60, "docs", "x", 1, 10), (60, "web", "y", 2, 20))).encode()
    start = V2_HEAD.size
    for name, view in usage_sections(usage_header(raw)).items():
        if name == section:
            return raw[:start] + data + raw[start + len(data) :]
        start += len(view)
    raise KeyError(section)


@pytest.mark.parametrize(
    ("section", "data"),
    [
        ("app_index", struct.pack("<I", 2)),  # past its own dictionary of 2 apps
        ("sub_index", struct.pack("<2I", 1, 7)),
        ("app_sizes", struct.pack("<2I", 9, 0)),  # past its own bytes
        ("app_sizes", struct.pack("<2I", 1, 1)),  # short of its own bytes
        ("sub_utf8", b"\xff"),  # not UTF-8
    ],
)
def test_a_broken_new_format_record_is_permanent_and_names_its_record(
    section: str, data: bytes
) -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    sink.add(_usage_record(1, 3))
    bad = _corrupted(section, data)
    sink.add(ConsumerRecord("u", 1, 4, 0, 0, None, bad, None, 0, len(bad), []))
    sink.add(_usage_record(1, 5))
    with pytest.raises(PermanentSinkError, match="record 1@4 "):
        sink.build_table()


def test_the_corruption_helper_leaves_a_good_partial_good() -> None:
    """The broken-record test above would pass on any error; this shows that only its patch breaks it."""
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    same = _corrupted("app_index", struct.pack("<I", 0))
    sink.add(ConsumerRecord("u", 1, 4, 0, 0, None, same, None, 0, len(same), []))
    assert sink.build_table().column("app").to_pylist() == ["docs", "web"]


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"rows": []}',  # no src
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, 2], [60, "a", "b", 1]]}',  # a short row
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, 2, 3]]}',  # a long row
        b'{"src": [0, 0, 0], "rows": [7]}',
        b"\x00UP\x02",  # a new-format header cut short
        b"\x00UP\x09" + bytes(40),  # a format this release does not know
    ],
)
def test_a_record_that_is_not_a_usage_partial_is_permanent(value: bytes) -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    with pytest.raises(PermanentSinkError, match="2@9"):
        sink.add(ConsumerRecord("u", 2, 9, 0, 0, None, value, None, 0, len(value), []))


def test_the_table_holds_every_row_with_its_source_record() -> None:
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    sink.add(_usage_record(1, 3))
    empty = UsagePartial(1, 0, 0, ()).encode()
    sink.add(ConsumerRecord("u", 1, 4, 0, 0, None, empty, None, 0, len(empty), []))
    sink.add(_usage_record(0, 8))
    assert len(sink) == 3
    assert sink.build_table().to_pylist() == [
        {"minute": 60, "app": "docs", "sub_app": sub, "student_token": token,
         "active_ms": ms, "src_partition": p, "src_offset": o}
        for p, o in ((1, 3), (0, 8))
        for sub, token, ms in (("x", 1, 10), ("y", 2, 20))
    ]  # fmt: skip


def _rows(rnd: random.Random, n: int) -> tuple[UsageRow, ...]:
    apps, subs = ["docs", "web", "ünï"], ["", "a.example", "日本.jp", "z" * 128]
    return tuple(
        (rnd.randrange(2**32), rnd.choice(apps), rnd.choice(subs), rnd.randrange(2**64), 1 + j)
        for j in range(n)
    )


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_of_both_formats_holds_exactly_the_partials_rows(seed: int) -> None:
    """Old-format (JSON) and new-format records in one batch: every row, in order, with its record."""
    rnd = random.Random(seed)
    sink = ClickHouseUsageSink(client=None, database="usage")  # type: ignore[arg-type]
    want = []
    for offset in range(40):
        partition = rnd.randrange(3)
        partial = UsagePartial(partition, offset, offset, _rows(rnd, rnd.choice([0, 1, 5, 60])))
        if rnd.random() < 0.5:
            value = partial.encode()
        else:  # as a worker of the previous release wrote it
            value = orjson.dumps({"src": [partition, offset, offset], "rows": partial.rows})
        sink.add(ConsumerRecord("u", partition, offset, 0, 0, None, value, None, 0, len(value), []))
        want += [(*row, partition, offset) for row in partial.rows]
    table = sink.build_table()
    assert table.num_rows == sink.rows == len(want)
    assert [tuple(r.values()) for r in table.to_pylist()] == want


def test_fault_spec() -> None:
    faults = SinkFaults.parse("fail_inserts=2, crash_after_insert=1,slow_insert_ms=50")
    assert faults == SinkFaults(2, 1, 50)
    assert SinkFaults.parse("") == SinkFaults()
    with pytest.raises(ValueError):
        SinkFaults.parse("drop_everything=1")
    for _ in range(2):
        with pytest.raises(InjectedFailure):
            faults.before_write()
    assert faults.before_write() == 0.05
    with pytest.raises(SimulatedCrash):
        faults.after_write()
    faults.after_write()  # fired once only


def test_backoff_doubles_to_a_cap_and_resets() -> None:
    b = Backoff(first=0.5, cap=3)
    assert [b.next() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    b.reset()
    assert b.next() == 0.5


def _change(**kw: object) -> PresenceChange:
    base: dict[str, object] = {
        "district_id": "d", "student_id": "s", "name": "N", "online": True, "app": "a",
        "sub_app": "b", "ts": 7,
    }  # fmt: skip
    base.update(kw)
    return PresenceChange(**base)  # type: ignore[arg-type]


def test_calls_for_an_online_change() -> None:
    calls = change_call(_change(classes_add=("c1",), classes_remove=("c2",)), "cs", 60)
    assert calls.hash_key == "cs:presence:d:s"
    assert (calls.set_add, calls.set_remove) == (["cs:class:d:c1"], ["cs:class:d:c2"])
    assert calls.argv == ["N", "1", "a", "b", "7", "60", "0"]
    assert calls.student_id == "s"


def test_calls_offline_blanks_app_and_sub_app() -> None:
    calls = change_call(_change(online=False), "cs", 60)
    assert calls.argv[1:4] == ["0", "", ""]


def test_calls_for_a_delete_add_to_no_class() -> None:
    calls = change_call(_change(deleted=True, classes_add=("x",), classes_remove=("c",)), "p", 9)
    assert calls.hash_key == "p:presence:d:s"
    assert (calls.set_add, calls.set_remove) == ([], ["p:class:d:c"])
    assert calls.argv[6] == "1"


def test_migrations_are_numbered_and_split() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    statements = migrations[0].statements("u_x", 30)
    assert all("{db}" not in s and "{ttl_days}" not in s for s in statements)
    assert any("INTERVAL 30 DAY" in s for s in statements)
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS u_x.app_minute\n") for s in statements)


def test_view_sql_and_identifiers() -> None:
    assert "students >= 7" in daily_public_view_sql("usage", 7)
    with pytest.raises(ValueError):
        check_identifier("usage; DROP TABLE x")


def test_parse_range() -> None:
    assert parse_range({"from": "2026-01-01", "to": "2026-01-31"}) == (
        dt.date(2026, 1, 1), dt.date(2026, 1, 31), None,
    )  # fmt: skip
    with pytest.raises(ValueError):
        parse_range({"from": "2026-02-01", "to": "2026-01-31"})
