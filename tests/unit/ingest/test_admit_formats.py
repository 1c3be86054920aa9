"""Recognising Ethos notifications, CloudEvents (both modes) and backfill records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cayg_ingest.domain import Rejection
from cayg_shared.envelope import IngestEnvelope, InputFormat

pytestmark = pytest.mark.unit

Admit = Callable[..., IngestEnvelope]
HARBOR = "sis.events.harbor-tech"
STRUCTURED = {"content-type": "application/cloudevents+json"}


def _rejected(admit_one: Admit, value: Any, **kwargs: Any) -> Rejection:
    with pytest.raises(Rejection) as caught:
        admit_one(value, **kwargs)
    return caught.value


def _binary(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    headers = {f"ce_{k}": v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = event.get("datacontenttype", "application/json")
    return event["data"], headers


# --------------------------------------------------------------------------- Ethos


def test_an_ethos_notification_becomes_an_envelope(admit_one: Admit, ethos: dict[str, Any]) -> None:
    envelope = admit_one(ethos)
    assert envelope.format is InputFormat.ETHOS_CHANGE_NOTIFICATION
    assert envelope.source_message_id == "104233"
    assert envelope.subject_type == "academic-credentials"
    assert envelope.subject_id == "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58"
    assert envelope.occurred_at == datetime(2025, 2, 3, 14, 5, 11, 482913, tzinfo=UTC)
    assert envelope.payload == ethos
    assert envelope.source.topic == "sis.events.northfield-cc"
    assert envelope.source.offset == 42
    assert envelope.correlation_id == str(envelope.event_id)


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        ("2025-02-03 14:05:11.482913+00", datetime(2025, 2, 3, 14, 5, 11, 482913, tzinfo=UTC)),
        ("2025-02-03T14:05:11.482913Z", datetime(2025, 2, 3, 14, 5, 11, 482913, tzinfo=UTC)),
        # No zone: Northfield's zone (America/Chicago, UTC-6 in February).
        ("2025-02-03 08:05:11", datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)),
    ],
)
def test_published_is_read_in_both_ethos_formats(
    admit_one: Admit, ethos: dict[str, Any], published: str, expected: datetime
) -> None:
    ethos["published"] = published
    assert admit_one(ethos).occurred_at == expected


def test_event_ids_are_deterministic_and_scoped_by_publisher(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    first = admit_one(ethos)
    again = admit_one(ethos, headers={"cayg_correlation_id": "batch-7"})
    assert first.event_id == again.event_id
    assert again.correlation_id == "batch-7"
    ethos["id"] = 104234
    assert admit_one(ethos).event_id != first.event_id
    assert admit_one(ethos).source_message_id == "104234"


def test_a_deleted_notification_needs_no_content(admit_one: Admit, ethos: dict[str, Any]) -> None:
    ethos.update(operation="deleted", contentType="empty", content={})
    assert admit_one(ethos).payload["operation"] == "deleted"
    del ethos["content"]
    assert admit_one(ethos).subject_id == "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58"


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda d: d.pop("publisher"), "missing-field", "$.publisher"),
        (lambda d: d["publisher"].pop("id"), "missing-field", "$.publisher.id"),
        (lambda d: d.update(publisher="colleague"), "invalid-field", "$.publisher"),
        (lambda d: d.pop("id"), "missing-field", "$.id"),
        (lambda d: d.update(id="104 233"), "invalid-field", "$.id"),
        (lambda d: d.update(published="last tuesday"), "invalid-field", "$.published"),
        (lambda d: d["resource"].update(name="courses"), "unsupported-resource", "$.resource.name"),
        (lambda d: d["resource"].pop("id"), "missing-field", "$.resource.id"),
        (lambda d: d.update(operation="patched"), "unsupported-operation", "$.operation"),
        (lambda d: d.update(contentType="partial"), "unsupported-content-type", "$.contentType"),
        (lambda d: d.pop("content"), "missing-field", "$.content"),
        (lambda d: d.update(content=["x"]), "invalid-field", "$.content"),
    ],
)
def test_ethos_envelope_problems_are_named(
    admit_one: Admit,
    ethos: dict[str, Any],
    mutate: Callable[[dict[str, Any]], object],
    reason: str,
    path: str,
) -> None:
    mutate(ethos)
    rejection = _rejected(admit_one, ethos)
    assert (rejection.reason, rejection.field_path) == (reason, path)
    assert rejection.tenant == "northfield-cc"


def test_a_batch_of_notifications_is_refused(admit_one: Admit, ethos: dict[str, Any]) -> None:
    rejection = _rejected(admit_one, [ethos, ethos])
    assert rejection.reason == "not-object"
    assert "one notification" in rejection.detail


def test_an_unknown_json_object_is_unknown_format(admit_one: Admit) -> None:
    assert _rejected(admit_one, {"student": "x", "grade": "A"}).reason == "unknown-format"


# --------------------------------------------------------------------------- CloudEvents


def test_a_structured_cloudevent_becomes_an_envelope(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    envelope = admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED)
    assert envelope.format is InputFormat.CLOUDEVENT_STRUCTURED
    assert envelope.subject_type == "org.caygsync.award.issued.v1"
    assert envelope.subject_id == "AWD-2025-000417"
    assert envelope.source_message_id == cloudevent["id"]
    assert envelope.occurred_at == datetime(2025, 6, 2, 17, 45, 12, 118000, tzinfo=UTC)
    assert envelope.content_type == "application/cloudevents+json"
    assert envelope.payload == cloudevent


def test_a_cloudevent_body_is_recognised_without_its_content_type(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    envelope = admit_one(cloudevent, topic=HARBOR)
    assert envelope.format is InputFormat.CLOUDEVENT_STRUCTURED


def test_a_binary_cloudevent_is_rebuilt_into_the_structured_form(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    data, headers = _binary(cloudevent)
    headers["content-type"] = "application/json; charset=utf-8"
    headers["ce_subject"] = "AWD-2025-000417"
    envelope = admit_one(data, topic=HARBOR, headers=headers)
    assert envelope.format is InputFormat.CLOUDEVENT_BINARY
    assert envelope.payload["data"] == data
    assert envelope.payload["type"] == cloudevent["type"]
    assert envelope.payload["subject"] == "AWD-2025-000417"
    assert envelope.payload["datacontenttype"] == "application/json; charset=utf-8"
    structured = admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED)
    assert envelope.event_id == structured.event_id, "one event, whatever the mode"


def test_cloudevent_ids_are_scoped_by_source(admit_one: Admit, cloudevent: dict[str, Any]) -> None:
    first = admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED)
    cloudevent["source"] = "https://sis.harbortech.example/other-system"
    assert admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED).event_id != first.event_id


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda e: e.update(specversion="0.3"), "unsupported-specversion", "$.specversion"),
        (lambda e: e.pop("specversion"), "unknown-format", "$"),
        (lambda e: e.update(type="com.example.grade.posted"), "unsupported-type", "$.type"),
        (lambda e: e.pop("source"), "missing-field", "$.source"),
        (lambda e: e.pop("data"), "missing-field", "$.data"),
        (lambda e: e.update(data="AWD-1"), "invalid-field", "$.data"),
        (lambda e: e.update(time="02/06/2025"), "invalid-field", "$.time"),
        (
            lambda e: e.update(datacontenttype="application/xml"),
            "unsupported-content-type",
            "$.datacontenttype",
        ),
        (lambda e: e.update(data_base64="eyJ9"), "unsupported-content-type", "$.data_base64"),
    ],
)
def test_cloudevent_problems_are_named(
    admit_one: Admit,
    cloudevent: dict[str, Any],
    mutate: Callable[[dict[str, Any]], object],
    reason: str,
    path: str,
) -> None:
    mutate(cloudevent)
    rejection = _rejected(admit_one, cloudevent, topic=HARBOR)
    assert (rejection.reason, rejection.field_path) == (reason, path)


def test_binary_mode_problems(admit_one: Admit, cloudevent: dict[str, Any]) -> None:
    data, headers = _binary(cloudevent)
    bad_name = headers | {"ce_Bad_Name": "x"}
    assert _rejected(admit_one, data, topic=HARBOR, headers=bad_name).reason == "invalid-field"
    xml = headers | {"content-type": "application/xml"}
    assert _rejected(admit_one, data, topic=HARBOR, headers=xml).reason == (
        "unsupported-content-type"
    )
    assert _rejected(admit_one, b"<award/>", topic=HARBOR, headers=headers).reason == (
        "xml-not-supported"
    )
    smuggled = headers | {"ce_data": "{}"}
    assert _rejected(admit_one, data, topic=HARBOR, headers=smuggled).reason == "invalid-field"
    not_utf8 = [(k, v.encode()) for k, v in headers.items()] + [("ce_subject", b"\xff\xfe")]
    assert _rejected(admit_one, data, topic=HARBOR, headers=not_utf8).reason == "invalid-field"


def test_cloudevent_batches_are_refused(admit_one: Admit, cloudevent: dict[str, Any]) -> None:
    batch = {"content-type": "application/cloudevents-batch+json"}
    rejection = _rejected(admit_one, [cloudevent], topic=HARBOR, headers=batch)
    assert rejection.reason == "unsupported-content-type"


def test_trace_context_comes_from_headers_or_the_tracing_extension(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    header_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    attribute_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    cloudevent["traceparent"] = attribute_trace
    headers = STRUCTURED | {"traceparent": header_trace}
    assert admit_one(cloudevent, topic=HARBOR, headers=headers).traceparent == header_trace
    assert admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED).traceparent == attribute_trace
    cloudevent["traceparent"] = "00-00000000000000000000000000000000-b7ad6b7169203331-01"
    assert admit_one(cloudevent, topic=HARBOR, headers=STRUCTURED).traceparent is None


def test_an_invalid_correlation_header_falls_back_to_the_event_id(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    envelope = admit_one(ethos, headers={"cayg_correlation_id": "has spaces\n"})
    assert envelope.correlation_id == str(envelope.event_id)
    uuid.UUID(envelope.correlation_id)


# --------------------------------------------------------------------------- backfill


def test_a_backfill_record_becomes_an_envelope(admit_one: Admit, backfill: dict[str, Any]) -> None:
    envelope = admit_one(backfill)
    assert envelope.format is InputFormat.BACKFILL_RECORD
    assert envelope.source_message_id == "nfcc-onboarding-2025-01/awards.jsonl:118"
    assert envelope.subject_type == "org.caygsync.award.issued.v1"
    assert envelope.subject_id == "RA-2016-0042"
    assert envelope.occurred_at == datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
    rerun = admit_one(json.loads(json.dumps(backfill)))
    assert rerun.event_id == envelope.event_id, "re-running a file is idempotent"
    corrected = admit_one(backfill | {"batchId": "nfcc-onboarding-2025-01-fix1"})
    assert corrected.event_id != envelope.event_id


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ({"caygBackfill": "2.0"}, "invalid-field", "$.caygBackfill"),
        ({"type": "org.caygsync.grade.posted.v1"}, "invalid-field", "$.type"),
        ({"recordedAt": None}, "invalid-field", "$.recordedAt"),
        ({"data": []}, "invalid-field", "$.data"),
        ({"extra": 1}, "invalid-field", "$.extra"),
    ],
)
def test_backfill_problems_are_named(
    admit_one: Admit, backfill: dict[str, Any], change: dict[str, Any], reason: str, path: str
) -> None:
    rejection = _rejected(admit_one, backfill | change)
    assert (rejection.reason, rejection.field_path) == (reason, path)


def test_a_backfill_record_without_batch_is_missing_a_field(
    admit_one: Admit, backfill: dict[str, Any]
) -> None:
    del backfill["batchId"]
    rejection = _rejected(admit_one, backfill)
    assert (rejection.reason, rejection.field_path) == ("missing-field", "$.batchId")


def test_person_payloads_are_minimized_at_the_boundary(admit_one: Admit) -> None:
    person = {
        "id": "104301",
        "published": "2025-02-04 08:12:40.551870+00",
        "publisher": {"id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04"},
        "resource": {"name": "persons", "id": "71f0b3d8-2e6c-4a19-9d45-8c3e0a7b5f12"},
        "operation": "replaced",
        "content": {
            "id": "71f0b3d8-2e6c-4a19-9d45-8c3e0a7b5f12",
            "names": [{"fullName": "José Ñúñez-Álvarez"}],
            "dateOfBirth": "2001-09-02",
            "credentials": [
                {"type": "ssn", "value": "123-45-6789"},
                {"type": "TaxIdentificationNumber", "value": "98-7654321"},
                {"type": "colleaguePersonId", "value": "0412277"},
            ],
            "emails": [{"address": "jnunez@students.northfield.example"}],
            "privacyStatus": {"privacyCategory": "restricted"},
        },
    }
    envelope = admit_one(person)
    content = envelope.payload["content"]
    assert isinstance(content, dict)
    assert sorted(content) == ["credentials", "emails", "id", "privacyStatus"]
    assert content["credentials"] == [{"type": "colleaguePersonId", "value": "0412277"}]
    wire = envelope.model_dump_json()
    for gone in ("123-45-6789", "98-7654321", "José", "2001-09-02"):
        assert gone not in wire
    assert envelope.payload["resource"] == person["resource"]
