"""Per-partition envelopes (CONTRACT §2a) filled in delivery order from already-encoded events.

A producer that routes a stream hands each event's partition, the event and its JSON bytes to
:class:`EnvelopeBuilder`; an envelope leaves as soon as its partition holds 1,000 events, so
records reach the Kafka producer while the rest of the stream is still being routed (the
producer's sender runs between the chunks), and every envelope but a partition's last is full.
An envelope is its members' bytes joined — no second encoding — cut by :mod:`schemas.envelope`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from schemas.decoder import MAX_ENVELOPE_EVENTS
from schemas.envelope import envelope_end, join_envelope

T = TypeVar("T")
# (partition, key, value, members): envelopes have no key.
Record = tuple[int, bytes | None, bytes, list[T]]


class EnvelopeBuilder(Generic[T]):
    """Open envelopes per partition; :meth:`add` returns the full ones, :meth:`flush` the rest."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[list[T], list[bytes]]] = {}

    def add(self, partitions: list[int], members: list[T], encoded: list[bytes]) -> list[Record[T]]:
        """Route ``members`` (with their partitions and bytes, in delivery order); the envelopes
        that became full, in order per partition."""
        if not (len(partitions) == len(members) == len(encoded)):
            raise ValueError("partitions, members and encoded differ in length")
        # Positions per partition (one call per member), then members and bytes taken by C-level
        # maps: cheaper than appending both to a group found per member.
        positions: list[list[int]] = [[] for _ in range(max(partitions, default=-1) + 1)]
        appends = [p.append for p in positions]
        for index, partition in enumerate(partitions):
            appends[partition](index)
        groups = self._open
        for partition, indexes in enumerate(positions):
            if indexes:
                group = groups.get(partition)
                if group is None:
                    groups[partition] = group = ([], [])
                group[0].extend(map(members.__getitem__, indexes))
                group[1].extend(map(encoded.__getitem__, indexes))
        records: list[Record[T]] = []
        for partition, (open_members, open_encoded) in groups.items():
            if len(open_members) >= MAX_ENVELOPE_EVENTS:
                start = _cut(partition, open_members, open_encoded, records, whole=False)
                del open_members[:start], open_encoded[:start]
        return records

    def flush(self) -> list[Record[T]]:
        """Every open envelope, full or not; the builder is empty afterwards."""
        records: list[Record[T]] = []
        for partition, (members, encoded) in self._open.items():
            _cut(partition, members, encoded, records, whole=True)
        self._open.clear()
        return records


def _cut(
    partition: int, members: list[T], encoded: list[bytes], out: list[Record[T]], whole: bool
) -> int:
    """Append envelopes of ``members`` to ``out``: all of them, or (``whole=False``) only full
    ones (1,000 events or as many as 1 MiB holds). Returns how many members went out."""
    start = 0
    while start < len(members):
        end = envelope_end(encoded, start)
        if not whole and end - start < MAX_ENVELOPE_EVENTS and end == len(members):
            break  # not full yet: it waits for more events of its partition
        out.append((partition, None, join_envelope(encoded[start:end]), members[start:end]))
        start = end
    return start
