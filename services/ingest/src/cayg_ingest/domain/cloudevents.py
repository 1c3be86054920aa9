"""CloudEvents 1.0 over Kafka, binary and structured content modes, cayg types only.

* **binary**: attributes in ``ce_<name>`` headers, ``content-type`` is ``datacontenttype``,
  the value is ``data``. Ingest rebuilds the structured form, so the envelope payload is
  always the whole event (attributes + ``data``) whatever the mode.
* **structured**: ``content-type: application/cloudevents+json``, the value is the event.

The ``source`` must be one the tenant registered; ``type`` one of
:class:`cayg_shared.schema.CaygEventType`; ``data`` a JSON object (``data_base64`` and
non-JSON content types are refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cayg_ingest.domain.fields import get_text, get_time, require_identifier, require_text
from cayg_ingest.domain.model import Reason, Rejection
from cayg_shared import headers as h
from cayg_shared.schema import CLOUDEVENTS_SPECVERSION, CaygEventType
from cayg_shared.tenants import TenantProfile, TenantRegistry

_ATTRIBUTE_NAME: Final = re.compile(r"^[a-z0-9]{1,20}$")
_CE_PREFIX: Final = "ce_"
#: The data member naming the entity, per type: the envelope's ``subject_id``.
_SUBJECT_FIELD: Final[dict[CaygEventType, str]] = {
    CaygEventType.DEFINITION_UPSERTED: "sourceId",
    CaygEventType.DEFINITION_DELETED: "sourceId",
    CaygEventType.AWARD_ISSUED: "awardId",
    CaygEventType.AWARD_REVOKED: "awardId",
    CaygEventType.ORGANIZATION_UPSERTED: "sourceId",
}


def media_type(content_type: str | None) -> str:
    """The media type of a content-type value, lower-case, parameters dropped."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(value: str) -> bool:
    """``application/json`` or any ``+json`` type."""
    return value == "application/json" or value.endswith("+json")


@dataclass(frozen=True)
class CloudEventFacts:
    """What ingest learned from a valid cayg CloudEvent."""

    event: dict[str, Any]
    """The event in structured form, ``data`` included."""
    id: str
    source: str
    type: CaygEventType
    time: datetime | None
    subject_id: str | None
    traceparent: str | None


def binary_event(headers: dict[str, str], data: Any) -> dict[str, Any]:
    """The structured form of a binary-mode event."""
    event: dict[str, Any] = {}
    for name, value in headers.items():
        if not name.startswith(_CE_PREFIX):
            continue
        attribute = name[len(_CE_PREFIX) :]
        if not _ATTRIBUTE_NAME.match(attribute):
            raise Rejection(
                Reason.INVALID_FIELD,
                "CloudEvent attribute names are 1-20 lower-case letters or digits",
                name[:64],
            )
        event[attribute] = value
    if "data" in event or "datacontenttype" in event:
        raise Rejection(
            Reason.INVALID_FIELD,
            "in binary mode data and its content type travel as value and content-type",
            "ce_data",
        )
    content_type = headers.get(h.CONTENT_TYPE)
    if content_type is not None:
        event["datacontenttype"] = content_type
    event["data"] = data
    return event


def read_cloudevent(
    event: dict[str, Any],
    profile: TenantProfile,
    registry: TenantRegistry,
) -> CloudEventFacts:
    """Check a cayg CloudEvent (structured form) against the tenant."""
    specversion = get_text(event, "specversion", "$.specversion", max_length=16)
    if specversion != CLOUDEVENTS_SPECVERSION:
        raise Rejection(
            Reason.UNSUPPORTED_SPECVERSION,
            f"CloudEvents specversion must be {CLOUDEVENTS_SPECVERSION}",
            "$.specversion",
        )
    event_id = require_identifier(event, "id", "$.id")
    source = get_text(event, "source", "$.source", max_length=1024)
    assert source is not None
    type_text = require_text(event, "type", "$.type", max_length=256)
    try:
        event_type = CaygEventType(type_text)
    except ValueError:
        raise Rejection(
            Reason.UNSUPPORTED_TYPE,
            f"CloudEvent type {type_text[:80]!r} is not a cayg event type",
            "$.type",
        ) from None
    _check_source(source, profile, registry)
    time = get_time(event, "time", "$.time", default_tz=profile.mapping.zone)
    content_type = get_text(event, "datacontenttype", "$.datacontenttype", required=False)
    if content_type is not None and not is_json_media_type(media_type(content_type)):
        raise Rejection(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            "CloudEvent data must be JSON (application/json)",
            "$.datacontenttype",
        )
    if "data_base64" in event:
        raise Rejection(
            Reason.UNSUPPORTED_CONTENT_TYPE, "data_base64 is not accepted", "$.data_base64"
        )
    data = event.get("data")
    if data is None:
        raise Rejection(Reason.MISSING_FIELD, "$.data is required", "$.data")
    if not isinstance(data, dict):
        raise Rejection(Reason.INVALID_FIELD, "$.data must be a JSON object", "$.data")
    subject = get_text(event, "subject", "$.subject", required=False)
    if subject is None:
        field = _SUBJECT_FIELD[event_type]
        subject = get_text(data, field, f"$.data.{field}", required=False)
    traceparent = event.get("traceparent")
    return CloudEventFacts(
        event=event,
        id=event_id,
        source=source,
        type=event_type,
        time=time,
        subject_id=subject,
        traceparent=traceparent if isinstance(traceparent, str) else None,
    )


def _check_source(source: str, profile: TenantProfile, registry: TenantRegistry) -> None:
    if profile.owns_cloudevent_source(source):
        return
    owner = registry.owner_of_cloudevent_source(source)
    where = "another tenant" if owner is not None else "no tenant"
    raise Rejection(
        Reason.TENANT_MISMATCH,
        f"CloudEvent source belongs to {where}, not {profile.tenant_id}",
        "$.source",
        tenant=profile.tenant_id,
    )
