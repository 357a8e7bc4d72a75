"""The one decoder of device activity input (CONTRACT §2, §2a): bytes in, valid minimised events or
reasons out.

A Kafka record of ``device-activity.v1`` is either one event object or an envelope (a JSON array of
1–1,000 event objects, at most 1 MiB). :func:`decode_record` parses the record once with orjson and
judges every event on its own (:mod:`schemas.event_rules`), so one bad event of an envelope rejects only
itself; an envelope's members are judged column by column (:mod:`schemas.envelope_columns`), and only the
members that path names go through the per-member rules. :func:`decode_split_within` gives the same answer
as valid events and *notes* (rejections, dropped fields) apart, with no outcome per valid event: the hot
paths' form. Nothing here raises on bad input: every failure is an :class:`EventOutcome` carrying a
:class:`Rejection` with a stable :class:`Reason` code (the DLQ ``error`` header and the ``reason`` metric
label).

Raw bytes of a rejection (what goes to the DLQ): for a single-event record, the record's original
bytes; for an envelope member, ``orjson.dumps`` of the parsed member — the original byte slice is
not recoverable after one parse, and the re-serialisation is the same JSON value. The 8 KiB limit of
an envelope member is measured on that re-serialisation.

The names other modules use from the decoder's parts (outcomes and limits, :func:`web_host`, the event
encoders) are importable from here as well.
"""

from __future__ import annotations

import json
from itertools import compress, repeat
from typing import Any, Final

import orjson

from schemas.envelope_columns import INDEXES, envelope_split
from schemas.event import ActivityEvent
from schemas.event_json import encode_envelope, encode_event, event_object
from schemas.event_rules import json_type, tuple_new, validate
from schemas.outcome import (
    CONTRACT_FIELDS,
    DEFAULT_LIMITS,
    MAX_APP_CHARS,
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPE_EVENTS,
    MAX_EVENT_BYTES,
    MAX_SUB_APP_CHARS,
    MAX_URL_CHARS,
    SINGLE_EVENT_INDEX,
    WEB_APP,
    Decoded,
    EventOutcome,
    Limits,
    Reason,
    Rejection,
)
from schemas.web_url import bounded_url, web_host

__all__ = [
    "CONTRACT_FIELDS",
    "DEFAULT_LIMITS",
    "MAX_APP_CHARS",
    "MAX_ENVELOPE_BYTES",
    "MAX_ENVELOPE_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_SUB_APP_CHARS",
    "MAX_URL_CHARS",
    "SINGLE_EVENT_INDEX",
    "WEB_APP",
    "Decoded",
    "EventOutcome",
    "Limits",
    "Reason",
    "Rejection",
    "decode_event",
    "decode_record",
    "decode_record_within",
    "decode_split_within",
    "encode_envelope",
    "encode_event",
    "envelope_per_member",
    "event_object",
    "web_host",
]


# The fields of a valid outcome after its index and event: no rejection, no dropped field, no raw.
# Zipped after the events, which end first (the indexes and these run on).
_VALID_REST: Final = (repeat(None), repeat(()), repeat(None))


