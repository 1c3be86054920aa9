"""What an operator needs to see of Kafka: consumer lag per service, DLQ depth, DLQ entries.

Read-only, except :func:`replay`, which re-sends parked messages to where they came from.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.topics import Topics

SERVICE_GROUPS = ("cayg-ingest", "cayg-normalize", "cayg-publish")


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind, summed over its partitions."""

    group: str
    lag: int
    partitions: int


@dataclass(frozen=True)
class ParkedMessage:
    """A DLQ record and its position on the DLQ topic."""

    topic: str
    partition: int
    offset: int
    letter: DeadLetter | None
    raw: bytes


def _reads(topics: Mapping[str, Sequence[str]], group: str) -> Sequence[str]:
    """The topics of ``group``; a publish lane (``cayg-publish.<lane>``) reads publish's."""
    for name, names in topics.items():
        if group == name or group.startswith(name + "."):
            return names
    return ()


async def consumer_lag(
    bootstrap: str,
    groups: Sequence[str] | None = None,
    *,
    topics: Mapping[str, Sequence[str]] | None = None,
) -> list[GroupLag]:
    """Committed offset vs log end for every partition each group has committed on.

    ``groups`` defaults to the cayg service groups found on the cluster (publish lanes
    included), or the three standard ones when none has committed yet. ``topics`` (group
    → topics it reads) adds partitions the group has not committed on yet, counted from
    their beginning: a retry topic whose first message still waits for its not-before
    time is behind, not idle.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        if groups is None:
            listed = sorted(
                str(entry[0])
                for entry in await admin.list_consumer_groups()
                if str(entry[0]).startswith(SERVICE_GROUPS)
            )
            groups = listed or list(SERVICE_GROUPS)
        result: list[GroupLag] = []
        for group in groups:
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
            }
            extra: list[TopicPartition] = []
            for topic in _reads(topics or {}, group):
                extra += [tp for tp in await _partitions(bootstrap, topic) if tp not in committed]
            if extra:
                committed.update(await consumer.beginning_offsets(extra))
            if not committed:
                result.append(GroupLag(group, 0, 0))
                continue
            ends = await consumer.end_offsets(list(committed))
            lag = sum(max(0, ends[tp] - offset) for tp, offset in committed.items())
            result.append(GroupLag(group, lag, len(committed)))
        return result
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none if it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(topic, int(p["partition"]))
        for entry in described
        if entry.get("error_code") == 0
        for p in entry.get("partitions", [])
    ]


async def topic_depth(bootstrap: str, topic: str) -> int:
    """Messages currently held by ``topic`` (end minus beginning offsets); 0 if absent."""
    tps = await _partitions(bootstrap, topic)
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def read_parked(bootstrap: str, topic: str, *, limit: int = 1000) -> list[ParkedMessage]:
    """Up to ``limit`` DLQ records from the beginning of ``topic``."""
    depth = await topic_depth(bootstrap, topic)
    if depth == 0:
        return []
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    out: list[ParkedMessage] = []
    try:
        while len(out) < min(limit, depth):
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    raw = record.value or b""
                    try:
                        letter: DeadLetter | None = DeadLetter.model_validate_json(raw)
                    except ValidationError:
                        letter = None
                    out.append(
                        ParkedMessage(record.topic, record.partition, record.offset, letter, raw)
                    )
    finally:
        await consumer.stop()
    return out[:limit]


#: Headers that steer one delivery attempt; a replay starts afresh without them.
_ATTEMPT_HEADERS = frozenset({"cayg_target", "cayg_not_before", "cayg_attempt", "cayg_dlq_reason"})


def replay_target(letter: DeadLetter, topics: Topics) -> str:
    """Where a parked message goes back to: the topic it was read from, except that a
    publish failure (possibly read from a retry tier) goes back to the normalized topic so
    every target gets it again (the ledger skips those that already hold it)."""
    if letter.stage is Stage.PUBLISH:
        return topics.normalized
    return topics.prefix + topics.unprefixed(letter.source.topic)


async def replay(
    bootstrap: str, parked: Sequence[ParkedMessage], topics: Topics
) -> list[tuple[ParkedMessage, str]]:
    """Re-send each parked message's original key, value and headers to its source topic.

    Safe to repeat: the original bytes keep their deterministic event id, and publish's
    ledger turns a second delivery of the same version into a no-op.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: list[tuple[ParkedMessage, str]] = []
    try:
        for item in parked:
            if item.letter is None or item.letter.value_truncated:
                # A truncated copy would only be parked again; it needs the SIS to resend.
                continue
            target = replay_target(item.letter, topics)
            key = None if item.letter.key_b64 is None else _b64(item.letter.key_b64)
            headers = [
                (k, v.encode())
                for k, v in item.letter.original_headers.items()
                if k not in _ATTEMPT_HEADERS
            ]
            await producer.send_and_wait(
                target, item.letter.original_value(), key=key, headers=headers
            )
            sent.append((item, target))
    finally:
        await producer.stop()
    return sent


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
