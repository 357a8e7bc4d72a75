"""Consumer lag as pure functions: offset lag, time lag, and a Burrow-style status per partition and group.

Nothing here talks to Kafka or reads a clock; :mod:`ops.lag_monitor` samples the broker and passes ``now``.

**Offset lag** is what ``kafka-consumer-groups --describe`` prints: ``end offset − committed offset`` (clamped
at 0, since the end offset is sampled a moment apart from the commit), and *no value* (``-``) for a partition
the group has no committed offset for.

**Time lag** follows kafka-lag-exporter (``LookupTable.scala``): each sample appends a point (partition end
offset, wall time) to a bounded table per partition; the table only grows forward (a point older or with a
smaller offset than the newest is ignored) and a flat run of equal offsets keeps only its first and last point.
The time at which the end offset was the group's committed offset is found by linear interpolation between the
two points around it, or by extrapolation along the table's first→last trend line when it lies outside. Time lag
is ``now − that time``; 0 when the committed offset is the newest end offset; unknown with fewer than 2 points.

**Status** follows Burrow's evaluator (``core/internal/evaluator/caching.go``; wiki "Consumer Lag Evaluation
Rules"). For each partition a sliding window keeps the last commits (offset, time, lag at the time). Checked in
this order, the first that holds wins:

1. if the current lag is 0 or any lag in the window is 0 → OK;
2. if the committed offset ever decreased within the window → REWIND;
3. if ``now − last commit time > last commit time − first commit time`` → STOP (the group stopped committing);
4. if the committed offset never changed over the window (lag > 0 throughout) → STALL;
5. if the offsets advance but the lag never decreased between two commits → WARN (slow, falling behind);
6. otherwise → OK (catching up).

**Evidence.** Burrow sees every commit of a consumer that commits once a minute, so its window spans minutes.
A sampler sees only the committed offset at each sample, and our consumers commit about once a second, so a
window of a few samples a second apart cannot tell "stuck" from "between two commits", nor a trend from the
sub-second jitter of batching. So rules 3–5 are applied only once the window has watched the partition for at
least ``min_span_s`` (several commit intervals); before that a partition with lag is ``NA`` ("not enough
evidence yet"), never a guess. Rules 1–2 need no span: a zero lag or an offset going back is conclusive.
Rule 5 also asks that the lag grew, over the window, by more than ``noise_s`` seconds of the partition's input
(its rate over the window): a consumer that keeps up but commits once a second shows a lag that wobbles by about
a second of input, which is noise, not "falling behind".

A group's status is the most severe of its partitions' in Burrow's order OK < WARN < ERR < STOP < STALL <
REWIND (Burrow reports anything past ERR as ERR at group level; we keep the name, so the operator sees the rule).
``ERR`` is ours for "could not be evaluated" (the monitor failed to read the group). A group with no partition
worse than OK but some partition still ``NA`` is ``NA``.

Sizing: the window (``LAG_WINDOW × LAG_SAMPLE_INTERVAL_S``, 50 s by default) must span ``LAG_MIN_SPAN_S``; the
monitor widens it to enough samples when the interval is short (``--watch --interval 1``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Status(enum.Enum):
    """A partition's or group's health, in Burrow's order of severity (``NA``: not enough evidence yet)."""

    NA = 0
    OK = 1
    WARN = 2
    ERR = 3
    STOP = 4
    STALL = 5
    REWIND = 6


@dataclass(frozen=True, slots=True)
class Rules:
    """How much evidence the status rules ask for (see "Evidence" in the module docstring)."""

    min_span_s: float = 10.0
    noise_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Point:
    """A partition's end offset observed at a wall time (seconds)."""

    offset: int
    time: float


@dataclass(frozen=True, slots=True)
class Commit:
    """A committed offset as the monitor saw it, with the lag at that moment."""

    offset: int
    time: float
    lag: int


def offset_lag(end_offset: int, committed: int | None) -> int | None:
    """Records left to read; ``None`` when the group has no committed offset (the tool's ``-``)."""
    if committed is None or committed < 0:
        return None
    return max(0, end_offset - committed)


def add_point(points: Sequence[Point], point: Point, limit: int) -> tuple[Point, ...]:
    """The lookup table with ``point`` added (kafka-lag-exporter's ``addPoint``), at most ``limit`` points."""
    if limit < 2:
        raise ValueError("a lookup table needs room for at least 2 points")
    table = tuple(points)
    if table:
        newest = table[-1]
        if newest.time >= point.time or newest.offset > point.offset:
            return table  # out of order, or not monotonically increasing: ignored
        if newest.offset == point.offset and len(table) > 1 and table[-2].offset == point.offset:
            return (*table[:-1], point)  # a flat line stays one segment: move its right end
    table = (*table, point)
    return table[-limit:]


