"""Records decoded together give, record by record, what decoding each alone gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decoder, record_batch
from tests.unit.schemas.test_envelope_columns import BREAKAGES, WINDOW, _member

_ODD_RECORDS = [
    b"",
    b"{",
    b"3",
    b'"v"',
    b"[]",
    b"{}",
    b" {}",
    b'{"v":1,"note":"' + b"n" * 9000 + b'"}',  # a single event over 8 KiB
]


def _record(i: int, shape: int, kind: int) -> bytes:
    if kind < 0:
        return _ODD_RECORDS[kind]
    if kind >= len(BREAKAGES):  # an envelope of three, the middle one broken
        members: list[Any] = [_member(i * 10 + j, shape) for j in range(3)]
        BREAKAGES[kind % len(BREAKAGES)][0](members[1])
        return orjson.dumps(members)
    member = _member(i, shape)
    BREAKAGES[kind][0](member)
    return orjson.dumps(member)


_plan = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.one_of(
            st.just(0),
            st.integers(0, len(BREAKAGES) - 1),
            st.integers(-len(_ODD_RECORDS), -1),
            st.integers(len(BREAKAGES), 2 * len(BREAKAGES) - 1),
        ),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(_plan)
def test_records_together_answer_as_each_alone(plan: list[tuple[int, int]]) -> None:
    raws = [_record(i, shape, kind) for i, (shape, kind) in enumerate(plan)]
    expected_events = []
    expected_notes = []
    for pos, raw in enumerate(raws):
        events, notes = decoder.decode_split_within(raw, *WINDOW)
        expected_events += events
        expected_notes += [(pos, note) for note in notes]
    assert record_batch.decode_records_within(raws, *WINDOW) == (expected_events, expected_notes)


def test_long_runs_are_cut_and_keep_their_order() -> None:
    raws = [_record(i, i % 4, 0 if i % 97 else 5) for i in range(2500)]
    events, notes = record_batch.decode_records_within(raws, *WINDOW)
    assert [e.event_id for e in events] == [f"e-{i}" for i in range(2500) if i % 97]
    assert [pos for pos, _note in notes] == [i for i in range(2500) if not i % 97]
    assert all(n.raw == raws[pos] and n.source_index == -1 for pos, n in notes)
