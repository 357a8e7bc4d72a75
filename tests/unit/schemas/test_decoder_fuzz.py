"""Fuzzing the decoder. Whatever the bytes, it answers with outcomes, never an exception, in time
linear in the input.

Properties, for :func:`schemas.decoder.decode_record` (the one entry point of raw input):

- it returns a non-empty list of :class:`EventOutcome`; each has exactly one of ``event`` / ``rejection``;
  a rejection carries a :class:`Reason` and the raw bytes that go to the DLQ; a valid event holds only
  contract values (strings within their limits, an int ``ts``);
- single-event records and record-level failures have ``source_index == -1``; envelope members are
  numbered 0..n-1 in order;
- time per byte is bounded: decoding 4x the input takes < 8x the time (quadratic work would take 16x).
"""

from __future__ import annotations

import base64
import gc
import math
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decoder import (
    CONTRACT_FIELDS,
    MAX_ENVELOPE_BYTES,
    MAX_EVENT_BYTES,
    EventOutcome,
    Reason,
    decode_event,
    decode_record,
)
from schemas.event import KINDS, ActivityEvent

pytestmark = pytest.mark.faults

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FIELDS = tuple(sorted(CONTRACT_FIELDS))  # the decoder's own list of contract fields

VALID: dict[str, Any] = {
    "v": 1,
    "event_id": "e-1",
    "kind": "heartbeat",
    "ts": NOW - 1000,
    "district_id": "d-001",
    "student_id": "s-1",
    "device_id": "cb-1",
    "app": "web",
    "url": "https://www.pbs.org/kids?x=1",
}

# Strings a hostile or broken device might send: NUL, RTL override, BOM, zero-width joiner, emoji,
# combining marks, non-BMP, overlong-looking sequences, and long runs.
NASTY_TEXT = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "\x00", "d\x00-1", "\u202eevil", "\ufeffd-1", "a\u200db", "🙂", "e\u0301", "𝔘𝔫𝔦",
            "\uffff", "\U0010ffff", "../../etc/passwd", "'; DROP TABLE x;--", "%00", "\\u0000",
            "a" * 65, "a" * 129, "x" * 5000, " ", "", "NaN", "Infinity", "-0", "1e999", "0x1",
        ]
    ),
)  # fmt: skip
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    NASTY_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def check(raw: bytes, outcomes: list[EventOutcome]) -> None:
    """The outcome invariants every input must satisfy."""
    assert isinstance(outcomes, list) and outcomes
    for n, outcome in enumerate(outcomes):
        assert isinstance(outcome, EventOutcome)
        assert (outcome.event is None) != (outcome.rejection is None)
        if outcome.rejection is not None:
            assert isinstance(outcome.rejection.reason, Reason)
            assert isinstance(outcome.rejection.detail, str)
            assert isinstance(outcome.raw, bytes)
            assert len(outcome.rejection.detail) <= 300
        else:
            event = outcome.event
            assert isinstance(event, ActivityEvent)
            assert type(event.ts) is int and event.kind in KINDS
            assert all(type(f) is str for f in event[:2] + event[3:])
            assert len(event.app) <= 64 and len(event.sub_app) <= 128
            assert outcome.raw is None
        if len(outcomes) > 1 or outcome.source_index != -1:
            assert outcome.source_index == n
    if raw.lstrip()[:1] != b"[":
        assert len(outcomes) == 1 and outcomes[0].source_index == -1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(raw: bytes) -> None:
    check(raw, decode_record(raw, NOW))


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_as_a_record(value: Any) -> None:
    raw = orjson.dumps(value)
    check(raw, decode_record(raw, NOW))


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, min_size=1, max_size=20))
def test_any_json_values_as_an_envelope(members: list[Any]) -> None:
    raw = orjson.dumps(members)
    check(raw, decode_record(raw, NOW))


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4),
    st.dictionaries(NASTY_TEXT, JSON_VALUES, max_size=3),
    st.booleans(),
)
def test_every_field_with_a_wrong_value(
    wrong: dict[str, Any], extra: dict[str, Any], in_envelope: bool
) -> None:
    """A valid event with some fields replaced by arbitrary JSON and arbitrary extra fields."""
    obj = {**VALID, **extra, **wrong}
    raw = orjson.dumps([obj, VALID] if in_envelope else obj)
    outcomes = decode_record(raw, NOW)
    check(raw, outcomes)
    first = outcomes[0]
    if first.event is not None:
        # Whatever was accepted kept only contract values, with the URL reduced to its host.
        assert first.event.district_id == obj["district_id"]
        assert set(first.dropped_fields) == set(obj) - set(FIELDS)
    # The same value given already parsed answers the same way.
    direct = decode_event(obj, NOW)
    assert hasattr(direct, "reason") or hasattr(direct, "event")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FIELDS), st.sampled_from(["1", "1.0", "1e3", "NaN", "true", "null", "[]"]))
def test_numbers_and_literals_as_strings(field: str, text: str) -> None:
    obj = dict(VALID, **{field: text})
    outcomes = decode_record(orjson.dumps(obj), NOW)
    check(orjson.dumps(obj), outcomes)
    if field in ("v", "ts"):
        assert outcomes[0].rejection is not None


