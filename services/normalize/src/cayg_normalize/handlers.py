"""Normalize's consumer: envelope → zero or more ``Change``s, or the normalize DLQ, in batches.

Pure mapping lives in :mod:`cayg_normalize.domain`; this module only decodes, routes and
settles. Offsets are committed after every output of a record is acknowledged (see
:mod:`cayg_shared.batching`), so a crash mid-way re-reads the record and re-emits the same
changes (same event ids: downstream dedups them). A record whose own handling fails (text
JSON cannot encode, an output too large for the cluster, a bug) is dead-lettered with a
reason instead of being read again forever. Headers are only read for trace context: one
that is not UTF-8 is ignored (the envelope in the value is the contract), never a reason
to drop the record.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from cayg_normalize.domain import MappingError, normalize
from cayg_normalize.settings import NormalizeSettings
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
from cayg_shared.headers import child_traceparent
from cayg_shared.logging import get_logger
from cayg_shared.schema import Change
from cayg_shared.service import InboundRecord
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics

LOGGER = "cayg.normalize"
log = get_logger(LOGGER)


class NormalizeMetrics:
    """Outcome counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
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


class NormalizeRecords:
    """Normalize's decision for one envelope: its changes, or a dead letter.

    Plain data in and out (what it counts is named in the outcome, for the runner's
    ``changes`` and ``rejected`` tallies), so it decides in a worker process as well.
    """

    def __init__(self, topics: Topics, tenants: TenantRegistry, *, debug: bool = False) -> None:
        self.topics = topics
        self.tenants = tenants
        #: Whether outcomes carry their per-record DEBUG line.
        self.debug = debug

    def decide(self, record: InboundRecord) -> Outcome:
        """Map ``record`` (raises only on a fault of its own outputs or a bug)."""
        envelope: IngestEnvelope | None = None
        try:
            envelope = _decode(record)
            profile = self.tenants.get(envelope.tenant)
            if profile is None:
                raise _Unmappable("unknown-tenant", f"tenant {envelope.tenant!r} is not configured")
            try:
                changes = normalize(envelope, profile)
            except MappingError as error:
                raise _Unmappable(error.reason, error.detail, error.field_path) from error
        except _Unmappable as problem:
            return self._rejected(record, problem, envelope)
        parent = record.text_headers().get(h.TRACEPARENT)
        correlation_id = envelope.correlation_id.encode()
        causation_id = str(envelope.event_id).encode()
        outputs = [
            Outbound(
                self.topics.normalized,
                change.kafka_key().encode(),
                # May fail on text a payload carried (a lone surrogate): the batch runner
                # parks the record as ``unencodable-text``.
                change.to_kafka_value(),
                (
                    (h.EVENT_ID, str(change.event_id).encode()),
                    (h.TENANT, change.tenant.encode()),
                    (h.CORRELATION_ID, correlation_id),
                    (h.CAUSATION_ID, causation_id),
                    (h.TRACEPARENT, child_traceparent(parent).encode()),
                    (h.CONTENT_TYPE, b"application/json"),
                ),
            )
            for change in changes
        ]
        return self._mapped(record, envelope, changes, outputs)

    def poison(self, record: InboundRecord, reason: str, detail: str) -> Outcome:
        """The dead letter of a record whose handling failed by itself."""
        try:
            envelope: IngestEnvelope | None = _decode(record)
        except _Unmappable:
            envelope = None
        return self._rejected(record, _Unmappable(reason, detail, "$"), envelope)

    def _rejected(
        self, record: InboundRecord, problem: _Unmappable, envelope: IngestEnvelope | None
    ) -> Outcome:
        letter = letter_for(
            record,
            dlq_topic=self.topics.normalize_dlq,
            stage=Stage.NORMALIZE,
            reason=problem.reason,
            detail=problem.detail,
            field_path=problem.field_path,
            tenant=envelope.tenant if envelope else None,
            event_id=envelope.event_id if envelope else None,
        )

        tenant = envelope.tenant if envelope else None
        note = (
            Note.on(
                "envelope not mappable",
                record,
                tenant=tenant,
                event_id=str(envelope.event_id) if envelope else None,
                reason=problem.reason,
                field_path=problem.field_path,
                detail=problem.detail,
            )
            if self.debug
            else None
        )
        counts = (("rejected", (problem.reason,)),)
        return Outcome([letter], f"rejected:{problem.reason}", tenant, counts, note)

    def _mapped(
        self,
        record: InboundRecord,
        envelope: IngestEnvelope,
        changes: list[Change],
        outputs: list[Outbound],
    ) -> Outcome:
        counts = tuple(
            (
                "changes",
                (change.tenant, change.entity_key.entity_type.value, change.operation.value),
            )
            for change in changes
        )
        note = (
            Note.on(
                "envelope normalized",
                record,
                tenant=envelope.tenant,
                event_id=str(envelope.event_id),
                changes=len(changes),
            )
            if self.debug
            else None
        )
        return Outcome(outputs, "mapped", envelope.tenant, counts, note)


