"""Ingest and normalize attached to one in-memory bus, fed a small mixed stream one
record at a time: each record's outputs can be told apart, so each is checked on its own
(the real-broker accounting test checks the same at volume, by source coordinates).
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from cayg_campaign.kinds import INGEST_REASONS, MAPPED, NORMALIZE_REASONS, kind_of
from cayg_ingest.handlers import IngestMetrics
from cayg_ingest.handlers import runner as ingest_runner
from cayg_ingest.settings import IngestSettings
from cayg_normalize.handlers import NormalizeMetrics
from cayg_normalize.handlers import runner as normalize_runner
from cayg_normalize.settings import NormalizeSettings
from cayg_ops.feed import mixed_feed, topic_for
from cayg_shared.envelope import DeadLetter, IngestEnvelope
from cayg_shared.schema import Change
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.batches import Harness, MemoryBus

pytestmark = pytest.mark.component


@pytest.fixture
def pipeline(tenants: TenantRegistry, topic_prefix: str) -> Harness:
    ingest_settings = IngestSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    normalize_settings = NormalizeSettings(topic_prefix=topic_prefix, redelivery_backoff_s=0)
    registry = CollectorRegistry()
    topics = Topics(topic_prefix)
    bus = MemoryBus()
    bus.attach(
        ingest_runner(ingest_settings, tenants, IngestMetrics(registry), registry),
        pattern=topics.sis_pattern,
    )
    bus.attach(
        normalize_runner(normalize_settings, tenants, NormalizeMetrics(CollectorRegistry())),
        topics=(topics.ingested,),
    )
    return Harness(bus, topics, bus, registry)


async def test_each_record_of_a_mixed_stream_ends_where_its_kind_says(
    pipeline: Harness,
) -> None:
    topics, outbox = pipeline.topics, pipeline.outbox
    seen_ids: dict[bytes, set[str]] = {}
    outcomes: dict[str, int] = {}
    for message in mixed_feed(seed=7, learners_per_tenant=60):
        outbox.clear()
        await pipeline.broker.publish(
            message.value,
            topic=topic_for(message, topics),
            key=message.key or b"-",
            headers=message.headers,
        )
        envelopes = [
            IngestEnvelope.model_validate_json(s.value) for s in outbox.on(topics.ingested)
        ]
        rejected = [DeadLetter.model_validate_json(s.value) for s in outbox.on(topics.ingest_dlq)]
        unmapped = [
            DeadLetter.model_validate_json(s.value) for s in outbox.on(topics.normalize_dlq)
        ]
        changes = [Change.from_kafka_value(s.value) for s in outbox.on(topics.normalized)]
        kind = kind_of(message.label)
        assert len(envelopes) + len(rejected) == 1, message.label
        if kind in INGEST_REASONS:
            [letter] = rejected
            assert letter.reason == INGEST_REASONS[kind], message.label
            assert not changes
            assert not unmapped
            outcome = f"ingest-dlq:{letter.reason}"
        elif kind in NORMALIZE_REASONS:
            [envelope] = envelopes
            [letter] = unmapped
            assert letter.reason == NORMALIZE_REASONS[kind]
            assert letter.event_id == envelope.event_id
            assert not changes
            outcome = f"normalize-dlq:{letter.reason}"
        else:
            assert kind in MAPPED, f"unexpected label {message.label}"
            [envelope] = envelopes
            assert not unmapped, f"{message.label}: {[u.reason for u in unmapped]}"
            assert all(c.causation_id == envelope.event_id for c in changes)
            if kind != "delete":
                assert changes, message.label
            outcome = "changes"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        ids = {str(e.event_id) for e in envelopes} | {f"change:{c.event_id}" for c in changes}
        if message.label.startswith("duplicate:") and ids:
            assert ids == seen_ids[message.value], "a re-sent record gets the same ids"
        seen_ids.setdefault(message.value, ids)

    assert outcomes["changes"] > 100
    assert {k for k in outcomes if k.startswith("normalize-dlq:")} == {
        "normalize-dlq:missing-field",
        "normalize-dlq:unknown-credential-type",
        "normalize-dlq:no-learner-identifier",
        "normalize-dlq:unsupported-version",
        "normalize-dlq:invalid-field",
    }
    assert outcomes["ingest-dlq:tenant-mismatch"] >= 5
    assert outcomes["ingest-dlq:too-large"] == 3
