"""The usage rule (CONTRACT §5): exact to the ms, arrival-order independent within lateness."""

from __future__ import annotations

import random
from collections import Counter

from schemas.clock import split_minutes
from schemas.event import ACTIVE_KINDS, ActivityEvent
from streams.usage import DeviceUsage, Interval, UsageBook, UsageRules, to_rows

GAP = 60_000
LATE = 60_000
RULES = UsageRules(
    max_gap_ms=GAP, lateness_ms=LATE, close_after_ms=120_000, evict_after_ms=3_600_000
)


def ev(
    eid: str, kind: str, ts: int, app: str = "docs", device: str = "dev1", student: str = "s1"
) -> ActivityEvent:
    return ActivityEvent(
        eid, kind, ts, "d1", student, device, app if kind in ACTIVE_KINDS else "", ""
    )


def truth(events: list[ActivityEvent]) -> Counter[tuple[str, str, str, int]]:
    """§5 literally, on the whole input: per device ordered by ts, dedup by event_id, ms per
    minute."""
    out: Counter[tuple[str, str, str, int]] = Counter()
    devices: dict[tuple[str, str, str], dict[str, ActivityEvent]] = {}
    for e in events:
        devices.setdefault(e.device_key, {}).setdefault(e.event_id, e)
    for key, by_id in devices.items():
        seq = sorted(by_id.values(), key=lambda e: e.ts)
        for i, e in enumerate(seq):
            if e.kind not in ACTIVE_KINDS:
                continue
            end = e.ts + GAP if i + 1 == len(seq) else min(seq[i + 1].ts, e.ts + GAP)
            for minute, ms in split_minutes(e.ts, end):
                out[(key[2], e.app, e.sub_app, minute)] += ms
    return out


def run(
    arrivals: list[tuple[ActivityEvent, int]], book: UsageBook | None = None
) -> Counter[tuple[str, str, str, int]]:
    book = UsageBook(RULES) if book is None else book  # an empty book is falsy (len 0)
    intervals: list[Interval] = []
    for e, now in arrivals:
        book.on_event(e, now, intervals)
    book.close_silent(10**15, intervals)
    out: Counter[tuple[str, str, str, int]] = Counter()
    for (_d, _s, device), start, end, app, sub in intervals:
        for minute, ms in split_minutes(start, end):
            out[(device, app, sub, minute)] += ms
    return out


def test_split_minutes() -> None:
    assert split_minutes(59_000, 121_000) == [(0, 1000), (60, 60_000), (120, 1000)]
    assert split_minutes(5, 5) == []
    assert sum(ms for _, ms in split_minutes(123_456, 987_654)) == 987_654 - 123_456


def test_in_order_gap_cap_idle_and_minute_split() -> None:
    events = [
        ev("a", "app_focus", 50_000, "docs"),
        ev("b", "heartbeat", 60_000, "docs"),  # 10 s to docs, crossing nothing
        ev("c", "app_focus", 70_000, "web"),  # 10 s docs
        ev("d", "idle", 200_000),  # web capped at gap 60 s
        ev("e", "heartbeat", 300_000, "docs"),  # idle attributes nothing
    ]
    got = run([(e, i) for i, e in enumerate(events)])
    assert got == truth(events)
    assert got[("dev1", "docs", "", 0)] == 10_000 and got[("dev1", "docs", "", 60)] == 10_000
    assert got[("dev1", "web", "", 60)] == 50_000 and got[("dev1", "web", "", 120)] == 10_000
    assert got[("dev1", "docs", "", 300)] == 60_000  # last event, closed: full gap
    assert sum(got.values()) == 10_000 + 10_000 + 60_000 + 60_000


