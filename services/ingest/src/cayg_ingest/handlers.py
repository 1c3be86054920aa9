"""Ingest's Kafka subscriber: SIS topic → admit → ``cayg.ingested.v1`` or the ingest DLQ.

The handler never loses a message: every record ends as an envelope on the ingested topic
or as a dead letter with a reason, and its offset is committed only after that output was
acknowledged by all in-sync replicas. If neither can be produced (broker trouble) the
handler raises, FastStream seeks back, and the record is read again after a pause.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.errors import MessageSizeTooLargeError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry, Counter

from cayg_ingest.domain import InboundMessage, IngestLimits, Rejection, admit
from cayg_ingest.settings import IngestSettings
from cayg_shared import headers as h
from cayg_shared.envelope import DeadLetter, IngestEnvelope, Stage
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

log = get_logger("cayg.ingest")


class IngestMetrics:
    """Outcome counters, labelled by tenant as read from the topic."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag(registry, "ingest")
        self.accepted = Counter(
            "cayg_ingest_accepted",
            "SIS messages wrapped and forwarded",
            ["tenant", "format"],
            registry=registry,
        )
        self.rejected = Counter(
            "cayg_ingest_rejected",
            "SIS messages sent to the ingest DLQ",
            ["reason"],
            registry=registry,
        )


def envelope_key(envelope: IngestEnvelope) -> bytes:
    """Partition key: every message about one SIS record stays in one partition, in order.

    Tenant + the SIS's id of the record, without the event type: an award's ``issued`` and
    ``revoked`` events (or a definition's ``upserted`` and ``deleted``) must not overtake
    each other. Records of different kinds that share an SIS id merely share a partition.
    """
    subject = envelope.subject_id or envelope.source_message_id
    return f"{envelope.tenant}:{subject}".encode()


def output_headers(envelope: IngestEnvelope, inbound: dict[str, str]) -> dict[str, str]:
    """Headers carried forward: trace context continues, correlation id is kept."""
    out = {
        h.EVENT_ID: str(envelope.event_id),
        h.TENANT: envelope.tenant,
        h.CORRELATION_ID: envelope.correlation_id,
        h.CAUSATION_ID: envelope.source_message_id,
        h.TRACEPARENT: child_traceparent(inbound.get(h.TRACEPARENT)),
        h.CONTENT_TYPE: "application/json",
    }
    if h.CE_ID in inbound:
        out[h.CE_ID] = inbound[h.CE_ID]
    return out


def dead_letter_for(record: InboundRecord, rejection: Rejection, now: datetime) -> DeadLetter:
    """The DLQ entry for a rejected record: the reason and everything needed to replay it."""
    return dead_letter(
        record,
        stage=Stage.INGEST,
        reason=rejection.reason,
        detail=rejection.detail,
        field_path=rejection.field_path,
        tenant=rejection.tenant,
        now=now,
    )


def register(
    broker: KafkaBroker,
    settings: IngestSettings,
    tenants: TenantRegistry,
    metrics: IngestMetrics,
) -> None:
    """Subscribe ingest to every ``sis.events.<tenant>`` topic."""
    limits = IngestLimits(max_message_bytes=settings.max_message_bytes)
    topics = Topics(settings.topic_prefix)

    @broker.subscriber(
        pattern=topics.sis_pattern,
        group_id=settings.group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_records=100,
    )
    async def on_sis_event(message: KafkaMessage) -> None:
        record = InboundRecord.from_message(message)
        record.bind_log_context()
        metrics.lag.observe(message, record)
        try:
            await _ingest_one(
                broker, topics, record, tenants=tenants, limits=limits, metrics=metrics
            )
        except Exception as error:
            await pause_before_redelivery(settings, error)
            raise
        finally:
            clear_log_context()


async def _ingest_one(
    broker: KafkaBroker,
    topics: Topics,
    record: InboundRecord,
    *,
    tenants: TenantRegistry,
    limits: IngestLimits,
    metrics: IngestMetrics,
) -> None:
    now = datetime.now(UTC)
    inbound_headers = record.text_headers()
    try:
        envelope = admit(
            InboundMessage(
                topic=topics.unprefixed(record.topic),
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp_ms,
                key=record.key,
                value=record.value,
                headers=record.headers,
            ),
            tenants,
            limits,
            received_at=now,
        )
        try:
            await broker.publish(
                envelope.model_dump_json().encode(),
                topic=topics.ingested,
                key=envelope_key(envelope),
                headers=output_headers(envelope, inbound_headers),
            )
        except MessageSizeTooLargeError as error:
            # Within the tenant's limit but over what the cluster takes: parking it beats
            # retrying it forever and blocking its partition.
            raise Rejection(
                "too-large-to-forward",
                f"the envelope is over the Kafka cluster's message size limit ({error})",
                "$",
                tenant=envelope.tenant,
            ) from error
    except Rejection as rejection:
        await park(broker, topics.ingest_dlq, dead_letter_for(record, rejection, now), record.key)
        metrics.rejected.labels(reason=rejection.reason).inc()
        log.warning(
            "sis message rejected",
            tenant=rejection.tenant,
            reason=rejection.reason,
            field_path=rejection.field_path,
            detail=rejection.detail,
        )
        return
    metrics.accepted.labels(tenant=envelope.tenant, format=envelope.format.value).inc()
    log.info(
        "sis message ingested",
        tenant=envelope.tenant,
        event_id=str(envelope.event_id),
        format=envelope.format.value,
        subject_type=envelope.subject_type,
    )
