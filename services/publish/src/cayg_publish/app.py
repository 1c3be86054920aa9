"""The publish composition root: settings and the targets file in, a runnable app out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import timedelta
from typing import Any, Final

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from cayg_publish.adapters.status import served_list
from cayg_publish.channels import specification
from cayg_publish.config import PublishTargetsConfig
from cayg_publish.domain.projection import DocumentRef, RetrySchedule
from cayg_publish.domain.retry import RetryPolicy
from cayg_publish.handlers import PublishMetrics, register
from cayg_publish.publisher import Publisher
from cayg_publish.settings import PublishSettings
from cayg_shared.logging import get_logger
from cayg_shared.schema import Change
from cayg_shared.service import Reads, build_asgi, build_broker
from cayg_shared.topics import Topics

log = get_logger("cayg.publish")

#: How often the documents gauge is refreshed from the ledger.
DOCUMENT_COUNTS_EVERY_S = 5.0
#: How often status lists are checked for re-signing (each is re-signed once a period).
STATUS_REFRESH_EVERY_S = 5.0
#: Where publish serves the signed status lists (``GET /status-lists/<list id>``).
STATUS_LISTS_PATH: Final = "/status-lists/"

_Receive = Callable[[], Awaitable[Any]]
_Send = Callable[[Any], Awaitable[None]]


class PublishApp:
    """publish's ASGI app: FastStream's (the broker, ``/healthz``, ``/readyz``,
    ``/metrics``) plus ``GET /status-lists/<list id>``, the signed status lists read from
    the ledger, so any instance of any lane serves every list."""

    def __init__(self, inner: AsgiFastStream, publisher: Publisher) -> None:
        self.inner = inner
        self._publisher = publisher

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: _Receive, send: _Send
    ) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(STATUS_LISTS_PATH):
            await self.inner(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, {"allow": "GET, HEAD"}, b"")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            served = await served_list(
                self._publisher.ledger.status,
                path.removeprefix(STATUS_LISTS_PATH),
                if_none_match=headers.get("if-none-match"),
            )
        except Exception as error:  # noqa: BLE001 - the ledger may be briefly away
            log.warning("status list unavailable", error=type(error).__name__)
            await _answer(send, 503, {"retry-after": "5"}, b"")
            return
        body = b"" if scope.get("method") == "HEAD" else served.body
        await _answer(send, served.status, served.headers, body)


async def _answer(send: _Send, status: int, headers: dict[str, str], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def load_publisher(settings: PublishSettings) -> Publisher:
    """Ledger, catalog and every tenant's targets, as the targets file describes them."""
    if settings.targets_file is None:
        raise ValueError(
            "no targets configured: set CAYG_PUBLISH_TARGETS_FILE (see deploy/config/publish.toml)"
        )
    config = PublishTargetsConfig.load(settings.targets_file)
    policy = RetryPolicy(max_attempts=settings.in_process_attempts)
    schedule = RetrySchedule(
        first_interval=timedelta(seconds=settings.retry_first_s),
        max_interval=timedelta(seconds=max(settings.retry_max_s, settings.retry_first_s)),
    )
    return Publisher.from_config(
        config,
        policy=policy,
        schedule=schedule,
        signing_workers=settings.signing_workers,
        signing_nice=settings.signing_nice,
    )


def create_app(settings: PublishSettings, publisher: Publisher | None = None) -> PublishApp:
    """Wire broker, subscriber, ledger, targets, projector, metrics, health endpoints and
    the status lists.

    Nothing connects until the app starts: the ledger schema is migrated on start-up, then
    the projector runs beside the subscriber; on shutdown the broker stops first, then the
    projector finishes its deliveries in flight, then clients and the ledger are closed.
    """
    registry = CollectorRegistry()
    chosen = publisher or load_publisher(settings)
    broker = build_broker(settings, registry, client_id="cayg-publish", lane=settings.lane)
    if settings.lane_targets and not any(
        settings.serves(t.name) for tenant in chosen.tenants() for t in chosen.targets_for(tenant)
    ):
        raise ValueError(f"lane {settings.lane!r}: LANE_TARGETS match no configured target")
    metrics = PublishMetrics(registry)
    projector = chosen.projector(
        serves=settings.serves,
        on_outcome=metrics.outcome,
        on_request=metrics.request,
        max_in_flight=settings.max_in_flight,
        lease_ttl_s=settings.lease_ttl_s,
        delivery_timeout_s=settings.delivery_timeout_s,
        poll_s=settings.poll_s,
    )

    async def record(changes: Sequence[Change]) -> list[tuple[str, DocumentRef]]:
        return await chosen.record_batch(changes, serves=settings.serves)

    register(broker, settings, record, metrics, on_recorded=projector.wake)
    background: list[asyncio.Task[None]] = []

    async def count_documents() -> None:
        while True:
            try:
                counts = await chosen.ledger.document_counts()
                metrics.set_documents([c for c in counts if c[0] in projector.target_names])
            except Exception as error:  # noqa: BLE001 - a gauge must not stop the service
                log.warning("document counts unavailable", error=f"{type(error).__name__}")
            await asyncio.sleep(DOCUMENT_COUNTS_EVERY_S)

    async def refresh_status_lists() -> None:
        while True:
            try:
                await chosen.refresh_status_lists(settings.serves)
            except Exception as error:  # noqa: BLE001 - retried on the next round
                log.warning("status lists not refreshed", error=f"{type(error).__name__}")
            await asyncio.sleep(STATUS_REFRESH_EVERY_S)

    async def start() -> None:
        await chosen.start(settings.serves)
        background.append(asyncio.create_task(projector.run(), name="cayg-projector"))
        background.append(asyncio.create_task(count_documents(), name="cayg-document-counts"))
        if chosen.status_targets(settings.serves):
            background.append(asyncio.create_task(refresh_status_lists(), name="cayg-status-lists"))

    async def stop() -> None:
        await projector.stop()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await chosen.aclose()

    async def ledger_ready() -> bool:
        # One indexed lookup: readiness is probed often and must stay cheap.
        await chosen.ledger.get("readiness-probe", "-")
        return not any(task.done() for task in background[:1])

    inner = build_asgi(
        broker,
        registry,
        settings=settings,
        service="publish",
        lane=settings.lane,
        reads=Reads(settings.consumer_group, topics=(Topics(settings.topic_prefix).normalized,)),
        specification=specification(settings.kafka.bootstrap_servers, settings.topic_prefix),
        extra_checks=[("ledger", ledger_ready)],
        on_startup=[start],
        on_shutdown=[stop],
    )
    return PublishApp(inner, chosen)