def decode_event(
    obj: Any, now_ms: int, max_age_h: int = 72, max_future_s: int = 300
) -> Decoded | Rejection:
    """Validate and minimise one event given as a parsed JSON value or as the bytes of one JSON
    object.

    Bytes are size-checked (8 KiB) and parsed; a parsed value is not size-checked (use
    :func:`decode_record` for records).
    """
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        if len(raw) > MAX_EVENT_BYTES:
            return Rejection(Reason.TOO_LARGE, f"event is {len(raw)} bytes > {MAX_EVENT_BYTES}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejection(Reason.NOT_JSON, str(exc)[:200])
    min_ts, max_ts = Limits(max_age_h, max_future_s).ts_window(now_ms)
    result = validate(obj, min_ts, max_ts, SINGLE_EVENT_INDEX)
    if isinstance(result, Rejection):
        return result
    assert result.event is not None  # noqa: S101 - a valid outcome always carries its event
    return Decoded(result.event, result.dropped_fields)


def _record_failure(reason: Reason, detail: str, raw: bytes) -> list[EventOutcome]:
    return [EventOutcome(SINGLE_EVENT_INDEX, None, Rejection(reason, detail), (), raw)]


def decode_record(raw: bytes, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> list[EventOutcome]:
    """Decode one Kafka record (a single event or an envelope) into one outcome per event.

    Record-level failures (not JSON, neither object nor array, empty or oversized envelope,
    oversized single event) give a single rejection with ``source_index == -1`` and the record's
    bytes.
    """
    min_ts, max_ts = limits.ts_window(now_ms)
    return decode_record_within(raw, min_ts, max_ts)


def decode_record_within(raw: bytes, min_ts: int, max_ts: int) -> list[EventOutcome]:
    """:func:`decode_record` with the accepted ``ts`` window already computed (``Limits.ts_window``):
    a batch of records shares one clock, so the worker computes the window once per batch."""
    parsed, failure = _parse(raw)
    if failure is not None:
        return failure
    if type(parsed) is dict:
        result = validate(parsed, min_ts, max_ts, SINGLE_EVENT_INDEX)
        if isinstance(result, Rejection):
            return [EventOutcome(SINGLE_EVENT_INDEX, None, result, (), raw)]
        return [result]
    events, bad = envelope_split(parsed, min_ts, max_ts)
    if not bad:
        return list(
            map(tuple_new, repeat(EventOutcome), zip(INDEXES, events, *_VALID_REST, strict=False))
        )
    keep = [True] * len(parsed)
    for i in bad:
        keep[i] = False
    outcomes: list[EventOutcome] = list(
        map(
            tuple_new,
            repeat(EventOutcome),
            zip(compress(INDEXES, keep), events, *_VALID_REST, strict=False),
        )
    )
    for i in bad:  # ascending: each lands at its own position
        outcomes.insert(i, _member_outcome(i, parsed[i], min_ts, max_ts))
    return outcomes


def decode_split_within(
    raw: bytes, min_ts: int, max_ts: int
) -> tuple[list[ActivityEvent], list[EventOutcome]]:
    """One record's valid events in record order, and its *notes*: the outcomes of
    :func:`decode_record_within` that are rejections or that dropped fields, in the same order.

    The same judgement as :func:`decode_record_within` (a valid event with dropped fields is in both
    lists), without an outcome per valid event: the worker's and the collector's hot path.
    """
    parsed, failure = _parse(raw)
    if failure is not None:
        return [], failure
    if type(parsed) is dict:
        result = validate(parsed, min_ts, max_ts, SINGLE_EVENT_INDEX)
        if isinstance(result, Rejection):
            return [], [EventOutcome(SINGLE_EVENT_INDEX, None, result, (), raw)]
        assert result.event is not None  # noqa: S101 - a valid outcome always carries its event
        return [result.event], ([result] if result.dropped_fields else [])
    events, bad = envelope_split(parsed, min_ts, max_ts)
    if not bad:
        return events, []
    notes: list[EventOutcome] = []
    rejected = 0
    for i in bad:  # ascending; events holds every valid member before i except the named ones
        outcome = _member_outcome(i, parsed[i], min_ts, max_ts)
        if outcome.event is None:
            rejected += 1
            notes.append(outcome)
            continue
        events.insert(i - rejected, outcome.event)
        if outcome.dropped_fields:
            notes.append(outcome)
    return events, notes


def _parse(raw: bytes) -> tuple[Any, list[EventOutcome] | None]:
    """A record's JSON value (an object, or an envelope's members within the limits), or the
    record-level failure."""
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        if raw.lstrip()[:1] != b"[":
            detail = f"event is {size} bytes > {MAX_EVENT_BYTES}"
            return None, _record_failure(Reason.TOO_LARGE, detail, raw)
        if size > MAX_ENVELOPE_BYTES:
            detail = f"envelope is {size} bytes > {MAX_ENVELOPE_BYTES}"
            return None, _record_failure(Reason.ENVELOPE_TOO_LARGE, detail, raw)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, _record_failure(Reason.NOT_JSON, str(exc)[:200], raw)
    if type(parsed) is dict:
        return parsed, None
    if type(parsed) is not list:
        detail = f"record is a JSON {json_type(parsed)}, not an object or array"
        return None, _record_failure(Reason.NOT_OBJECT, detail, raw)
    count = len(parsed)
    if count == 0:
        return None, _record_failure(Reason.ENVELOPE_EMPTY, "envelope holds no event", raw)
    if count > MAX_ENVELOPE_EVENTS:
        detail = f"envelope holds {count} events > {MAX_ENVELOPE_EVENTS}"
        return None, _record_failure(Reason.ENVELOPE_TOO_LARGE, detail, raw)
    return parsed, None


def envelope_per_member(members: list[Any], min_ts: int, max_ts: int) -> list[EventOutcome]:
    """Judge each member on its own (the reference the column-wise path is tested against)."""
    return [_member_outcome(i, member, min_ts, max_ts) for i, member in enumerate(members)]


def _member_outcome(index: int, member: Any, min_ts: int, max_ts: int) -> EventOutcome:
    """The outcome of one envelope member, judged on its own."""
    result = validate(member, min_ts, max_ts, index)
    if (
        isinstance(result, Rejection)
        or result.dropped_fields
        or ("url" in member and _unbounded_url(member))
    ):
        return _member_slow_path(index, member, result)
    return result


def _member_slow_path(index: int, member: Any, result: EventOutcome | Rejection) -> EventOutcome:
    """An envelope member that failed, or that may exceed 8 KiB after re-serialisation.

    A valid member holding only contract fields is far below 8 KiB: every field is bounded (ids 64
    ASCII chars, app 64 and sub_app 128 chars of at most 6 escaped bytes, a web url 2048 printable
    ASCII chars). Only extra fields or an unvalidated url (ignored on non-web apps) can make it
    larger, so only those are measured.
    """
    try:
        encoded = orjson.dumps(member)
    except TypeError:  # nested deeper than orjson writes (254 levels): far from a valid event
        rejection = Rejection(Reason.TOO_LARGE, "event nests deeper than 254 levels")
        return EventOutcome(index, None, rejection, (), _deep_json(member))
    if len(encoded) > MAX_EVENT_BYTES:
        detail = f"event is {len(encoded)} bytes > {MAX_EVENT_BYTES}"
        rejection = Rejection(Reason.TOO_LARGE, detail)
        return EventOutcome(index, None, rejection, (), encoded)
    if isinstance(result, Rejection):
        return EventOutcome(index, None, result, (), encoded)
    return result


def _deep_json(member: Any) -> bytes:
    """The JSON of a member too deep for orjson (the standard library's encoder), or ``b""``."""
    try:
        return json.dumps(member, separators=(",", ":"), ensure_ascii=False).encode()
    except (RecursionError, ValueError):
        return b""


def _unbounded_url(member: dict[str, Any]) -> bool:
    return member.get("app") != WEB_APP and not bounded_url(member.get("url"))
