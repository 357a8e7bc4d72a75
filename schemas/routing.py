"""The partition of a keyed record (CONTRACT §1/§2a): ``(murmur2(key) & 0x7fffffff) % partitions``.

The key of an event is ``{district_id}:{student_id}``. This is what the Java client and aiokafka's
``DefaultPartitioner`` do (librdkafka producers need ``partitioner=murmur2_random``). Every producer,
the worker's re-routing and the tests use these functions; :class:`RouteTable` is the hot loop's
cache of the same function.
"""

from __future__ import annotations

from functools import lru_cache

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


def _partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=1 << 16)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record, as the Java client / aiokafka choose it."""
    return _partition(key, partitions)


class RouteTable:
    """``"district:student"`` -> partition for one partition count, bounded.

    A worker sees the same students over and over: a dict lookup instead of hashing each event.
    """

    __slots__ = ("partitions", "_table", "_max")

    def __init__(self, partitions: int, max_entries: int = 1 << 18) -> None:
        self.partitions = partitions
        self._table: dict[str, int] = {}
        self._max = max_entries

    def of(self, student_key: str) -> int:
        """The partition of ``student_key`` (as :func:`partition_for_key` of its UTF-8 bytes)."""
        target = self._table.get(student_key)
        if target is None:
            if len(self._table) >= self._max:
                self._table.clear()  # bounded; the hot students come back at once
            # Not the cached partition_for_key: this table is the cache, and a second one of
            # 65k encoded keys cost ~1 MB per 10k students of a worker's memory.
            target = _partition(student_key.encode(), self.partitions)
            self._table[student_key] = target
        return target
