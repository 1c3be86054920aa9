"""The ingest composition root: settings in, a runnable ASGI/FastStream app out."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from cayg_ingest.channels import specification
from cayg_ingest.handlers import IngestMetrics, build_loop, consumer_loop
from cayg_ingest.settings import IngestSettings
from cayg_shared.consumers import consumers_of, exposed_registry
from cayg_shared.service import Reads, build_asgi, build_broker, load_tenants
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics


def create_app(settings: IngestSettings, tenants: TenantRegistry | None = None) -> AsgiFastStream:
    """Wire the batch consumer, metrics and health endpoints. Nothing connects until started.

    The FastStream broker carries no subscriber: it serves readiness (broker metadata) and
    the process lifecycle; consuming is the batch loop's (:mod:`cayg_shared.batching`), in
    this process and in ``CONSUMERS - 1`` consumer processes (:mod:`cayg_shared.consumers`).
    """
    registry = CollectorRegistry()
    tenant_registry = tenants or load_tenants(settings)
    broker = build_broker(settings, registry, client_id="cayg-ingest")
    loop = build_loop(settings, tenant_registry, IngestMetrics(registry), registry)
    consumers = consumers_of(
        loop,
        consumer_loop,
        (settings, tenant_registry),
        settings,
        consumers=settings.consumers,
        service="ingest",
    )
    return build_asgi(
        broker,
        registry,
        metrics=exposed_registry(registry, consumers.processes),
        settings=settings,
        service="ingest",
        reads=Reads(settings.group_id, pattern=Topics(settings.topic_prefix).sis_pattern),
        specification=specification(settings.kafka.bootstrap_servers, settings.topic_prefix),
        extra_checks=[("consumer", consumers.ready)],
        on_startup=[consumers.start],
        on_shutdown=[consumers.stop],
    )
