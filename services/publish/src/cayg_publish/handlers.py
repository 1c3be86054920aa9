"""Publish's Kafka subscribers: ``cayg.normalized.v1`` and the retry tiers.

For each change the delivery use-case reports one outcome per target. The handler makes
each outcome durable before the offset is committed:

* applied / unchanged / stale / not-applicable — the ledger already holds it;
* retry-later — the change is written to the next retry tier topic, addressed to that one
  target, with a not-before time; after the last tier it goes to the DLQ;
* permanent — the change is written to ``cayg.publish.dlq.v1`` with the target's answer.

A retry consumer reads its tier in order; a message that is not yet due makes it wait (in
short sleeps, then a seek back to the same offset), so later messages, which are due even
later, wait too. Ledger or broker trouble raises: the message is read again after a pause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from cayg_publish.domain import DeliveryReport, DeliveryStatus, TargetOutcome
from cayg_publish.settings import PublishSettings
from cayg_shared import headers as h
from cayg_shared.envelope import Stage
from cayg_shared.logging import get_logger
from cayg_shared.schema import Change
from cayg_shared.service import (
    ConsumerLag,
    InboundRecord,
    clear_log_context,
    dead_letter,
    park,
    pause_before_redelivery,
)
from cayg_shared.topics import Topics

log = get_logger("cayg.publish")

#: Header naming the one target a retry message is for.
TARGET_HEADER = "cayg_target"

#: Delivers a change to the tenant's targets (all, or the one named) and reports.
Deliver = Callable[[Change, str | None], Awaitable[DeliveryReport]]


class PublishMetrics:
    """Outcome counters per target, delivery time, and consumer lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag(registry, "publish")
        self.outcomes = Counter(
            "cayg_publish_outcomes",
            "Per-target delivery outcomes",
            ["target", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "cayg_publish_request_duration_seconds",
            "Time to deliver one change to one target, retries in process included",
            ["target"],
            registry=registry,
        )


def _not_before(record: InboundRecord) -> datetime | None:
    raw = record.text_headers().get(h.NOT_BEFORE)
    if raw is None:
        return None
    try:
        return datetime.fromtimestamp(int(raw) / 1000, UTC)
    except ValueError:
        return None


def register(
    broker: KafkaBroker, settings: PublishSettings, deliver: Deliver, metrics: PublishMetrics
) -> None:
    """Subscribe publish to the normalized topic and to every retry tier (as this lane's
    consumer group, see :attr:`PublishSettings.consumer_group`)."""
    topics = Topics(settings.topic_prefix)
    router = _Router(broker, settings, topics, deliver, metrics)

    @broker.subscriber(
        topics.normalized,
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_records=50,
    )
    async def on_change(message: KafkaMessage) -> None:
        await router.handle(message, tier=0)

    for tier in range(1, len(settings.retry_tiers_s) + 1):
        _subscribe_tier(broker, settings, topics, router, tier)


def _subscribe_tier(
    broker: KafkaBroker,
    settings: PublishSettings,
    topics: Topics,
    router: _Router,
    tier: int,
) -> None:
    @broker.subscriber(
        topics.publish_retry(tier),
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_records=1,
    )
    async def on_retry(message: KafkaMessage) -> None:
        await router.handle(message, tier=tier)


class _Router:
    def __init__(
        self,
        broker: KafkaBroker,
        settings: PublishSettings,
        topics: Topics,
        deliver: Deliver,
        metrics: PublishMetrics,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.topics = topics
        self.deliver = deliver
        self.metrics = metrics

    async def handle(self, message: KafkaMessage, *, tier: int) -> None:
        record = InboundRecord.from_message(message)
        record.bind_log_context(retry_tier=tier)
        self.metrics.lag.observe(message, record)
        try:
            target = record.text_headers().get(TARGET_HEADER) if tier else None
            if target is not None and not self.settings.serves(target):
                return  # another lane's retry: nothing to wait for, nothing to do here
            due = _not_before(record)
            if due is not None:
                wait = (due - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    # Not yet: sleep a little, then read the same offset again.
                    await asyncio.sleep(min(wait, self.settings.retry_poll_s))
                    if wait > self.settings.retry_poll_s:
                        raise NackMessage
            await self._process(record, tier)
        except NackMessage:
            raise
        except Exception as error:
            await pause_before_redelivery(self.settings, error)
            raise
        finally:
            clear_log_context("retry_tier")

    async def _process(self, record: InboundRecord, tier: int) -> None:
        try:
            change = Change.from_kafka_value(record.value or b"")
        except ValidationError as error:
            first = error.errors()[0]
            path = "$." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "$"
            await self._dead_letter(record, None, "bad-change", first["msg"], field_path=path)
            return
        only_target = record.text_headers().get(TARGET_HEADER) if tier else None
        started = time.monotonic()
        report = await self.deliver(change, only_target)
        elapsed = time.monotonic() - started
        for outcome in report.outcomes:
            self.metrics.duration.labels(outcome.target).observe(elapsed)
            await self._route(record, change, outcome, tier)
        log.info(
            "change delivered",
            tenant=change.tenant,
            event_id=str(change.event_id),
            entity_key=str(change.entity_key),
            outcomes={o.target: o.status.value for o in report.outcomes},
        )

    async def _route(
        self, record: InboundRecord, change: Change, outcome: TargetOutcome, tier: int
    ) -> None:
        status = outcome.status
        if status is DeliveryStatus.RETRY_LATER:
            next_tier = tier + 1
            if next_tier > len(self.settings.retry_tiers_s):
                await self._dead_letter(
                    record,
                    change,
                    "retries-exhausted",
                    f"{outcome.target}: {outcome.reason or 'retryable failure'}: "
                    f"{outcome.detail or ''}",
                    outcome=outcome,
                )
                self.metrics.outcomes.labels(outcome.target, "dead_lettered").inc()
                return
            await self._schedule_retry(record, change, outcome, next_tier)
            self.metrics.outcomes.labels(outcome.target, "retry_scheduled").inc()
            return
        if status is DeliveryStatus.PERMANENT:
            await self._dead_letter(
                record,
                change,
                outcome.reason or "permanent",
                f"{outcome.target}: {outcome.detail or 'rejected'}",
                outcome=outcome,
            )
            self.metrics.outcomes.labels(outcome.target, "dead_lettered").inc()
            return
        self.metrics.outcomes.labels(outcome.target, status.value.replace("-", "_")).inc()

    async def _schedule_retry(
        self, record: InboundRecord, change: Change, outcome: TargetOutcome, tier: int
    ) -> None:
        delay = timedelta(seconds=self.settings.retry_tiers_s[tier - 1])
        due = datetime.now(UTC) + delay
        if outcome.not_before is not None and outcome.not_before > due:
            due = outcome.not_before
        inbound = record.text_headers()
        headers = {
            TARGET_HEADER: outcome.target,
            h.NOT_BEFORE: str(int(due.timestamp() * 1000)),
            h.ATTEMPT: str(tier),
            h.EVENT_ID: str(change.event_id),
            h.TENANT: change.tenant,
            h.CONTENT_TYPE: "application/json",
        }
        for name in (h.CORRELATION_ID, h.TRACEPARENT):
            if name in inbound:
                headers[name] = inbound[name]
        await self.broker.publish(
            record.value,
            topic=self.topics.publish_retry(tier),
            key=record.key,
            headers=headers,
        )
        log.warning(
            "delivery scheduled for retry",
            target=outcome.target,
            reason=outcome.reason,
            retry_tier=tier,
            not_before=due.isoformat(),
            event_id=str(change.event_id),
        )

    async def _dead_letter(
        self,
        record: InboundRecord,
        change: Change | None,
        reason: str,
        detail: str,
        *,
        field_path: str | None = None,
        outcome: TargetOutcome | None = None,
    ) -> None:
        response = dict(outcome.response) if outcome and outcome.response else None
        if outcome is not None:
            response = {"target": outcome.target, "attempts": outcome.attempts, **(response or {})}
        letter = dead_letter(
            record,
            stage=Stage.PUBLISH,
            reason=reason,
            detail=detail,
            field_path=field_path,
            tenant=change.tenant if change else None,
            event_id=change.event_id if change else None,
            target_response=response,
        )
        await park(self.broker, self.topics.publish_dlq, letter, record.key)
        log.error(
            "change dead-lettered",
            reason=letter.reason,
            detail=letter.detail,
            target=outcome.target if outcome else None,
        )
