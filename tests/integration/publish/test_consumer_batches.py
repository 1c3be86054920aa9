"""Publish's consumer against a real broker: a batch of changes is recorded in one call, a
record that is not a change is dead-lettered with its reason, and a header that is not
UTF-8 neither stops the partition nor loses the change behind it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from cayg_publish.domain.projection import DocumentRef
from cayg_publish.handlers import PublishMetrics, register
from cayg_publish.settings import PublishSettings
from cayg_shared.envelope import DeadLetter
from cayg_shared.schema import Change
from cayg_shared.service import build_broker
from cayg_shared.settings import KafkaSettings
from cayg_shared.topics import Topics
from support.topics import create_topics
from unit.publish.publish_factories import award, change, definition

pytestmark = pytest.mark.integration


async def test_batches_are_recorded_and_bad_records_dead_lettered(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await create_topics(kafka_bootstrap, [topics.normalized, topics.publish_dlq], partitions=1)
    good = [change(definition(name=f"Definition {n}"), seq=n) for n in range(1, 41)] + [
        change(award(f"AW-{n}"), seq=n) for n in range(1, 41)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for item in good[:40]:
            await producer.send(topics.normalized, item.to_kafka_value(), key=b"k")
        await producer.send(topics.normalized, b'{"not": "a change"}', key=b"bad")
        # A header that is not UTF-8 on a good change: FastStream's parser would fail the
        # whole batch on it, and it would be read again forever.
        await producer.send(
            topics.normalized,
            good[40].to_kafka_value(),
            key=b"k",
            headers=[("x-odd", b"\xff\xfe")],
        )
        for item in good[41:]:
            await producer.send(topics.normalized, item.to_kafka_value(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()

    calls: list[list[Change]] = []
    done = asyncio.Event()

    async def record(changes: list[Change]) -> list[tuple[str, DocumentRef]]:
        calls.append(list(changes))
        if sum(len(c) for c in calls) >= len(good):
            done.set()
        return []

    settings = PublishSettings(
        topic_prefix=topic_prefix,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        batch_max_records=500,
    )
    broker = build_broker(settings, CollectorRegistry(), client_id="cayg-publish")
    register(broker, settings, record, PublishMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    async with broker:
        await broker.start()
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            raise AssertionError(f"recorded {[len(c) for c in calls]}") from None

    recorded = [c.event_id for batch in calls for c in batch]
    assert recorded == [c.event_id for c in good]  # all of them, once each, in order
    assert len(calls) < len(good)  # in batches, not one call per change

    consumer = AIOKafkaConsumer(
        topics.publish_dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    letters = [
        DeadLetter.model_validate_json(r.value or b"") for rs in fetched.values() for r in rs
    ]
    assert [(letter.reason, letter.source.offset) for letter in letters] == [("bad-change", 40)]


async def test_a_change_the_catalog_cannot_take_is_dead_lettered_not_retried_forever(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await create_topics(kafka_bootstrap, [topics.normalized, topics.publish_dlq], partitions=1)
    good = [change(award(f"AW-{n}"), seq=n) for n in range(1, 11)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for item in good:
            await producer.send(topics.normalized, item.to_kafka_value(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()

    poison = good[4].event_id
    recorded: list[Change] = []
    done = asyncio.Event()

    async def record(changes: list[Change]) -> list[tuple[str, DocumentRef]]:
        if any(c.event_id == poison for c in changes):
            raise ValueError("this change breaks the catalog")
        recorded.extend(changes)
        if len(recorded) >= len(good) - 1:
            done.set()
        return []

    settings = PublishSettings(
        topic_prefix=topic_prefix, kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap)
    )
    broker = build_broker(settings, CollectorRegistry(), client_id="cayg-publish")
    register(broker, settings, record, PublishMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), 60)

    assert [c.event_id for c in recorded] == [c.event_id for c in good if c.event_id != poison]
    consumer = AIOKafkaConsumer(
        topics.publish_dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    values = [r.value or b"" for rs in fetched.values() for r in rs]
    [letter] = [DeadLetter.model_validate_json(v) for v in values]
    assert (letter.reason, letter.source.offset) == ("record-failed", 4)
    assert "this change breaks the catalog" in letter.detail
