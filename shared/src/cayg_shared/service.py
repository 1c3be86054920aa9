"""What every cayg service process is made of: a Kafka broker connection with safe producer
and consumer defaults, an HTTP side for health and metrics, and the per-message context.

Kept here so the three services behave the same for operators. Needs the ``service`` extra
(faststream, aiokafka, prometheus-client, uvicorn); the contract modules do not.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import structlog
import uvicorn
from aiokafka import TopicPartition
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry, Gauge, make_asgi_app

from cayg_shared.envelope import DeadLetter, SourceCoordinates, Stage
from cayg_shared.headers import CONTENT_TYPE, DLQ_REASON, decode_headers, trace_id
from cayg_shared.logging import get_logger
from cayg_shared.settings import KafkaSettings, ServiceSettings
from cayg_shared.tenants import TenantRegistry

#: Readiness asks the broker for metadata; past this it answers "not ready".
READY_TIMEOUT_S: Final = 3.0
log = get_logger("cayg.service")


@dataclass(frozen=True)
class InboundRecord:
    """A consumed Kafka record, transport facts only."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_message(cls, message: KafkaMessage) -> InboundRecord:
        """The record behind a FastStream Kafka message."""
        raw: Any = message.raw_message
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            timestamp_ms=raw.timestamp,
            key=raw.key,
            value=raw.value,
            headers=tuple(
                (name, value) for name, value in (raw.headers or ()) if value is not None
            ),
        )

    def text_headers(self) -> dict[str, str]:
        """Headers decoded as UTF-8 text."""
        return decode_headers(self.headers)

    def bind_log_context(self, **extra: Any) -> None:
        """Bind topic/partition/offset (and trace id) to every log line of this message."""
        headers = self.text_headers()
        structlog.contextvars.bind_contextvars(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            trace_id=trace_id(headers.get("traceparent")),
            **extra,
        )


class ConsumerLag:
    """``cayg_consumer_lag``: how far behind its partition's high watermark a service is.

    Read from the consumer's own fetch metadata after each message, so it costs no request.
    """

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.gauge = Gauge(
            "cayg_consumer_lag",
            "Messages between the last one processed and the partition high watermark",
            ["service", "topic", "partition"],
            registry=registry,
        )

    def set(self, topic: str, partition: int, lag: int) -> None:
        """Set the lag of one partition (the batch loop does, from its highwater marks)."""
        self.gauge.labels(self.service, topic, str(partition)).set(lag)

    def observe(self, message: KafkaMessage, record: InboundRecord) -> None:
        """Update the gauge for the record's partition (no-op without a live consumer)."""
        consumer: Any = getattr(message, "consumer", None)
        highwater = getattr(consumer, "highwater", None)
        if highwater is None:
            return
        mark = highwater(TopicPartition(record.topic, record.partition))
        if isinstance(mark, int):
            self.gauge.labels(self.service, record.topic, str(record.partition)).set(
                max(0, mark - record.offset - 1)
            )


#: Most bytes of an original value a dead letter keeps. The letter is one Kafka record
#: (1 MiB by default) and base64 adds a third, so an oversized record cannot be parked
#: whole: without a cap its letter could never be written, and the record would be read
#: again forever, blocking its partition. Longer values are cut (``value_truncated``).
MAX_PARKED_VALUE_BYTES: Final = 600 * 1024


