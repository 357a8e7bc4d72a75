"""Minute and day arithmetic: pieces cover the interval exactly and never cross a UTC minute."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from schemas.clock import (
    DAY_MS,
    MINUTE_MS,
    NEVER,
    day_of_minute,
    day_of_ms,
    minute_start,
    split_minutes,
)

TIMES = st.integers(min_value=0, max_value=4_000_000_000_000)


def test_split_minutes_examples() -> None:
    assert split_minutes(59_000, 121_000) == [(0, 1000), (60, 60_000), (120, 1000)]
    assert split_minutes(5, 5) == []
    assert split_minutes(7, 3) == []


@given(TIMES, st.integers(min_value=0, max_value=10 * MINUTE_MS))
def test_split_minutes_covers_the_interval_within_minutes(start: int, length: int) -> None:
    pieces = split_minutes(start, start + length)
    assert sum(ms for _m, ms in pieces) == length
    assert all(0 < ms <= MINUTE_MS for _m, ms in pieces)
    minutes = [m for m, _ms in pieces]
    assert minutes == sorted(set(minutes))
    assert all(m * 1000 == minute_start(m * 1000) for m in minutes)
    if pieces:
        assert minutes[0] * 1000 == minute_start(start)


@given(TIMES)
def test_days_agree_with_the_utc_calendar(t: int) -> None:
    date = dt.datetime.fromtimestamp(t / 1000, dt.UTC).date()
    assert day_of_ms(t) == (date - dt.date(1970, 1, 1)).days
    assert day_of_minute(minute_start(t) // 1000) == day_of_ms(t)
    assert day_of_ms(t) * DAY_MS <= t < (day_of_ms(t) + 1) * DAY_MS
    assert t > NEVER
