"""What every service process exports about itself: a span per handled message (FastStream's
telemetry middleware, in the trace the message's ``traceparent`` names), and the consumer lag
figure."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from cayg_ingest.settings import IngestSettings
from cayg_shared.service import Reads, build_broker, lag_by_partition, tracer_provider

pytestmark = pytest.mark.component


async def test_each_handled_message_is_a_span_in_the_senders_trace() -> None:
    # The in-memory broker runs the publishing side through the middleware too: its
    # producer span writes the ``traceparent`` the consumer continues.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker: KafkaBroker = build_broker(
        IngestSettings(), CollectorRegistry(), client_id="cayg-test", tracing=provider
    )
    seen: list[bytes] = []

    @broker.subscriber("cayg.test.in", group_id="cayg-test")
    async def handle(body: bytes) -> None:
        seen.append(body)

    async with TestKafkaBroker(broker) as test:
        await test.publish(b"hello", "cayg.test.in")
    assert seen == [b"hello"]
    spans = exporter.get_finished_spans()
    produced = [s for s in spans if s.kind.name == "PRODUCER"]
    consumed = [s for s in spans if s.kind.name == "CONSUMER"]
    assert produced, [s.name for s in spans]
    assert consumed, [s.name for s in spans]
    assert {s.context.trace_id for s in consumed} == {produced[0].context.trace_id}
    assert any("cayg.test.in" in s.name for s in consumed)


def test_tracing_is_off_unless_a_collector_is_configured() -> None:
    assert isinstance(tracer_provider(None, "ingest"), NoOpTracerProvider)
    provider = tracer_provider("http://127.0.0.1:4318/v1/traces", "ingest")
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "cayg-ingest"
    provider.shutdown()


def test_lag_counts_from_the_committed_offset_or_the_log_start() -> None:
    a, b, c = (TopicPartition("t", n) for n in range(3))
    lag = lag_by_partition(
        committed={a: 40, b: -1},
        starts={b: 10, c: 5},
        ends={a: 50, b: 30, c: 5},
    )
    # a: committed 40 of 50; b: nothing committed, 20 since the log start; c: empty.
    assert lag == {a: 10, b: 20, c: 0}


def test_a_pattern_group_reads_every_matching_topic() -> None:
    reads = Reads("cayg-ingest", pattern=r"pre\.sis\.events\..+")
    assert reads.covers("pre.sis.events.northfield-cc")
    assert not reads.covers("sis.events.northfield-cc")
    assert Reads("g", topics=("a",)).covers("a")
