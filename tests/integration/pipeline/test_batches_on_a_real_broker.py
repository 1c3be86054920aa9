"""The batch loop on a real broker, with ingest and normalize as OS processes: records that
fail by themselves (issue 10) are dead-lettered with a reason among good ones and block
nothing; order per key holds; a SIGKILL mid-stream loses nothing and re-sends at most one
batch.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from uuid import UUID

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from cayg_shared import headers as h
from cayg_shared.envelope import DeadLetter, IngestEnvelope
from cayg_shared.schema import Change
from cayg_shared.topics import Topics
from support.processes import ServiceProcess, service_env
from support.sis import (
    HARBOR,
    NORTHFIELD,
    academic_credential_created,
    definition_guid,
    encode,
    harbor_award,
    structured_headers,
)
from support.topics import (
    consume_all,
    create_topics,
    read_to_end,
    wait_for_group_members,
    wait_until_consumed,
)

pytestmark = pytest.mark.integration

TENANTS = Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json"
RawRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]


async def _produce(bootstrap: str, records: Sequence[RawRecord]) -> list[tuple[str, int, int]]:
    """Send records with raw header bytes, in order; where each was written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        written = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in written]


def _versions(count: int, keys: int, first_sequence: int = 100_000) -> list[RawRecord]:
    """``count`` Ethos notifications about ``keys`` definitions, round robin: every key gets
    increasing notification ids, so per-key order can be checked downstream."""
    out: list[RawRecord] = []
    for i in range(count):
        n = i % keys
        value = encode(academic_credential_created(first_sequence + i, n))
        out.append(("", definition_guid(n).encode(), value, []))
    return out


@pytest.fixture
def services(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    procs = {
        name: ServiceProcess(
            name,
            env=service_env(name, kafka_bootstrap, topic_prefix, TENANTS, BATCH_MAX_RECORDS="50"),
            log_dir=tmp_path,
        )
        for name in ("ingest", "normalize")
    }
    yield procs
    for proc in procs.values():
        proc.kill()


def _ids_in_order(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes, list[int]]:
    """Per output key, the Ethos notification ids in the order the topic holds them."""
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        envelope = IngestEnvelope.model_validate_json(record.value or b"")
        per_key[record.key or b""].append(int(envelope.source_message_id))
    return per_key


async def test_poison_records_are_parked_among_good_ones_and_block_nothing(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, ServiceProcess]
) -> None:
    topics = Topics(topic_prefix)
    sis = [topics.sis(NORTHFIELD), topics.sis(HARBOR)]
    await create_topics(kafka_bootstrap, [*sis, topics.ingested, topics.normalized], partitions=1)
    surrogate = harbor_award(1)
    surrogate["data"]["definition"]["sourceId"] = "WELD-\ud800"
    ce = [(name, text.encode()) for name, text in structured_headers().items()]
    good = [(topics.sis(NORTHFIELD), k, v, hd) for _, k, v, hd in _versions(120, 6)]
    stream: list[RawRecord] = [
        *good[:40],
        (topics.sis(HARBOR), b"poison-1", encode(surrogate), ce),
        (topics.sis(HARBOR), b"good-ce", encode(harbor_award(2)), ce),
        *good[40:80],
        (topics.sis(NORTHFIELD), b"poison-2", good[0][2], [(h.TRACEPARENT, b"\xff\xfe")]),
        *good[80:],
    ]
    written = await _produce(kafka_bootstrap, stream)

    for proc in services.values():
        await asyncio.to_thread(proc.start)
    # Committed to the end of every SIS partition: nothing is stuck behind the poison.
    await wait_until_consumed(kafka_bootstrap, f"{topic_prefix}cayg-ingest", sis, timeout_s=60)
    await wait_until_consumed(
        kafka_bootstrap, f"{topic_prefix}cayg-normalize", [topics.ingested], timeout_s=60
    )
    for proc in services.values():
        assert proc.stop() == 0

    letters = [
        DeadLetter.model_validate_json(r.value or b"")
        for r in await read_to_end(kafka_bootstrap, [topics.ingest_dlq])
    ]
    by_offset = {(ltr.source.topic, ltr.source.offset): ltr.reason for ltr in letters}
    poison_1, poison_2 = written[40], written[82]
    assert by_offset == {
        (poison_1[0], poison_1[2]): "unencodable-text",
        (poison_2[0], poison_2[2]): "bad-header",
    }
    ingested = await read_to_end(kafka_bootstrap, [topics.ingested])
    assert len(ingested) == len(stream) - 2, "every good record forwarded, once"
    ethos = [r for r in ingested if r.key and r.key.startswith(NORTHFIELD.encode())]
    for key, ids in _ids_in_order(ethos).items():
        assert ids == sorted(ids), f"{key!r} out of order"
        assert len(ids) == 20
    normalized = await read_to_end(kafka_bootstrap, [topics.normalized])
    assert len(normalized) == len(stream) - 2


