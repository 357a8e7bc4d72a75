"""Which days can be rebuilt, and their usage rows recomputed from raw activity records — pure functions.

``csync usage rebuild --from D1 --to D2`` repairs the rollups of closed days (e.g. after a bug in the usage
rule) from the raw topic. A day can be rebuilt when both hold:

- **closed**: it can receive no more events (``day end + MAX_EVENT_AGE_H + lateness + close + gap``, the same
  horizon after which the workers destroy the day's token key). Before that, the live pipeline may still add
  rows to it, which a swap would lose or a later write would add on top of; the command says when it closes.
- **fully retained**: every raw record that can carry an event of it (arrived from one hour before the day,
  see :data:`WARMUP_MS`) is still in the raw topic (``retention.ms`` by record time); else the command names
  the date it expired.

The replay is the worker's own rule (:mod:`streams.usage`) applied to the records of each partition in log
order, the record's timestamp standing for the worker's clock: the decoder judges validity at that time,
events on a partition other than their own are skipped (the worker re-routes them, and the re-routed copy is
read on its own partition), the probe district counts nothing. With the close time longer than the maximum gap
(the defaults: 120 s > 60 s), when a silent device is closed does not change what it attributes, so the
replay's rows equal the live ones. Student tokens use a fresh random key per rebuild (the day's own key is
destroyed by then): ``uniq`` counts distinct tokens of one day, so the counts are the same and the new tokens
are as unlinkable as the old.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.clock import DAY_MS
from schemas.decoder import Limits, decode_record
from schemas.internal import UsageRow
from schemas.probe import is_probe_district
from schemas.routing import partition_for_key
from streams.student_token import key_destroy_after_ms, new_key, student_token
from streams.usage import Interval, UsageBook, UsageRules, to_rows

WARMUP_MS = 3_600_000  # read from this long before the first day: device state and intervals crossing midnight
CLOSE_EVERY_MS = 1000  # as the worker: close silent devices about once a second of record time

# A raw record: (partition, offset, timestamp_ms, key, value)
RawRecord = tuple[int, int, int, bytes | None, bytes | None]


def day_start_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class Horizons:
    """What decides whether a day can be rebuilt, in ms."""

    now_ms: int
    retention_ms: int  # the raw topic's retention.ms (-1 = kept forever)
    first_kept_ms: (
        int | None
    )  # timestamp of the oldest raw record still kept, None if nothing was deleted
    max_event_age_ms: int
    slack_ms: int  # lateness + close + gap: what may still finalise an event after it arrived


def refusals(first: dt.date, last: dt.date, h: Horizons) -> list[str]:
    """Why days of ``first..last`` cannot be rebuilt (empty: all can)."""
    if last < first:
        return ["--to is before --from"]
    out: list[str] = []
    day = first
    while day <= last:
        start = day_start_ms(day)
        need_from = start - WARMUP_MS
        closes = key_destroy_after_ms(start // DAY_MS, h.max_event_age_ms, h.slack_ms)
        if closes >= h.now_ms:
            out.append(
                f"{day}: still open to late events until {iso(closes)}; rebuild it after that"
            )
        elif h.retention_ms > 0 and need_from < h.now_ms - h.retention_ms:
            out.append(f"{day}: its raw records expired from the raw topic on "
                       f"{iso(need_from + h.retention_ms)} (retention {h.retention_ms // DAY_MS} d)")  # fmt: skip
        elif h.first_kept_ms is not None and h.first_kept_ms > need_from:
            out.append(
                f"{day}: raw records before {iso(h.first_kept_ms)} are gone; it expired then"
            )
        day += dt.timedelta(days=1)
    return out


def replay_intervals(
    records: Iterable[RawRecord], partitions: int, rules: UsageRules, limits: Limits
) -> list[Interval]:
    """The intervals the worker attributes for ``records`` (each partition's in log order)."""
    books: dict[int, UsageBook] = {}
    last_close: dict[int, int] = {}
    out: list[Interval] = []
    for partition, _offset, now, _key, value in records:
        if value is None:
            continue
        book = books.get(partition)
        if book is None:
            book = books[partition] = UsageBook(rules)
            last_close[partition] = now
        for outcome in decode_record(value, now, limits):
            ev = outcome.event
            if ev is None or is_probe_district(ev.district_id):
                continue
            routed = partition_for_key(ev.student_key.encode(), partitions)
            if routed != partition:
                continue  # the worker re-routes it; its copy is read on its own partition
            book.on_events(ev.device_key, (ev,), now, out)
        if now - last_close[partition] >= CLOSE_EVERY_MS:
            book.close_silent(now, out)
            last_close[partition] = now
    for book in books.values():  # the days are closed: every device has been silent since
        book.close_silent(2**62, out)
    return out


def rebuilt_rows(intervals: Iterable[Interval], first: dt.date, last: dt.date) -> list[UsageRow]:
    """Rows of the days ``first..last`` only, under one fresh key per day (never stored)."""
    keys: dict[int, bytes] = {}

    def tokenize(district_id: str, student_id: str, minute_s: int) -> int:
        day = minute_s // 86_400
        key = keys.get(day)
        if key is None:
            key = keys[day] = new_key()
        return student_token(key, district_id, student_id)

    lo, hi = day_start_ms(first) // 1000, (day_start_ms(last) + DAY_MS) // 1000
    return [row for row in to_rows(intervals, tokenize) if lo <= row[0] < hi]
