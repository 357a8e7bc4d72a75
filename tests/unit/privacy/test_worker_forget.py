"""The worker-state hook: a purged student leaves no presence or usage entry, other students stay."""

from __future__ import annotations

import orjson

from csync.settings import Settings
from privacy.worker_forget import district_entries, forget_district, forget_student
from streams.batch_log import Intent
from streams.partition import PartitionState, Record, new_state, params_of, process_batch
from streams.snapshot import decode_snapshot, encode_snapshot

NOW = 1_767_225_600_000
SETTINGS = Settings.from_env(env={}, partitions=1)


def _event(n: int, district: str, student: str) -> Record:
    event = {"v": 1, "event_id": f"e{n}", "kind": "app_focus", "ts": NOW - 1000, "district_id": district,
             "student_id": student, "device_id": "dev", "app": "math", "sub_app": "fractions"}  # fmt: skip
    return (n, f"{district}:{student}".encode(), orjson.dumps(event), ())


def _state() -> PartitionState:
    params = params_of(SETTINGS)
    state = new_state(0, params)
    records = [_event(0, "d1", "s1"), _event(1, "d1", "s2"), _event(2, "d10", "s1")]
    process_batch(state, records, [], Intent(0, 0, 2, 0, -1, NOW, False, 0), params)
    return state


def test_forget_student_drops_presence_and_device_usage_of_that_student_only() -> None:
    state = _state()
    assert district_entries(state, "d1") == 4  # 2 presence + 2 devices
    assert forget_student(state, "d1", "s1") == 2
    assert district_entries(state, "d1") == 2
    assert district_entries(state, "d10") == 2


def test_forget_district_leaves_nothing_in_the_next_snapshot() -> None:
    state = _state()
    assert forget_district(state, "d1") == 4
    restored = decode_snapshot(encode_snapshot(state), params_of(SETTINGS))
    assert district_entries(restored, "d1") == 0
    assert district_entries(restored, "d10") == 2


def test_roster_tombstone_makes_the_worker_forget_the_students_usage_state() -> None:
    # The purge's signal to the worker is a roster tombstone: after the batch that carries it,
    # neither presence nor device usage state of that student is left (nor in the next snapshot).
    state = _state()
    params = params_of(SETTINGS)
    tombstone: Record = (0, b"d1:s1", None, ())
    process_batch(state, [], [tombstone], Intent(0, 3, 2, 0, 0, NOW, False, 1), params)
    restored = decode_snapshot(encode_snapshot(state), params)
    assert district_entries(restored, "d1") == 2  # s2's presence and device only
    assert ("d1", "s1", "dev") not in restored.usage.devices
    assert ("d1", "s2", "dev") in restored.usage.devices
    assert district_entries(restored, "d10") == 2
