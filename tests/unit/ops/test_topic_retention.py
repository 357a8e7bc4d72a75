"""Which topics export a retention: only those whose records are deleted by age."""

from __future__ import annotations

from ops.topic_retention import retention_seconds


def test_delete_policy_exports_seconds() -> None:
    assert retention_seconds({"cleanup.policy": "delete", "retention.ms": "604800000"}) == 604800.0
    assert retention_seconds({"cleanup.policy": "compact,delete", "retention.ms": "1000"}) == 1.0


def test_compacted_or_unlimited_topics_export_nothing() -> None:
    assert retention_seconds({"cleanup.policy": "compact", "retention.ms": "604800000"}) is None
    assert retention_seconds({"cleanup.policy": "delete", "retention.ms": "-1"}) is None
    assert retention_seconds({"cleanup.policy": "delete", "retention.ms": "junk"}) is None
