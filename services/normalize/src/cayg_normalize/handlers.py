"""Normalize's Kafka subscriber: envelope → zero or more ``Change``s, or the normalize DLQ.

Pure mapping lives in :mod:`cayg_normalize.domain`; this module only decodes, routes and
commits. Offsets are committed after every output of a record is acknowledged, so a crash
mid-way re-reads the record and re-emits the same changes (same event ids: downstream
dedups them).
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from cayg_normalize.domain import MappingError, normalize
from cayg_normalize.settings import NormalizeSettings
from cayg_shared import headers as h
from cayg_shared.envelope import IngestEnvelope, Stage
from cayg_shared.headers import child_traceparent
from cayg_shared.logging import get_logger
from cayg_shared.service import (
    ConsumerLag,
    InboundRecord,
    clear_log_context,
    dead_letter,
    park,
    pause_before_redelivery,
)
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics

log = get_logger("cayg.normalize")


class NormalizeMetrics:
    """Outcome counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag(registry, "normalize")
        self.changes = Counter(
            "cayg_normalize_changes",
            "Changes emitted",
            ["tenant", "entity_type", "operation"],
            registry=registry,
        )
        self.rejected = Counter(
            "cayg_normalize_rejected",
            "Envelopes sent to the normalize DLQ",
            ["reason"],
            registry=registry,
        )


class _Unmappable(Exception):
    def __init__(self, reason: str, detail: str, field_path: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.field_path = field_path


def register(
    broker: KafkaBroker,
    settings: NormalizeSettings,
    tenants: TenantRegistry,
    metrics: NormalizeMetrics,
) -> None:
    """Subscribe normalize to ``cayg.ingested.v1``."""
    topics = Topics(settings.topic_prefix)

    @broker.subscriber(
        topics.ingested,
        group_id=settings.group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_records=100,
    )
    async def on_envelope(message: KafkaMessage) -> None:
        record = InboundRecord.from_message(message)
        record.bind_log_context()
        metrics.lag.observe(message, record)
        try:
            await _normalize_one(broker, topics, record, tenants, metrics)
        except Exception as error:
            await pause_before_redelivery(settings, error)
            raise
        finally:
            clear_log_context()


async def _normalize_one(
    broker: KafkaBroker,
    topics: Topics,
    record: InboundRecord,
    tenants: TenantRegistry,
    metrics: NormalizeMetrics,
) -> None:
    inbound = record.text_headers()
    envelope: IngestEnvelope | None = None
    try:
        envelope = _decode(record)
        profile = tenants.get(envelope.tenant)
        if profile is None:
            raise _Unmappable("unknown-tenant", f"tenant {envelope.tenant!r} is not configured")
        try:
            changes = normalize(envelope, profile)
        except MappingError as error:
            raise _Unmappable(error.reason, error.detail, error.field_path) from error
    except _Unmappable as problem:
        await _park(broker, topics, record, problem, envelope)
        metrics.rejected.labels(reason=problem.reason).inc()
        log.warning(
            "envelope not mappable",
            reason=problem.reason,
            field_path=problem.field_path,
            detail=problem.detail,
        )
        return

    for change in changes:
        await broker.publish(
            change.to_kafka_value(),
            topic=topics.normalized,
            key=change.kafka_key().encode(),
            headers={
                h.EVENT_ID: str(change.event_id),
                h.TENANT: change.tenant,
                h.CORRELATION_ID: envelope.correlation_id,
                h.CAUSATION_ID: str(envelope.event_id),
                h.TRACEPARENT: child_traceparent(inbound.get(h.TRACEPARENT)),
                h.CONTENT_TYPE: "application/json",
            },
        )
        metrics.changes.labels(
            tenant=change.tenant,
            entity_type=change.entity_key.entity_type,
            operation=change.operation.value,
        ).inc()
    log.info(
        "envelope normalized",
        tenant=envelope.tenant,
        event_id=str(envelope.event_id),
        changes=len(changes),
    )


def _decode(record: InboundRecord) -> IngestEnvelope:
    if record.value is None:
        raise _Unmappable("empty", "the record has no value")
    try:
        return IngestEnvelope.model_validate_json(record.value)
    except ValidationError as error:
        first = error.errors()[0]
        path = "$." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "$"
        raise _Unmappable("bad-envelope", first["msg"], path) from error


async def _park(
    broker: KafkaBroker,
    topics: Topics,
    record: InboundRecord,
    problem: _Unmappable,
    envelope: IngestEnvelope | None,
) -> None:
    letter = dead_letter(
        record,
        stage=Stage.NORMALIZE,
        reason=problem.reason,
        detail=problem.detail,
        field_path=problem.field_path,
        tenant=envelope.tenant if envelope else None,
        event_id=envelope.event_id if envelope else None,
    )
    await park(broker, topics.normalize_dlq, letter, record.key)
