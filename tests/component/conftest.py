"""Ingest and normalize wired by their own ``register`` functions onto FastStream's
in-memory ``TestKafkaBroker``: real subscribers, real handlers, no network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry

from cayg_ingest.handlers import IngestMetrics
from cayg_ingest.handlers import register as register_ingest
from cayg_ingest.settings import IngestSettings
from cayg_normalize.handlers import NormalizeMetrics
from cayg_normalize.handlers import register as register_normalize
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.service import build_broker
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.outbox import Harness, Outbox

TENANTS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "tenants.json"


@pytest.fixture(scope="session")
def tenants() -> TenantRegistry:
    """The demo tenants: Northfield (Colleague), Lakeshore (Banner), Harbor (CloudEvents)."""
    return TenantRegistry.load(TENANTS_FILE)


@pytest.fixture
async def ingest(tenants: TenantRegistry, topic_prefix: str) -> AsyncIterator[Harness]:
    """Ingest alone: SIS topics in, ingested topic and ingest DLQ recorded."""
    settings = IngestSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    registry = CollectorRegistry()
    broker = build_broker(settings, registry, client_id="cayg-ingest")
    register_ingest(broker, settings, tenants, IngestMetrics(registry))
    topics = Topics(topic_prefix)
    outbox = Outbox(broker, topics.ingested, topics.ingest_dlq)
    async with TestKafkaBroker(broker) as running:
        yield Harness(running, topics, outbox, registry)


@pytest.fixture
async def normalize(tenants: TenantRegistry, topic_prefix: str) -> AsyncIterator[Harness]:
    """Normalize alone: ingested topic in, normalized topic and normalize DLQ recorded."""
    settings = NormalizeSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    registry = CollectorRegistry()
    broker = build_broker(settings, registry, client_id="cayg-normalize")
    register_normalize(broker, settings, tenants, NormalizeMetrics(registry))
    topics = Topics(topic_prefix)
    outbox = Outbox(broker, topics.normalized, topics.normalize_dlq)
    async with TestKafkaBroker(broker) as running:
        yield Harness(running, topics, outbox, registry)
