"""What an operator needs to see of Kafka: consumer lag per service, DLQ depth, DLQ entries.

Read-only, except :func:`replay`, which re-sends parked messages to where they came from.
Every function takes the cluster as a :class:`~cayg_shared.settings.KafkaSettings` (TLS and
SASL as the services use them) or, for a plaintext development broker, a bootstrap address.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupIdNotFound,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)
from pydantic import ValidationError

from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.settings import KafkaSettings
from cayg_shared.topics import Topics

SERVICE_GROUPS = ("cayg-ingest", "cayg-normalize", "cayg-publish")

#: The cluster: its connection settings, or a plaintext bootstrap address.
Cluster = KafkaSettings | str

#: A group has no committed offsets yet: on a brand-new cluster there is not even a
#: coordinator (``__consumer_offsets`` is created on the first commit).
NO_COMMITS = (
    GroupCoordinatorNotAvailableError,
    GroupIdNotFound,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)


def client_options(cluster: Cluster) -> dict[str, Any]:
    """aiokafka client options for ``cluster``."""
    if isinstance(cluster, str):
        return {"bootstrap_servers": cluster}
    return cluster.client_options()


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
    #: When the letter was written (broker time, ms since the epoch).
    timestamp_ms: int | None = None

    @property
    def coordinates(self) -> str:
        """``topic@partition:offset`` — the letter's identity."""
        return f"{self.topic}@{self.partition}:{self.offset}"

    @property
    def unreplayable(self) -> str | None:
        """Why the letter cannot be replayed, if it cannot."""
        if self.letter is None:
            return "not a dead-letter record (it cannot be decoded as one)"
        if self.letter.value_truncated:
            kept = len(self.letter.original_value())
            return (
                f"the letter keeps only the first {kept} bytes of an oversized value: "
                "the SIS must send the event again"
            )
        return None


@dataclass(frozen=True)
class Replayed:
    """A parked message sent back, and where its copy landed."""

    item: ParkedMessage
    topic: str
    partition: int
    offset: int

    @property
    def coordinates(self) -> str:
        """``topic@partition:offset`` of the copy."""
        return f"{self.topic}@{self.partition}:{self.offset}"


def _reads(topics: Mapping[str, Sequence[str]], group: str) -> Sequence[str]:
    """The topics of ``group``; a publish lane (``cayg-publish.<lane>``) reads publish's."""
    for name, names in topics.items():
        if group == name or group.startswith(name + "."):
            return names
    return ()


async def consumer_lag(
    bootstrap: Cluster,
    groups: Sequence[str] | None = None,
    *,
    topics: Mapping[str, Sequence[str]] | None = None,
) -> list[GroupLag]:
    """Committed offset vs log end for every partition each group has committed on.

    ``groups`` defaults to the cayg service groups found on the cluster (publish lanes
    included), or the three standard ones when none has committed yet. ``topics`` (group
    → topics it reads) adds partitions the group has not committed on yet, counted from
    their beginning: a retry topic whose first message still waits for its not-before
    time is behind, not idle. A group without a coordinator yet (a brand-new cluster) has
    committed nothing.
    """
    options = client_options(bootstrap)
    admin = AIOKafkaAdminClient(**options)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
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
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except NO_COMMITS:
                offsets = {}
            committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            extra: list[TopicPartition] = []
            for topic in _reads(topics or {}, group):
                extra += [tp for tp in await partitions(bootstrap, topic) if tp not in committed]
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


async def partitions(bootstrap: Cluster, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none if it does not exist).

    Asks for every topic's metadata first: a metadata request naming a missing topic
    creates it on a broker with ``auto.create.topics.enable`` (with the broker's defaults,
    not the retention ``cayg topics apply`` would set) — looking must not create.
    """
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(topic, int(p["partition"]))
        for entry in described
        if entry.get("error_code") == 0
        for p in entry.get("partitions", [])
    ]


async def topic_depth(bootstrap: Cluster, topic: str) -> int:
    """Messages currently held by ``topic`` (end minus beginning offsets); 0 if absent."""
    tps = await partitions(bootstrap, topic)
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def read_parked(bootstrap: Cluster, topic: str, *, limit: int = 1000) -> list[ParkedMessage]:
    """Up to ``limit`` records of ``topic`` from its beginning to its end as of now (a
    compacted topic's gaps included)."""
    tps = await partitions(bootstrap, topic)
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[ParkedMessage] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in pending:
            consumer.seek(tp, starts[tp])
        while pending and len(out) < limit:
            batch = await consumer.getmany(*pending, timeout_ms=2000)
            if not batch:
                break
            for tp, records in batch.items():
                out.extend(decode_parked(r) for r in records if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    out.sort(key=lambda item: (item.partition, item.offset))
    return out[:limit]


def decode_parked(record: Any) -> ParkedMessage:
    """A consumed DLQ record as a :class:`ParkedMessage` (``letter`` is ``None`` when the
    value is not a dead-letter record)."""
    raw = record.value or b""
    try:
        letter: DeadLetter | None = DeadLetter.model_validate_json(raw)
    except ValidationError:
        letter = None
    return ParkedMessage(
        record.topic, record.partition, record.offset, letter, raw, record.timestamp
    )


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
    bootstrap: Cluster, parked: Sequence[ParkedMessage], topics: Topics
) -> list[Replayed]:
    """Re-send each parked message's original key, value and headers to its source topic,
    and say where each copy landed (to recognise it if it is parked again).

    Safe to repeat: the original bytes keep their deterministic event id, and publish's
    ledger turns a second delivery of the same version into a no-op. Letters that cannot
    be replayed (:attr:`ParkedMessage.unreplayable`) are skipped.
    """
    producer = AIOKafkaProducer(
        **client_options(bootstrap),
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    sent: list[Replayed] = []
    try:
        for item in parked:
            if item.letter is None or item.unreplayable:
                # A truncated copy would only be parked again; it needs the SIS to resend.
                continue
            target = replay_target(item.letter, topics)
            key = None if item.letter.key_b64 is None else _b64(item.letter.key_b64)
            headers = [
                (k, v.encode())
                for k, v in item.letter.original_headers.items()
                if k not in _ATTEMPT_HEADERS
            ]
            meta = await producer.send_and_wait(
                target, item.letter.original_value(), key=key, headers=headers
            )
            sent.append(Replayed(item, meta.topic, meta.partition, meta.offset))
    finally:
        await producer.stop()
    return sent


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
