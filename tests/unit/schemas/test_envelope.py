"""Envelopes (CONTRACT §2a): within the limits, in order, every event once, decodable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decoder import (
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPE_EVENTS,
    decode_record,
    encode_event,
)
from schemas.envelope import cut_envelopes, encode_envelopes
from schemas.event import ActivityEvent

T0 = 1_764_374_400_000
SHAPES = [("docs", "essay"), ("docs", ""), ("math", ""), ("docs", "x"), ("web", "pbs.org")]


def _events(n: int, app_len: int, sub_len: int) -> list[ActivityEvent]:
    return [
        ActivityEvent(
            f"e{i}", "heartbeat", T0 + i, "d-1", f"s{i % 5}", "dev", *SHAPES[i % 5]
        )._replace(
            app=("a" * app_len) if app_len and i % 2 else SHAPES[i % 5][0],
            sub_app=("s" * sub_len) if sub_len and i % 3 else SHAPES[i % 5][1],
        )
        for i in range(n)
    ]


def test_encode_envelopes_writes_each_event_as_encode_event() -> None:
    events = _events(2500, 0, 0)
    assert encode_envelopes(events) == [
        b"[" + b",".join(map(encode_event, events[i : i + 1000])) + b"]"
        for i in range(0, 2500, 1000)
    ]


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=64),
    st.integers(min_value=0, max_value=128),
)
def test_envelopes_keep_the_limits_the_order_and_every_event(n: int, app: int, sub: int) -> None:
    events = _events(n, app, sub)
    for chunks in (encode_envelopes(events), cut_envelopes([encode_event(e) for e in events])):
        decoded = []
        for chunk in chunks:
            assert len(chunk) <= MAX_ENVELOPE_BYTES
            outcomes = decode_record(chunk, T0)
            assert 0 < len(outcomes) <= MAX_ENVELOPE_EVENTS
            decoded += [o.event for o in outcomes]
        assert decoded == events
        assert b"".join(c[1:-1] + b"," for c in chunks) == b"".join(
            encode_event(e) + b"," for e in events
        )


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=8 * 1024), max_size=3000))
def test_cut_envelopes_fills_each_envelope_within_both_limits(sizes: list[int]) -> None:
    members = [b'"' + b"x" * n + b'"' for n in sizes]
    chunks = cut_envelopes(list(members))
    assert b",".join(c[1:-1] for c in chunks) == b",".join(members)
    counts = [c.count(b'"') // 2 for c in chunks]
    assert sum(counts) == len(members)
    for n, (chunk, count) in enumerate(zip(chunks, counts, strict=True)):
        assert len(chunk) <= MAX_ENVELOPE_BYTES and 0 < count <= MAX_ENVELOPE_EVENTS
        if n + 1 < len(chunks):  # full: the next member would not have fitted
            nxt = members[sum(counts[: n + 1])]
            assert count == MAX_ENVELOPE_EVENTS or len(chunk) + len(nxt) + 1 > MAX_ENVELOPE_BYTES
