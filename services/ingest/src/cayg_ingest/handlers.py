"""Ingest's consumer: SIS topics → admit → ``cayg.ingested.v1`` or the ingest DLQ, in batches.

Nothing is lost: every record ends as an envelope on the ingested topic or as a dead letter
with a reason, and its offset is committed only after that output was acknowledged by all
in-sync replicas (see :mod:`cayg_shared.batching` for the batch loop, the rewind on broker
trouble and the bound on duplicates). A record whose own handling fails — a header that is
not UTF-8, text JSON cannot encode, an output too large for the cluster, or any bug — is
dead-lettered with a reason, so it can never block its partition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from cayg_ingest.domain import Admission, InboundMessage, IngestLimits, Rejection
from cayg_ingest.settings import IngestSettings
from cayg_shared import headers as h
from cayg_shared.batching import (
    BatchLoop,
    BatchRunner,
    FastStreamMetrics,
    Note,
    Outbound,
    Outcome,
    Subscription,
    Tally,
    is_debug,
    letter_for,
)
from cayg_shared.decide_pool import DecidePool
from cayg_shared.envelope import IngestEnvelope, Stage
from cayg_shared.headers import child_traceparent, trace_id
from cayg_shared.logging import get_logger
from cayg_shared.service import InboundRecord
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import TopicError, Topics, tenant_from_topic

LOGGER = "cayg.ingest"
log = get_logger(LOGGER)
#: Reason of a record with a header value that is not UTF-8 text.
BAD_HEADER = "bad-header"


class IngestMetrics:
    """Outcome counters, labelled by tenant as read from the topic."""

    def __init__(self, registry: CollectorRegistry) -> None:
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


def undecodable_header(record: InboundRecord) -> str | None:
    """The name of the first header whose value is not UTF-8 text, if any."""
    for name, value in record.headers:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return name
    return None


class IngestRecords:
    """Ingest's decision for one SIS record: an envelope to forward, or a dead letter."""

    def __init__(
        self,
        topics: Topics,
        tenants: TenantRegistry,
        limits: IngestLimits,
        *,
        debug: bool = False,
    ) -> None:
        self.topics = topics
        self.tenants = tenants
        self.limits = limits
        #: Whether outcomes carry their per-record DEBUG line.
        self.debug = debug
        self._admission = Admission(tenants, limits)

    def decide(self, record: InboundRecord) -> Outcome:
        """Admit ``record`` (raises only on a fault of the record's own outputs or a bug)."""
        now = datetime.now(UTC)
        bad = undecodable_header(record)
        try:
            if bad is not None:
                raise Rejection(
                    BAD_HEADER,
                    "a header value is not UTF-8 text",
                    bad[:64],
                    tenant=self._tenant_of(record),
                )
            envelope = self._admission.admit(
                InboundMessage(
                    topic=self.topics.unprefixed(record.topic),
                    partition=record.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp_ms,
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                ),
                received_at=now,
            )
        except Rejection as rejection:
            return self._rejected(record, rejection, now)
        # Serialising may fail on text the payload carries (a lone surrogate is valid JSON
        # but not UTF-8): the batch runner turns that into an ``unencodable-text`` letter.
        value = envelope.model_dump_json().encode()
        headers = output_headers(envelope, record.text_headers())
        output = Outbound.of(self.topics.ingested, envelope_key(envelope), value, headers)
        return self._accepted(record, envelope, output, headers[h.TRACEPARENT])

    def poison(self, record: InboundRecord, reason: str, detail: str) -> Outcome:
        """The dead letter of a record whose handling failed by itself."""
        return self._rejected(
            record,
            Rejection(reason, detail, "$", tenant=self._tenant_of(record)),
            datetime.now(UTC),
        )

    def _tenant_of(self, record: InboundRecord) -> str | None:
        try:
            return tenant_from_topic(self.topics.unprefixed(record.topic))
        except TopicError:
            return None

    def _rejected(self, record: InboundRecord, rejection: Rejection, now: datetime) -> Outcome:
        letter = letter_for(
            record,
            dlq_topic=self.topics.ingest_dlq,
            stage=Stage.INGEST,
            reason=rejection.reason,
            detail=rejection.detail,
            field_path=rejection.field_path,
            tenant=rejection.tenant,
            now=now,
        )

        note = (
            Note.on(
                "sis message rejected",
                record,
                tenant=rejection.tenant,
                reason=rejection.reason,
                field_path=rejection.field_path,
                detail=rejection.detail,
            )
            if self.debug
            else None
        )
        counts = (("rejected", (rejection.reason,)),)
        return Outcome([letter], f"rejected:{rejection.reason}", rejection.tenant, counts, note)

    def _accepted(
        self, record: InboundRecord, envelope: IngestEnvelope, output: Outbound, traceparent: str
    ) -> Outcome:
        # The trace this record continues (or that ingest minted for it) goes into
        # ingest's own line too, so one trace id finds the record in every service's log.
        note = (
            Note.on(
                "sis message ingested",
                record,
                tenant=envelope.tenant,
                event_id=str(envelope.event_id),
                trace_id=trace_id(traceparent),
                format=envelope.format.value,
                subject_type=envelope.subject_type,
            )
            if self.debug
            else None
        )
        counts = (("accepted", (envelope.tenant, envelope.format.value)),)
        return Outcome([output], "accepted", envelope.tenant, counts, note)


