"""The lag rules: offset lag as kafka-consumer-groups prints it, interpolated time lag, Burrow's statuses."""

from __future__ import annotations

import pytest

from ops.lag import (
    Commit,
    Point,
    Rules,
    Status,
    add_commit,
    add_point,
    group_status,
    lag_growth_s,
    offset_lag,
    partition_status,
    predict_time,
    should_record_commit,
    time_lag_s,
    window_size,
)


def test_offset_lag_is_end_minus_committed_and_unknown_without_a_commit() -> None:
    assert offset_lag(100, 0) == 100
    assert offset_lag(100, 100) == 0
    assert offset_lag(100, 103) == 0  # end sampled a moment before the commit: never negative
    assert offset_lag(100, None) is None
    assert offset_lag(100, -1) is None  # OffsetFetch's "no offset"


def table(*points: tuple[int, float], limit: int = 10) -> tuple[Point, ...]:
    out: tuple[Point, ...] = ()
    for offset, time in points:
        out = add_point(out, Point(offset, time), limit)
    return out


def test_table_ignores_points_out_of_order_or_going_back() -> None:
    t = table((10, 1.0), (20, 2.0))
    assert add_point(t, Point(30, 2.0), 10) == t  # same time
    assert add_point(t, Point(15, 3.0), 10) == t  # offset went back
    assert add_point(t, Point(30, 3.0), 10)[-1] == Point(30, 3.0)


def test_table_compresses_a_flat_line_to_one_segment_and_is_bounded() -> None:
    t = table((200, 1.0), (200, 2.0), (200, 3.0), (200, 4.0))
    assert t == (Point(200, 1.0), Point(200, 4.0))
    t = table(*((i * 10, float(i)) for i in range(1, 8)), limit=3)
    assert [p.offset for p in t] == [50, 60, 70]


def test_interpolates_inside_the_table_and_extrapolates_outside() -> None:
    t = table((0, 100.0), (100, 110.0), (300, 120.0))
    assert predict_time(t, 50) == pytest.approx(105.0)
    assert predict_time(t, 200) == pytest.approx(115.0)
    # older than the table: along the first→last trend (300 offsets / 20 s)
    t2 = table((100, 110.0), (300, 120.0))
    assert predict_time(t2, 0) == pytest.approx(105.0)
    assert predict_time(table((5, 1.0)), 5) is None


def test_time_lag_grows_while_the_committed_offset_stands_still() -> None:
    t = table((0, 0.0), (100, 10.0), (200, 20.0))
    assert time_lag_s(t, 100, now=20.0) == pytest.approx(10.0)
    assert time_lag_s(t, 100, now=50.0) == pytest.approx(40.0)
    assert time_lag_s(t, 200, now=50.0) == 0.0  # caught up with the newest end offset
    assert time_lag_s(t, None, now=50.0) is None
    assert time_lag_s(table((7, 1.0)), 3, now=5.0) is None  # too few points


def test_time_lag_on_a_flat_table_counts_from_its_oldest_point() -> None:
    t = table((500, 10.0), (500, 30.0))
    assert time_lag_s(t, 400, now=40.0) == pytest.approx(30.0)


def window(*commits: tuple[int, float, int]) -> tuple[Commit, ...]:
    out: tuple[Commit, ...] = ()
    for offset, time, lag in commits:
        out = add_commit(out, Commit(offset, time, lag), 10)
    return out


# The rule tests below watch a partition for 20 s (commits at 0, 10, 20); a span of 10 s is enough evidence.
RULES = Rules(min_span_s=10.0, noise_s=2.0)


def status(w: tuple[Commit, ...], lag: int | None, now: float, rules: Rules = RULES) -> Status:
    return partition_status(w, lag, now, rules)


def test_rule1_any_zero_lag_in_the_window_is_ok() -> None:
    w = window((10, 0, 5), (10, 10, 0), (10, 20, 5))
    assert status(w, 5, now=25) is Status.OK
    assert status(window((10, 0, 5), (10, 10, 5)), 0, now=100) is Status.OK
    # Conclusive at once: a zero lag needs no span of evidence.
    assert status(window((10, 0, 0)), 0, now=0.5) is Status.OK


def test_rule2_an_offset_going_back_is_rewind() -> None:
    w = window((100, 0, 5), (110, 10, 5), (50, 20, 60))
    assert status(w, 60, now=25) is Status.REWIND
    # Also conclusive before the span is covered.
    assert status(window((100, 0, 5), (50, 1, 60)), 60, now=1.5) is Status.REWIND


def test_rule3_no_commit_for_longer_than_the_window_spans_is_stop() -> None:
    w = window((100, 0, 50), (110, 10, 60), (120, 20, 70))
    assert status(w, 70, now=40) is Status.WARN  # exactly the window's span: not yet
    assert status(w, 70, now=41) is Status.STOP
    assert status(w, 70, now=39) is Status.WARN  # lag grew by 20 s of input: slow


def test_rule4_same_offset_committed_over_the_window_is_stall() -> None:
    w = window((100, 0, 5), (100, 10, 8), (100, 20, 9))
    assert status(w, 9, now=21) is Status.STALL


