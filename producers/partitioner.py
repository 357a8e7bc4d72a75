"""Kafka's default partitioner for keyed records, and grouping events into per-partition envelopes.

CONTRACT §1/§2a: an event belongs to partition ``(murmur2(key) & 0x7fffffff) % partitions`` of its
key ``{district_id}:{student_id}`` — what the Java client and aiokafka's ``DefaultPartitioner`` do
(librdkafka producers need ``partitioner=murmur2_random``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS, encode_event
from schemas.event import ActivityEvent

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as ``org.apache.kafka.common.utils.Utils.murmur2``: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length - end
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=1 << 16)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record, as the Java client / aiokafka choose it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def event_partition(event: ActivityEvent, partitions: int) -> int:
    """The partition an event belongs to (key ``{district_id}:{student_id}``)."""
    return partition_for_key(event.student_key.encode(), partitions)


def group_by_partition(
    events: Iterable[ActivityEvent], partitions: int
) -> dict[int, list[ActivityEvent]]:
    """Events grouped by partition; each group keeps the input order (so each student's order)."""
    groups: dict[int, list[ActivityEvent]] = {}
    for event in events:
        groups.setdefault(event_partition(event, partitions), []).append(event)
    return groups


def envelopes_by_partition(
    events: Iterable[ActivityEvent],
    partitions: int,
    max_events: int = MAX_ENVELOPE_EVENTS,
    max_bytes: int = MAX_ENVELOPE_BYTES,
) -> list[tuple[int, bytes, int]]:
    """``(partition, envelope_bytes, event_count)`` records, each within the §2a limits.

    Events of one partition are cut into envelopes in order, so a student's events stay in order
    across the records of their partition.
    """
    records: list[tuple[int, bytes, int]] = []
    for partition, group in group_by_partition(events, partitions).items():
        parts: list[bytes] = []
        size = 2
        for event in group:
            encoded = encode_event(event)
            if parts and (len(parts) >= max_events or size + len(encoded) + 1 > max_bytes):
                records.append((partition, b"[" + b",".join(parts) + b"]", len(parts)))
                parts, size = [], 2
            parts.append(encoded)
            size += len(encoded) + 1
        if parts:
            records.append((partition, b"[" + b",".join(parts) + b"]", len(parts)))
    return records
