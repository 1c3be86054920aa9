"""The normalize composition root."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from cayg_normalize.handlers import NormalizeMetrics, register
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.service import build_asgi, build_broker, load_tenants
from cayg_shared.tenants import TenantRegistry


def create_app(
    settings: NormalizeSettings, tenants: TenantRegistry | None = None
) -> AsgiFastStream:
    """Wire broker, subscriber, metrics and health endpoints. Nothing connects until started."""
    registry = CollectorRegistry()
    tenant_registry = tenants or load_tenants(settings)
    broker = build_broker(settings, registry, client_id="cayg-normalize")
    register(broker, settings, tenant_registry, NormalizeMetrics(registry))
    return build_asgi(broker, registry, service="normalize")
