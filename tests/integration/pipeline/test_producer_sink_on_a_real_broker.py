"""The services' sink on a real broker: record batches land where Kafka's default
partitioner puts each key, in the order sent, with key, value and headers intact; each
record's future resolves only once its batch is stored; a record over the request size is
refused before it leaves."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from cayg_shared.batching import MAX_BATCH_BYTES, Outbound, ProducerSink
from support.topics import create_topics, read_to_end

pytestmark = pytest.mark.integration


async def test_batches_land_in_order_on_the_default_partitioners_partitions(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}sink"
    await create_topics(kafka_bootstrap, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_batch_size=MAX_BATCH_BYTES,
    )
    await producer.start()
    try:
        sink = ProducerSink(producer, submit_bytes=8 * 1024)
        sent: list[Outbound] = []
        futures: list[asyncio.Future[object]] = []
        # 3,000 records of ~700 bytes over 40 keys, in chunks of 50 as the runner sends:
        # some batches go between chunks, some when full, the rest at the final flush.
        for n in range(3_000):
            record = Outbound.of(
                topic,
                b"learner-%d" % (n % 40),
                b"%06d:" % n + "é".encode() * 350,
                {"cayg_event_id": f"e{n}", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16},
            )
            sent.append(record)
            futures.append(await sink.send(record))
            if n % 50 == 49:
                await sink.flush(final=False)
        await sink.flush(final=True)
        await asyncio.gather(*futures)

        with pytest.raises(MessageSizeTooLargeError):
            await sink.send(Outbound.of(topic, b"big", b"x" * 1_100_000, {}))
        await sink.flush(final=True)
    finally:
        await producer.stop()

    stored = await read_to_end(kafka_bootstrap, [topic])
    assert len(stored) == len(sent), "every record once; the refused one not at all"
    default = DefaultPartitioner()
    expected: dict[int, list[bytes]] = defaultdict(list)
    for record in sent:
        assert record.key is not None
        expected[default(record.key, [0, 1, 2], [0, 1, 2])].append(record.value)
    landed: dict[int, list[bytes]] = defaultdict(list)
    for message in stored:
        landed[message.partition].append(message.value or b"")
    assert landed == expected, "each key on the default partitioner's partition, in order"
    first = next(m for m in stored if (m.value or b"").startswith(b"000000:"))
    assert first.key == b"learner-0"
    assert dict(first.headers) == dict(sent[0].headers)
