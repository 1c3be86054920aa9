"""Ingest's Kafka handler on FastStream's in-memory broker: what it publishes, where, with
which key and headers, for accepted and refused SIS records.

Complements the real-broker tests (partitions, commits, redelivery): here every branch of
the handler is cheap to reach.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from cayg_shared import headers as h
from cayg_shared.envelope import DeadLetter, IngestEnvelope, InputFormat, Stage
from cayg_shared.ids import event_id
from support.batches import Harness, events
from support.sis import (
    HARBOR,
    LAKESHORE,
    LAKESHORE_SOURCE,
    NORTHFIELD,
    academic_credential_created,
    backfill_award,
    binary_mode,
    definition_guid,
    encode,
    harbor_award,
    structured_headers,
    trace_headers,
)

pytestmark = pytest.mark.component


async def _send(
    stage: Harness,
    tenant: str,
    value: bytes,
    *,
    key: bytes | None = b"k",
    headers: dict[str, str] | None = None,
    topic: str | None = None,
) -> None:
    await stage.broker.publish(
        value, topic=topic or stage.topics.sis(tenant), key=key, headers=headers or {}
    )


def _envelopes(stage: Harness) -> list[tuple[IngestEnvelope, bytes | None, dict[str, str]]]:
    return [
        (IngestEnvelope.model_validate_json(sent.value), sent.key, sent.headers)
        for sent in stage.outbox.on(stage.topics.ingested)
    ]


def _letters(stage: Harness) -> list[tuple[DeadLetter, bytes | None, dict[str, str]]]:
    return [
        (DeadLetter.model_validate_json(sent.value), sent.key, sent.headers)
        for sent in stage.outbox.on(stage.topics.ingest_dlq)
    ]


async def test_an_ethos_notification_becomes_one_keyed_envelope_with_trace_headers(
    ingest: Harness,
) -> None:
    notification = academic_credential_created(104_233, 7)
    sent_headers = trace_headers(7)
    await _send(ingest, NORTHFIELD, encode(notification), key=b"sis-key", headers=sent_headers)

    [(envelope, key, headers)] = _envelopes(ingest)
    assert _letters(ingest) == []
    guid = definition_guid(7)
    expected_id = event_id(
        NORTHFIELD, "ethos-change-notification", f"{notification['publisher']['id']}/104233"
    )
    assert envelope.event_id == expected_id
    assert envelope.tenant == NORTHFIELD
    assert envelope.format is InputFormat.ETHOS_CHANGE_NOTIFICATION
    assert (envelope.source_message_id, envelope.subject_type, envelope.subject_id) == (
        "104233",
        "academic-credentials",
        guid,
    )
    assert envelope.payload == notification
    assert envelope.correlation_id == sent_headers[h.CORRELATION_ID]
    assert envelope.traceparent == sent_headers[h.TRACEPARENT]
    # Source coordinates name the record that was read (the topic without the prefix).
    assert envelope.source.topic == f"sis.events.{NORTHFIELD}"
    assert (envelope.source.partition, envelope.source.offset) == (0, 0)

    assert key == f"{NORTHFIELD}:{guid}".encode()
    assert headers[h.EVENT_ID] == str(expected_id)
    assert headers[h.TENANT] == NORTHFIELD
    assert headers[h.CORRELATION_ID] == sent_headers[h.CORRELATION_ID]
    assert headers[h.CAUSATION_ID] == "104233"
    assert headers[h.CONTENT_TYPE] == "application/json"
    trace_in, trace_out = sent_headers[h.TRACEPARENT].split("-"), headers[h.TRACEPARENT].split("-")
    assert trace_out[1] == trace_in[1], "the trace continues"
    assert trace_out[2] != trace_in[2], "in a new span"
    assert ingest.count("cayg_ingest_accepted", tenant=NORTHFIELD, format=envelope.format) == 1


async def test_without_a_correlation_header_the_event_id_correlates(ingest: Harness) -> None:
    await _send(ingest, NORTHFIELD, encode(academic_credential_created(104_300, 1)))

    [(envelope, _key, headers)] = _envelopes(ingest)
    assert envelope.correlation_id == str(envelope.event_id)
    assert headers[h.CORRELATION_ID] == str(envelope.event_id)
    assert envelope.traceparent is None
    assert len(headers[h.TRACEPARENT].split("-")[1]) == 32, "a fresh trace starts here"


async def test_a_cloudevent_in_either_mode_is_the_same_event(ingest: Harness) -> None:
    event = harbor_award(3)
    value, ce_headers = binary_mode(event)
    await _send(ingest, HARBOR, encode(event), headers=structured_headers())
    await _send(ingest, HARBOR, value, headers=ce_headers)

    (structured, s_key, s_headers), (binary, b_key, b_headers) = _envelopes(ingest)
    assert structured.format is InputFormat.CLOUDEVENT_STRUCTURED
    assert binary.format is InputFormat.CLOUDEVENT_BINARY
    assert structured.event_id == binary.event_id
    assert binary.payload == structured.payload == event, "binary mode is rebuilt whole"
    assert s_key == b_key == f"{HARBOR}:AWD-T-00003".encode()
    assert h.CE_ID not in s_headers
    assert b_headers[h.CE_ID] == event["id"], "the CloudEvent id travels on"
    assert structured.content_type == "application/cloudevents+json"
    assert binary.content_type == "application/json"


async def test_exact_duplicates_get_the_same_event_id(ingest: Harness) -> None:
    value = encode(academic_credential_created(104_400, 2))
    for _ in range(3):
        await _send(ingest, NORTHFIELD, value)

    envelopes = _envelopes(ingest)
    assert len(envelopes) == 3, "ingest forwards duplicates; ids make them recognisable"
    assert len({envelope.event_id for envelope, _, _ in envelopes}) == 1
    assert len({key for _, key, _ in envelopes}) == 1


async def test_a_backfill_record_is_admitted_with_batch_and_record_as_its_identity(
    ingest: Harness,
) -> None:
    record = backfill_award(5)
    await _send(ingest, NORTHFIELD, encode(record), headers={h.CONTENT_TYPE: "application/json"})

    [(envelope, key, _headers)] = _envelopes(ingest)
    assert envelope.format is InputFormat.BACKFILL_RECORD
    assert envelope.source_message_id == "nfcc-onboarding-test/awards.jsonl:5"
    assert envelope.event_id == event_id(
        NORTHFIELD, "backfill-record", "nfcc-onboarding-test/awards.jsonl:5"
    )
    assert envelope.subject_id == "RA-2016-0005"
    assert envelope.occurred_at is not None
    assert envelope.occurred_at.isoformat() == "2025-01-15T09:30:00+00:00"
    assert key == f"{NORTHFIELD}:RA-2016-0005".encode()


def _spoofed_ethos() -> bytes:
    # Lakeshore's Banner publisher, written to Northfield's topic.
    notification = academic_credential_created(55_999, 1)
    notification["publisher"] = {
        "id": "d3a9e0c4-77b1-4e2f-b5d6-0a8c1f4e6b93",
        "applicationName": "Banner Student API",
    }
    return encode(notification)


def _malformed_cloudevent(**changes: Any) -> bytes:
    event = harbor_award(9)
    for name, value in changes.items():
        if value is None:
            event.pop(name)
        else:
            event[name] = value
    return encode(event)


#: Rejections of the transport checks (size, emptiness). ``admit`` raises them before it
#: records the tenant on the rejection, so their dead letters carry no tenant (yet).
TRANSPORT_REASONS = frozenset({"empty", "too-large"})

REFUSED: list[tuple[str, str, bytes, dict[str, str], str, str | None]] = [
    ("garbage", NORTHFIELD, b"\xff\xfe\x00garbage\x81", {}, "not-json", "$"),
    ("broken-json", NORTHFIELD, b'{"id": "1", ', {}, "not-json", "$"),
    ("array", LAKESHORE, b"[1, 2, 3]", {}, "not-object", "$"),
    ("blank", LAKESHORE, b"   ", {}, "empty", "$"),
    ("xml", LAKESHORE, b"<award/>", {h.CONTENT_TYPE: "application/xml"}, "xml-not-supported", "$"),
    ("unknown-format", HARBOR, encode({"hello": "world"}), {}, "unknown-format", "$"),
    ("spoofed-publisher", NORTHFIELD, _spoofed_ethos(), {}, "tenant-mismatch", "$.publisher.id"),
    (
        "spoofed-source",
        HARBOR,
        encode(harbor_award(1, source=LAKESHORE_SOURCE)),
        structured_headers(),
        "tenant-mismatch",
        "$.source",
    ),
    (
        "backfill-for-another-tenant",
        NORTHFIELD,
        encode(backfill_award(1, tenant=LAKESHORE)),
        {},
        "tenant-mismatch",
        "$.tenant",
    ),
    (
        "old-specversion",
        HARBOR,
        _malformed_cloudevent(specversion="0.3"),
        structured_headers(),
        "unsupported-specversion",
        "$.specversion",
    ),
    (
        "no-id",
        HARBOR,
        _malformed_cloudevent(id=None),
        structured_headers(),
        "missing-field",
        "$.id",
    ),
    (
        "foreign-type",
        HARBOR,
        _malformed_cloudevent(type="com.example.grade.posted"),
        structured_headers(),
        "unsupported-type",
        "$.type",
    ),
    (
        "data-not-object",
        HARBOR,
        _malformed_cloudevent(data="award"),
        structured_headers(),
        "invalid-field",
        "$.data",
    ),
    (
        "batch",
        HARBOR,
        encode({"events": []}),
        {h.CONTENT_TYPE: "application/cloudevents-batch+json"},
        "unsupported-content-type",
        h.CONTENT_TYPE,
    ),
]


@pytest.mark.parametrize(
    ("tenant", "value", "headers", "reason", "field_path"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
async def test_a_refused_record_is_parked_whole_with_its_reason(
    ingest: Harness,
    tenant: str,
    value: bytes,
    headers: dict[str, str],
    reason: str,
    field_path: str | None,
) -> None:
    await _send(ingest, tenant, value, key=b"original-key", headers=headers)

    assert _envelopes(ingest) == []
    [(letter, key, dlq_headers)] = _letters(ingest)
    assert (letter.stage, letter.reason, letter.field_path) == (Stage.INGEST, reason, field_path)
    assert dlq_headers[h.DLQ_REASON] == reason
    assert dlq_headers[h.CONTENT_TYPE] == "application/json"
    assert key == b"original-key"
    assert letter.original_value() == value
    assert letter.key_b64 == base64.b64encode(b"original-key").decode()
    assert not letter.value_truncated
    for name, text in headers.items():
        assert letter.original_headers[name] == text
    assert letter.source.topic == ingest.topics.sis(tenant)
    assert letter.source.offset == 0
    if reason not in TRANSPORT_REASONS:
        assert letter.tenant == tenant, "the tenant the topic established is kept"
    assert letter.event_id is None
    assert ingest.count("cayg_ingest_rejected", reason=reason) == 1


async def test_an_unregistered_tenant_topic_is_parked_as_unknown_tenant(ingest: Harness) -> None:
    topic = ingest.topics.prefix + "sis.events.nowhere-college"
    await _send(ingest, NORTHFIELD, encode(academic_credential_created(1, 1)), topic=topic)

    [(letter, _key, _headers)] = _letters(ingest)
    assert letter.reason == "unknown-tenant"
    assert letter.source.topic == topic
    assert _envelopes(ingest) == []


async def test_an_oversized_record_is_parked_without_being_parsed(ingest: Harness) -> None:
    # 1 MiB is the service default; Northfield sets no limit of its own.
    value = b'{"padding": "' + b"x" * 1_048_576 + b'"}'
    await _send(ingest, NORTHFIELD, value)

    [(letter, _key, _headers)] = _letters(ingest)
    assert letter.reason == "too-large"
    assert "over the 1048576 limit" in letter.detail
    # The letter must fit one Kafka record, so it keeps the head of the value only.
    assert letter.value_truncated
    assert value.startswith(letter.original_value())
    assert len(ingest.outbox.on(ingest.topics.ingest_dlq)[0].value) < 1_000_000


async def test_a_tenant_limit_replaces_the_service_limit(ingest: Harness) -> None:
    # Harbor Tech allows 2 MiB: a 1.5 MB event is admitted there, refused at Northfield.
    event = harbor_award(1)
    event["data"]["padding"] = ["p" * 50_000] * 30
    value = encode(event)
    await _send(ingest, HARBOR, value, headers=structured_headers())
    await _send(ingest, NORTHFIELD, value, headers=structured_headers())

    [(envelope, _key, _headers)] = _envelopes(ingest)
    assert envelope.tenant == HARBOR
    [(letter, _key2, _headers2)] = _letters(ingest)
    assert letter.reason == "too-large"
    assert letter.source.topic == ingest.topics.sis(NORTHFIELD)


async def test_logs_name_fields_never_learner_identifiers(ingest: Harness) -> None:
    accepted = harbor_award(11)
    spoofed = harbor_award(12, source=LAKESHORE_SOURCE)
    with capture_logs() as logs:
        await _send(ingest, HARBOR, encode(accepted), headers=structured_headers())
        await _send(ingest, HARBOR, encode(spoofed), headers=structured_headers())

    assert [entry["event"] for entry in events(logs)] == [
        "sis message ingested",
        "sis message rejected",
    ]
    text = json.dumps(logs, default=str)
    for event in (accepted, spoofed):
        learner = event["data"]["learner"]
        assert learner["email"] not in text
        assert learner["institutionId"] not in text
    [_envelope] = _envelopes(ingest)
    [(letter, _key, _headers)] = _letters(ingest)
    assert "learner" not in letter.detail


async def test_when_the_output_cannot_be_written_the_record_is_not_settled(
    ingest: Harness,
) -> None:
    # The handler must fail (so FastStream does not commit and the record is read again)
    # instead of parking it or dropping it.
    ingest.outbox.refuse(ingest.topics.ingested, ConnectionError("not enough replicas"))
    with pytest.raises(ConnectionError), capture_logs() as logs:
        await _send(ingest, NORTHFIELD, encode(academic_credential_created(104_500, 1)))

    assert _letters(ingest) == []
    accepted = ingest.count(
        "cayg_ingest_accepted", tenant=NORTHFIELD, format="ethos-change-notification"
    )
    assert accepted == 0
    assert any(
        entry["event"] == "output not durable; message will be redelivered" for entry in logs
    )


def test_issue_and_revoke_of_one_award_share_a_partition_key() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from cayg_ingest.handlers import envelope_key
    from cayg_shared.envelope import IngestEnvelope, InputFormat, SourceCoordinates

    def envelope(subject_type: str) -> IngestEnvelope:
        return IngestEnvelope(
            event_id=uuid4(),
            tenant=HARBOR,
            format=InputFormat.CLOUDEVENT_BINARY,
            source_message_id=str(uuid4()),
            subject_type=subject_type,
            subject_id="AWD-7",
            received_at=datetime.now(UTC),
            source=SourceCoordinates(topic="sis.events.harbor-tech", partition=0, offset=1),
            correlation_id="c",
            payload={},
        )

    issued = envelope_key(envelope("org.caygsync.award.issued.v1"))
    revoked = envelope_key(envelope("org.caygsync.award.revoked.v1"))
    assert issued == revoked == f"{HARBOR}:AWD-7".encode()
