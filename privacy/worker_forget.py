"""Pure functions that make a stream worker's partition state forget students (district purge).

The worker (``streams``) keeps no faust tables: a partition's state is a
:class:`~streams.partition.PartitionState` held in memory and snapshotted to ``Settings.topic_worker_state``
(key ``snap``, ``cleanup.policy=delete``). Per-student tombstones cannot reach it, so a purge works in two parts:

1. The signal is a ``roster.v1`` tombstone for every purged student. ``streams.presence.apply_roster`` already
   drops the student's presence state on a tombstone and emits a ``deleted`` change (the Redis sink deletes the
   hash). What it does not drop is the student's per-device usage state (reorder buffers, event ids), which
   otherwise lives until ``USAGE_EVICT_AFTER_S`` without arrivals. **Hook for the lead:** in
   ``streams.partition.process_batch``, where a roster record is parsed to ``(district, student, None, ())``
   (a tombstone), also call :func:`forget_student` ``(state, district, student)`` — or just
   :func:`forget_student_usage` on ``state.usage.devices`` — so the next snapshot holds nothing of the student.
2. ``privacy.purge`` then checks each partition's latest snapshot with :func:`district_entries` and, once it is
   clean, deletes every older record of that partition (``DeleteRecords`` below the snapshot's offset), which
   removes the older snapshots that still held the district.
"""

from __future__ import annotations

from typing import Any

from streams.partition import PartitionState


def forget_student_usage(
    devices: dict[tuple[str, str, str], Any], district_id: str, student_id: str
) -> int:
    """Drop every device usage state of one student; return how many were dropped."""
    doomed = [k for k in devices if k[0] == district_id and k[1] == student_id]
    for key in doomed:
        del devices[key]
    return len(doomed)


def forget_student(state: PartitionState, district_id: str, student_id: str) -> int:
    """Drop the student's presence state and device usage states; return the entries dropped.

    The presence deadline heap is lazy (an entry whose state is gone is skipped by ``expire``), so it needs no
    change. Emits nothing: the Redis side is handled by the ``deleted`` change of the roster tombstone and by
    the purge itself.
    """
    dropped = 0
    if state.presence.states.pop(f"{district_id}:{student_id}", None) is not None:
        dropped += 1
    return dropped + forget_student_usage(state.usage.devices, district_id, student_id)


def forget_district(state: PartitionState, district_id: str) -> int:
    """Drop every presence and usage entry of a district (for a worker that receives a purge command)."""
    students = {
        k.partition(":")[2] for k in state.presence.states if k.startswith(f"{district_id}:")
    }
    students |= {k[1] for k in state.usage.devices if k[0] == district_id}
    return sum(forget_student(state, district_id, s) for s in students)


def district_entries(state: PartitionState, district_id: str) -> int:
    """How many presence and device-usage entries of ``district_id`` the state holds."""
    prefix = f"{district_id}:"
    presence = sum(1 for k in state.presence.states if k.startswith(prefix))
    return presence + sum(1 for k in state.usage.devices if k[0] == district_id)
