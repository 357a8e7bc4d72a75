"""The presence rule (CONTRACT §4) as pure functions over plain values.

A student's state is the event with the greatest ``ts`` (ties: the later arrival wins; an older
event never overwrites a newer one). What a teacher sees is the :class:`View` ``(name, online, app,
sub_app)``; the worker emits a :class:`~schemas.internal.PresenceChange` at once when that view
changes (or the roster entry changes), never on every heartbeat.

The Redis hash's ``ts`` is "ms of the state's event" (CONTRACT §4), so a ts that changed without a
visible change is not lost either: it is emitted as a ts-only refresh at most once per
``refresh_ms`` of the batch clock per student (default 30 s, ``PRESENCE_TS_REFRESH_S``) while the
student is online; while offline (events that arrive already older than the timeout: a buffered
upload, a backlog) a new ``ts`` is emitted in the batch that brought it. Every emission carries the
state's ``ts``, so once a student is offline (timeout, idle, logout) Redis holds exactly the ``ts``
of their state's event.

Nothing here reads a clock: callers pass ``now_ms`` (the worker's clock, recorded per batch so that
a replay gives the same result). :class:`PresenceBook` keeps the states of one worker and a wake-up
wheel (timeouts and due refreshes, in buckets of ~1 s) so that :meth:`PresenceBook.expire` finds
the students to update without looking at the others; a student has at most one live entry, so
memory is bounded by the number of students.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any, NamedTuple

from schemas.clock import NEVER
from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import PresenceChange

DEFAULT_REFRESH_MS = 30_000


class View(NamedTuple):
    """What a teacher sees of a student (plus ``app``, which the Redis hash also holds)."""

    name: str
    online: bool
    app: str
    sub_app: str


OFFLINE_UNKNOWN = View("", False, "", "")
# Before anything was emitted: differs from every real view, so the first event always writes a
# hash.
NEVER_SHOWN = View("\x00", False, "", "")


class StudentPresence:
    """The presence state of one student (mutable, ``__slots__``: one small object per student).

    ``tie_ids`` are the event ids seen with ``ts == self.ts``: a repeat of one of them must not win
    the tie against a different event of the same ``ts`` that arrived in between (a duplicate
    changes nothing); almost always one id, so they are kept as one string ``ties`` (ids joined by
    ``" "``, which CONTRACT §2 ids cannot hold) instead of a tuple. ``shown``, ``shown_ts`` and
    ``shown_at`` describe the last emitted change: its view, its ``ts`` and the batch clock when it
    was emitted. ``queued`` is :class:`PresenceBook`'s wake-up of this student. ``key`` is
    ``"district_id:student_id"``: :class:`PresenceBook` uses this very string as its dict key and
    in its wake-up wheel (one string per student, not one per batch).

    The rule functions below update a state in place (no allocation per event, which dominated the
    worker's profile) and stay deterministic: no clock, no I/O, ``now_ms`` is passed in.
    """

    __slots__ = (
        "district_id", "student_id", "name", "classes", "ts", "kind", "app", "sub_app", "ties",
        "shown", "shown_ts", "shown_at", "key", "queued",
    )  # fmt: skip
    # The constructor's arguments (fields(), _replace(), snapshots)
    FIELDS = (
        "district_id", "student_id", "name", "classes", "ts", "kind", "app", "sub_app", "tie_ids",
        "shown", "shown_ts", "shown_at",
    )  # fmt: skip

    def __init__(
        self,
        district_id: str,
        student_id: str,
        name: str = "",
        classes: tuple[str, ...] = (),
        ts: int = -1,  # ts of the state's event; -1 before any event
        kind: str = "",  # "" before any event
        app: str = "",
        sub_app: str = "",
        tie_ids: tuple[str, ...] = (),
        shown: View = NEVER_SHOWN,  # the view last emitted
        shown_ts: int = -1,  # the ts last emitted
        shown_at: int = NEVER,  # now_ms of the last emission
        key: str | None = None,  # f"{district_id}:{student_id}", if the caller has it already
    ) -> None:
        # Districts are few: one string each (a worker holds ~100k students of a few districts).
        self.district_id = _intern(district_id)
        self.student_id = student_id
        self.name = name
        self.classes = classes
        self.ts = ts
        self.kind = _intern(kind)
        self.app = app
        self.sub_app = sub_app
        self.ties = " ".join(tie_ids)
        self.shown = shown
        self.shown_ts = shown_ts
        self.shown_at = shown_at
        self.key = f"{self.district_id}:{student_id}" if key is None else key
        # The wake-up of this student's live entry in its book's wheel (PresenceBook's
        # bookkeeping, not part of the state: fields() leaves it out). A slot, not a dict of
        # the book: one pointer per student instead of a dict entry.
        self.queued: int | None = None

    @property
    def tie_ids(self) -> tuple[str, ...]:
        """The event ids seen with ``ts == self.ts``, in arrival order."""
        return tuple(self.ties.split(" ")) if self.ties else ()

    def fields(self) -> tuple[Any, ...]:
        """All fields in ``__init__`` order (snapshots, equality in tests)."""
        return tuple(getattr(self, f) for f in self.FIELDS)

    def _replace(self, **changes: Any) -> StudentPresence:
        """A copy with some fields replaced (as the NamedTuple this class was; tools, tests)."""
        values = dict(zip(self.FIELDS, self.fields(), strict=True))
        values.update(changes)
        return StudentPresence(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StudentPresence) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"StudentPresence{self.fields()!r}"

    def view(self, now_ms: int, timeout_ms: int) -> View:
        """The view of this state at ``now_ms``."""
        if self.kind in ACTIVE_KINDS and now_ms - self.ts <= timeout_ms:
            return View(self.name, True, self.app, self.sub_app)
        return OFFLINE_UNKNOWN if not self.name else View(self.name, False, "", "")

    def deadline(self, timeout_ms: int) -> int:
        """The first ``now_ms`` at which this state is offline (only meaningful for active
        kinds)."""
        return self.ts + timeout_ms + 1

    def wake_at(self, timeout_ms: int, refresh_ms: int) -> int | None:
        """The next ``now_ms`` at which :meth:`PresenceBook.expire` must look at this student:
        its timeout while shown online, or its refresh while the emitted ``ts`` is stale."""
        wake: int | None = None
        if self.shown.online:
            wake = self.ts + timeout_ms + 1
        if self.ts != self.shown_ts and self.shown != NEVER_SHOWN:
            due = self.shown_at + refresh_ms
            wake = due if wake is None else min(wake, due)
        return wake


def new_student(district_id: str, student_id: str) -> StudentPresence:
    """The state of a student we know nothing about yet."""
    return StudentPresence(district_id, student_id)


def _change(
    state: StudentPresence,
    view: View,
    classes_add: tuple[str, ...] = (),
    classes_remove: tuple[str, ...] = (),
    deleted: bool = False,
) -> PresenceChange:
    return PresenceChange(
        district_id=state.district_id,
        student_id=state.student_id,
        name=view.name,
        online=view.online,
        app=view.app,
        sub_app=view.sub_app,
        ts=max(state.ts, 0),
        classes_add=classes_add,
        classes_remove=classes_remove,
        deleted=deleted,
    )


def _emitted(state: StudentPresence, view: View, now_ms: int) -> None:
    state.shown = view
    state.shown_ts = state.ts
    state.shown_at = now_ms


def apply_events(
    state: StudentPresence, events: Iterable[ActivityEvent], now_ms: int, timeout_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    """Apply one batch's valid events of one student, in arrival order; return the state and the
    change to emit, if the view at ``now_ms`` differs from the one last emitted.

    All events of a batch share ``now_ms``, so only the batch's winner matters: the greatest
    ``ts``, ties to the later arrival unless it repeats an id already seen at that ``ts``. Folding
    the ids first and building the view once gives the view the event-by-event rule ends with; it
    emits at most one change per student per batch instead of one per intermediate view. A ts-only
    change is not emitted here: :func:`refresh` emits it when due.
    """
    ts, ties = state.ts, state.ties
    winner: ActivityEvent | None = None
    for ev in events:
        t = ev[2]  # ts (by index: this loop runs once per event)
        if t > ts:
            ts, ties, winner = t, ev[0], ev
        elif t == ts and ev[0] not in ties.split(" "):  # rare: a tie, mostly a repeat
            ties, winner = f"{ties} {ev[0]}" if ties else ev[0], ev
    if winner is None:
        return state, None  # older never overwrites newer; a repeat changes nothing
    state.ts, state.ties = ts, ties
    state.kind = _intern(winner.kind)
    state.app, state.sub_app = _intern(winner.app), _intern(winner.sub_app)
    return _show(state, now_ms, timeout_ms)


def apply_event(
    state: StudentPresence, ev: ActivityEvent, now_ms: int, timeout_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    """Apply one valid event (:func:`apply_events` of one event)."""
    return apply_events(state, (ev,), now_ms, timeout_ms)


def _show(
    state: StudentPresence, now_ms: int, timeout_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    view = state.view(now_ms, timeout_ms)
    # Offline, a new ts is no heartbeat traffic (stale arrivals: a buffered upload, a backlog):
    # written at once, so the hash never keeps "0" (or an older ts) for a student seen since.
    if view == state.shown and (view.online or state.ts == state.shown_ts):
        return state, None
    _emitted(state, view, now_ms)
    return state, _change(state, view)


def refresh(
    state: StudentPresence, now_ms: int, timeout_ms: int, refresh_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    """At ``now_ms``: a visible change (a timeout), else a due ts-only refresh, else nothing."""
    state, change = _show(state, now_ms, timeout_ms)
    if change is not None or state.ts == state.shown_ts or state.shown == NEVER_SHOWN:
        return state, change
    if now_ms - state.shown_at < refresh_ms:
        return state, None
    _emitted(state, state.shown, now_ms)
    return state, _change(state, state.shown)


def apply_roster(
    state: StudentPresence,
    name: str | None,
    classes: tuple[str, ...],
    now_ms: int,
    timeout_ms: int,
) -> tuple[StudentPresence | None, PresenceChange | None]:
    """Apply a roster record (``name`` ``None`` = tombstone: the student left the roster).

    A tombstone drops the state and emits a ``deleted`` change removing the student from their
    classes. A record emits a change when the name or the classes change.
    """
    if name is None:
        if state.shown == NEVER_SHOWN:
            return None, None  # nothing was ever shown for this student
        return None, _change(state, OFFLINE_UNKNOWN, classes_remove=state.classes, deleted=True)
    classes = tuple(sorted(set(classes)))
    if name == state.name and classes == state.classes:
        return state, None
    removed = tuple(c for c in state.classes if c not in classes)
    state.name, state.classes = name, classes
    view = state.view(now_ms, timeout_ms)
    _emitted(state, view, now_ms)
    return state, _change(state, view, classes_add=classes, classes_remove=removed)


# Apps and sub-apps repeat across students: one string object each instead of one per state.
_interned: dict[str, str] = {}


def _intern(value: str) -> str:
    got = _interned.get(value)
    if got is None:
        if len(_interned) >= 1 << 16:
            _interned.clear()
        got = _interned[value] = value
    return got


# Wake-ups are kept in buckets of 2**10 ms of the batch clock: one list entry per student
# instead of a heap tuple.
_BUCKET_BITS = 10


class PresenceBook:
    """The presence states of the students one worker owns, with their wake-ups (timeouts and
    ts refreshes).

    A student's wake-up is ``state.queued``; the key is listed in the bucket of that time
    (``_wheel``, a dict of lists; ``_buckets`` is a heap of the bucket numbers in use). An entry
    whose bucket is not the one of the student's current wake-up is stale and skipped. Per
    tracked student that is one pointer in a list, where a heap of ``(wake, key)`` tuples held
    a tuple (~70 bytes) each.
    """

    __slots__ = ("states", "timeout_ms", "refresh_ms", "_wheel", "_buckets")

    def __init__(self, timeout_ms: int, refresh_ms: int = DEFAULT_REFRESH_MS) -> None:
        self.timeout_ms = timeout_ms
        self.refresh_ms = refresh_ms
        self.states: dict[str, StudentPresence] = {}  # key "district:student"
        self._wheel: dict[int, list[str]] = {}  # bucket -> keys (the states' own key strings)
        self._buckets: list[int] = []  # heap of the wheel's bucket numbers (repeats possible)

    def _state(self, key: str, district_id: str, student_id: str) -> StudentPresence:
        state = self.states.get(key)
        return StudentPresence(district_id, student_id) if state is None else state

    def _track(self, state: StudentPresence) -> None:
        wake = state.wake_at(self.timeout_ms, self.refresh_ms)
        if wake is None:
            return
        queued = state.queued
        # An earlier entry stays valid (expire() looks again then); a later one is superseded.
        if queued is None or wake < queued:
            state.queued = wake
            self._enlist(wake >> _BUCKET_BITS, state.key)

    def _enlist(self, bucket: int, key: str) -> None:
        keys = self._wheel.get(bucket)
        if keys is None:
            self._wheel[bucket] = [key]
            heapq.heappush(self._buckets, bucket)
        else:
            keys.append(key)

    def on_event(self, ev: ActivityEvent, now_ms: int) -> PresenceChange | None:
        """Apply a valid event; the change to emit, if any."""
        return self.on_events(ev.student_key, ev.district_id, ev.student_id, (ev,), now_ms)

    def on_events(
        self,
        key: str,
        district_id: str,
        student_id: str,
        events: Iterable[ActivityEvent],
        now_ms: int,
    ) -> PresenceChange | None:
        """Apply one batch's valid events of the student ``key`` (``district:student``), in
        arrival order; the change to emit, if any (see :func:`apply_events`)."""
        state = self.states.get(key)
        if state is None:
            # the caller's key string: the worker's route table holds the same one
            state = self.states[key] = StudentPresence(district_id, student_id, key=key)
        state, change = apply_events(state, events, now_ms, self.timeout_ms)
        self._track(state)
        return change

    def on_roster(
        self,
        district_id: str,
        student_id: str,
        name: str | None,
        classes: tuple[str, ...],
        now_ms: int,
    ) -> PresenceChange | None:
        """Apply a roster record or tombstone (``name is None``); the change to emit, if any."""
        key = f"{district_id}:{student_id}"
        new, change = apply_roster(
            self._state(key, district_id, student_id), name, classes, now_ms, self.timeout_ms
        )
        if new is None:
            self.states.pop(key, None)
        else:
            self.states[new.key] = new
            self._track(new)
        return change

    def restore(self, key: str, state: StudentPresence) -> None:
        """Put back a state read from a snapshot (``key`` is ``state.key``)."""
        self.states[state.key] = state
        self._track(state)

    def _due(self, now_ms: int) -> list[tuple[int, str]]:
        """Take the live wake-ups ``<= now_ms`` out of the wheel, as ``(wake, key)`` sorted; the
        not yet due keys of the current bucket go back into it."""
        now_bucket = now_ms >> _BUCKET_BITS
        wheel, buckets, states = self._wheel, self._buckets, self.states
        due: list[tuple[int, str]] = []
        later: list[str] = []
        while buckets and buckets[0] <= now_bucket:
            bucket = heapq.heappop(buckets)
            for key in wheel.pop(bucket, ()):
                state = states.get(key)
                wake = None if state is None else state.queued
                if wake is None or wake >> _BUCKET_BITS != bucket:
                    continue  # a student since deleted, handled, or woken earlier
                if wake <= now_ms:
                    due.append((wake, key))
                else:
                    later.append(key)
        for key in later:
            self._enlist(now_bucket, key)
        due.sort()  # the order a heap of (wake, key) gives: deterministic output
        return due

    def expire(self, now_ms: int) -> list[PresenceChange]:
        """Timeouts and due ts refreshes at ``now_ms``: update the states, return the changes.

        Wake-ups are lazy: a student who got a newer event since is looked at and tracked again
        with the new wake-up time instead of emitting anything.
        """
        changes: list[PresenceChange] = []
        states = self.states
        for wake, key in self._due(now_ms):
            state = states[key]
            if state.queued != wake:
                continue  # listed twice in its bucket: already handled above
            state.queued = None
            state, change = refresh(state, now_ms, self.timeout_ms, self.refresh_ms)
            if change is not None:
                changes.append(change)
            self._track(state)
        return changes

    def __len__(self) -> int:
        return len(self.states)


def expire(book: PresenceBook, now_ms: int) -> list[PresenceChange]:
    """Module-level alias of :meth:`PresenceBook.expire`."""
    return book.expire(now_ms)
