"""The broker the harness measures against, and the few Kafka operations it needs.

The broker is the project's own (``deploy/kafka/kafka.sh``) on loopback, started for the
run or reused when one already runs from the harness's directory; ``--bootstrap`` points the
harness at a broker someone else runs (the CI smoke test passes the test session's).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError
from aiokafka.structs import OffsetAndMetadata

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
KAFKA_SH: Final = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
#: Partitions of every topic the harness creates (the production layout of the demo).
PARTITIONS: Final = 3

Headers = Mapping[str, str]


@dataclass
class Broker:
    """A running broker: its address, and whether this run started it (and so stops it)."""

    bootstrap: str
    run_dir: Path | None
    started_here: bool

    def pid(self) -> int | None:
        """The broker's process id (from ``kafka.sh``'s pid file), to read its CPU time."""
        if self.run_dir is None:
            return None
        try:
            return int((self.run_dir / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the broker if this run started it; a reused or external one keeps running."""
        if self.started_here and self.run_dir is not None:
            subprocess.run(
                ["bash", str(KAFKA_SH), "stop", "--dir", str(self.run_dir)],
                check=False,
                capture_output=True,
                timeout=120,
            )


def start_broker(run_dir: Path, port: int) -> Broker:
    """Start ``kafka.sh`` on ``port`` with its state in ``run_dir``, or reuse it if it runs."""
    status = subprocess.run(
        ["bash", str(KAFKA_SH), "status", "--dir", str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    if status.returncode == 0:
        return Broker(status.stdout.strip().splitlines()[-1], run_dir, started_here=False)
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start", "--port", str(port), "--dir", str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        raise RuntimeError(f"kafka.sh start failed:\n{started.stderr}")
    return Broker(started.stdout.strip().splitlines()[-1], run_dir, started_here=True)


def kafka_version() -> str:
    """The Apache Kafka version ``deploy/kafka/pom.xml`` pins (what ``kafka.sh`` runs)."""
    text = (KAFKA_SH.parent / "pom.xml").read_text()
    start = text.find("<kafka.version>")
    end = text.find("</kafka.version>")
    return text[start + len("<kafka.version>") : end] if start >= 0 < end else "unknown"


async def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create ``names`` with :data:`PARTITIONS` partitions (those that exist are left)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
            for name in names
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


def producer(bootstrap: str, **options: object) -> AIOKafkaProducer:
    """A producer as the services configure theirs: acks=all, idempotent."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1_048_576,
        **options,
    )


async def produce_all(
    bootstrap: str, messages: Sequence[tuple[str, bytes | None, bytes, Headers]]
) -> None:
    """Send (topic, key, value, headers) without awaiting each; wait for every ack."""
    client = producer(bootstrap, linger_ms=5)
    await client.start()
    try:
        pending = [
            await client.send(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
            )
            for topic, key, value, headers in messages
        ]
        await asyncio.gather(*pending)
    finally:
        await client.stop()


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The log-end offset of every partition of ``topics`` (which must exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(await _partitions(consumer, topic))
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def _group_offsets(
    admin: AIOKafkaAdminClient, group: str
) -> dict[TopicPartition, OffsetAndMetadata]:
    """``group``'s committed offsets; while the broker has no coordinator for it yet (a
    fresh broker creates ``__consumer_offsets`` on the first group request), as none."""
    try:
        offsets: dict[TopicPartition, OffsetAndMetadata] = await admin.list_consumer_group_offsets(
            group
        )
    except GroupCoordinatorNotAvailableError:
        return {}
    return offsets


async def _stable_with(admin: AIOKafkaAdminClient, group: str, members: int) -> bool:
    """Whether ``group`` is stable with at least ``members`` members."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError:
        return False
    for response in responses:
        for described in response.groups:
            # (error code, group id, state, protocol type, protocol, members, ...)
            if described[1] == group and described[2] == "Stable":
                return len(described[5]) >= members
    return False


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """What ``group`` has committed, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await _group_offsets(admin, group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


@dataclass
class Progress:
    """How a consumer group worked through its input, seen by polling its commits."""

    total: int
    behind: int
    first_commit_at: float | None
    first_committed: int
    done_at: float

    def rate(self, since: float) -> tuple[float, float]:
        """(records/s, seconds) in the steady state: from the group's first commit to its
        last, counting what was committed after the first (start-up and group join are then
        excluded). When the first commit already held more than half the input (a tiny run)
        there is no steady state to see: then from ``since``."""
        moved = self.total - self.behind
        if self.first_commit_at is not None and self.first_committed <= moved / 2:
            seconds = self.done_at - self.first_commit_at
            return (moved - self.first_committed) / seconds, seconds
        seconds = self.done_at - since
        return (moved / seconds if seconds > 0 else 0.0), seconds


async def watch_commits(
    bootstrap: str,
    group: str,
    ends: Mapping[TopicPartition, int],
    *,
    timeout_s: float,
    poll_s: float = 0.05,
    members: int = 1,
) -> Progress:
    """Poll ``group``'s commits until they reach ``ends`` (or ``timeout_s`` runs out).

    With ``members`` above one, the steady state starts only once the group is stable with
    that many members: the first to join takes every partition and commits before the
    others join, and the rebalance their joining causes is start-up too."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    total = sum(ends.values())
    first_at: float | None = None
    first = 0
    joined = members <= 1
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if not joined:
                joined = await _stable_with(admin, group, members)
            offsets = await _group_offsets(admin, group)
            now = time.monotonic()
            done = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            committed = sum(min(end, done.get(tp, 0)) for tp, end in ends.items())
            if first_at is None and joined and committed > 0:
                first_at, first = now, committed
            if committed >= total or now > deadline:
                return Progress(total, total - committed, first_at, first, now)
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()


async def wait_committed(
    bootstrap: str,
    group: str,
    ends: Mapping[TopicPartition, int],
    *,
    timeout_s: float,
    poll_s: float = 0.1,
) -> tuple[float, int]:
    """Poll until ``group`` has committed every partition up to ``ends``.

    Returns (monotonic time it was first seen done, records still behind: 0 when done, or
    what was left when ``timeout_s`` ran out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    behind = sum(ends.values())
    try:
        while True:
            offsets = await _group_offsets(admin, group)
            done = {tp: meta.offset for tp, meta in offsets.items()}
            behind = sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
            now = time.monotonic()
            if behind == 0 or now > deadline:
                return now, behind
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()
