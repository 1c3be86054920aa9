"""The publish composition root: settings and the targets file in, a runnable app out."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from cayg_publish.adapters.factory import Publisher
from cayg_publish.config import PublishTargetsConfig
from cayg_publish.domain import DeliveryReport
from cayg_publish.handlers import PublishMetrics, register
from cayg_publish.retry import RetryPolicy
from cayg_publish.settings import PublishSettings
from cayg_shared.schema import Change
from cayg_shared.service import build_asgi, build_broker


def load_publisher(settings: PublishSettings) -> Publisher:
    """Ledger, catalog and every tenant's targets, as the targets file describes them."""
    if settings.targets_file is None:
        raise ValueError(
            "no targets configured: set CAYG_PUBLISH_TARGETS_FILE (see deploy/config/publish.toml)"
        )
    config = PublishTargetsConfig.load(settings.targets_file)
    policy = RetryPolicy(
        max_attempts=settings.in_process_attempts, tiers=tuple(settings.retry_tiers_s)
    )
    return Publisher.from_config(config, policy=policy)


def create_app(settings: PublishSettings, publisher: Publisher | None = None) -> AsgiFastStream:
    """Wire broker, subscribers, ledger, targets, metrics and health endpoints.

    Nothing connects until the app starts: the ledger schema is migrated on start-up and
    every client and the ledger are closed after the broker has stopped (so in-flight
    deliveries finish with their ledger writes).
    """
    registry = CollectorRegistry()
    chosen = publisher or load_publisher(settings)
    broker = build_broker(settings, registry, client_id="cayg-publish")
    if settings.lane_targets and not any(
        settings.serves(t.name) for tenant in chosen.tenants() for t in chosen.targets_for(tenant)
    ):
        raise ValueError(f"lane {settings.lane!r}: LANE_TARGETS match no configured target")

    async def deliver(change: Change, only_target: str | None) -> DeliveryReport:
        return await chosen.deliver(change, only_target, serves=settings.serves)

    register(broker, settings, deliver, PublishMetrics(registry))

    async def ledger_ready() -> bool:
        # One indexed lookup: readiness is probed often and must stay cheap.
        await chosen.ledger.get("readiness-probe", "-")
        return True

    return build_asgi(
        broker,
        registry,
        service="publish",
        extra_checks=[("ledger", ledger_ready)],
        on_startup=[chosen.start],
        on_shutdown=[chosen.aclose],
    )