def predict_time(points: Sequence[Point], offset: int) -> float | None:
    """Wall time at which the partition's end offset was ``offset``; ``None`` with fewer than 2 points."""
    if len(points) < 2:
        return None
    left, right = points[0], points[-1]
    for i in range(len(points) - 1, 0, -1):  # newest segment first, as the exporter searches
        if points[i - 1].offset <= offset <= points[i].offset:
            left, right = points[i - 1], points[i]
            break
    dy = right.offset - left.offset
    if dy == 0:
        # A flat table that never reached ``offset``: the end was ahead of it at least since the oldest point.
        return points[0].time if offset < left.offset else right.time
    dx = right.time - left.time
    return right.time - (right.offset - offset) * dx / dy


def time_lag_s(points: Sequence[Point], committed: int | None, now: float) -> float | None:
    """Seconds the group is behind on a partition; 0 when caught up; ``None`` when it cannot be told."""
    if committed is None or committed < 0 or not points:
        return None
    if committed >= points[-1].offset:
        return 0.0
    predicted = predict_time(points, committed)
    if predicted is None:
        return None
    return max(0.0, now - predicted)


def add_commit(window: Sequence[Commit], commit: Commit, size: int) -> tuple[Commit, ...]:
    """The sliding window of a partition's commits with ``commit`` added, at most ``size`` of them."""
    if size < 1:
        raise ValueError("the window holds at least one commit")
    return (*window, commit)[-size:]


def partition_status(
    window: Sequence[Commit], current_lag: int | None, now: float, rules: Rules
) -> Status:
    """Burrow's rules 1–6 over a partition's window, with the evidence rules (see the module docstring)."""
    if not window or not current_lag or any(c.lag == 0 for c in window):
        return Status.OK
    pairs = list(zip(window, window[1:], strict=False))
    if any(b.offset < a.offset for a, b in pairs):
        return Status.REWIND
    first, last = window[0], window[-1]
    if now - first.time < rules.min_span_s:
        return Status.NA  # watched for too short a time to tell a stop, a stall or a trend
    if now - last.time > last.time - first.time:
        return Status.STOP
    if len(window) < 2:
        return Status.NA  # one commit tells neither a stall nor a trend (Burrow: incomplete window)
    if all(b.offset == a.offset for a, b in pairs):
        return Status.STALL
    if all(b.lag >= a.lag for a, b in pairs) and lag_growth_s(first, last) > rules.noise_s:
        return Status.WARN
    return Status.OK


def lag_growth_s(first: Commit, last: Commit) -> float:
    """How much the lag grew from ``first`` to ``last``, in seconds of the partition's input at its rate
    over that span (end offset = committed + lag); ``inf`` when nothing new arrived but the lag grew."""
    grown = last.lag - first.lag
    if grown <= 0:
        return 0.0
    arrived = (last.offset + last.lag) - (first.offset + first.lag)
    span = last.time - first.time
    if arrived <= 0 or span <= 0:
        return float("inf")
    return grown / (arrived / span)


def group_status(statuses: Iterable[Status]) -> Status:
    """The most severe partition status; ``NA`` when none is worse than OK and some is ``NA``; OK for a
    group with no partitions."""
    seen = set(statuses)
    worst = max(seen - {Status.NA}, key=lambda s: s.value, default=Status.OK)
    if worst is Status.OK and Status.NA in seen:
        return Status.NA
    return worst


def window_size(window: int, interval_s: float, min_span_s: float) -> int:
    """Commits to keep per partition: ``window``, or enough samples ``interval_s`` apart to span
    ``min_span_s`` (plus one), whichever is more, so a short interval still gathers the evidence."""
    if window < 1 or interval_s <= 0:
        raise ValueError("the window holds at least one commit, taken a positive interval apart")
    return max(window, math.ceil(min_span_s / interval_s) + 1)


def should_record_commit(
    window: Sequence[Commit], committed: int | None, group_has_members: bool
) -> bool:
    """Whether a sample counts as a commit in Burrow's sense.

    Burrow sees every commit in ``__consumer_offsets``; a sampler sees only the current committed offset. A
    changed offset is a new commit. An unchanged one counts only while the group has live members (a running
    consumer re-commits, or is stuck on a record: STALL); once no member is left nothing is recorded, so the
    time since the last commit grows until rule 3 (STOP) holds.
    """
    if committed is None or committed < 0:
        return False
    if not window or window[-1].offset != committed:
        return True
    return group_has_members
