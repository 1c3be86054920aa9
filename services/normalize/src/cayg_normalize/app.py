"""The normalize composition root."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from cayg_normalize.channels import specification
from cayg_normalize.handlers import NormalizeMetrics, build_loop, consumer_loop
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.consumers import consumers_of, exposed_registry
from cayg_shared.service import Reads, build_asgi, build_broker, load_tenants
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics


def create_app(
    settings: NormalizeSettings, tenants: TenantRegistry | None = None
) -> AsgiFastStream:
    """Wire the batch consumer, metrics and health endpoints. Nothing connects until started.

    The FastStream broker carries no subscriber: it serves readiness (broker metadata) and
    the process lifecycle; consuming is the batch loop's (:mod:`cayg_shared.batching`), in
    this process and in ``CONSUMERS - 1`` consumer processes (:mod:`cayg_shared.consumers`).
    """
    registry = CollectorRegistry()
    tenant_registry = tenants or load_tenants(settings)
    broker = build_broker(settings, registry, client_id="cayg-normalize")
    loop = build_loop(settings, tenant_registry, NormalizeMetrics(registry), registry)
    consumers = consumers_of(
        loop,
        consumer_loop,
        (settings, tenant_registry),
        settings,
        consumers=settings.consumers,
        service="normalize",
    )
    return build_asgi(
        broker,
        registry,
        metrics=exposed_registry(registry, consumers.processes),
        settings=settings,
        service="normalize",
        reads=Reads(settings.group_id, topics=(Topics(settings.topic_prefix).ingested,)),
        specification=specification(settings.kafka.bootstrap_servers, settings.topic_prefix),
        extra_checks=[("consumer", consumers.ready)],
        on_startup=[consumers.start],
        on_shutdown=[consumers.stop],
    )
