"""The presence rule (CONTRACT §4): LWW by ts, timeout, dedup, roster join, change-only emission."""

from __future__ import annotations

import random

from schemas.event import ActivityEvent
from streams.presence import PresenceBook, View, apply_event, new_student

T = 60_000  # PRESENCE_TIMEOUT_S = 60


def ev(
    eid: str, kind: str, ts: int, app: str = "", sub: str = "", student: str = "s1"
) -> ActivityEvent:
    if kind in ("app_focus", "heartbeat") and not app:
        app = "docs"
    return ActivityEvent(eid, kind, ts, "d1", student, "dev1", app, sub)


def test_first_focus_goes_online_and_heartbeats_emit_nothing() -> None:
    book = PresenceBook(T)
    ch = book.on_event(ev("a", "app_focus", 1000, "docs", "x"), now_ms=1000)
    assert ch is not None and ch.online and (ch.app, ch.sub_app, ch.ts) == ("docs", "x", 1000)
    assert ch.name == ""
    for i in range(1, 20):
        assert (
            book.on_event(
                ev(f"h{i}", "heartbeat", 1000 + i * 10_000, "docs", "x"), 1000 + i * 10_000
            )
            is None
        )


def test_app_change_emits_and_idle_logout_go_offline_at_once() -> None:
    book = PresenceBook(T)
    book.on_event(ev("a", "app_focus", 1000, "docs", "x"), 1000)
    ch = book.on_event(ev("b", "app_focus", 2000, "web", "khanacademy.org"), 2000)
    assert ch is not None and (ch.app, ch.sub_app) == ("web", "khanacademy.org")
    ch = book.on_event(ev("c", "idle", 3000), 3000)
    assert ch is not None and not ch.online and ch.app == "" and ch.sub_app == "" and ch.ts == 3000
    ch = book.on_event(ev("d", "heartbeat", 4000, "web", "khanacademy.org"), 4000)
    assert ch is not None and ch.online
    ch = book.on_event(ev("e", "logout", 5000), 5000)
    assert ch is not None and not ch.online


def test_older_event_never_overwrites_newer() -> None:
    book = PresenceBook(T)
    book.on_event(ev("b", "idle", 2000), 2000)
    assert book.on_event(ev("a", "app_focus", 1999, "docs"), 2001) is None
    assert book.states["d1:s1"].ts == 2000 and book.states["d1:s1"].kind == "idle"


def test_tie_later_arrival_wins_but_a_repeat_changes_nothing() -> None:
    book = PresenceBook(T)
    book.on_event(ev("a", "app_focus", 1000, "docs"), 1000)
    ch = book.on_event(ev("b", "idle", 1000), 1001)
    assert ch is not None and not ch.online  # tie: later arrival wins
    assert book.on_event(ev("a", "app_focus", 1000, "docs"), 1002) is None  # repeat of a
    assert book.states["d1:s1"].kind == "idle"
    ch = book.on_event(ev("c", "heartbeat", 1000, "docs"), 1003)  # new id, same ts: wins
    assert ch is not None and ch.online


def test_old_event_replayed_is_offline_by_worker_clock() -> None:
    book = PresenceBook(T)
    ch = book.on_event(ev("a", "app_focus", 0, "docs"), now_ms=10 * T)
    assert ch is not None and not ch.online and ch.ts == 0  # first sight writes the hash
    ch = book.on_event(ev("b", "app_focus", 1, "docs"), now_ms=10 * T)
    assert ch is not None and not ch.online and ch.ts == 1  # offline: a new ts is written at once
    assert book.on_event(ev("b", "app_focus", 1, "docs"), now_ms=10 * T) is None  # a repeat


def test_stale_arrivals_after_the_roster_write_their_ts_in_the_same_batch() -> None:
    book = PresenceBook(T, refresh_ms=R)
    first = book.on_roster("d1", "s1", "Ada", ("c-1",), now_ms=10 * T)
    assert first is not None and first.ts == 0 and first.name == "Ada"
    # a buffered upload, all past the timeout: nothing visible changes, the ts does
    ch = book.on_events(
        "d1:s1", "d1", "s1", [ev("a", "app_focus", 1000), ev("b", "heartbeat", 9000)], 10 * T + 1
    )
    assert ch is not None and (ch.name, ch.online, ch.app, ch.ts) == ("Ada", False, "", 9000)
    assert book.on_event(ev("c", "heartbeat", 5000), 10 * T + 2) is None  # older: no change


def test_timeout_boundary_is_inclusive() -> None:
    s = new_student("d1", "s1")
    s, _ = apply_event(s, ev("a", "app_focus", 1000, "docs"), 1000, T)
    assert s.view(1000 + T, T).online
    assert not s.view(1000 + T + 1, T).online


