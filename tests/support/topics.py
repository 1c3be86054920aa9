"""Reading and writing topics from tests with plain aiokafka clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes | None, Mapping[str, str]]],
) -> None:
    """Send (key, value, headers) triples in order, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(
                topic,
                value,
                key=key,
                headers=[(name, text.encode()) for name, text in headers.items()],
            )
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topics: Sequence[str],
    *,
    expect: int | None = None,
    idle_s: float = 3.0,
    timeout_s: float = 90.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topics`` from the beginning: until ``expect`` records have arrived
    and then ``idle_s`` more seconds have passed with nothing new (so duplicates would show),
    or until ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = [record for part in batch.values() for record in part]
            if got:
                records.extend(got)
                last_new = time.monotonic()
            enough = expect is None or len(records) >= expect
            if enough and time.monotonic() - last_new >= idle_s:
                break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return records