def dead_letter(
    record: InboundRecord,
    *,
    stage: Stage,
    reason: str,
    detail: str,
    field_path: str | None = None,
    tenant: str | None = None,
    event_id: UUID | None = None,
    target_response: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> DeadLetter:
    """The DLQ entry for ``record``: why, and everything needed to replay it (except the
    tail of a value over :data:`MAX_PARKED_VALUE_BYTES`)."""
    value = record.value or b""
    kept = value[:MAX_PARKED_VALUE_BYTES]
    return DeadLetter(
        stage=stage,
        reason=reason[:64],
        detail=detail[:4000],
        field_path=field_path,
        tenant=tenant,
        event_id=event_id,
        source=SourceCoordinates(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
        ),
        failed_at=now or datetime.now(UTC),
        key_b64=DeadLetter.encode(record.key),
        value_b64=DeadLetter.encode(kept) or "",
        value_truncated=len(kept) < len(value),
        original_headers=record.text_headers(),
        target_response=target_response,
    )


async def park(broker: KafkaBroker, topic: str, letter: DeadLetter, key: bytes | None) -> None:
    """Write ``letter`` to the dead-letter ``topic`` (acks=all) under the original key."""
    await broker.publish(
        letter.model_dump_json().encode(),
        topic=topic,
        key=key,
        headers={DLQ_REASON: letter.reason, CONTENT_TYPE: "application/json"},
    )


def clear_log_context(*keys: str) -> None:
    """Forget the per-message log context (the service name stays bound)."""
    structlog.contextvars.unbind_contextvars(
        "topic", "partition", "offset", "trace_id", "event_id", "entity_key", "tenant", *keys
    )


def load_tenants(settings: ServiceSettings) -> TenantRegistry:
    """The tenant registry named by the settings; a service without one refuses to start."""
    if settings.tenants_file is None:
        raise ValueError(
            "no tenant registry configured: set the service's TENANTS_FILE setting "
            "(for example CAYG_INGEST_TENANTS_FILE=deploy/config/tenants.json)"
        )
    return TenantRegistry.load(settings.tenants_file)


def kafka_ssl(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for the cluster (``None`` without TLS), for any Kafka client."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(
            str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None
        )
    return context


def _security(kafka: KafkaSettings) -> BaseSecurity | None:
    context = kafka_ssl(kafka)
    if kafka.security_protocol.startswith("SASL"):
        username = kafka.sasl_username or ""
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }
        kind = kinds[kafka.sasl_mechanism or "PLAIN"]
        return kind(username, password, ssl_context=context)
    if context is not None:
        return BaseSecurity(ssl_context=context)
    return None


def build_broker(
    settings: ServiceSettings, registry: CollectorRegistry, *, client_id: str
) -> KafkaBroker:
    """A Kafka broker connection with acks=all, an idempotent producer and metrics.

    FastStream's own per-message logger is off: handlers log through structlog with the
    message's coordinates bound, so every line has the same shape.
    """
    return KafkaBroker(
        settings.kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        metadata_max_age_ms=settings.kafka.metadata_max_age_ms,
        graceful_timeout=settings.graceful_timeout_s,
        security=_security(settings.kafka),
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=client_id)],
        logger=None,
    )


ReadinessCheck = Callable[[], Awaitable[bool]]


def build_asgi(
    broker: KafkaBroker,
    registry: CollectorRegistry,
    *,
    service: str,
    extra_checks: Sequence[tuple[str, ReadinessCheck]] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> AsgiFastStream:
    """The service process: the broker plus ``/healthz``, ``/readyz`` and ``/metrics``."""

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:  # noqa: ARG001 - ASGI handler signature
        return _json({"status": "ok", "service": service})

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:  # noqa: ARG001
        checks: dict[str, bool] = {"kafka": await _ping(broker)}
        for name, check in extra_checks:
            try:
                checks[name] = await asyncio.wait_for(check(), READY_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - any failure means "not ready"
                checks[name] = False
        ready = all(checks.values())
        return _json(
            {"status": "ready" if ready else "not-ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def announce_start() -> None:
        log.info("service started", service=service)

    async def announce_stop() -> None:
        # Reached only after the broker stopped: in-flight messages finished and committed.
        log.info("service stopped cleanly", service=service)

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/healthz", healthz),
            ("/readyz", readyz),
            ("/metrics", make_asgi_app(registry)),
        ],
        logger=None,
        on_startup=list(on_startup),
        after_startup=[announce_start],
        after_shutdown=[*on_shutdown, announce_stop],
    )


async def _ping(broker: KafkaBroker) -> bool:
    try:
        return bool(await broker.ping(timeout=READY_TIMEOUT_S))
    except Exception:  # noqa: BLE001 - an unreachable broker means "not ready"
        return False


def _json(body: dict[str, Any], status: int = 200) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )


def serve(app: AsgiFastStream, settings: ServiceSettings) -> None:
    """Run the service until SIGINT/SIGTERM; in-flight messages finish before exit."""
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) + 5,
    )
    uvicorn.Server(config).run()


async def pause_before_redelivery(settings: ServiceSettings, error: BaseException) -> None:
    """Wait before a failed message is read again, so an outage is not a hot loop."""
    log.warning(
        "output not durable; message will be redelivered",
        error=type(error).__name__,
        detail=str(error)[:500],
        backoff_s=settings.redelivery_backoff_s,
    )
    await asyncio.sleep(settings.redelivery_backoff_s)
