"""The thin real path: an SIS event on ``sis.events.<tenant>`` goes through the ingest and
normalize *processes* on a real broker and arrives on ``cayg.normalized.v1`` exactly once,
with its key, headers, trace and correlation ids; restarts resume from the committed offset.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cayg_shared import headers as h
from cayg_shared.schema import Change
from cayg_shared.topics import Topics
from support.processes import ServiceProcess
from support.sis import (
    NORTHFIELD,
    academic_credential_created,
    definition_guid,
    encode,
    trace_headers,
)
from support.topics import consume_all, produce

pytestmark = pytest.mark.integration

TENANTS = Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json"


def _env(service: str, bootstrap: str, prefix: str) -> dict[str, str]:
    p = f"CAYG_{service.upper()}_"
    return {
        f"{p}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        f"{p}KAFKA__METADATA_MAX_AGE_MS": "1000",
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}GROUP_ID": f"{prefix}cayg-{service}",
        f"{p}TENANTS_FILE": str(TENANTS),
        f"{p}REDELIVERY_BACKOFF_S": "0.2",
        # Per-record lines are DEBUG (INFO has one line per batch); these tests count them.
        f"{p}LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
def services(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    procs = {
        name: ServiceProcess(name, env=_env(name, kafka_bootstrap, topic_prefix), log_dir=tmp_path)
        for name in ("ingest", "normalize")
    }
    yield procs
    for proc in procs.values():
        proc.kill()


def _events(first: int, count: int) -> list[tuple[bytes | None, bytes | None, dict[str, str]]]:
    out: list[tuple[bytes | None, bytes | None, dict[str, str]]] = []
    for n in range(first, first + count):
        event = academic_credential_created(104_000 + n, n)
        out.append((definition_guid(n).encode(), encode(event), trace_headers(n)))
    return out


async def test_event_flows_once_with_key_headers_and_trace(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, ServiceProcess]
) -> None:
    topics = Topics(topic_prefix)
    await produce(kafka_bootstrap, topics.sis(NORTHFIELD), _events(0, 20))
    for proc in services.values():
        await asyncio.to_thread(proc.start)

    records = await consume_all(kafka_bootstrap, [topics.normalized], expect=20, idle_s=3)

    assert len(records) == 20
    changes = [Change.from_kafka_value(r.value or b"") for r in records]
    assert len({c.event_id for c in changes}) == 20
    by_source = {c.entity_key.source_id: (c, r) for c, r in zip(changes, records, strict=True)}
    assert set(by_source) == {definition_guid(n) for n in range(20)}
    for n in range(20):
        change, record = by_source[definition_guid(n)]
        sent = trace_headers(n)
        got = {k: v.decode() for k, v in record.headers}
        assert record.key == f"{NORTHFIELD}/credential-definition/{definition_guid(n)}".encode()
        assert got[h.CORRELATION_ID] == sent[h.CORRELATION_ID]
        assert got[h.TRACEPARENT].split("-")[1] == sent[h.TRACEPARENT].split("-")[1]
        assert got[h.TRACEPARENT] != sent[h.TRACEPARENT]  # a new span, same trace
        assert got[h.TENANT] == NORTHFIELD
        assert got[h.EVENT_ID] == str(change.event_id)
        assert change.correlation_id == sent[h.CORRELATION_ID]
        assert change.entity is not None
        assert change.tenant == NORTHFIELD

    async with httpx.AsyncClient(timeout=5) as http:
        health = await http.get(f"{services['ingest'].url}/healthz")
        ready = await http.get(f"{services['normalize'].url}/readyz")
        metrics = (await http.get(f"{services['ingest'].url}/metrics")).text
    assert health.status_code == 200
    assert ready.json()["checks"]["kafka"] is True
    accepted = (
        'cayg_ingest_accepted_total{format="ethos-change-notification",tenant="northfield-cc"}'
    )
    assert f"{accepted} 20.0" in metrics
    assert "faststream_received_messages_total" in metrics
    # Process and platform collectors, and what runs.
    assert "process_resident_memory_bytes" in metrics
    assert "python_info" in metrics
    assert 'cayg_build_info{lane="",python=' in metrics
    assert 'service="ingest"' in metrics
    assert health.json() == {
        "status": "ok",
        "service": "ingest",
        "lane": None,
        "group": f"{topic_prefix}cayg-ingest",
    }
    # Lag from the group's committed offsets, exported by the service itself: everything
    # was committed, so every partition it reads shows 0.
    lag_line = (
        f'cayg_consumer_lag{{group="{topic_prefix}cayg-ingest",lane="",partition="0",'
        f'service="ingest",topic="{topics.sis(NORTHFIELD)}"}} 0.0'
    )
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(60):
            metrics = (await http.get(f"{services['ingest'].url}/metrics")).text
            if lag_line in metrics:
                break
            await asyncio.sleep(0.5)
    assert lag_line in metrics
    # Its AsyncAPI document, with this deployment's topics.
    async with httpx.AsyncClient(timeout=5) as http:
        document = (await http.get(f"{services['ingest'].url}/asyncapi.json")).json()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        f"{topic_prefix}sis.events.{{tenant}}",
        topics.ingested,
        topics.ingest_dlq,
    }

    for proc in services.values():
        assert proc.stop() == 0
    ingest_log = [
        json.loads(line) for line in services["ingest"].log_lines() if line.startswith("{")
    ]
    ingested = [line for line in ingest_log if line.get("message") == "sis message ingested"]
    assert len(ingested) == 20
    assert all(line["service"] == "ingest" and "offset" in line for line in ingested)
    # The trace each SIS event carried is named in ingest's own lines.
    sent_traces = {trace_headers(n)[h.TRACEPARENT].split("-")[1] for n in range(20)}
    assert {line["trace_id"] for line in ingested} == sent_traces


async def test_graceful_restart_resumes_without_loss_or_duplicates(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, ServiceProcess]
) -> None:
    topics = Topics(topic_prefix)
    await produce(kafka_bootstrap, topics.sis(NORTHFIELD), _events(0, 30))
    for proc in services.values():
        await asyncio.to_thread(proc.start)
    await consume_all(kafka_bootstrap, [topics.normalized], expect=30, idle_s=0.5)

    # Stop both gracefully, write more while they are down, start them again.
    for proc in services.values():
        assert proc.stop() == 0
    await produce(kafka_bootstrap, topics.sis(NORTHFIELD), _events(30, 30))
    for proc in services.values():
        await asyncio.to_thread(proc.start)

    ingested = await consume_all(kafka_bootstrap, [topics.ingested], expect=60, idle_s=3)
    normalized = await consume_all(kafka_bootstrap, [topics.normalized], expect=60, idle_s=3)
    ids = Counter(json.loads(r.value or b"{}")["event_id"] for r in ingested)
    assert len(ids) == 60
    assert max(ids.values()) == 1, "a graceful restart must not re-emit anything"
    assert len(normalized) == 60
    assert len({Change.from_kafka_value(r.value or b"").event_id for r in normalized}) == 60


async def test_crash_loses_nothing_and_redelivery_keeps_event_ids(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, ServiceProcess]
) -> None:
    topics = Topics(topic_prefix)
    for proc in services.values():
        await asyncio.to_thread(proc.start)
    await produce(kafka_bootstrap, topics.sis(NORTHFIELD), _events(0, 200))
    await consume_all(kafka_bootstrap, [topics.ingested], expect=1, idle_s=0, timeout_s=60)
    services["ingest"].kill()  # SIGKILL mid-stream: no commit, no flush
    await asyncio.to_thread(services["ingest"].start)

    normalized = await consume_all(kafka_bootstrap, [topics.normalized], expect=200, idle_s=3)
    sources = {Change.from_kafka_value(r.value or b"").entity_key.source_id for r in normalized}
    assert sources == {definition_guid(n) for n in range(200)}, "nothing may be lost"
    # Anything emitted twice after the crash carries the same deterministic event id.
    changes = [Change.from_kafka_value(r.value or b"") for r in normalized]
    ids_by_source: dict[str, set[uuid.UUID]] = {}
    for change in changes:
        ids_by_source.setdefault(change.entity_key.source_id, set()).add(change.event_id)
    assert all(len(ids) == 1 for ids in ids_by_source.values())
    assert len({c.event_id for c in changes}) == 200
