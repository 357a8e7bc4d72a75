"""Simulated items as Kafka records of ``device-activity.v1``: one event per record keyed
``{district_id}:{student_id}``, or per-partition envelopes (CONTRACT §2a) cut in order, so a student's events
stay in order.
"""

from __future__ import annotations

import contextlib
from operator import itemgetter

from producers.envelopes import EnvelopeBuilder
from producers.simulator_model import InvalidEvent, SimItem
from producers.simulator_wire import wire_bytes
from schemas.event import ActivityEvent
from schemas.routing import partition_for_key

Record = tuple[int, bytes | None, bytes, list[SimItem]]
"""``(partition, key, value, items)``: a record to produce and the items it carries."""

# Items per step when sending unpaced (speed 0, no rate cap) and per chunk of prepare_records.
# Much smaller steps make the producer send smaller batches (its linger runs out between steps)
# and grow its batch buffers in many more reallocations.
UNPACED_BATCH = 20_000


_STUDENT = itemgetter(3, 4)  # (district_id, student_id) of an ActivityEvent


def record_key(item: SimItem) -> bytes:
    """The Kafka key of an item: its student's ``{district_id}:{student_id}`` (an invalid one's own key)."""
    if isinstance(item, InvalidEvent):
        return item.key.encode()
    return item.student_key.encode()


def partitions_of(
    items: list[SimItem], partitions: int, known: dict[tuple[str, str], int]
) -> list[int]:
    """Each item's partition; computed once per student (``known`` caches them), not per item."""
    with contextlib.suppress(KeyError, IndexError):  # fast path: valid events of known students
        return list(map(known.__getitem__, map(_STUDENT, items)))
    out: list[int] = []
    append = out.append
    for item in items:
        if type(item) is ActivityEvent:
            student = (item[3], item[4])  # (district_id, student_id)
            partition = known.get(student)
            if partition is None:
                partition = partition_for_key(item.student_key.encode(), partitions)
                known[student] = partition
            append(partition)
        else:
            append(partition_for_key(record_key(item), partitions))
    return out


def build_records(
    items: list[SimItem], partitions: int, single: bool, wires: list[bytes] | None = None
) -> list[Record]:
    """``(partition, key, value, items)`` records: single events, or per-partition envelopes.

    ``wires`` are the items' JSON bytes (:func:`wire_bytes`) if already made. Envelopes are cut
    at 1,000 events or 1 MiB, in order, so a student's events stay in order.
    """
    if wires is None:
        wires = wire_bytes(items)
    if single:
        return [
            (partition_for_key(key := record_key(i), partitions), key, wire, [i])
            for i, wire in zip(items, wires, strict=True)
        ]
    builder = EnvelopeBuilder[SimItem]()
    records = builder.add(partitions_of(items, partitions, {}), items, wires)
    return records + builder.flush()


def prepare_records(items: list[SimItem], partitions: int, single: bool) -> list[Record]:
    """The records of ``items`` as :func:`build_records` makes them, with envelopes full across
    the whole list (made in chunks: each chunk's per-event bytes are freed once joined)."""
    records: list[Record] = []
    envelopes = EnvelopeBuilder[SimItem]()
    known: dict[tuple[str, str], int] = {}
    for start in range(0, len(items), UNPACED_BATCH):
        chunk = items[start : start + UNPACED_BATCH]
        wires = wire_bytes(chunk)
        if single:
            records += build_records(chunk, partitions, True, wires)
        else:
            records += envelopes.add(partitions_of(chunk, partitions, known), chunk, wires)
    return records + envelopes.flush()