async def test_sigkill_mid_stream_loses_nothing_keeps_order_and_resends_at_most_a_batch(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, ServiceProcess]
) -> None:
    topics = Topics(topic_prefix)
    sis = topics.sis(NORTHFIELD)
    await create_topics(kafka_bootstrap, [sis, topics.ingested, topics.normalized])
    stream = [(sis, k, v, hd) for _, k, v, hd in _versions(3000, 30)]
    await _produce(kafka_bootstrap, stream)

    for proc in services.values():
        await asyncio.to_thread(proc.start)
    await consume_all(kafka_bootstrap, [topics.ingested], expect=200, idle_s=0, timeout_s=60)
    services["ingest"].kill()  # no commit, no flush
    services["normalize"].kill()
    for proc in services.values():
        await asyncio.to_thread(proc.start)
    await wait_until_consumed(kafka_bootstrap, f"{topic_prefix}cayg-ingest", [sis], timeout_s=120)
    await wait_until_consumed(
        kafka_bootstrap, f"{topic_prefix}cayg-normalize", [topics.ingested], timeout_s=120
    )

    ingested = await read_to_end(kafka_bootstrap, [topics.ingested])
    per_key = _ids_in_order(ingested)
    assert len(per_key) == 30
    for key, ids in per_key.items():
        firsts = list(dict.fromkeys(ids))
        assert firsts == sorted(firsts), f"{key!r}: first deliveries out of order"
        assert len(firsts) == 100, f"{key!r}: lost versions"
        # A re-sent run starts again at an earlier version and ascends from there.
        runs = sum(1 for a, b in pairwise(ids) if b <= a)
        assert runs <= 1, f"{key!r}: re-sent more than once"
    duplicates = len(ingested) - len(stream)
    assert 0 <= duplicates <= 50, "at most one batch (BATCH_MAX_RECORDS) is re-sent"

    normalized = await read_to_end(kafka_bootstrap, [topics.normalized])
    envelope_ids = {IngestEnvelope.model_validate_json(r.value or b"").event_id for r in ingested}
    causes: set[UUID] = {Change.from_kafka_value(r.value or b"").causation_id for r in normalized}
    assert causes == envelope_ids, "every envelope mapped, none lost by normalize's kill"
    log = [json.loads(x) for x in services["ingest"].log_lines() if x.startswith("{")]
    assert any(entry.get("message") == "batch settled" for entry in log)


async def test_a_second_instance_joining_mid_stream_takes_partitions_and_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    sis = topics.sis(NORTHFIELD)
    await create_topics(kafka_bootstrap, [sis, topics.ingested])
    env = service_env("ingest", kafka_bootstrap, topic_prefix, TENANTS, BATCH_MAX_RECORDS="50")
    first = ServiceProcess("ingest", env=env, log_dir=tmp_path, name="ingest-a")
    second = ServiceProcess("ingest", env=env, log_dir=tmp_path, name="ingest-b")
    try:
        stream = [(sis, k, v, hd) for _, k, v, hd in _versions(3000, 30)]
        await asyncio.to_thread(first.start)
        await _produce(kafka_bootstrap, stream[:1500])
        await consume_all(kafka_bootstrap, [topics.ingested], expect=100, idle_s=0, timeout_s=60)
        await asyncio.to_thread(second.start)  # a rebalance, likely with a batch in flight
        group = f"{topic_prefix}cayg-ingest"
        # the rest only once both own partitions: else a fast first instance drains it all
        await wait_for_group_members(kafka_bootstrap, group, 2)
        await _produce(kafka_bootstrap, stream[1500:])
        await wait_until_consumed(kafka_bootstrap, group, [sis], timeout_s=120)
        assert first.stop() == 0
        assert second.stop() == 0
    finally:
        first.kill()
        second.kill()

    per_key = _ids_in_order(await read_to_end(kafka_bootstrap, [topics.ingested]))
    assert len(per_key) == 30
    for key, ids in per_key.items():
        firsts = list(dict.fromkeys(ids))
        assert firsts == sorted(firsts), f"{key!r}: first deliveries out of order"
        assert len(firsts) == 100, f"{key!r}: lost versions"
    settled_by = {
        proc.name: sum(
            json.loads(line).get("settled", 0)
            for line in proc.log_lines()
            if line.startswith("{") and '"batch settled"' in line
        )
        for proc in (first, second)
    }
    assert all(settled_by.values()), f"both instances consumed: {settled_by}"
