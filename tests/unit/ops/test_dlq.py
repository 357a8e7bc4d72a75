"""The DLQ rules: redaction, stats, the ledger and the redrive plan (no Kafka)."""

from __future__ import annotations

import orjson
import pytest

from ops.dlq import (
    REDACTED,
    DlqRecord,
    Ledger,
    Limits,
    dlq_stats,
    done_doc,
    intent_doc,
    parse_record,
    plan_redrive,
    read_ledger,
    redact_key,
    redact_value,
    select,
    show_line,
)
from ops.dlq_cli import parse_since

NOW = 1_800_000_000_000
LIMITS = Limits(max_age_ms=72 * 3_600_000, max_future_ms=300_000, lateness_ms=60_000)
EVENT = {
    "v": 1, "event_id": "e-1", "kind": "heartbeat", "ts": NOW - 10_000, "district_id": "d-7",
    "student_id": "s-42", "device_id": "cb-42", "app": "docs", "sub_app": "unit", "name": "Ada L",
    "url": "https://x.example/?student=s-42",
}  # fmt: skip


def record(
    offset: int, reason: str = "bad_app", ts: int | None = NOW - 10_000, **kw: int
) -> DlqRecord:
    value = orjson.dumps({**EVENT, "ts": ts}) if ts is not None else b"not json"
    headers = [
        ("error", reason.encode()), ("error_detail", b"d"), ("source_topic", b"device-activity.v1"),
        ("source_partition", str(kw.get("sp", 1)).encode()),
        ("source_offset", str(kw.get("so", 100 + offset)).encode()), ("source_index", b"-1"),
    ]  # fmt: skip
    return parse_record(
        kw.get("p", 1), offset, kw.get("at", NOW - 5000), b"d-7:s-42", value, headers
    )


def test_parse_record_reads_the_contract_headers() -> None:
    rec = record(3, sp=2, so=77)
    assert (rec.reason, rec.source, rec.id, rec.event_ts()) == (
        "bad_app",
        (2, 77, -1),
        (1, 3),
        NOW - 10_000,
    )
    odd = parse_record(0, 0, 0, None, None, [("source_offset", b"x")])
    assert (odd.reason, odd.source_offset, odd.value) == ("unknown", -1, b"")


def test_redaction_keeps_no_id_name_or_url() -> None:
    text = redact_value(orjson.dumps(EVENT)) + redact_key(b"d-7:s-42")
    for secret in ("d-7", "s-42", "cb-42", "e-1", "Ada", "x.example"):
        assert secret not in text
    shown = orjson.loads(redact_value(orjson.dumps(EVENT)))
    assert shown["kind"] == "heartbeat" and shown["app"] == "docs" and shown["name"] == REDACTED
    assert redact_value(b"\x00garbage") == "<not JSON, 8 bytes>"
    assert redact_value(b"[1, 2]") == "<list, 6 bytes>"
    assert "s-42" in show_line(record(1), unredacted=True)
    assert "s-42" not in show_line(record(1), unredacted=False)


def test_stats_count_reasons_partitions_ages_and_returns() -> None:
    ledger = read_ledger([(0, done_doc("r", {(1, 1): (1, 500)}))])
    records = [record(1), record(2, "not_json", at=NOW - 2 * 86_400_000), record(3, sp=0, so=500)]
    stats = dlq_stats(records, ledger, NOW)
    assert stats.by_reason == {"bad_app": 2, "not_json": 1}
    assert stats.by_partition == {1: 2, 0: 1}
    assert stats.by_age == {"<1h": 2, "<3d": 1}
    assert (stats.redriven, stats.returned) == (1, 0)
    assert dlq_stats([record(4, sp=1, so=500)], ledger, NOW).returned == 1
    assert not any("s-42" in line for line in stats.lines())


def test_ledger_intent_without_done_is_uncertain() -> None:
    ledger = read_ledger(
        [(10, intent_doc("a", [(0, 1), (0, 2)])), (11, done_doc("a", {(0, 1): (3, 9)})),
         (20, intent_doc("b", [(0, 5)]))]
    )  # fmt: skip
    assert ledger.sent == {(0, 1): (3, 9)} and ledger.produced == {(3, 9)}
    assert ledger.uncertain == {(0, 2): 10, (0, 5): 20}


def test_plan_sends_once_in_source_order_and_never_loops() -> None:
    ledger = Ledger(sent={(1, 1): (1, 900)}, produced={(1, 900)}, uncertain={(1, 9): NOW})
    records = [
        record(5, so=300),
        record(4, so=200),
        record(1),  # 1 was sent before
        record(6, sp=1, so=900),  # a redriven event rejected again: a return
        record(7, ts=NOW + 400_000),
        record(8, ts=NOW - 72 * 3_600_000 + 60_000),
        record(9),
        record(10, ts=NOW - 120_000),
        record(11, ts=None),
    ]
    plan = plan_redrive(records, ledger, LIMITS, NOW)
    assert [r.offset for r in plan.send] == [10, 11, 4, 5]  # source order: 110, 111, 200, 300
    assert (plan.already_redriven, plan.returned, plan.uncertain) == (1, 1, 1)
    assert (plan.in_future, plan.too_old, plan.older_than_lateness) == (1, 1, 1)
    assert any("ALLOWED_LATENESS_S" in line for line in plan.lines())
    # The next run: the ledger now holds this run and the settled uncertain record; nothing is sent.
    sent = {r.id: (1, 1000 + i) for i, r in enumerate(plan.send)}
    resent = Ledger(sent={**ledger.sent, **sent, (1, 9): (1, 999)}, produced={(1, 900)})
    assert plan_redrive(records, resent, LIMITS, NOW).send == []


def test_select_by_reason_and_time() -> None:
    records = [record(1, at=NOW - 7200_000), record(2, at=NOW - 60_000), record(3, "not_json")]
    assert [r.offset for r in select(records, "bad_app", NOW - 3600_000)] == [2]
    assert [r.offset for r in select(records, "bad_app", None)] == [1, 2]


def test_parse_since() -> None:
    assert parse_since("90m", NOW) == NOW - 5_400_000
    assert parse_since("2026-12-04T10:00:00", NOW) == parse_since("2026-12-04T10:00:00+00:00", NOW)
    with pytest.raises(Exception, match="neither a duration"):
        parse_since("yesterday", NOW)


def test_wrong_district_is_never_redriven() -> None:
    from click.testing import CliRunner

    from ops.dlq_cli import dlq

    result = CliRunner().invoke(dlq, ["redrive", "--reason", "wrong_district"])
    assert result.exit_code == 2 and "authorization decision" in result.output
