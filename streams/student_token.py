"""De-identified student tokens under daily keys (CONTRACT §5).

``student_token = uint64(first 8 bytes of HMAC-SHA256(day_key, f"{district_id}:{student_id}"))``
where the day is the UTC day of the usage row's *minute* (event time), so the same student gets the
same token for every minute of a day, on every device and in every worker, and unrelated tokens on
other days.

Why the keys must be shared: a student's events (all their devices) are on one partition, so only
the worker that owns that partition tokenises them. But partitions move between workers (rebalance,
crash, restart, a replay) within a day; a worker that made up its own key would give the same
student a second token that day and ``uniq(students)`` would count them twice. So every worker must
get the same key for the same day. Keys live in one compacted, single-partition Kafka topic
(``Settings.topic_day_keys``); the store is :class:`DayKeyStore`.

Agreement without coordination: a worker that needs a key for a day it has none for produces a
random *candidate* ``(day, nonce) -> key``, then reads the topic up to its end; the key of the day
is the candidate with the lowest offset. Every worker reads past its own candidate before using a
key, and the log is totally ordered, so all of them pick the same one. Record keys are distinct per
candidate, so compaction never removes the winner.

Destruction: a day's keys are tombstoned (and dropped from memory) once that day can no longer
receive events: ``day end + MAX_EVENT_AGE_H + lateness + close + gap`` by the worker clock
(:func:`key_destroy_after_ms`). After that no token of that day can be recomputed from a student id
by anyone — the tokens in ClickHouse become unlinkable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from schemas.clock import DAY_MS, DAY_S

KEY_BYTES: Final = 32


def student_token(day_key: bytes, district_id: str, student_id: str) -> int:
    """The uint64 token of a student under one day's key."""
    digest = hmac.new(day_key, f"{district_id}:{student_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def key_destroy_after_ms(day: int, max_event_age_ms: int, slack_ms: int) -> int:
    """Worker time after which day ``day`` can receive no more events, so its key must be destroyed.

    ``slack_ms`` covers what may still finalise an event of that day after it arrived: allowed
    lateness,
    the silent-device close and one max gap.
    """
    return (day + 1) * DAY_MS + max_event_age_ms + slack_ms


def new_key() -> bytes:
    """A fresh random day key."""
    return secrets.token_bytes(KEY_BYTES)


class KeyUnavailable(LookupError):
    """No key for a day: the caller must fetch/agree on one (:meth:`DayKeyStore.missing_days`)
    first."""


class DayKeyStore:
    """The agreed day keys known to this worker, plus a per-day token cache.

    Pure bookkeeping: the Kafka exchange lives in ``streams.keys_topic``. Tokens are cached per
    ``(day, district, student)`` because the hot path asks for the same student many times per
    batch.
    """

    __slots__ = ("_keys", "_cache", "_dead")

    def __init__(self) -> None:
        self._keys: dict[
            int, tuple[int, bytes]
        ] = {}  # day -> (offset of the winning candidate, key)
        self._cache: dict[int, dict[str, int]] = {}
        self._dead: set[int] = set()

    def offer(self, day: int, offset: int, key: bytes | None) -> None:
        """Apply a record of the key topic: a candidate at ``offset``, or a tombstone (``key is
        None``)."""
        if key is None:
            self._keys.pop(day, None)
            self._cache.pop(day, None)
            self._dead.add(day)
            return
        if day in self._dead:
            return
        held = self._keys.get(day)
        if held is None or offset < held[0]:
            self._keys[day] = (offset, key)
            self._cache.pop(day, None)

    def has(self, day: int) -> bool:
        """Whether this store holds the agreed key of ``day``."""
        return day in self._keys

    def days(self) -> list[int]:
        """Days with a live key."""
        return sorted(self._keys)

    def missing_days(self, days: set[int]) -> set[int]:
        """Which of ``days`` have no key here yet."""
        return {d for d in days if d not in self._keys}

    def token(self, district_id: str, student_id: str, minute_epoch_s: int) -> int:
        """The token of a student for the day of ``minute_epoch_s``; raises
        :class:`KeyUnavailable`."""
        day = minute_epoch_s // DAY_S
        cache = self._cache.get(day)
        if cache is None:
            held = self._keys.get(day)
            if held is None:
                raise KeyUnavailable(day)
            cache = self._cache[day] = {}
        name = f"{district_id}:{student_id}"
        tok = cache.get(name)
        if tok is None:
            tok = cache[name] = student_token(self._keys[day][1], district_id, student_id)
        return tok

    def expired_days(self, now_ms: int, max_event_age_ms: int, slack_ms: int) -> list[int]:
        """Days whose keys must be destroyed at ``now_ms``."""
        return [
            d for d in self._keys if now_ms > key_destroy_after_ms(d, max_event_age_ms, slack_ms)
        ]

    def clear_cache(self) -> None:
        """Drop cached tokens (bounded memory: call once per batch or so)."""
        self._cache.clear()
