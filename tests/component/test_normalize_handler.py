"""Normalize's Kafka handler on FastStream's in-memory broker: envelopes in, changes (keyed
by entity, with ids and trace headers) or reasoned dead letters out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from cayg_shared import headers as h
from cayg_shared.envelope import DeadLetter, IngestEnvelope, InputFormat, SourceCoordinates, Stage
from cayg_shared.ids import event_id
from cayg_shared.schema import (
    Approach,
    Change,
    CredentialAward,
    CredentialDefinition,
    Operation,
    TypeBasis,
)
from support.batches import Harness, events
from support.sis import HARBOR, LAKESHORE, LAKESHORE_SOURCE, NORTHFIELD, harbor_award

pytestmark = pytest.mark.component

RECEIVED = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
COLLEAGUE = {
    "id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04",
    "applicationName": "Colleague Main Authoritative Source",
}
AWARD_RECORD = "5d1c6f0e-8a2b-4e7d-9c3f-1b0a2e4d6c8f"
PERSON = "0c7e9a51-3d2f-4b6a-8e1c-9f5d7b3a2e40"
CNA = "8a4f2c1e-6b3d-4e9a-a7c5-2d1f0e8b6c93"
MC_SQL = "3e9b7d15-0c2a-4f8e-b6d4-5a1c9e7f2b08"


def _envelope(
    tenant: str,
    fmt: InputFormat,
    payload: dict[str, Any],
    *,
    message_id: str,
    subject_type: str,
    occurred_at: datetime | None = None,
) -> IngestEnvelope:
    return IngestEnvelope(
        event_id=event_id(tenant, fmt.value, message_id),
        tenant=tenant,
        format=fmt,
        source_message_id=message_id,
        subject_type=subject_type,
        occurred_at=occurred_at,
        received_at=RECEIVED,
        source=SourceCoordinates(topic=f"sis.events.{tenant}", partition=2, offset=41),
        correlation_id=f"corr-{message_id}",
        traceparent=TRACEPARENT,
        payload=payload,
    )


def _ethos_award(operation: str) -> IngestEnvelope:
    notification = {
        "id": "104777",
        "published": "2025-06-02 13:00:07.311007+00",
        "publisher": COLLEAGUE,
        "resource": {
            "name": "student-academic-credentials",
            "id": AWARD_RECORD,
            "version": "application/vnd.hedtech.integration.v1.0.0+json",
        },
        "operation": operation,
        "contentType": "resource-representation",
        "content": {
            "id": AWARD_RECORD,
            "student": {"id": PERSON},
            "credentials": [
                {"credential": {"id": MC_SQL}, "earnedOn": "2025-05-09"},
                {"credential": {"id": CNA}, "earnedOn": "2021-12-17"},
            ],
        },
    }
    return _envelope(
        NORTHFIELD,
        InputFormat.ETHOS_CHANGE_NOTIFICATION,
        notification,
        message_id="104777",
        subject_type="student-academic-credentials",
        occurred_at=datetime(2025, 6, 2, 13, 0, 7, tzinfo=UTC),
    )


def _cloudevent(tenant: str, event: dict[str, Any]) -> IngestEnvelope:
    return _envelope(
        tenant,
        InputFormat.CLOUDEVENT_STRUCTURED,
        event,
        message_id=event["id"],
        subject_type=event["type"],
        occurred_at=datetime(2025, 6, 2, 17, 45, 12, tzinfo=UTC),
    )


def _definition_without_type(tenant: str, source: str) -> IngestEnvelope:
    return _cloudevent(
        tenant,
        {
            "specversion": "1.0",
            "id": f"def-{tenant}",
            "source": source,
            "type": "org.caygsync.definition.upserted.v1",
            "data": {"sourceId": "SHOP-101", "code": "SHOP-101", "name": "Shop Safety"},
        },
    )


async def _send(
    stage: Harness,
    envelope: IngestEnvelope | bytes,
    key: bytes = b"k",
    content_type: str = "application/json",
) -> bytes:
    value = envelope if isinstance(envelope, bytes) else envelope.model_dump_json().encode()
    await stage.broker.publish(
        value,
        topic=stage.topics.ingested,
        key=key,
        headers={h.TRACEPARENT: TRACEPARENT, h.CONTENT_TYPE: content_type},
    )
    return value


def _changes(stage: Harness) -> list[tuple[Change, bytes | None, dict[str, str]]]:
    return [
        (Change.from_kafka_value(sent.value), sent.key, sent.headers)
        for sent in stage.outbox.on(stage.topics.normalized)
    ]


def _letters(stage: Harness) -> list[tuple[DeadLetter, bytes | None, dict[str, str]]]:
    return [
        (DeadLetter.model_validate_json(sent.value), sent.key, sent.headers)
        for sent in stage.outbox.on(stage.topics.normalize_dlq)
    ]


async def test_a_replaced_ethos_award_record_fans_out_in_one_partition(
    normalize: Harness,
) -> None:
    envelope = _ethos_award("replaced")
    await _send(normalize, envelope)

    out = _changes(normalize)
    assert _letters(normalize) == []
    assert [(c.operation, c.entity_key.part) for c, _, _ in out] == [
        (Operation.UPSERT, MC_SQL),
        (Operation.UPSERT, CNA),
        (Operation.REVOKE, None),
    ], "each listed credential (by id), then a revoke of what the record no longer lists"
    record_key = f"{NORTHFIELD}/credential-award/{AWARD_RECORD}".encode()
    assert {key for _, key, _ in out} == {record_key}, "one record, one partition key"
    for change, _key, headers in out:
        assert change.causation_id == envelope.event_id
        assert change.correlation_id == envelope.correlation_id
        assert change.tenant == NORTHFIELD
        assert headers[h.EVENT_ID] == str(change.event_id)
        assert headers[h.CAUSATION_ID] == str(envelope.event_id)
        assert headers[h.CORRELATION_ID] == envelope.correlation_id
        assert headers[h.TENANT] == NORTHFIELD
        assert headers[h.CONTENT_TYPE] == "application/json"
        assert headers[h.TRACEPARENT].split("-")[1] == TRACEPARENT.split("-")[1]
        assert headers[h.TRACEPARENT] != TRACEPARENT
    assert len({c.event_id for c, _, _ in out}) == 3
    revoke = out[2][0]
    assert revoke.retain_parts == tuple(sorted((CNA, MC_SQL)))
    recent, old = out[0][0].entity, out[1][0].entity
    assert isinstance(recent, CredentialAward)
    assert isinstance(old, CredentialAward)
    assert recent.approach is None
    assert old.approach is Approach.RETRO_AWARD, "earned 2021, recorded 2025: past 365 days"
    assert (
        normalize.count(
            "cayg_normalize_changes",
            tenant=NORTHFIELD,
            entity_type="credential-award",
            operation="upsert",
        )
        == 2
    )


async def test_redelivery_emits_the_same_change_ids(normalize: Harness) -> None:
    envelope = _ethos_award("created")
    await _send(normalize, envelope)
    await _send(normalize, envelope)

    ids = [change.event_id for change, _, _ in _changes(normalize)]
    assert len(ids) == 4
    assert ids[:2] == ids[2:]


async def test_a_cloudevent_award_keeps_learner_identifiers_only_in_the_change(
    normalize: Harness,
) -> None:
    event = harbor_award(21)
    envelope = _cloudevent(HARBOR, event)
    with capture_logs() as logs:
        await _send(normalize, envelope)

    [(change, key, _headers)] = _changes(normalize)
    assert key == f"{HARBOR}/credential-award/AWD-T-00021".encode()
    award = change.entity
    assert isinstance(award, CredentialAward)
    assert award.learner.email is not None
    assert award.learner.email.get_secret_value() == event["data"]["learner"]["email"]
    raw = normalize.outbox.on(normalize.topics.normalized)[0].value.decode()
    assert event["data"]["learner"]["email"] in raw, "publish needs it to address the CLR"
    logged = json.dumps(logs, default=str)
    assert [entry["event"] for entry in events(logs)] == ["envelope normalized"]
    assert event["data"]["learner"]["email"] not in logged
    assert event["data"]["learner"]["institutionId"] not in logged


async def test_an_envelope_that_means_nothing_produces_nothing(normalize: Harness) -> None:
    deleted_institution = _envelope(
        NORTHFIELD,
        InputFormat.ETHOS_CHANGE_NOTIFICATION,
        {
            "id": "104778",
            "published": "2025-06-02 13:00:14.622014+00",
            "publisher": COLLEAGUE,
            "resource": {
                "name": "educational-institutions",
                "id": "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645",
                "version": "application/vnd.hedtech.integration.v6.1.0+json",
            },
            "operation": "deleted",
            "contentType": "empty",
            "content": {},
        },
        message_id="104778",
        subject_type="educational-institutions",
    )
    with capture_logs() as logs:
        await _send(normalize, deleted_institution)

    assert _changes(normalize) == []
    assert _letters(normalize) == []
    [entry] = events(logs)
    assert (entry["event"], entry["changes"]) == ("envelope normalized", 0)
    assert entry["event_id"] == str(deleted_institution.event_id)


async def test_the_tenant_policy_decides_an_undecidable_credential_type(
    normalize: Harness,
) -> None:
    harbor = _definition_without_type(HARBOR, "https://sis.harbortech.example/catalog")
    lakeshore = _definition_without_type(LAKESHORE, LAKESHORE_SOURCE)
    sent = await _send(normalize, harbor, key=b"harbor-key")
    await _send(normalize, lakeshore)

    [(letter, key, headers)] = _letters(normalize)
    assert (letter.stage, letter.reason) == (Stage.NORMALIZE, "unknown-credential-type")
    assert letter.field_path == "$.data.credentialType"
    assert (letter.tenant, letter.event_id) == (HARBOR, harbor.event_id)
    assert headers[h.DLQ_REASON] == "unknown-credential-type"
    assert key == b"harbor-key"
    assert letter.original_value() == sent, "the envelope is parked as read, for replay"
    assert letter.source.topic == normalize.topics.ingested
    assert letter.original_headers[h.TRACEPARENT] == TRACEPARENT

    [(change, _key, _headers)] = _changes(normalize)
    definition = change.entity
    assert isinstance(definition, CredentialDefinition)
    assert change.tenant == LAKESHORE
    assert definition.type_basis is TypeBasis.TENANT_DEFAULT
    assert normalize.count("cayg_normalize_rejected", reason="unknown-credential-type") == 1


async def test_an_award_without_a_learner_is_parked_with_the_path(normalize: Harness) -> None:
    event = harbor_award(22)
    del event["data"]["learner"]
    envelope = _cloudevent(HARBOR, event)
    await _send(normalize, envelope)

    assert _changes(normalize) == []
    [(letter, _key, _headers)] = _letters(normalize)
    assert (letter.reason, letter.field_path) == ("missing-field", "$.data.learner")
    assert letter.event_id == envelope.event_id


async def test_a_large_unmappable_envelope_is_parked_in_one_record(normalize: Harness) -> None:
    event = harbor_award(25)
    event["data"]["portfolio"] = ["z" * 90_000] * 10  # not a field of awards
    sent = await _send(normalize, _cloudevent(HARBOR, event))

    [(letter, _key, _headers)] = _letters(normalize)
    assert (letter.reason, letter.field_path) == ("invalid-field", "$.data.portfolio")
    assert letter.value_truncated
    assert sent.startswith(letter.original_value())
    assert len(normalize.outbox.on(normalize.topics.normalize_dlq)[0].value) < 1_000_000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\x01 not an envelope", "bad-envelope"),
        (json.dumps({"event_id": "nope"}).encode(), "bad-envelope"),
    ],
)
async def test_what_is_no_envelope_is_parked_without_ids(
    normalize: Harness, value: bytes, reason: str
) -> None:
    # (No JSON content type: the in-memory broker would try to decode the value itself.)
    await _send(normalize, value, content_type="application/octet-stream")

    [(letter, _key, _headers)] = _letters(normalize)
    assert letter.reason == reason
    assert (letter.tenant, letter.event_id) == (None, None)
    assert letter.original_value() == value


async def test_an_envelope_of_an_unconfigured_tenant_is_parked(normalize: Harness) -> None:
    envelope = _cloudevent("nowhere-college", harbor_award(23))
    await _send(normalize, envelope)

    [(letter, _key, _headers)] = _letters(normalize)
    assert (letter.reason, letter.tenant) == ("unknown-tenant", "nowhere-college")
    assert _changes(normalize) == []


async def test_when_a_change_cannot_be_written_the_envelope_is_not_settled(
    normalize: Harness,
) -> None:
    normalize.outbox.refuse(normalize.topics.normalized, TimeoutError("produce timed out"))
    with pytest.raises(TimeoutError), capture_logs() as logs:
        await _send(normalize, _cloudevent(HARBOR, harbor_award(24)))

    assert _letters(normalize) == []
    assert [entry["event"] for entry in events(logs)] == [
        "output not durable; message will be redelivered"
    ]
