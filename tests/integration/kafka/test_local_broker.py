"""The broker the integration tier runs on is a real Kafka that supports what cayg relies
on: idempotent acks=all producers, transactions, consumer-group commits."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.integration


async def test_idempotent_producer_and_committed_offsets(kafka_bootstrap: str) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
    finally:
        await producer.stop()

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        first = [await consumer.getone() for _ in range(3)]
        await consumer.commit()
        partition = TopicPartition(topic, first[0].partition)
        assert await consumer.committed(partition) == first[-1].offset + 1
    finally:
        await consumer.stop()
    assert [m.value for m in first] == [b"m0", b"m1", b"m2"]


async def test_transactions_are_supported(kafka_bootstrap: str) -> None:
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed", partition=0)
        await producer.begin_transaction()
        await producer.send(topic, b"aborted", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"after", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        while len(seen) < 2:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "read_committed consumer saw nothing"
            seen.extend(m.value for msgs in batch.values() for m in msgs if m.value)
    finally:
        await consumer.stop()
    assert seen == [b"committed", b"after"]
