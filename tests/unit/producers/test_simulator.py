"""The simulator's records: exactly the generated items, each on its student's partition, in order."""

from __future__ import annotations

from collections import defaultdict

import pytest

from producers.simulator_model import InvalidEvent, SimItem, SimulationConfig, generate
from producers.simulator_records import build_records, prepare_records
from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS, decode_record
from schemas.event import ActivityEvent
from schemas.routing import partition_for_key

START = 1_764_403_200_000
NOW = START + 3_600_000
CONFIG = SimulationConfig(seed=9, districts=2, dup_rate=0.02, reorder_rate=0.05, invalid_rate=0.02)
Record = tuple[int, bytes | None, bytes, list[SimItem]]


def _check_records(records: list[Record], items: list[SimItem], partitions: int) -> None:
    """What a consumer reads back: every item once, on its key's partition, in per-student order."""
    per_student_sent: dict[str, list[SimItem]] = defaultdict(list)
    for item in items:
        student = item.key if isinstance(item, InvalidEvent) else item.student_key
        per_student_sent[student].append(item)
    per_student_read: dict[str, list[ActivityEvent]] = defaultdict(list)
    invalid = 0
    for partition, key, value, members in records:  # in send order, per partition in order
        outcomes = decode_record(value, NOW)
        assert len(outcomes) == len(members) <= MAX_ENVELOPE_EVENTS
        assert len(value) <= MAX_ENVELOPE_BYTES
        for outcome, member in zip(outcomes, members, strict=True):
            if isinstance(member, InvalidEvent):
                assert outcome.rejection is not None
                assert outcome.rejection.reason == member.reason
                assert partition == partition_for_key(member.key.encode(), partitions)
                invalid += 1
                continue
            assert outcome.event == member
            assert partition == partition_for_key(member.student_key.encode(), partitions)
            if key is not None:
                assert key == member.student_key.encode()
            per_student_read[member.student_key].append(outcome.event)
    assert invalid == sum(isinstance(i, InvalidEvent) for i in items) > 0
    for student, sent in per_student_sent.items():
        valid = [i for i in sent if isinstance(i, ActivityEvent)]
        assert per_student_read[student] == valid, student


@pytest.mark.parametrize("single", [False, True], ids=["envelopes", "single"])
def test_prepared_records_are_the_items_in_per_student_order(single: bool) -> None:
    items = generate(CONFIG, START, 45_000)  # more than two chunks of prepare_records
    records = prepare_records(items, 6, single)
    _check_records(records, items, 6)
    if not single:
        # Envelopes are filled across chunks: at most one partial envelope per partition.
        partial = [r for r in records if len(r[3]) < MAX_ENVELOPE_EVENTS]
        assert len(partial) <= 6
        assert len(records) <= len(items) // MAX_ENVELOPE_EVENTS + 6


@pytest.mark.parametrize("single", [False, True], ids=["envelopes", "single"])
def test_built_records_of_one_batch_are_the_items_in_per_student_order(single: bool) -> None:
    items = generate(CONFIG, START, 5_000)
    _check_records(build_records(items, 4, single), items, 4)