def test_non_standard_numbers_and_unicode_edge_cases_are_rejected_not_raised() -> None:
    ts = str(NOW).encode()
    cases = [
        b'{"v":1,"ts":NaN}', b'{"v":1,"ts":Infinity}', b'{"v":1,"ts":-Infinity}', b'[NaN]',
        b'{"v":1,"ts":1e999}', b'{"v":1,"event_id":"\\ud800"}', b'{"v":1,"event_id":"\\udfff"}',
        b'{"v":"\xed\xa0\x80"}', b'{"v":1,"app":"a\x00b"}', b'\xff\xfe{', b'\xef\xbb\xbf{}',
        b'{"v":1,"ts":' + ts + b'.0}', b'{"v":1,"ts":-' + ts + b"}",
        b'{"v":1,"ts":18446744073709551616}', b"", b" ", b"null", b"[]", b"[[]]", b'"x"',
    ]  # fmt: skip
    for raw in cases:
        outcomes = decode_record(raw, NOW)
        check(raw, outcomes)
        assert all(o.rejection is not None for o in outcomes), raw
    rtl = dict(VALID, app="\u202edocs", sub_app="\u05e2\u05d1\u05e8\u05d9\u05ea", url=None)
    del rtl["url"]
    rtl["app"] = "\u202edocs"
    outcomes = decode_record(orjson.dumps(rtl), NOW)
    check(orjson.dumps(rtl), outcomes)


def test_deep_nesting() -> None:
    for depth in (100, 1000, 1025, 5000, 100_000):
        for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            check(raw, decode_record(raw, NOW))
        nested = b'{"v":1,"x":' + b"[" * depth + b"]" * depth + b"}"
        check(nested, decode_record(nested, NOW))
        member = b'[{"v":1,"x":' + b"[" * depth + b"]" * depth + b"}]"
        check(member, decode_record(member, NOW))


def test_huge_strings_and_10_mb_payloads() -> None:
    ten_mb = 10 * 1024 * 1024
    photo = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 30_000).decode()
    cases = [
        orjson.dumps(dict(VALID, photo=photo)),  # single event far above 8 KiB
        orjson.dumps([dict(VALID, photo=photo)]),  # envelope above 1 MiB
        orjson.dumps([dict(VALID, event_id=f"e{i}") for i in range(1001)]),  # too many members
        b"[" + b'"' + b"x" * ten_mb + b'"]',
        b"{" + b'"x":"' + b"y" * ten_mb + b'"}',
        b"\x00" * ten_mb,
        b"[" + b"1," * (ten_mb // 2) + b"1]",
        orjson.dumps([dict(VALID, app="x" * (MAX_ENVELOPE_BYTES - 400))]),  # one member > 8 KiB
    ]
    for raw in cases:
        started = time.perf_counter()
        outcomes = decode_record(raw, NOW)
        check(raw, outcomes)
        assert outcomes[0].rejection is not None
        assert (
            time.perf_counter() - started < 5.0
        )  # generous: a 10 MB rejection is size-checked first
    big_member = decode_record(cases[-1], NOW)[0]
    assert big_member.rejection is not None
    assert big_member.rejection.reason == Reason.TOO_LARGE
    assert len(big_member.raw or b"") > MAX_EVENT_BYTES


def _envelope_of(size: int, invalid_every: int) -> bytes:
    """An envelope of about ``size`` bytes (≤ 1,000 members of ~1 KB): valid web events with extra
    fields, every n-th one broken."""
    members = []
    total, i = 2, 0
    while True:
        event = dict(VALID, event_id=f"e{i}", student_id=f"s-{i % 97}", email=f"kid{i}@example.org",
                     note="n" * 900)  # fmt: skip
        if i % invalid_every == 0:
            event["ts"] = str(event["ts"])
        encoded = len(orjson.dumps(event)) + 1
        if total + encoded > size:
            break
        members.append(event)
        total += encoded
        i += 1
    return orjson.dumps(members)


def _best_of(raw: bytes, runs: int = 7) -> float:
    # The collector is paused while timing: its full passes grow with every live object, which is
    # the interpreter's cost, not the decoder's complexity that this measures.
    best = math.inf
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            decode_record(raw, NOW)
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def test_time_is_linear_in_the_input() -> None:
    """4x the bytes must take < 8x the time (linear: ~4x; quadratic: ~16x). Best of 5 runs each, so a
    loaded 2-core box's hiccups do not count; envelopes are capped at 1 MiB, so 256 KiB vs 1 MiB, and
    the same for the largest single-event records (8 KiB) in bulk."""
    small, large = _envelope_of(256 * 1024, 7), _envelope_of(1024 * 1024 - 64, 7)
    assert len(large) > 3.9 * len(small)
    assert (
        len(large) <= MAX_ENVELOPE_BYTES and len(decode_record(large, NOW)) > 900
    )  # parsed, not cut
    ratio = _best_of(large) / _best_of(small)
    per_byte_us = _best_of(large) / len(large) * 1e6
    print(
        f"decoder: 1 MiB envelope / 256 KiB envelope time ratio {ratio:.2f}, {per_byte_us:.3f} µs/byte"
    )
    # A complexity bound, not a speed one: absolute speed is measured by bench/bench_decode.py.
    assert ratio < 8

    # Strings: one member holding a long string (rejected as too large) — no quadratic scan either.
    short = orjson.dumps([dict(VALID, note="n" * 200_000)])
    long = orjson.dumps([dict(VALID, note="n" * 800_000)])
    assert _best_of(long) / _best_of(short) < 8


def test_envelope_member_nested_deeper_than_orjson_writes_is_rejected() -> None:
    """A 512-byte envelope whose one member is 255 nested arrays: orjson parses up to 1024 levels but
    serialises only 254, and the per-member path re-serialises rejected members for the DLQ. The record
    must be rejected, not raise (in a worker, the exception would stop it, and the same record again after
    every restart)."""
    for raw in (
        b"[" + b"[" * 255 + b"]" * 255 + b"]",
        b'[{"v":1,"x":' + b"[" * 300 + b"]" * 300 + b"}]",
    ):
        outcomes = decode_record(raw, NOW)
        check(raw, outcomes)
        assert outcomes[0].rejection is not None
