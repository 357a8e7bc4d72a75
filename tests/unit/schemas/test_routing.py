"""Our partitioner must agree with Kafka's (Java client test vectors, and aiokafka)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.routing import RouteTable, murmur2, partition_for_key


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


@settings(max_examples=200)
@given(st.lists(st.text(max_size=40), max_size=60), st.integers(min_value=1, max_value=32))
def test_route_table_is_the_partitioner_even_when_it_overflows(
    keys: list[str], partitions: int
) -> None:
    table = RouteTable(partitions, max_entries=7)
    for key in keys * 2:  # the second pass hits the cache (and its clearing)
        assert table.of(key) == partition_for_key(key.encode(), partitions)
