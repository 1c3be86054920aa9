"""Publish's Kafka subscriber: ``cayg.normalized.v1`` → the catalog and dirty documents.

For each change the handler makes one ledger transaction — apply the change to the catalog
and mark dirty every document it affects at this lane's targets — and only then lets the
offset be committed. No target is called here: the projector
(:mod:`cayg_publish.projector`) delivers dirty documents from the catalog's current
state, on its own schedule. A change that cannot be decoded is dead-lettered
(``cayg.publish.dlq.v1`` now holds only those); ledger or broker trouble raises, and the
message is read again after a pause.

The retry topics of earlier versions (``cayg.publish.retry.<n>.v1``) are no longer
written: retries of failing documents are scheduled in the ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from cayg_publish.domain.projection import DocumentRef
from cayg_publish.settings import PublishSettings
from cayg_shared.envelope import Stage
from cayg_shared.logging import get_logger
from cayg_shared.schema import Change
from cayg_shared.service import (
    InboundRecord,
    clear_log_context,
    dead_letter,
    park,
    pause_before_redelivery,
)
from cayg_shared.topics import Topics

log = get_logger("cayg.publish")

#: Records a change: catalog + dirty documents, one transaction; returns what was marked.
Record = Callable[[Change], Awaitable[list[tuple[str, DocumentRef]]]]


class PublishMetrics:
    """Changes recorded, per-target delivery outcomes, documents by state (consumer lag is
    every service's, see :class:`cayg_shared.service.ConsumerLag`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = Counter(
            "cayg_publish_changes",
            "Changes applied to the catalog, by tenant and entity type",
            ["tenant", "entity_type"],
            registry=registry,
        )
        self.outcomes = Counter(
            "cayg_publish_outcomes",
            "Per-target delivery outcomes of rendered requests and documents",
            ["target", "outcome"],
            registry=registry,
        )
        self.requests = Histogram(
            "cayg_publish_request_duration_seconds",
            "Time each request to a target took (answered or failed), by target and result",
            ["target", "result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.documents = Gauge(
            "cayg_publish_documents",
            "Target documents by state (clean, dirty, waiting, failing, rejected) and reason",
            ["target", "tenant", "state", "reason"],
            registry=registry,
        )

    def outcome(self, target: str, outcome: str) -> None:
        """Count one delivery outcome."""
        self.outcomes.labels(target, outcome.replace("-", "_")).inc()

    def request(self, target: str, result: str, seconds: float) -> None:
        """Observe one request's duration."""
        self.requests.labels(target, result).observe(seconds)

    def set_documents(self, counts: list[tuple[str, str, str, str, int]]) -> None:
        """Replace the documents gauge with the ledger's current counts."""
        self.documents.clear()
        for target, tenant, state, reason, count in counts:
            self.documents.labels(target, tenant, state, reason).set(count)


def register(
    broker: KafkaBroker,
    settings: PublishSettings,
    record: Record,
    metrics: PublishMetrics,
    *,
    on_recorded: Callable[[], None] | None = None,
) -> None:
    """Subscribe publish to the normalized topic as this lane's consumer group
    (:attr:`PublishSettings.consumer_group`)."""
    topics = Topics(settings.topic_prefix)

    @broker.subscriber(
        topics.normalized,
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    async def on_change(message: KafkaMessage) -> None:
        inbound = InboundRecord.from_message(message)
        inbound.bind_log_context()
        try:
            await _handle(broker, topics, inbound, record, metrics)
            if on_recorded is not None:
                on_recorded()
        except Exception as error:
            await pause_before_redelivery(settings, error)
            raise
        finally:
            clear_log_context()


async def _handle(
    broker: KafkaBroker,
    topics: Topics,
    inbound: InboundRecord,
    record: Record,
    metrics: PublishMetrics,
) -> None:
    try:
        change = Change.from_kafka_value(inbound.value or b"")
    except ValidationError as error:
        first = error.errors()[0]
        path = "$." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "$"
        letter = dead_letter(
            inbound,
            stage=Stage.PUBLISH,
            reason="bad-change",
            detail=str(first["msg"]),
            field_path=path,
        )
        await park(broker, topics.publish_dlq, letter, inbound.key)
        log.error("change dead-lettered", reason=letter.reason, detail=letter.detail)
        return
    marked = await record(change)
    metrics.changes.labels(change.tenant, change.entity_key.entity_type.value).inc()
    log.debug(
        "change recorded",
        tenant=change.tenant,
        event_id=str(change.event_id),
        entity_key=str(change.entity_key),
        documents_marked=len(marked),
    )
