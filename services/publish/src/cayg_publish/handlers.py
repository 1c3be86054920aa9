"""Publish's Kafka subscriber: ``cayg.normalized.v1`` → the catalog and dirty documents.

The handler consumes a batch (up to ``BATCH_MAX_RECORDS``) and makes one ledger transaction
of it — apply each change to the catalog and mark dirty every document it affects at this
lane's targets — and only then lets the offsets be committed (FastStream's batch
subscriber: the batch is acknowledged as a whole; on an error each partition is rewound to
its first record of the batch and read again). No target is called here: the projector
(:mod:`cayg_publish.projector`) delivers dirty documents from the catalog's current
state, on its own schedule. A change that cannot be decoded is dead-lettered
(``bad-change``); when a batch fails for a reason other than the ledger, its changes are
recorded one by one and one that fails on its own is dead-lettered (``record-failed``), so
no change is read again forever. Ledger or broker trouble raises, and the batch is read
again after a pause.

The retry topics of earlier versions (``cayg.publish.retry.<n>.v1``) are no longer
written: retries of failing documents are scheduled in the ledger.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from pydantic import ValidationError

from cayg_publish.adapters.ledger import LedgerError
from cayg_publish.domain.projection import DocumentRef
from cayg_publish.settings import PublishSettings
from cayg_shared.batching import record_from
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

#: Records changes in order: catalog + dirty documents, one transaction; what was marked.
Record = Callable[[Sequence[Change]], Awaitable[list[tuple[str, DocumentRef]]]]


class PublishMetrics:
    """Changes recorded, per-target delivery outcomes, documents by state (consumer lag is
    every service's, see :class:`cayg_shared.service.ConsumerLag`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = PromCounter(
            "cayg_publish_changes",
            "Changes applied to the catalog, by tenant and entity type",
            ["tenant", "entity_type"],
            registry=registry,
        )
        self.outcomes = PromCounter(
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
    (:attr:`PublishSettings.consumer_group`), a batch at a time."""
    topics = Topics(settings.topic_prefix)

    @broker.subscriber(
        topics.normalized,
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        parser=_headers_as_sent,
        decoder=_undecoded,
    )
    async def on_changes(message: KafkaMessage) -> None:
        raw: Any = message.raw_message
        records = [record_from(r) for r in (raw if isinstance(raw, tuple) else (raw,))]
        try:
            await _handle_batch(broker, topics, records, record, metrics)
            if on_recorded is not None:
                on_recorded()
        except Exception as error:
            # Nothing of the batch is committed; each partition is read again from its
            # first record of this batch (recording is idempotent: versions decide).
            await pause_before_redelivery(settings, error)
            raise
        finally:
            clear_log_context()


async def _headers_as_sent(
    records: Any, original: Callable[[Any], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's batch parser, which decodes every header as UTF-8 and fails the whole
    batch on one that is not (it would be read again forever): such headers are left out
    of its copy, the raw records (and their bytes) stay as consumed."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        batch = records if isinstance(records, tuple) else (records,)
        cleaned = tuple(
            replace(r, headers=[(k, v) for k, v in r.headers if _is_text(v)]) for r in batch
        )
        parsed = await original(cleaned if isinstance(records, tuple) else cleaned[0])
        parsed.raw_message = records
        return parsed


async def _undecoded(message: StreamMessage[Any], original: Any) -> Any:
    """No decoding by FastStream: its batch decoder parses every record again from the raw
    records (headers as UTF-8 included) and JSON-decodes every value, which the handler
    does itself, once, into :class:`Change`."""
    del original
    return message.body


async def _record_one_by_one(
    decoded: Sequence[tuple[InboundRecord, Change]], record: Record
) -> tuple[list[tuple[str, DocumentRef]], list[tuple[InboundRecord, Exception]]]:
    """Record each change on its own (a batch failed for a reason other than the ledger):
    what was marked, and the changes that fail by themselves with their errors."""
    marked: list[tuple[str, DocumentRef]] = []
    refused: list[tuple[InboundRecord, Exception]] = []
    for inbound, change in decoded:
        try:
            marked += await record([change])
        except LedgerError:
            raise
        except Exception as error:  # noqa: BLE001 - dead-lettered with its reason
            refused.append((inbound, error))
    return marked, refused


def _is_text(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _handle_batch(
    broker: KafkaBroker,
    topics: Topics,
    records: Sequence[InboundRecord],
    record: Record,
    metrics: PublishMetrics,
) -> None:
    """Decode each record (what cannot be decoded is dead-lettered), then record every
    change of the batch in one ledger transaction."""
    started = time.monotonic()
    decoded: list[tuple[InboundRecord, Change]] = []
    parked = 0
    for inbound in records:
        try:
            decoded.append((inbound, Change.from_kafka_value(inbound.value or b"")))
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
            parked += 1
            log.error(
                "change dead-lettered",
                reason=letter.reason,
                detail=letter.detail,
                partition=inbound.partition,
                offset=inbound.offset,
            )
    changes = [change for _, change in decoded]
    refused: list[tuple[InboundRecord, Exception]] = []
    try:
        marked = await record(changes) if changes else []
    except LedgerError:
        raise  # the ledger is away: the whole batch is read again after a pause
    except Exception:  # noqa: BLE001 - one change the catalog cannot take; find it
        marked, refused = await _record_one_by_one(decoded, record)
    if refused:
        for inbound, problem in refused:
            letter = dead_letter(
                inbound,
                stage=Stage.PUBLISH,
                reason="record-failed",
                detail=f"{type(problem).__name__}: {problem}"[:1000],
            )
            await park(broker, topics.publish_dlq, letter, inbound.key)
            log.error(
                "change dead-lettered",
                reason=letter.reason,
                detail=letter.detail,
                partition=inbound.partition,
                offset=inbound.offset,
            )
        parked += len(refused)
        refused_ids = {id(inbound) for inbound, _ in refused}
        changes = [change for inbound, change in decoded if id(inbound) not in refused_ids]
    kinds: Counter[tuple[str, str]] = Counter(
        (c.tenant, c.entity_key.entity_type.value) for c in changes
    )
    for (tenant, entity_type), count in kinds.items():
        metrics.changes.labels(tenant, entity_type).inc(count)
    log.info(
        "changes recorded",
        records=len(records),
        changes=len(changes),
        dead_lettered=parked,
        documents_marked=len(marked),
        seconds=round(time.monotonic() - started, 3),
    )