def test_expire_goes_offline_exactly_after_timeout_and_respects_newer_events() -> None:
    book = PresenceBook(T, refresh_ms=10**9)  # ts refreshes tested below
    book.on_event(ev("a", "app_focus", 0, "docs", student="s1"), 0)
    book.on_event(ev("b", "app_focus", 0, "docs", student="s2"), 0)
    book.on_event(ev("c", "heartbeat", 30_000, "docs", student="s2"), 30_000)
    assert book.expire(T) == []
    changes = book.expire(T + 1)
    assert [(c.student_id, c.online, c.app) for c in changes] == [("s1", False, "")]
    assert book.expire(T + 2) == []  # once only
    changes = book.expire(30_000 + T + 1)
    assert [(c.student_id, c.ts) for c in changes] == [("s2", 30_000)]  # the state's event ts
    assert book.expire(10**9) == []


def test_expire_heap_stays_bounded_under_heartbeats() -> None:
    book = PresenceBook(T)
    for i in range(10_000):
        book.on_event(ev(f"h{i}", "heartbeat", i * 10, "docs"), i * 10)
        if i % 100 == 0:
            book.expire(i * 10)
    # per student, not per event: a live entry + superseded ones
    assert sum(len(keys) for keys in book._wheel.values()) <= 3


def test_roster_join_name_classes_and_tombstone() -> None:
    book = PresenceBook(T)
    ch = book.on_roster("d1", "s1", "Ada", ("c2", "c1"), now_ms=0)
    assert ch is not None and ch.name == "Ada" and not ch.online and ch.classes_add == ("c1", "c2")
    assert book.on_roster("d1", "s1", "Ada", ("c1", "c2"), now_ms=1) is None  # no change
    ch = book.on_event(ev("a", "app_focus", 100, "docs"), 100)
    assert ch is not None and ch.name == "Ada" and ch.online
    ch = book.on_roster("d1", "s1", "Ada L.", ("c1", "c3"), now_ms=200)
    assert ch is not None and ch.name == "Ada L." and ch.online and ch.app == "docs"
    assert ch.classes_add == ("c1", "c3") and ch.classes_remove == ("c2",)
    ch = book.on_roster("d1", "s1", None, (), now_ms=300)
    assert ch is not None and ch.deleted and ch.classes_remove == ("c1", "c3")
    assert "d1:s1" not in book.states
    assert book.on_roster("d1", "s9", None, (), now_ms=300) is None


