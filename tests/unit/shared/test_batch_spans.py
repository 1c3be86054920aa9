"""The batch loop makes one OpenTelemetry span per batch (issue 11: spans per handler; the
loop is not a FastStream handler), with the batch's size, group and topics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cayg_ingest.settings import IngestSettings
from cayg_shared.batching import BatchLoop, Subscription
from cayg_shared.service import InboundRecord

pytestmark = pytest.mark.unit


def _record(topic: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", b"{}", None, 1, 2, [])


class _Consumer:
    """Two batches, then the loop is asked to stop."""

    def __init__(self, loop: BatchLoop, batches: list[list[ConsumerRecord[bytes, bytes]]]):
        self._loop = loop
        self._batches = batches

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if not self._batches:
            self._loop._stopping.set()
            return {}
        batch = self._batches.pop(0)
        return {TopicPartition(batch[0].topic, 0): batch}


class _Runner:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def run(self, records: Sequence[InboundRecord], sink: Any, offsets: Any) -> None:
        self.sizes.append(len(records))


def test_each_batch_is_one_consumer_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runner = _Runner()
    settings = IngestSettings(topic_prefix="t.", group_id="t.cayg-ingest")
    loop = BatchLoop(
        settings,
        runner,  # type: ignore[arg-type]
        Subscription(topics=("t.sis.events.a",)),
        client_id="cayg-ingest",
        max_records=10,
        tracing=provider,
    )
    batches = [[_record("t.sis.events.a", i) for i in range(3)], [_record("t.sis.events.a", 3)]]
    loop._consumer = _Consumer(loop, batches)
    loop._producer = object()

    asyncio.run(loop._consume())

    spans = exporter.get_finished_spans()
    assert runner.sizes == [3, 1]
    assert [s.name for s in spans] == ["cayg-ingest batch", "cayg-ingest batch"]
    assert all(s.kind is SpanKind.CONSUMER for s in spans)
    attributes = [dict(s.attributes or {}) for s in spans]
    assert [a["messaging.batch.message_count"] for a in attributes] == [3, 1]
    assert attributes[0]["messaging.consumer.group.name"] == "t.cayg-ingest"
    assert attributes[0]["messaging.destination.name"] == ("t.sis.events.a",)
