"""The batch loop decodes records a few at a time (runs of single-event records together); what it
sees equals decoding every record alone, in the records' order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decoder
from streams import partition
from streams.partition import Record
from tests.unit.schemas.test_envelope_columns import WINDOW
from tests.unit.schemas.test_record_batch import _ODD_RECORDS, BREAKAGES, _record

_kinds = st.one_of(
    st.just(0),
    st.integers(0, len(BREAKAGES) - 1),
    st.integers(-len(_ODD_RECORDS), -1),
    st.integers(len(BREAKAGES), 2 * len(BREAKAGES) - 1),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), _kinds, st.booleans()), max_size=30),
    st.integers(1, 5),
)
def test_chunks_answer_as_each_record_alone(
    plan: list[tuple[int, int, bool]], per_decode: int
) -> None:
    activity: list[Record] = [
        (100 + i, b"k", None if tombstone else _record(i, shape, kind), ())
        for i, (shape, kind, tombstone) in enumerate(plan)
    ]
    expected_events, expected_notes = [], []
    for offset, _key, value, _headers in activity:
        if value is not None:
            events, notes = decoder.decode_split_within(value, *WINDOW)
            expected_events += events
            expected_notes += [(offset, note) for note in notes]
    got_events, got_notes = [], []
    saved = partition._RECORDS_PER_DECODE
    partition._RECORDS_PER_DECODE = per_decode  # small runs: the cuts are exercised
    try:
        for records, events, notes in partition._decoded(activity, *WINDOW):
            assert len(records) <= per_decode
            got_events += events
            got_notes += [(records[pos][0], note) for pos, note in notes]
    finally:
        partition._RECORDS_PER_DECODE = saved
    assert got_events == expected_events
    assert got_notes == expected_notes
