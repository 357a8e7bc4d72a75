"""The lag rules: offset lag as kafka-consumer-groups prints it, interpolated time lag, Burrow's statuses."""

from __future__ import annotations

import pytest

from ops.lag import (
    Commit,
    Point,
    Status,
    add_commit,
    add_point,
    group_status,
    offset_lag,
    partition_status,
    predict_time,
    should_record_commit,
    time_lag_s,
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


def test_rule1_any_zero_lag_in_the_window_is_ok() -> None:
    w = window((10, 0, 5), (10, 10, 0), (10, 20, 5))
    assert partition_status(w, 5, now=25) is Status.OK
    assert partition_status(window((10, 0, 5), (10, 10, 5)), 0, now=100) is Status.OK


def test_rule2_an_offset_going_back_is_rewind() -> None:
    w = window((100, 0, 5), (110, 10, 5), (50, 20, 60))
    assert partition_status(w, 60, now=25) is Status.REWIND


def test_rule3_no_commit_for_longer_than_the_window_spans_is_stop() -> None:
    w = window((100, 0, 5), (110, 10, 6), (120, 20, 7))
    assert partition_status(w, 7, now=40) is Status.WARN  # exactly the window's span: not yet
    assert partition_status(w, 7, now=41) is Status.STOP
    assert partition_status(w, 7, now=39) is Status.WARN  # lag never decreased: slow


def test_rule4_same_offset_committed_over_the_window_is_stall() -> None:
    w = window((100, 0, 5), (100, 10, 8), (100, 20, 9))
    assert partition_status(w, 9, now=21) is Status.STALL


def test_rule5_advancing_offsets_with_lag_never_decreasing_is_warn() -> None:
    w = window((100, 0, 5), (110, 10, 5), (120, 20, 9))
    assert partition_status(w, 9, now=21) is Status.WARN


def test_rule6_advancing_offsets_with_lag_decreasing_somewhere_is_ok() -> None:
    w = window((100, 0, 50), (140, 10, 30), (160, 20, 35))
    assert partition_status(w, 35, now=21) is Status.OK


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


def test_a_sample_is_a_commit_when_the_offset_moved_or_a_member_is_alive() -> None:
    w = window((100, 0, 5))
    assert should_record_commit(w, 101, group_has_members=False)
    assert should_record_commit(w, 100, group_has_members=True)
    assert not should_record_commit(w, 100, group_has_members=False)
    assert not should_record_commit(w, None, group_has_members=True)
    assert should_record_commit((), 0, group_has_members=False)


def test_a_single_commit_is_judged_only_by_rules_1_to_3() -> None:
    w = window((100, 10, 5))
    assert partition_status(w, 5, now=10) is Status.OK  # just seen: no trend yet
    assert partition_status(w, 5, now=11) is Status.STOP  # and no commit since