def test_any_arrival_order_gives_the_newest_event_as_state() -> None:
    rnd = random.Random(7)
    kinds = ["app_focus", "heartbeat", "idle", "logout"]
    for _ in range(200):
        events = [
            ev(f"e{i}", rnd.choice(kinds), rnd.randrange(0, 50) * 1000, rnd.choice(["a", "b"]))
            for i in range(rnd.randrange(1, 15))
        ]
        order = events + rnd.sample(events, k=len(events) // 2)  # with duplicates
        rnd.shuffle(order)
        book = PresenceBook(T)
        shown = View("\x00", False, "", "")
        for e in order:
            ch = book.on_event(e, now_ms=50_000)
            if ch is not None:
                shown = View(ch.name, ch.online, ch.app, ch.sub_app)
        state = book.states["d1:s1"]
        top = max(e.ts for e in events)
        assert state.ts == top
        winners = {(e.kind, e.app) for e in events if e.ts == top}
        assert (state.kind, state.app) in winners
        assert shown == state.view(50_000, T)


R = 30_000  # PRESENCE_TS_REFRESH_S = 30


def test_ts_only_refresh_at_most_once_per_refresh_interval_of_the_batch_clock() -> None:
    book = PresenceBook(T, refresh_ms=R)
    emitted = []
    first = book.on_event(ev("a", "app_focus", 0, "docs"), 0)
    assert first is not None and first.ts == 0
    for i in range(1, 31):  # heartbeats every 10 s for 5 minutes, batches every 10 s
        now = i * 10_000
        assert book.on_event(ev(f"h{i}", "heartbeat", now - 500, "docs"), now) is None
        emitted += [(now, c.ts, c.online, c.app) for c in book.expire(now)]
    # one refresh per 30 s of batch clock, each carrying the newest ts, still online in docs
    assert emitted == [(n, n - 500, True, "docs") for n in range(30_000, 300_001, 30_000)]


def test_visible_change_is_emitted_at_once_whatever_the_refresh() -> None:
    book = PresenceBook(T, refresh_ms=R)
    book.on_event(ev("a", "app_focus", 0, "docs"), 0)
    ch = book.on_event(ev("b", "app_focus", 1000, "web", "pbs.org"), 1000)
    assert ch is not None and (ch.app, ch.sub_app, ch.ts) == ("web", "pbs.org", 1000)
    ch = book.on_event(ev("c", "idle", 2000), 2000)
    assert ch is not None and not ch.online and ch.ts == 2000


def test_after_going_offline_the_emitted_ts_is_exactly_the_states_event() -> None:
    rnd = random.Random(3)
    for _ in range(100):
        book = PresenceBook(T, refresh_ms=R)
        last: dict[str, int] = {}
        now = 0
        for i in range(rnd.randrange(1, 40)):
            now += rnd.randrange(0, 20_000)
            kind = rnd.choice(["heartbeat"] * 5 + ["app_focus", "idle", "logout"])
            ts = now - rnd.randrange(0, 5_000)
            ch = book.on_event(ev(f"e{i}", kind, ts, rnd.choice(["docs", "math"])), now)
            changes = ([ch] if ch else []) + book.expire(now)
            for c in changes:
                last[c.student_id] = c.ts
        for c in book.expire(now + T + R + 1):  # the day ends: everyone times out
            last[c.student_id] = c.ts
        state = book.states["d1:s1"]
        assert not state.view(now + T + R + 1, T).online
        assert last["s1"] == state.ts


def test_refresh_is_deterministic_on_replay_with_the_recorded_clock() -> None:
    rnd = random.Random(5)
    batches = []
    now = 0
    for b in range(50):
        now += rnd.randrange(100, 15_000)
        batches.append(
            (now, [ev(f"e{b}-{i}", "heartbeat", now - rnd.randrange(0, 3000), "docs",
                      student=f"s{rnd.randrange(5)}") for i in range(rnd.randrange(0, 6))])
        )  # fmt: skip

    def run() -> list[tuple[str, int, bool]]:
        book = PresenceBook(T, refresh_ms=R)
        out = []
        for clock, events in batches:
            for e in events:
                ch = book.on_event(e, clock)
                if ch:
                    out.append((ch.student_id, ch.ts, ch.online))
            out += [(c.student_id, c.ts, c.online) for c in book.expire(clock)]
        return out

    first = run()
    assert first == run()
    assert len(first) < sum(len(e) for _, e in batches)  # not every heartbeat


def test_tie_ids_are_compared_whole() -> None:
    """At one ts, an id that is part of an already seen id is a different event (it wins the tie);
    only a repeat of a whole seen id changes nothing, in one batch or across batches."""
    book = PresenceBook(T)
    book.on_event(ev("a-1", "app_focus", 5000, "docs"), 5000)
    ch = book.on_event(ev("a", "app_focus", 5000, "math"), 5000)
    assert ch is not None and ch.app == "math"
    ch = book.on_events("d1:s1", "d1", "s1", [ev("1", "app_focus", 5000, "web")], 5000)
    assert ch is not None and ch.app == "web"
    for repeat in ("a-1", "a", "1"):
        assert book.on_event(ev(repeat, "app_focus", 5000, "docs"), 5000) is None
    state = book.states["d1:s1"]
    assert state.tie_ids == ("a-1", "a", "1") and state.app == "web"
    assert state._replace().fields() == state.fields()


class _ScanBook(PresenceBook):
    """The wake-up rule without the wheel: every due student, found by looking at all of them,
    in ``(wake, key)`` order."""

    __slots__ = ()

    def _due(self, now_ms: int) -> list[tuple[int, str]]:
        return sorted(
            (s.queued, k)
            for k, s in self.states.items()
            if s.queued is not None and s.queued <= now_ms
        )


def test_wheel_finds_exactly_the_due_students_of_a_full_scan_in_the_same_order() -> None:
    rnd = random.Random(11)
    for _ in range(40):
        books = (PresenceBook(T, refresh_ms=R), _ScanBook(T, refresh_ms=R))
        outs: tuple[list[object], list[object]] = ([], [])
        now = 0
        for i in range(300):
            # clocks that stay inside a bucket, cross one, or jump past many
            now += rnd.choice([0, 1, 7, 300, 1023, 1024, 5_000, 40_000, 95_000])
            student = f"s{rnd.randrange(30)}"
            kind = rnd.choice(["heartbeat"] * 4 + ["app_focus", "idle", "logout"])
            ts = now - rnd.randrange(0, 90_000)
            e = ev(f"e{i}", kind, ts, rnd.choice(["docs", "math"]), student=student)
            roll, expire = rnd.random(), rnd.random() < 0.7
            for book, out in zip(books, outs, strict=True):
                if roll < 0.05:  # a roster record or a tombstone
                    name = None if roll < 0.02 else "Ada"
                    out.append(book.on_roster("d1", student, name, ("c1",), now))
                else:
                    out.append(book.on_event(e, now))
                if expire:
                    out.extend(book.expire(now))
        assert outs[0] == outs[1]
        assert any(c is not None for c in outs[0])
