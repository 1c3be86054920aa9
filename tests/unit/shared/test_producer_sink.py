"""The services' sink fills one record batch per partition and hands batches to the producer
when full, when the loop's batch is all sent, or between chunks once big enough and with
nothing unacknowledged on the partition; a refused hand-over fails its records and every
later one of the same loop batch.

The producer is a fake that builds real aiokafka record batches and reads them back;
``tests/integration/pipeline`` runs the same sink against a real broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerClosed
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from cayg_shared.batching import KeyPartitioner, Outbound, ProducerSink

pytestmark = pytest.mark.unit

TOPIC = "out"


class _Producer:
    """Builds real record batches; ``send_batch`` returns a future the test settles."""

    def __init__(self, batch_bytes: int = 256 * 1024) -> None:
        self.batch_bytes = batch_bytes
        self.submitted: list[tuple[int, list[bytes], asyncio.Future[Any]]] = []
        self.refuse: BaseException | None = None

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        if self.refuse is not None:
            raise self.refuse
        records = MemoryRecords(bytes(batch._build())).next_batch()
        assert records is not None
        values = [bytes(r.value or b"") for r in records]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submitted.append((partition, values, future))
        return future

    def acknowledge(self) -> None:
        for _, _, future in self.submitted:
            if not future.done():
                future.set_result(None)


def _out(key: bytes, value: bytes) -> Outbound:
    return Outbound.of(TOPIC, key, value, {"cayg_tenant": "t"})


def _partition(key: bytes) -> int:
    return KeyPartitioner()(key, [0, 1, 2], [0, 1, 2])


def _keys_for_each_partition() -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    for n in range(100):
        keys.setdefault(_partition(b"key-%d" % n), b"key-%d" % n)
    assert sorted(keys) == [0, 1, 2]
    return keys


def _key_other_than(key: bytes) -> bytes:
    return next(k for k in _keys_for_each_partition().values() if k != key)


def _sink(producer: _Producer, submit_bytes: int = 64 * 1024) -> ProducerSink:
    return ProducerSink(producer, submit_bytes=submit_bytes)


async def test_records_wait_in_one_batch_per_partition_until_the_final_flush() -> None:
    producer = _Producer()
    sink = _sink(producer)
    keys = _keys_for_each_partition()
    futures = [await sink.send(_out(keys[n % 3], b"v%d" % n)) for n in range(9)]
    await sink.flush(final=False)  # small batches: kept open
    assert producer.submitted == []
    assert not any(f.done() for f in futures)

    await sink.flush(final=True)
    by_partition = {p: values for p, values, _ in producer.submitted}
    assert by_partition == {
        0: [b"v0", b"v3", b"v6"],
        1: [b"v1", b"v4", b"v7"],
        2: [b"v2", b"v5", b"v8"],
    }, "each partition's records in the order sent, keyed as Kafka's partitioner keys them"
    assert not any(f.done() for f in futures), "only the broker's acknowledgement resolves them"
    producer.acknowledge()
    await asyncio.sleep(0)
    assert all(f.done() and f.exception() is None for f in futures)


async def test_a_batch_goes_between_chunks_only_when_its_partition_has_nothing_unacknowledged() -> (
    None
):
    producer = _Producer()
    sink = _sink(producer, submit_bytes=1)
    key = _keys_for_each_partition()[0]
    await sink.send(_out(key, b"a"))
    await sink.flush(final=False)
    assert [values for _, values, _ in producer.submitted] == [[b"a"]]

    await sink.send(_out(key, b"b"))
    await sink.flush(final=False)  # "a" is still in flight: "b" waits and gathers company
    await sink.send(_out(key, b"c"))
    assert [values for _, values, _ in producer.submitted] == [[b"a"]]

    producer.acknowledge()
    await asyncio.sleep(0)
    await sink.flush(final=False)
    assert [values for _, values, _ in producer.submitted] == [[b"a"], [b"b", b"c"]]


async def test_a_full_batch_is_handed_over_at_once() -> None:
    producer = _Producer(batch_bytes=1024)
    sink = _sink(producer)
    key = _keys_for_each_partition()[1]
    for n in range(5):  # two of these fit in 1,024 bytes with the batch's own header
        await sink.send(_out(key, bytes([65 + n]) * 300))
    assert [len(values) for _, values, _ in producer.submitted] == [2, 2]
    await sink.flush(final=True)
    assert [len(values) for _, values, _ in producer.submitted] == [2, 2, 1]


async def test_a_refused_hand_over_fails_its_records_and_every_later_send_of_the_batch() -> None:
    producer = _Producer()
    sink = _sink(producer)
    keys = _keys_for_each_partition()
    early = await sink.send(_out(keys[0], b"x"))
    producer.refuse = ProducerClosed()
    await sink.flush(final=False)  # too small: nothing happens yet
    await sink.flush(final=True)
    assert isinstance(early.exception(), ProducerClosed)
    assert producer.submitted == []

    # The refusal ended with the batch: the next loop batch sends again.
    producer.refuse = None
    later = await sink.send(_out(keys[0], b"y"))
    await sink.flush(final=True)
    assert [values for _, values, _ in producer.submitted] == [[b"y"]]
    assert not later.done()


async def test_after_a_refusal_mid_batch_later_records_are_refused_at_send() -> None:
    producer = _Producer(batch_bytes=1024)
    sink = _sink(producer)
    key = _keys_for_each_partition()[2]
    producer.refuse = KafkaTimeoutError()
    first = [await sink.send(_out(key, b"z" * 300)) for _ in range(2)]
    with pytest.raises(KafkaTimeoutError):
        await sink.send(_out(key, b"z" * 300))  # full: the hand-over is refused
    assert all(isinstance(f.exception(), KafkaTimeoutError) for f in first)
    with pytest.raises(KafkaTimeoutError):
        await sink.send(_out(_key_other_than(key), b"later"))
    await sink.flush(final=True)
    assert producer.submitted == []


async def test_a_record_over_the_request_size_is_refused_before_anything_is_added() -> None:
    producer = _Producer()
    sink = ProducerSink(producer, max_request_bytes=1000)
    with pytest.raises(MessageSizeTooLargeError):
        await sink.send(_out(b"k", b"v" * 1000))
    await sink.flush(final=True)
    assert producer.submitted == []


async def test_after_a_size_refusal_batches_to_that_topic_hold_half_as_many_bytes() -> None:
    producer = _Producer()
    sink = _sink(producer)
    key = _keys_for_each_partition()[0]
    value = b"x" * 1000
    first = [await sink.send(_out(key, value)) for _ in range(20)]
    await sink.flush(final=True)
    [(_, values, acked)] = producer.submitted
    assert len(values) == 20
    acked.set_exception(MessageSizeTooLargeError("over max.message.bytes"))
    await asyncio.sleep(0)
    assert all(isinstance(f.exception(), MessageSizeTooLargeError) for f in first)

    # Later batches to that topic stop below half the refused batch's bytes.
    for _ in range(20):
        await sink.send(_out(key, value))
    await sink.flush(final=True)
    later = [len(values) for _, values, _ in producer.submitted[1:]]
    assert sum(later) == 20
    assert max(later) <= 10, later
    assert len(later) >= 2

    # A refused batch of a single record teaches nothing: it goes alone anyway.
    producer.submitted.clear()
    await sink.send(_out(key, b"y" * 3_000))
    await sink.flush(final=True)
    [(_, [_], refused)] = producer.submitted
    refused.set_exception(MessageSizeTooLargeError("still too large"))
    await asyncio.sleep(0)
    for _ in range(4):
        await sink.send(_out(key, value))
    await sink.flush(final=True)
    assert [len(values) for _, values, _ in producer.submitted[1:]] == [4]


async def test_after_a_refused_batch_the_next_record_goes_through_a_new_producer() -> None:
    producers = [_Producer()]

    async def renew() -> Any:
        producers.append(_Producer())
        return producers[-1]

    sink = ProducerSink(producers[0], renew=renew)
    keys = _keys_for_each_partition()
    await sink.send(_out(keys[0], b"a"))
    await sink.send(_out(keys[1], b"b"))
    await sink.flush(final=True)
    [(_, _, first), (_, _, second)] = producers[0].submitted
    first.set_exception(KafkaTimeoutError("refused"))
    await asyncio.sleep(0)

    await sink.send(_out(keys[0], b"c"))
    await sink.flush(final=True)
    assert len(producers) == 2
    assert [values for _, values, _ in producers[1].submitted] == [[b"c"]]

    # A failure the old producer reports late changes nothing more.
    second.set_exception(KafkaTimeoutError("out of sequence"))
    await asyncio.sleep(0)
    await sink.send(_out(keys[0], b"d"))
    await sink.flush(final=True)
    assert len(producers) == 2
    assert [values for _, values, _ in producers[1].submitted] == [[b"c"], [b"d"]]
