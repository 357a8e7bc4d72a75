"""Pure retention verdicts: topic configs, sampled Redis TTLs and ClickHouse table TTLs against settings."""

from __future__ import annotations

from csync.topics import TopicSpec
from privacy.retention import (
    EXCEEDS,
    MISSING,
    OK,
    WARN,
    judge_table_ttl,
    judge_topic,
    judge_ttls,
    table_ttl_days,
)

DAY = 86_400_000
DLQ = TopicSpec("dlq", 4, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY)}, "")
ROSTER = TopicSpec("roster", 4, {"cleanup.policy": "compact", "retention.ms": "-1"}, "")


def test_delete_topic_within_settings_is_ok_with_its_real_bound() -> None:
    row = judge_topic(
        DLQ, {"cleanup.policy": "delete", "retention.ms": str(DAY), "segment.ms": "3600000"}
    )
    assert row.status == OK
    assert "25h" in row.note


def test_longer_retention_never_expiring_or_lost_delete_policy_exceed() -> None:
    longer = {"cleanup.policy": "delete", "retention.ms": str(8 * DAY), "segment.ms": "1"}
    assert judge_topic(DLQ, longer).status == EXCEEDS
    forever = {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert judge_topic(DLQ, forever).status == EXCEEDS
    compact = {"cleanup.policy": "compact", "retention.ms": str(DAY)}
    assert judge_topic(DLQ, compact).status == EXCEEDS


def test_segment_longer_than_retention_is_a_warning_naming_the_real_bound() -> None:
    row = judge_topic(DLQ, {"cleanup.policy": "delete", "retention.ms": str(DAY)})
    assert row.status == WARN
    assert "8d" in row.note  # 1 day retention + the broker's default 7-day segments


def test_compacted_topic_is_judged_by_policy_and_missing_topics_are_flagged() -> None:
    bounded = {"cleanup.policy": "compact", "max.compaction.lag.ms": str(DAY)}
    assert judge_topic(ROSTER, bounded).status == OK
    unbounded = judge_topic(ROSTER, {"cleanup.policy": "compact"})
    assert unbounded.status == WARN
    assert "unbounded" in unbounded.note
    assert judge_topic(ROSTER, {"cleanup.policy": "delete"}).status == EXCEEDS
    assert judge_topic(ROSTER, None).status == MISSING


def test_redis_ttls() -> None:
    assert judge_ttls([10, 86_000], 86_400).status == OK
    assert judge_ttls([10, -1], 86_400).status == EXCEEDS
    assert judge_ttls([90_000], 86_400).status == EXCEEDS
    assert judge_ttls([-2], 86_400).status == OK


def test_table_ttl_from_ddl() -> None:
    ddl = "CREATE TABLE u.app_minute (...) ENGINE = SummingMergeTree TTL minute + toIntervalDay(730) SETTINGS x"
    assert table_ttl_days(ddl) == 730
    assert table_ttl_days("... TTL minute + INTERVAL 30 DAY") == 30
    assert judge_table_ttl("u.app_minute", ddl, 730).status == OK
    assert judge_table_ttl("u.app_minute", ddl, 365).status == EXCEEDS
    assert (
        judge_table_ttl("u.app_minute", "CREATE TABLE x ENGINE = MergeTree", 365).status == EXCEEDS
    )
    assert judge_table_ttl("u.app_minute", None, 365).status == MISSING
