"""DLQ records carry the CONTRACT §1 headers; DlqLimit stops a flood per partition, not noise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csync.settings import Settings
from schemas.dlq import DlqLimit, DlqRateExceeded, dlq_record

HEADERS = ["error", "error_detail", "source_topic", "source_partition", "source_offset",
           "source_index"]  # fmt: skip


def test_dlq_record_has_the_contract_headers_in_order() -> None:
    key, raw, headers = dlq_record(
        b"d:s", b"{}", "bad_kind", "kind 'x'", source_topic="act", source_partition=3,
        source_offset=42, source_index=-1,
    )  # fmt: skip
    assert (key, raw) == (b"d:s", b"{}")
    assert [h for h, _v in headers] == HEADERS
    assert [v for _h, v in headers] == [b"bad_kind", b"kind 'x'", b"act", b"3", b"42", b"-1"]


def test_defaults_come_from_settings() -> None:
    limit = DlqLimit.from_settings(Settings())
    assert (limit.max_ratio, limit.window, limit.max_consecutive) == (0.5, 1000, 200)
    with pytest.raises(ValueError):
        DlqLimit(1.5, 10, 10)


def test_a_flood_stops_once_the_window_is_mostly_invalid() -> None:
    limit = DlqLimit(0.5, 100, 10**6)
    limit.record(0, 60, 0)
    limit.record(0, 0, 40)  # 100 events, 40 % invalid
    limit.record(0, 0, 10)  # the last 100: 50 invalid, not more than half
    with pytest.raises(DlqRateExceeded, match="partition 0"):
        limit.record(0, 0, 1)


def test_partitions_are_judged_apart_and_forgotten() -> None:
    limit = DlqLimit(0.5, 100, 10**6)
    limit.record(1, 100, 0)
    limit.record(2, 0, 49)
    limit.record(1, 0, 50)  # partition 2's invalid events do not count for partition 1
    limit.forget(2)
    limit.record(2, 0, 99)  # a fresh window: not full yet
    with pytest.raises(DlqRateExceeded):
        limit.record(2, 0, 1)


def test_consecutive_invalid_events_stop_before_the_ratio_does() -> None:
    limit = DlqLimit(0.99, 10**6, 30)
    limit.record(0, 0, 20)
    limit.record(0, 1, 20)  # a valid event ends the run
    limit.record(0, 0, 29)
    with pytest.raises(DlqRateExceeded, match="30 consecutive"):
        limit.record(0, 0, 1)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=40),
    st.integers(1, 500),
    st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
)
def test_the_ratio_is_that_of_the_last_window_events(
    batches: list[tuple[int, int]], window: int, ratio: float
) -> None:
    """Against a per-event model: invalid events of a batch first, then its valid ones."""
    limit = DlqLimit(ratio, window, 10**9)
    events: list[bool] = []
    for valid, invalid in batches:
        events += [True] * invalid + [False] * valid
        last = events[-window:]
        flood = len(events) >= window and sum(last) > ratio * window
        if flood:
            with pytest.raises(DlqRateExceeded):
                limit.record(0, valid, invalid)
            return
        limit.record(0, valid, invalid)
