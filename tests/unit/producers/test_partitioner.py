"""Our partitioner must agree with Kafka's (Java client test vectors, and aiokafka)."""

from __future__ import annotations

import orjson
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.partitioner import envelopes_by_partition, murmur2, partition_for_key
from schemas.decoder import decode_record
from schemas.event import ActivityEvent


def test_murmur2_matches_the_java_client_test_vectors() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {k: murmur2(k) for k in vectors} == vectors


@settings(max_examples=500)
@given(st.binary(max_size=80), st.integers(min_value=1, max_value=64))
def test_partition_matches_aiokafka_default_partitioner(key: bytes, partitions: int) -> None:
    everything = list(range(partitions))
    assert partition_for_key(key, partitions) == DefaultPartitioner()(key, everything, everything)


def _event(i: int, student: str) -> ActivityEvent:
    return ActivityEvent(f"e{i}", "heartbeat", 1_764_374_400_000 + i, "d1", student, "dev", "a", "")


def test_envelopes_hold_only_their_partitions_events_in_order() -> None:
    events = [_event(i, f"s{i % 37}") for i in range(3000)]
    records = envelopes_by_partition(events, 8, max_events=100, max_bytes=6000)
    seen: list[ActivityEvent] = []
    for partition, raw, count in records:
        assert len(raw) <= 6000
        decoded = [o.event for o in decode_record(raw, 1_764_374_400_000)]
        assert len(decoded) == count <= 100
        for event in decoded:
            assert event is not None
            assert partition_for_key(event.student_key.encode(), 8) == partition
            seen.append(event)
    assert sorted(seen) == sorted(events)
    for student in {e.student_id for e in events}:
        mine = [e for e in seen if e.student_id == student]
        assert mine == [e for e in events if e.student_id == student]
    assert orjson.loads(records[0][1])[0]["v"] == 1
