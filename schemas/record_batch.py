"""Many records of ``device-activity.v1`` decoded at once, with the answer of
:func:`schemas.decoder.decode_split_within` for each.

Producers like kcat send one event per record, so per-record work is what such a topic costs. Runs of
consecutive single-event records are parsed one by one (orjson) and then judged together, column by
column, as if they were one envelope (:func:`schemas.envelope_columns.envelope_split`); the members
that path does not accept are judged on their own as single-event records (:func:`validate`, the
record's own bytes for a rejection). Any other record (an envelope, a failure of the whole record) ends
the run and is decoded on its own, so events keep the records' order. A property test checks the
answer equals decoding every record alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from schemas.decoder import decode_split_within
from schemas.envelope_columns import INDEXES, envelope_split
from schemas.event import ActivityEvent
from schemas.event_rules import validate
from schemas.outcome import MAX_ENVELOPE_EVENTS, MAX_EVENT_BYTES, SINGLE_EVENT_INDEX, EventOutcome

Notes = list[tuple[int, EventOutcome]]
"""Outcomes that are rejections or dropped fields, each with its record's position in the input."""

# The column-wise path judges at most this many events at once (its index table's size).
RUN_MAX: Final = MAX_ENVELOPE_EVENTS
_DICT_ONLY: Final = {dict}


def decode_records_within(
    raws: list[bytes], min_ts: int, max_ts: int
) -> tuple[list[ActivityEvent], Notes]:
    """The valid events of ``raws`` in order, and the notes of every record, by record position.

    The same as calling :func:`~schemas.decoder.decode_split_within` on each record and joining the
    answers (a valid event with dropped fields is in both lists).
    """
    events: list[ActivityEvent] = []
    notes: Notes = []
    whole = _all_small_objects(raws)
    if whole is not None:  # the usual input of a single-event topic: one run
        _judge_run(whole, INDEXES, raws, min_ts, max_ts, events, notes)
        return events, notes
    run: list[dict[str, Any]] = []
    run_at: list[int] = []  # each run member's record position
    for pos, raw in enumerate(raws):
        obj = _small_object(raw)
        if obj is not None:
            run.append(obj)
            run_at.append(pos)
            if len(run) < RUN_MAX:
                continue
        if run:
            _judge_run(run, run_at, raws, min_ts, max_ts, events, notes)
            run, run_at = [], []
        if obj is None:  # anything but a small event object: on its own
            record_events, record_notes = decode_split_within(raw, min_ts, max_ts)
            events += record_events
            notes += [(pos, note) for note in record_notes]
    if run:
        _judge_run(run, run_at, raws, min_ts, max_ts, events, notes)
    return events, notes


def _all_small_objects(raws: list[bytes]) -> list[dict[str, Any]] | None:
    """Every record parsed, if each is one JSON object within the single-event limit (and they
    fit one run), else None."""
    if not raws or len(raws) > RUN_MAX or max(map(len, raws)) > MAX_EVENT_BYTES:
        return None
    try:
        parsed = list(map(orjson.loads, raws))
    except orjson.JSONDecodeError:
        return None
    return parsed if set(map(type, parsed)) == _DICT_ONLY else None


def _small_object(raw: bytes) -> dict[str, Any] | None:
    """The parsed record if it is one JSON object within the single-event limit, else None."""
    if raw[:1] != b"{" or len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _judge_run(
    run: list[dict[str, Any]],
    run_at: Sequence[int],
    raws: list[bytes],
    min_ts: int,
    max_ts: int,
    events: list[ActivityEvent],
    notes: Notes,
) -> None:
    """Append the events and notes of a run of single-event records, in record order."""
    accepted, named = envelope_split(run, min_ts, max_ts)
    rejected = 0
    start = len(events)
    events += accepted
    for i in named:  # ascending; events holds the accepted members before i
        pos = run_at[i]
        result = validate(run[i], min_ts, max_ts, SINGLE_EVENT_INDEX)
        if isinstance(result, EventOutcome):
            assert result.event is not None  # noqa: S101 - a valid outcome carries its event
            events.insert(start + i - rejected, result.event)
            if result.dropped_fields:
                notes.append((pos, result))
            continue
        rejected += 1
        notes.append((pos, EventOutcome(SINGLE_EVENT_INDEX, None, result, (), raws[pos])))