def test_rule5_advancing_offsets_with_lag_growing_beyond_noise_is_warn() -> None:
    # 1 record/s arrives (end 105 → 129), the lag grows by 4 records = 4 s of input > 2 s.
    w = window((100, 0, 5), (110, 10, 5), (120, 20, 9))
    assert status(w, 9, now=21) is Status.WARN


def test_rule6_advancing_offsets_with_lag_decreasing_somewhere_is_ok() -> None:
    w = window((100, 0, 50), (140, 10, 30), (160, 20, 35))
    assert status(w, 35, now=21) is Status.OK


def test_sub_second_noise_is_not_warn() -> None:
    """A consumer that keeps up but commits once a second: 3,000 records/s arrive, the lag sampled at
    each commit wobbles between 0.3 and 1.1 s of input and happens to be non-decreasing (Burrow's rule 5
    alone would say WARN)."""
    rate = 3000
    lags = [900, 1200, 1500, 2400, 3300]  # 0.3 s … 1.1 s of input, never decreasing
    w: tuple[Commit, ...] = ()
    for i, lag in enumerate(lags):
        t = i * 5.0
        w = add_commit(w, Commit(int(t * rate) - lag, t, lag), 10)
    assert status(w, lags[-1], now=20.5) is Status.OK
    # The same shape growing by more than 2 s of input over the window is a consumer falling behind.
    grown = [c.lag * 3 + 3000 * i for i, c in enumerate(w)]
    w2: tuple[Commit, ...] = ()
    for c, lag in zip(w, grown, strict=True):
        w2 = add_commit(w2, Commit(c.offset + c.lag - lag, c.time, lag), 10)
    assert lag_growth_s(w2[0], w2[-1]) > 2
    assert status(w2, grown[-1], now=20.5) is Status.WARN


def test_lag_growth_is_measured_in_seconds_of_input() -> None:
    first, last = Commit(1000, 0.0, 100), Commit(1900, 10.0, 300)  # end 1100 → 2200: 110 records/s
    assert lag_growth_s(first, last) == pytest.approx(200 / 110)
    assert lag_growth_s(last, first) == 0.0  # shrinking lag does not grow
    assert lag_growth_s(Commit(10, 0.0, 5), Commit(10, 0.0, 9)) == float("inf")


def test_too_short_a_watch_is_na_not_a_guess() -> None:
    """Two samples a second apart (the one-shot command): a healthy consumer between two commits looks
    stalled, and any two lags look like a trend; the rules say n/a until the span is covered."""
    stalled_looking = window((100, 0, 300), (100, 1, 1200))
    assert status(stalled_looking, 1200, now=1) is Status.NA
    trend_looking = window((100, 0, 300), (200, 1, 1200))
    assert status(trend_looking, 1200, now=1) is Status.NA
    # Covered: the same unchanged offset over 10 s is a real stall.
    assert status(window((100, 0, 300), (100, 10, 1200)), 1200, now=10) is Status.STALL


def test_a_partition_watched_long_enough_with_one_commit_is_stop_not_na() -> None:
    """A group with no member left: its one commit stays the last, and time since it grows past the span."""
    w = window((100, 0, 5))
    assert status(w, 5, now=5) is Status.NA
    assert status(w, 5, now=10) is Status.STOP


def test_window_size_spans_the_minimum_evidence() -> None:
    assert window_size(10, 5.0, 10.0) == 10
    assert window_size(10, 1.0, 10.0) == 11  # 11 samples 1 s apart span 10 s
    assert window_size(4, 0.5, 10.0) == 21
    with pytest.raises(ValueError):
        window_size(0, 1.0, 1.0)


def test_window_slides() -> None:
    w: tuple[Commit, ...] = ()
    for i in range(15):
        w = add_commit(w, Commit(i, float(i), 1), 4)
    assert [c.offset for c in w] == [11, 12, 13, 14]


def test_group_status_is_the_most_severe_in_burrows_order() -> None:
    assert group_status([]) is Status.OK
    assert group_status([Status.OK, Status.WARN]) is Status.WARN
    assert group_status([Status.STOP, Status.STALL, Status.WARN]) is Status.STALL
    assert group_status([Status.STALL, Status.REWIND]) is Status.REWIND


def test_group_status_is_na_only_when_nothing_worse_than_ok_is_known() -> None:
    assert group_status([Status.OK, Status.NA]) is Status.NA
    assert group_status([Status.NA, Status.STOP]) is Status.STOP
    assert group_status([Status.NA]) is Status.NA


def test_a_sample_is_a_commit_when_the_offset_moved_or_a_member_is_alive() -> None:
    w = window((100, 0, 5))
    assert should_record_commit(w, 101, group_has_members=False)
    assert should_record_commit(w, 100, group_has_members=True)
    assert not should_record_commit(w, 100, group_has_members=False)
    assert not should_record_commit(w, None, group_has_members=True)
    assert should_record_commit((), 0, group_has_members=False)