def test_any_arrival_order_within_lateness_with_duplicates_equals_truth() -> None:
    rnd = random.Random(42)
    kinds = ["app_focus", "heartbeat", "heartbeat", "heartbeat", "idle", "logout"]
    for trial in range(300):
        events: list[ActivityEvent] = []
        for d in range(rnd.randrange(1, 4)):
            t = rnd.randrange(0, 10**6)
            for i in range(rnd.randrange(1, 40)):
                t += rnd.randrange(1, rnd.choice([15_000, 90_000]))  # distinct ts
                events.append(
                    ev(
                        f"{trial}-{d}-{i}",
                        rnd.choice(kinds),
                        t,
                        rnd.choice(["docs", "web"]),
                        device=f"dev{d}",
                    )
                )
        dupes = rnd.sample(events, k=len(events) // 3)
        # arrival = ts + jitter < lateness: never late by construction
        jitter = [0, LATE // 2, LATE - 1]  # sometimes as late as allowed
        keyed = [
            (
                e.ts
                + rnd.randrange(0, 1000) * 0
                + min(LATE - 1, rnd.choice(jitter) + rnd.randrange(0, 1000)),
                e,
            )
            for e in events + dupes
        ]
        keyed.sort(key=lambda p: p[0])
        got = run([(e, 0) for _, e in keyed])
        assert got == truth(events), trial


def test_late_event_is_dropped_and_counted() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    book.on_event(ev("a", "app_focus", 0), 0, out)
    book.on_event(ev("b", "heartbeat", 200_000), 0, out)
    assert (
        book.on_event(ev("c", "app_focus", 139_999, "web"), 0, out) is False
    )  # 200000-139999 > 60000
    assert book.late_events == 1
    assert (
        book.on_event(ev("d", "app_focus", 140_000, "web"), 0, out) is True
    )  # exactly at the limit
    book.close_silent(10**12, out)
    apps: Counter[str] = Counter()
    for _k, s, e, app, _sub in out:
        apps[app] += e - s
    assert apps == {"docs": 60_000 + 60_000, "web": 60_000}


def test_finalisation_waits_for_lateness_then_emits() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    book.on_event(ev("a", "app_focus", 0), 0, out)
    book.on_event(ev("b", "heartbeat", 10_000), 0, out)
    assert out == []  # b could still be preceded by a not-late event
    book.on_event(ev("c", "heartbeat", 70_000), 0, out)  # max_ts - L = 10000 >= b.ts
    assert [(s, e) for _k, s, e, _a, _s in out] == [(0, 10_000)]


def test_close_is_by_arrival_clock_not_event_time() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    book.on_event(ev("a", "app_focus", 0), now_ms=10**12, out=out)  # very old event, uploaded now
    book.close_silent(10**12 + 119_999, out)
    assert out == []
    book.close_silent(10**12 + 120_000, out)
    assert [(s, e) for _k, s, e, _a, _s in out] == [(0, 60_000)]


def test_same_app_continuing_after_close_gives_same_totals() -> None:
    events = [ev("a", "app_focus", 0), ev("b", "heartbeat", 30_000), ev("c", "heartbeat", 100_000)]
    book = UsageBook(RULES)
    out: list[Interval] = []
    book.on_event(events[0], 0, out)
    book.close_silent(200_000, out)  # device silent: a closed with the full gap [0, 60000)
    book.on_event(events[1], 300_000, out)  # inside the closed range, not late
    book.on_event(events[2], 300_000, out)
    book.close_silent(10**12, out)
    total = sum(e - s for _k, s, e, _a, _s in out)
    assert total == sum(truth(events).values()) == 30_000 + 60_000 + 60_000


def test_silent_devices_are_evicted() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    for i in range(100):
        book.on_event(ev(f"e{i}", "heartbeat", 1000, device=f"dev{i}"), 0, out)
    book.close_silent(3_599_999, out)
    assert len(book) == 100
    book.close_silent(3_600_000, out)
    assert len(book) == 0
    assert len(out) == 100


def test_dedup_set_is_bounded_by_the_lateness_window() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    for i in range(10_000):
        book.on_event(ev(f"e{i}", "heartbeat", i * 10_000), 0, out)
    dev = book.devices[("d1", "s1", "dev1")]
    assert len(dev.seen_ids()) <= 8 + 7 and len(dev.buffer) <= 8


def test_rows_are_deidentified_summed_and_sorted() -> None:
    tok = {"s1": 11, "s2": 22}
    intervals: list[Interval] = [
        (("d1", "s1", "a"), 0, 90_000, "docs", ""),
        (("d1", "s1", "b"), 30_000, 60_000, "docs", ""),
        (("d1", "s2", "c"), 0, 1000, "docs", ""),
    ]
    rows = to_rows(intervals, lambda d, s, m: tok[s])
    assert rows == [
        (0, "docs", "", 11, 90_000),
        (0, "docs", "", 22, 1000),
        (60, "docs", "", 11, 30_000),
    ]


def test_dedup_is_exact_for_ids_that_are_parts_of_other_ids_or_timestamps() -> None:
    """Each id is remembered whole: an id that is a prefix, a suffix or a part of another id, or
    equals a remembered event's ts, is a different event; only an exact repeat is a duplicate."""
    ids = ["a", "a-1", "1", "a-", "-1", "A", "a_1", "1000", "10", "0", "1001"]
    events = [ev(i, "heartbeat", 1000 + 10 * n, app=f"app{n}") for n, i in enumerate(ids)]
    repeats = [e._replace(app="other") for e in events[::2]]  # a retry changes nothing
    book = UsageBook(RULES)
    got = run([(e, 0) for e in [*events, *repeats]], book)
    assert book.duplicate_events == len(repeats)
    assert got == truth(events)
    assert {app for _dev, app, _sub, _m in got} == {f"app{n}" for n in range(len(ids))}


def test_a_duplicate_counts_once_across_batches_while_in_the_lateness_window() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    events = [ev(f"e{i}", "heartbeat", i * 5_000) for i in range(40)]
    for e in events:
        book.on_event(e, 0, out)
    # pruned ids are outside the window, so their repeats are late; the rest are duplicates
    for e in events:
        assert not book.on_event(e, 0, out)
    assert book.late_events + book.duplicate_events == len(events)
    assert book.duplicate_events == sum(1 for e in events if e.ts >= 39 * 5_000 - LATE)


def test_device_state_round_trips_through_its_plain_fields() -> None:
    book = UsageBook(RULES)
    out: list[Interval] = []
    for i, ts in enumerate([5_000, 1_000, 3_000, 3_000, 50_000, 40_000]):
        kind = "idle" if i == 3 else "heartbeat"
        book.on_event(ev(f"e{i}", kind, ts, app=f"app{i}"), 0, out)
    dev = book.devices[("d1", "s1", "dev1")]
    assert [e[0] for e in dev.buffer] == [1_000, 3_000, 3_000, 5_000, 40_000, 50_000]
    assert [e[1] for e in dev.buffer[1:3]] == [True, False]  # equal ts: arrival order
    assert DeviceUsage(*dev.fields()) == dev
    assert DeviceUsage(*dev.fields()).fields() == dev.fields()


def test_a_closed_device_continues_exactly() -> None:
    """Closing empties the buffer (held as no containers at all); later events of the device,
    repeats of remembered ids included, count as if it had stayed open."""
    events = [ev(f"e{i}", "heartbeat", i * 10_000) for i in range(6)]
    later = [ev(f"f{i}", "heartbeat", 400_000 + i * 10_000) for i in range(3)]
    book = UsageBook(RULES)
    out: list[Interval] = []
    for e in events:
        book.on_event(e, 0, out)
    assert book.close_silent(200_000, out) == 1
    dev = book.devices[("d1", "s1", "dev1")]
    assert dev.buffer == [] and DeviceUsage(*dev.fields()) == dev
    assert not book.on_event(events[-1], 300_000, out)  # still remembered: a duplicate
    for e in later:
        book.on_event(e, 300_000, out)
    book.close_silent(10**9, out)
    got: Counter[tuple[str, str, str, int]] = Counter()
    for (_d, _s, device), start, end, app, sub in out:
        for minute, ms in split_minutes(start, end):
            got[(device, app, sub, minute)] += ms
    assert got == truth(events + later)
