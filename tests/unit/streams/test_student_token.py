"""Daily student tokens: stable per day, different across days, agreed key, destruction time."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from streams.student_token import (
    DAY_MS,
    DAY_S,
    DayKeyStore,
    KeyUnavailable,
    key_destroy_after_ms,
    new_key,
    student_token,
)


def test_token_is_first_8_bytes_of_hmac_sha256() -> None:
    key = b"k" * 32
    expected = int.from_bytes(hmac.new(key, b"d1:s1", hashlib.sha256).digest()[:8], "big")
    assert student_token(key, "d1", "s1") == expected
    assert 0 <= expected < 2**64


def test_same_day_same_token_other_day_other_token() -> None:
    store = DayKeyStore()
    store.offer(100, 0, new_key())
    store.offer(101, 1, new_key())
    a = store.token("d1", "s1", 100 * DAY_S)
    assert store.token("d1", "s1", 100 * DAY_S + DAY_S - 60) == a
    assert store.token("d1", "s1", 101 * DAY_S) != a
    assert store.token("d1", "s2", 100 * DAY_S) != a
    with pytest.raises(KeyUnavailable):
        store.token("d1", "s1", 102 * DAY_S)
    assert store.missing_days({100, 102}) == {102}


def test_lowest_offset_candidate_wins_regardless_of_read_order() -> None:
    k1, k2 = new_key(), new_key()
    a, b = DayKeyStore(), DayKeyStore()
    a.offer(5, 10, k1)
    a.offer(5, 11, k2)
    b.offer(5, 11, k2)
    assert b.token("d", "s", 5 * DAY_S) == student_token(k2, "d", "s")
    b.offer(5, 10, k1)
    assert (
        a.token("d", "s", 5 * DAY_S) == b.token("d", "s", 5 * DAY_S) == student_token(k1, "d", "s")
    )


def test_tombstone_destroys_the_key_for_good() -> None:
    store = DayKeyStore()
    store.offer(5, 0, new_key())
    store.offer(5, 0, None)
    store.offer(5, 7, new_key())  # a straggler candidate after destruction is ignored
    assert not store.has(5)


def test_destroy_time_is_after_the_last_possible_event() -> None:
    age = 72 * 3600 * 1000
    slack = 60_000 * 4
    when = key_destroy_after_ms(10, age, slack)
    assert when == 11 * DAY_MS + age + slack
    store = DayKeyStore()
    store.offer(10, 0, new_key())
    assert store.expired_days(when, age, slack) == []
    assert store.expired_days(when + 1, age, slack) == [10]
