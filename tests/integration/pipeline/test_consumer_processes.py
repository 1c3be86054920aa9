"""Consumer processes on a real broker (``CONSUMERS``, :mod:`cayg_shared.consumers`): ingest
as one OS process with two consumer processes beside its own loop takes its topic's
partitions as three members of its group, loses and repeats nothing, keeps order per key,
serves every process's counts on ``/metrics``, and stops cleanly; a consumer process that
dies stops the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from cayg_shared.envelope import IngestEnvelope
from cayg_shared.topics import Topics
from support.processes import ServiceProcess, service_env
from support.sis import NORTHFIELD, academic_credential_created, definition_guid, encode
from support.topics import create_topics, read_to_end, wait_for_group_members, wait_until_consumed

pytestmark = pytest.mark.integration

TENANTS = Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json"


async def _produce(bootstrap: str, topic: str, count: int, keys: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                encode(academic_credential_created(500_000 + i, i % keys)),
                key=definition_guid(i % keys).encode(),
            )
            for i in range(count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _within(seconds: float, done: Callable[[], bool]) -> bool:
    """Whether ``done()`` holds within ``seconds`` (asked every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _logged(proc: ServiceProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.log_lines() if line.startswith("{")]


def _accepted_total(proc: ServiceProcess) -> float:
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cayg_ingest_accepted_total{")
    )


def _ingest(bootstrap: str, prefix: str, tmp_path: Path, name: str) -> ServiceProcess:
    env = service_env("ingest", bootstrap, prefix, TENANTS, BATCH_MAX_RECORDS="50", CONSUMERS="3")
    # More than one consumer: no decision workers by default (service_env sets one).
    env.pop("CAYG_INGEST_DECIDE_WORKERS")
    return ServiceProcess("ingest", env=env, log_dir=tmp_path, name=name)


async def test_three_consumers_share_the_partitions_and_lose_nothing(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    sis = topics.sis(NORTHFIELD)
    await create_topics(kafka_bootstrap, [sis, topics.ingested], partitions=3)
    group = f"{topic_prefix}cayg-ingest"
    ingest = _ingest(kafka_bootstrap, topic_prefix, tmp_path, "ingest-3")
    try:
        await asyncio.to_thread(ingest.start)
        await wait_for_group_members(kafka_bootstrap, group, 3)
        await _produce(kafka_bootstrap, sis, 3000, 30)
        await wait_until_consumed(kafka_bootstrap, group, [sis], timeout_s=120)
        # The consumer processes' counts reach /metrics within a snapshot (1 s).
        await asyncio.to_thread(_within, 10, lambda: _accepted_total(ingest) >= 3000)
        assert _accepted_total(ingest) == 3000
        started = next(
            e for e in _logged(ingest) if e.get("message") == "consumer processes started"
        )
        children = started["pids"]
        assert isinstance(children, list)
        assert len(children) == 2
        assert ingest.stop() == 0
    finally:
        ingest.kill()

    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for record in await read_to_end(kafka_bootstrap, [topics.ingested]):
        envelope = IngestEnvelope.model_validate_json(record.value or b"")
        per_key[record.key or b""].append(int(envelope.source_message_id))
    assert len(per_key) == 30
    for key, ids in per_key.items():
        assert ids == sorted(ids), f"{key!r}: out of order"
        assert len(ids) == 100, f"{key!r}: {len(ids)} envelopes, not one per version"
    settled = Counter(
        entry.get("consumer", 0)
        for entry in _logged(ingest)
        if entry.get("message") == "batch settled"
    )
    assert set(settled) == {0, 1, 2}, f"every consumer settled batches: {settled}"


async def test_a_consumer_process_that_dies_stops_the_service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await create_topics(kafka_bootstrap, [topics.sis(NORTHFIELD), topics.ingested])
    ingest = _ingest(kafka_bootstrap, topic_prefix, tmp_path, "ingest-dies")
    try:
        await asyncio.to_thread(ingest.start)
        started = next(
            e for e in _logged(ingest) if e.get("message") == "consumer processes started"
        )
        pids = started["pids"]
        assert isinstance(pids, list)
        os.kill(pids[0], signal.SIGKILL)
        stopped = await asyncio.to_thread(_within, 60, lambda: not ingest.alive())
        assert stopped, "the service went on without one of its consumers"
    finally:
        ingest.kill()
    assert any(
        e.get("message") == "a consumer process ended; stopping the service"
        for e in _logged(ingest)
    )
    for pid in pids[1:]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
