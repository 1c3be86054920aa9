"""What every cayg service process is made of: a Kafka broker connection with safe producer
and consumer defaults, an HTTP side for health and metrics, and the per-message context.

Kept here so the three services behave the same for operators. Needs the ``service`` extra
(faststream, aiokafka, prometheus-client); the contract modules do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final
from uuid import UUID

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from faststream.specification import AsyncAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as AnyTracerProvider
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    make_asgi_app,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cayg_shared.envelope import DeadLetter, SourceCoordinates, Stage
from cayg_shared.headers import CONTENT_TYPE, DLQ_REASON, decode_headers, trace_id
from cayg_shared.logging import get_logger
from cayg_shared.settings import KafkaSettings, ServiceSettings
from cayg_shared.tenants import TenantRegistry

#: Readiness asks the broker for metadata; past this it answers "not ready".
READY_TIMEOUT_S: Final = 3.0
#: How often each service re-reads its consumer group's committed offsets for the lag gauge.
LAG_EVERY_S: Final = 5.0
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


@dataclass(frozen=True)
class Reads:
    """What a service's consumer group reads: named topics, or every topic matching a
    pattern (ingest's ``sis.events.<tenant>`` topics)."""

    group: str
    topics: tuple[str, ...] = ()
    pattern: str | None = None

    def covers(self, topic: str) -> bool:
        """Whether the group reads ``topic``."""
        if topic in self.topics:
            return True
        return self.pattern is not None and re.fullmatch(self.pattern, topic) is not None


def lag_by_partition(
    committed: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Messages a group has yet to commit on each partition: log end minus its committed
    offset, or minus the log start where it has committed nothing yet (a partition it has
    never read is behind by everything it holds, not idle).

    The one definition of lag: the services export it (``cayg_consumer_lag``) and the
    operator tools compute it the same way from the same offsets.
    """
    lag: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        position = committed.get(tp, -1)
        if position < 0:
            position = starts.get(tp, 0)
        lag[tp] = max(0, end - position)
    return lag


class ConsumerLag:
    """``cayg_consumer_lag``: how far a service's consumer group is behind, per partition,
    from the offsets the group has *committed* — the figure ``cayg status``, the console and
    the dashboard all show.

    Every instance of a service refreshes it every :data:`LAG_EVERY_S` seconds with its own
    admin client, whether or not messages arrive (a stuck service's lag keeps growing on the
    dashboard). All instances of one group export the same figure: aggregate with ``max``
    over instances, never ``sum``. Labels: ``service``, ``lane`` (empty outside publish
    lanes), ``group``, ``topic``, ``partition``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        kafka: KafkaSettings,
        *,
        service: str,
        lane: str | None,
        reads: Reads,
        every_s: float = LAG_EVERY_S,
    ) -> None:
        self.kafka = kafka
        self.service = service
        self.lane = lane or ""
        self.reads = reads
        self.every_s = every_s
        self.gauge = Gauge(
            "cayg_consumer_lag",
            "Messages a consumer group has not committed yet (log end minus committed offset)",
            ["service", "lane", "group", "topic", "partition"],
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Refresh in the background until :meth:`stop` (never fails the start-up itself)."""
        self._task = asyncio.create_task(self._run(), name=f"cayg-{self.service}-lag")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        options = kafka_options(self.kafka)
        admin = AIOKafkaAdminClient(client_id=f"cayg-{self.service}-lag", **options)
        offsets = AIOKafkaConsumer(
            client_id=f"cayg-{self.service}-lag", group_id=None, enable_auto_commit=False, **options
        )
        started: list[Any] = []
        try:
            while True:
                try:
                    if not started:
                        await admin.start()
                        started.append(admin)
                        await offsets.start()
                        started.append(offsets)
                    await self.refresh(admin, offsets)
                    if self._failing:
                        log.info("consumer lag readable again", group=self.reads.group)
                    self._failing = False
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - a gauge must never stop the service
                    # A brand-new cluster answers GroupCoordinatorNotAvailable for a while;
                    # an outage fails every refresh. Said once, not every few seconds.
                    if not self._failing:
                        log.warning(
                            "consumer lag unavailable; retrying",
                            group=self.reads.group,
                            error=type(error).__name__,
                        )
                    self._failing = True
                await asyncio.sleep(self.every_s)
        finally:
            for client in reversed(started):
                with contextlib.suppress(Exception):
                    await (client.close() if client is admin else client.stop())

    async def refresh(self, admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer) -> None:
        """Read the group's committed offsets and the logs' ends once; replace the gauge."""
        committed = {
            tp: meta.offset
            for tp, meta in (await admin.list_consumer_group_offsets(self.reads.group)).items()
        }
        topics = sorted(t for t in await admin.list_topics() if self.reads.covers(t))
        partitions = set(committed)
        if topics:
            for entry in await admin.describe_topics(topics):
                if entry.get("error_code") == 0:
                    partitions.update(
                        TopicPartition(entry["topic"], int(p["partition"]))
                        for p in entry.get("partitions", [])
                    )
        if not partitions:
            self.gauge.clear()
            return
        unread = [tp for tp in partitions if committed.get(tp, -1) < 0]
        starts = await offsets.beginning_offsets(unread) if unread else {}
        ends = await offsets.end_offsets(sorted(partitions))
        lag = lag_by_partition(committed, starts, ends)
        self.gauge.clear()
        for tp, behind in lag.items():
            self.gauge.labels(
                self.service, self.lane, self.reads.group, tp.topic, str(tp.partition)
            ).set(behind)


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
            f"no tenant registry configured: set {settings.env_name('tenants_file')} "
            "(for example to deploy/config/tenants.json)"
        )
    return TenantRegistry.load(settings.tenants_file)


def kafka_ssl(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for the cluster (``None`` without TLS), for any Kafka client."""
    return kafka.ssl_context()


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


def kafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka client options for the cluster in ``kafka`` (TLS and SASL included), with
    the service's metadata refresh interval: a consumer subscribed to a topic that does not
    exist yet sees it once created within that interval (aiokafka's default is 5 minutes)."""
    return {**kafka.client_options(), "metadata_max_age_ms": kafka.metadata_max_age_ms}


def tracer_provider(endpoint: str | None, service: str) -> AnyTracerProvider:
    """Where a service's OpenTelemetry spans go: to the OTLP/HTTP collector at ``endpoint``
    when one is configured, else nowhere (no-op spans, no cost). Off by default: tracing
    needs a collector the operator runs."""
    if not endpoint:
        return NoOpTracerProvider()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"cayg-{service}", "service.version": _version(service)}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def build_broker(
    settings: ServiceSettings,
    registry: CollectorRegistry,
    *,
    client_id: str,
    lane: str | None = None,
    tracing: AnyTracerProvider | None = None,
) -> KafkaBroker:
    """A Kafka broker connection with acks=all, an idempotent producer, metrics and spans.

    FastStream's own per-message logger is off: handlers log through structlog with the
    message's coordinates bound, so every line has the same shape. Each subscriber handler
    runs in an OpenTelemetry span (FastStream's telemetry middleware, W3C ``traceparent``
    continued from the message), exported only when ``OTLP_ENDPOINT`` is set; ``tracing``
    overrides that (tests). A publish lane labels FastStream's metrics with ``lane``.
    """
    service = client_id.removeprefix("cayg-")
    return KafkaBroker(
        settings.kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        metadata_max_age_ms=settings.kafka.metadata_max_age_ms,
        graceful_timeout=settings.graceful_timeout_s,
        security=_security(settings.kafka),
        middlewares=[
            KafkaTelemetryMiddleware(
                tracer_provider=tracing or tracer_provider(settings.otlp_endpoint, service),
                include_messages_counters=False,
            ),
            KafkaPrometheusMiddleware(
                registry=registry,
                app_name=client_id,
                custom_labels={"lane": lane} if lane else None,
            ),
        ],
        logger=None,
    )


def _version(service: str = "shared") -> str:
    """The installed version of ``cayg-<service>`` (the service's own distribution)."""
    for name in (f"cayg-{service.split('.', 1)[0]}", "cayg-shared"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def observe_process(registry: CollectorRegistry, *, service: str, lane: str | None) -> None:
    """The process's own series on ``registry``: ``process_*`` (CPU, memory, open files,
    start time — restarts show as a new start time), ``python_*`` (interpreter, garbage
    collection) and ``cayg_build_info`` (1, labelled with what runs)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Gauge(
        "cayg_build_info",
        "What this process runs: service, publish lane, cayg version, Python version",
        ["service", "lane", "version", "python"],
        registry=registry,
    ).labels(service, lane or "", _version(service), platform.python_version()).set(1)


ReadinessCheck = Callable[[], Awaitable[bool]]


def build_asgi(
    broker: KafkaBroker,
    registry: CollectorRegistry,
    *,
    settings: ServiceSettings,
    service: str,
    reads: Reads,
    lane: str | None = None,
    specification: AsyncAPI | None = None,
    extra_checks: Sequence[tuple[str, ReadinessCheck]] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    metrics: CollectorRegistry | None = None,
) -> AsgiFastStream:
    """The service process: the broker plus ``/healthz``, ``/readyz``, ``/metrics`` and
    ``/asyncapi.json`` (the service's channels, when ``specification`` is given).

    ``/metrics`` serves ``metrics`` when given (``registry`` with more series: a service's
    consumer processes), else ``registry``. Also: the process and build-info series, the
    consumer lag gauge of the group in ``reads`` (refreshed from committed offsets while
    the app runs), and ``lane`` bound to every log line of a publish lane.
    """
    observe_process(registry, service=service, lane=lane)
    lag = ConsumerLag(registry, settings.kafka, service=service, lane=lane, reads=reads)
    if lane:
        # Bound before the server starts, so every task (handlers, projector, loops)
        # inherits it; ``configure_logging`` bound ``service`` the same way.
        structlog.contextvars.bind_contextvars(lane=lane)
    identity = {"service": service, "lane": lane, "group": reads.group}

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:  # noqa: ARG001 - ASGI handler signature
        return _json({"status": "ok", **identity})

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
            {"status": "ready" if ready else "not-ready", "checks": checks, **identity},
            status=200 if ready else 503,
        )

    routes: list[tuple[str, Any]] = [
        ("/healthz", healthz),
        ("/readyz", readyz),
        ("/metrics", make_asgi_app(metrics or registry)),
    ]
    if specification is not None:
        document = json.dumps(specification.to_specification().to_jsonable()).encode()

        @get(include_in_schema=False)
        async def asyncapi(scope: Any) -> AsgiResponse:  # noqa: ARG001
            return AsgiResponse(document, 200, headers={"content-type": "application/json"})

        routes.append(("/asyncapi.json", asyncapi))

    async def announce_start() -> None:
        log.info("service started", **identity)

    async def announce_stop() -> None:
        # Reached only after the broker stopped: in-flight messages finished and committed.
        log.info("service stopped cleanly", **identity)

    return AsgiFastStream(
        broker,
        asgi_routes=routes,
        logger=None,
        on_startup=[*on_startup, lag.start],
        after_startup=[announce_start],
        after_shutdown=[lag.stop, *on_shutdown, announce_stop],
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


async def pause_before_redelivery(settings: ServiceSettings, error: BaseException) -> None:
    """Wait before a failed message is read again, so an outage is not a hot loop."""
    log.warning(
        "output not durable; message will be redelivered",
        error=type(error).__name__,
        detail=str(error)[:500],
        backoff_s=settings.redelivery_backoff_s,
    )
    await asyncio.sleep(settings.redelivery_backoff_s)


#: The server the committed AsyncAPI documents name (``docs/asyncapi/``); a running service
#: serves its document with its own bootstrap servers.
DOCUMENTED_BOOTSTRAP: Final = "kafka-bootstrap:9092"


def declaration_broker(bootstrap: str) -> KafkaBroker:
    """A broker that only *declares* channels for a service's AsyncAPI document: it is never
    started, connects nowhere and consumes nothing.

    The document is FastStream's own generator run over it. A declaration broker is needed
    because the running brokers do not describe the traffic truthfully: ingest and normalize
    consume with :mod:`cayg_shared.batching` (aiokafka, no FastStream subscriber) and
    produce with their own producer, and publish's handler reads raw records (its payload
    type would document nothing). Each service declares here what it really reads and
    writes, with the project's topic names and payload models.
    """
    return KafkaBroker(bootstrap, logger=None)


def asyncapi_specification(broker: KafkaBroker, *, service: str, description: str) -> AsyncAPI:
    """The AsyncAPI 3.0 document of ``service`` from its declaration broker."""
    return AsyncAPI(
        broker,
        title=f"cayg-{service}",
        version=_version(service),
        description=description,
        schema_version="3.0.0",
    )


def asyncapi_json(specification: AsyncAPI) -> str:
    """The document as committed under ``docs/asyncapi/`` (stable key order, indented)."""
    return (
        json.dumps(specification.to_specification().to_jsonable(), indent=2, sort_keys=True) + "\n"
    )
