"""The presence rule (CONTRACT §4) as pure functions over plain values.

A student's state is the event with the greatest ``ts`` (ties: the later arrival wins; an older
event never
overwrites a newer one). What a teacher sees is the :class:`View` ``(name, online, app, sub_app)``;
the worker
emits a :class:`~schemas.internal.PresenceChange` only when that view changes (or the roster entry
changes),
never on every heartbeat.

Nothing here reads a clock: callers pass ``now_ms`` (the worker's clock, recorded per batch so that
a replay
gives the same result). :class:`PresenceBook` keeps the states of one worker and a deadline heap so
that
:meth:`PresenceBook.expire` finds students whose timeout passed in ``O(k log n)``; the heap holds
at most one
entry per student shown online, so memory is bounded by the number of students.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.internal import PresenceChange


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


class StudentPresence(NamedTuple):
    """The presence state of one student.

    ``tie_ids`` are the event ids seen with ``ts == self.ts``: a repeat of one of them must not win
    the tie
    against a different event of the same ``ts`` that arrived in between (a duplicate changes
    nothing).
    """

    district_id: str
    student_id: str
    name: str
    classes: tuple[str, ...]
    ts: int  # ts of the state's event; -1 before any event
    kind: str  # "" before any event
    app: str
    sub_app: str
    tie_ids: frozenset[str]
    shown: View  # the view last emitted

    def view(self, now_ms: int, timeout_ms: int) -> View:
        """The view of this state at ``now_ms``."""
        if self.kind in ACTIVE_KINDS and now_ms - self.ts <= timeout_ms:
            return View(self.name, True, self.app, self.sub_app)
        return View(self.name, False, "", "")

    def deadline(self, timeout_ms: int) -> int:
        """The first ``now_ms`` at which this state is offline (only meaningful for active
        kinds)."""
        return self.ts + timeout_ms + 1


def new_student(district_id: str, student_id: str) -> StudentPresence:
    """The state of a student we know nothing about yet."""
    return StudentPresence(
        district_id, student_id, "", (), -1, "", "", "", frozenset(), NEVER_SHOWN
    )


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


def apply_event(
    state: StudentPresence, ev: ActivityEvent, now_ms: int, timeout_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    """Apply one valid event; return the new state and the change to emit, if the view changed."""
    if ev.ts < state.ts:
        return state, None  # older never overwrites newer
    if ev.ts == state.ts:
        if ev.event_id in state.tie_ids:
            return state, None  # a repeat changes nothing
        tie_ids = state.tie_ids | {ev.event_id}
    else:
        tie_ids = frozenset((ev.event_id,))
    state = state._replace(ts=ev.ts, kind=ev.kind, app=ev.app, sub_app=ev.sub_app, tie_ids=tie_ids)
    return _show(state, now_ms, timeout_ms)


def _show(
    state: StudentPresence, now_ms: int, timeout_ms: int
) -> tuple[StudentPresence, PresenceChange | None]:
    view = state.view(now_ms, timeout_ms)
    if view == state.shown:
        return state, None
    state = state._replace(shown=view)
    return state, _change(state, view)


def apply_roster(
    state: StudentPresence,
    name: str | None,
    classes: tuple[str, ...],
    now_ms: int,
    timeout_ms: int,
) -> tuple[StudentPresence | None, PresenceChange | None]:
    """Apply a roster record (``name`` ``None`` = tombstone: the student left the roster).

    A tombstone drops the state and emits a ``deleted`` change removing the student from their
    classes.
    A record emits a change when the name or the classes change.
    """
    if name is None:
        if state.shown == NEVER_SHOWN:
            return None, None  # nothing was ever shown for this student
        return None, _change(state, OFFLINE_UNKNOWN, classes_remove=state.classes, deleted=True)
    classes = tuple(sorted(set(classes)))
    if name == state.name and classes == state.classes:
        return state, None
    removed = tuple(c for c in state.classes if c not in classes)
    state = state._replace(name=name, classes=classes)
    view = state.view(now_ms, timeout_ms)
    state = state._replace(shown=view)
    return state, _change(state, view, classes_add=classes, classes_remove=removed)


class PresenceBook:
    """The presence states of the students one worker owns, with a deadline heap for the timeout."""

    __slots__ = ("states", "timeout_ms", "_heap", "_queued")

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.states: dict[str, StudentPresence] = {}  # key "district:student"
        self._heap: list[tuple[int, str]] = []  # (deadline, key)
        self._queued: set[str] = set()  # keys with an entry in the heap (at most one each)

    def _state(self, key: str, district_id: str, student_id: str) -> StudentPresence:
        state = self.states.get(key)
        return new_student(district_id, student_id) if state is None else state

    def _track(self, key: str, state: StudentPresence) -> None:
        if state.shown.online and key not in self._queued:
            self._queued.add(key)
            heapq.heappush(self._heap, (state.deadline(self.timeout_ms), key))

    def on_event(self, ev: ActivityEvent, now_ms: int) -> PresenceChange | None:
        """Apply a valid event; the change to emit, if any."""
        key = ev.student_key
        state, change = apply_event(
            self._state(key, ev.district_id, ev.student_id), ev, now_ms, self.timeout_ms
        )
        self.states[key] = state
        self._track(key, state)
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
            self.states[key] = new
            self._track(key, new)
        return change

    def expire(self, now_ms: int) -> list[PresenceChange]:
        """Students shown online whose timeout passed by ``now_ms``: mark them offline, return the
        changes.

        Heap entries are lazy: an entry whose student got a newer event is pushed back with the new
        deadline instead of going offline.
        """
        changes: list[PresenceChange] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            _, key = heapq.heappop(heap)
            self._queued.discard(key)
            state = self.states.get(key)
            if state is None or not state.shown.online:
                continue
            state, change = _show(state, now_ms, self.timeout_ms)
            self.states[key] = state
            if change is not None:
                changes.append(change)
            self._track(key, state)
        return changes

    def __len__(self) -> int:
        return len(self.states)


def expire(book: PresenceBook, now_ms: int) -> list[PresenceChange]:
    """Module-level alias of :meth:`PresenceBook.expire`."""
    return book.expire(now_ms)
