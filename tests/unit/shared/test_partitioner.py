"""The services' partitioner puts every key where Kafka's default partitioner puts it: the
Java client's murmur2 (its own test vectors) and aiokafka's default, for any key and any
partition count, so per-key order holds next to producers of other clients."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from cayg_shared.batching import KeyPartitioner, murmur2

pytestmark = pytest.mark.unit

#: ``org.apache.kafka.common.utils.UtilsTest#testMurmur2`` (signed Java ints).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


@given(key=st.binary(max_size=300), partitions=st.integers(min_value=1, max_value=64))
def test_every_key_lands_where_the_default_partitioner_puts_it(key: bytes, partitions: int) -> None:
    ours, default = KeyPartitioner(), DefaultPartitioner()
    all_partitions = list(range(partitions))
    expected = default(key, all_partitions, all_partitions)
    assert ours(key, all_partitions, all_partitions) == expected
    # A second time from the remembered hash, and with a partition count that changed.
    assert ours(key, all_partitions, all_partitions) == expected
    more = list(range(partitions + 3))
    assert ours(key, more, more) == default(key, more, more)


def test_records_without_a_key_go_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2
