"""Ingest and normalize with their own batch runners on an in-memory bus
(:mod:`support.batches`): real per-record decisions and settling, no network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cayg_ingest.handlers import IngestMetrics
from cayg_ingest.handlers import runner as ingest_runner
from cayg_ingest.settings import IngestSettings
from cayg_normalize.handlers import NormalizeMetrics
from cayg_normalize.handlers import runner as normalize_runner
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.batches import Harness, MemoryBus

TENANTS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "tenants.json"


@pytest.fixture(scope="session")
def tenants() -> TenantRegistry:
    """The demo tenants: Northfield (Colleague), Lakeshore (Banner), Harbor (CloudEvents)."""
    return TenantRegistry.load(TENANTS_FILE)


@pytest.fixture
def ingest(tenants: TenantRegistry, topic_prefix: str) -> Harness:
    """Ingest alone: SIS topics in, ingested topic and ingest DLQ recorded."""
    settings = IngestSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    registry = CollectorRegistry()
    bus = MemoryBus()
    topics = Topics(topic_prefix)
    runner = ingest_runner(settings, tenants, IngestMetrics(registry), registry, debug=True)
    bus.attach(runner, pattern=topics.sis_pattern)
    return Harness(bus, topics, bus, registry)


@pytest.fixture
def normalize(tenants: TenantRegistry, topic_prefix: str) -> Harness:
    """Normalize alone: ingested topic in, normalized topic and normalize DLQ recorded."""
    settings = NormalizeSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    registry = CollectorRegistry()
    bus = MemoryBus()
    topics = Topics(topic_prefix)
    runner = normalize_runner(settings, tenants, NormalizeMetrics(registry), registry, debug=True)
    bus.attach(runner, topics=(topics.ingested,))
    return Harness(bus, topics, bus, registry)