def _decode(record: InboundRecord) -> IngestEnvelope:
    if record.value is None:
        raise _Unmappable("empty", "the record has no value")
    try:
        return IngestEnvelope.model_validate_json(record.value)
    except ValidationError as error:
        first = error.errors()[0]
        path = "$." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "$"
        raise _Unmappable("bad-envelope", first["msg"], path) from error


def decider(topics: Topics, tenants: TenantRegistry, debug: bool) -> NormalizeRecords:
    """Normalize's per-record decision, as a decision worker builds it (a module-level
    factory: the pool names it to its workers)."""
    return NormalizeRecords(topics, tenants, debug=debug)


def runner(
    settings: NormalizeSettings,
    tenants: TenantRegistry,
    metrics: NormalizeMetrics,
    registry: CollectorRegistry | None = None,
    *,
    debug: bool | None = None,
    workers: int = 0,
) -> BatchRunner:
    """Normalize's batch runner: mapping per record, outputs to the normalized topic or DLQ;
    with ``workers``, mapping in that many worker processes (started with the loop)."""
    topics = Topics(settings.topic_prefix)
    # Per-record lines only when DEBUG is on (decided once: see ``is_debug``).
    verbose = is_debug(LOGGER) if debug is None else debug
    pool = DecidePool(decider, (topics, tenants, verbose), workers=workers) if workers else None
    return BatchRunner(
        decider(topics, tenants, verbose),
        service="normalize",
        stage=Stage.NORMALIZE,
        dlq_topic=topics.normalize_dlq,
        backoff_s=settings.redelivery_backoff_s,
        metrics=FastStreamMetrics(registry, "cayg-normalize") if registry is not None else None,
        tallies={"changes": Tally(metrics.changes), "rejected": Tally(metrics.rejected)},
        pool=pool,
    )


def build_loop(
    settings: NormalizeSettings,
    tenants: TenantRegistry,
    metrics: NormalizeMetrics,
    registry: CollectorRegistry,
) -> BatchLoop:
    """Normalize's consumer: ``cayg.ingested.v1``, in batches."""
    topics = Topics(settings.topic_prefix)
    return BatchLoop(
        settings,
        runner(settings, tenants, metrics, registry, workers=settings.decide_workers),
        Subscription(topics=(topics.ingested,)),
        client_id="cayg-normalize",
        max_records=settings.batch_max_records,
    )


def consumer_loop(
    settings: NormalizeSettings, tenants: TenantRegistry, registry: CollectorRegistry
) -> BatchLoop:
    """The loop of one of normalize's consumer processes (:mod:`cayg_shared.consumers`): the
    service's own, its metrics on that process's registry, its decisions made in it."""
    alone = settings.model_copy(update={"consumers": 1, "decide_workers": 0})
    return build_loop(alone, tenants, NormalizeMetrics(registry), registry)
