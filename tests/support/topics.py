"""Reading and writing topics from tests with plain aiokafka clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition


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


async def create_topics(
    bootstrap: str,
    names: Sequence[str],
    *,
    partitions: int = 3,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create ``names`` up front (as production does), with topic-level ``configs``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=dict(configs or {}),
                )
                for name in names
            ]
        )
    finally:
        await admin.close()


async def produce_batch(
    bootstrap: str,
    messages: Sequence[tuple[str, bytes | None, bytes | None, Mapping[str, str]]],
    *,
    max_request_size: int = 1_048_576,
) -> list[tuple[str, int, int]]:
    """Send (topic, key, value, headers) quadruples without waiting for each one (acks=all,
    idempotent, so per-partition order holds); the (topic, partition, offset) of each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=max_request_size,
    )
    await producer.start()
    try:
        pending = [
            await producer.send(
                topic,
                value,
                key=key,
                headers=[(name, text.encode()) for name, text in headers.items()],
            )
            for topic, key, value, headers in messages
        ]
        written = await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return [(meta.topic, meta.partition, meta.offset) for meta in written]


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The log-end offset of every partition of ``topics`` (absent topics have none)."""
    from aiokafka.admin import AIOKafkaAdminClient

    # All topics' metadata, filtered here: asking for named topics could auto-create them.
    # (A consumer's ``topics()`` fetches metadata without keeping it, so
    # ``partitions_for_topic`` does not know topics the consumer never subscribed to.)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    wanted = set(topics)
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["topic"] in wanted
        for partition in topic["partitions"]
    ]
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


async def wait_until_consumed(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    *,
    timeout_s: float = 120.0,
) -> dict[tuple[str, int], int]:
    """Wait until consumer ``group`` has committed every partition of ``topics`` up to its
    end (taken when called): everything it read is then settled, outputs included. Raises
    ``TimeoutError`` with the remaining lag otherwise."""
    from aiokafka.admin import AIOKafkaAdminClient

    target = await end_offsets(bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
            behind = {
                tp: end - done.get(tp, 0) for tp, end in target.items() if done.get(tp, 0) < end
            }
            if not behind:
                return target
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group} is still behind: {behind}")
            await asyncio.sleep(0.25)
    finally:
        await admin.close()


async def read_to_end(
    bootstrap: str, topics: Sequence[str], *, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topics`` up to their current ends, from the beginning."""
    ends = {tp: offset for tp, offset in (await end_offsets(bootstrap, topics)).items() if offset}
    if not ends:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(topic, partition) for topic, partition in ends]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = set(partitions)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read to the end of {sorted(map(str, remaining))}")
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, got in batch.items():
                records.extend(got)
                if got and got[-1].offset + 1 >= ends[(tp.topic, tp.partition)]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records


async def wait_for_group_members(
    bootstrap: str, group: str, members: int, *, timeout_s: float = 60.0
) -> None:
    """Until ``group`` is Stable with ``members`` members (a rebalance has completed)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    seen: tuple[str, int] = ("", 0)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for response in await admin.describe_consumer_groups([group]):
                for described in response.groups:
                    seen = (str(described[2]), len(described[5]))
            if seen == ("Stable", members):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise AssertionError(f"group {group}: wanted Stable with {members} members, saw {seen}")