def decider(
    topics: Topics, tenants: TenantRegistry, limits: IngestLimits, debug: bool
) -> IngestRecords:
    """Ingest's per-record decision, as a decision worker builds it (a module-level
    factory: the pool names it to its workers)."""
    return IngestRecords(topics, tenants, limits, debug=debug)


def runner(
    settings: IngestSettings,
    tenants: TenantRegistry,
    metrics: IngestMetrics,
    registry: CollectorRegistry | None = None,
    *,
    debug: bool | None = None,
    workers: int = 0,
) -> BatchRunner:
    """Ingest's batch runner: admission per record, outputs to the ingested topic or DLQ;
    with ``workers``, admission in that many worker processes (started with the loop)."""
    topics = Topics(settings.topic_prefix)
    limits = IngestLimits(max_message_bytes=settings.max_message_bytes)
    # Per-record lines only when DEBUG is on (decided once: see ``is_debug``).
    verbose = is_debug(LOGGER) if debug is None else debug
    args = (topics, tenants, limits, verbose)
    return BatchRunner(
        decider(*args),
        service="ingest",
        stage=Stage.INGEST,
        dlq_topic=topics.ingest_dlq,
        backoff_s=settings.redelivery_backoff_s,
        metrics=FastStreamMetrics(registry, "cayg-ingest") if registry is not None else None,
        tallies={"accepted": Tally(metrics.accepted), "rejected": Tally(metrics.rejected)},
        pool=DecidePool(decider, args, workers=workers) if workers else None,
    )


def build_loop(
    settings: IngestSettings,
    tenants: TenantRegistry,
    metrics: IngestMetrics,
    registry: CollectorRegistry,
) -> BatchLoop:
    """Ingest's consumer: every ``sis.events.<tenant>`` topic, in batches."""
    topics = Topics(settings.topic_prefix)
    return BatchLoop(
        settings,
        runner(settings, tenants, metrics, registry, workers=settings.decide_workers),
        Subscription(pattern=topics.sis_pattern),
        client_id="cayg-ingest",
        max_records=settings.batch_max_records,
    )


def consumer_loop(
    settings: IngestSettings, tenants: TenantRegistry, registry: CollectorRegistry
) -> BatchLoop:
    """The loop of one of ingest's consumer processes (:mod:`cayg_shared.consumers`): the
    service's own, its metrics on that process's registry, its decisions made in it."""
    alone = settings.model_copy(update={"consumers": 1, "decide_workers": 0})
    return build_loop(alone, tenants, IngestMetrics(registry), registry)
