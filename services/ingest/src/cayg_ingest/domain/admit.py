"""Admission: one SIS record in, one :class:`IngestEnvelope` out, or a :class:`Rejection`.

Order of checks (cheapest and most fundamental first):

1. tenant — from the topic only, and registered;
2. transport limits — header count and sizes, key size, value size (the service's
   :class:`IngestLimits` with the tenant's ``limits`` applied);
3. format — CloudEvent binary (``ce_specversion`` header), CloudEvent structured
   (``content-type: application/cloudevents+json`` or a JSON object with
   ``specversion``), backfill record (``caygBackfill``), Ethos notification (``resource``
   + ``operation``). HTML (``html-not-supported``: usually a proxy's error page sent in
   place of the payload) and XML (``xml-not-supported``) are refused unparsed; anything
   else is ``unknown-format``;
4. the format's own envelope fields, and ownership: an Ethos publisher or CloudEvent source
   of another tenant is a ``tenant-mismatch``.

The envelope carries the payload as sent, except that an Ethos ``persons``
representation is cut down to the fields cayg reads (no names, birth dates or national
ids on cayg's topics; see :func:`~cayg_ingest.domain.ethos.minimized`).

Ids: ``event_id`` is :func:`cayg_shared.ids.event_id` of tenant, format family and the
source's message identity — Ethos publisher + notification id, CloudEvent source + id
(the same in both modes), backfill batch + record — so redelivery and replay keep it.
The correlation id is the ``cayg_correlation_id`` header when valid, else the event id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from pydantic import ValidationError

from cayg_ingest.domain.backfill import json_path, read_backfill
from cayg_ingest.domain.bounded_json import decode_json, strip_bom
from cayg_ingest.domain.cloudevents import (
    binary_event,
    is_json_media_type,
    media_type,
    read_cloudevent,
)
from cayg_ingest.domain.ethos import looks_like_ethos, minimized, read_ethos
from cayg_ingest.domain.model import InboundMessage, IngestLimits, Reason, Rejection
from cayg_shared import headers as h
from cayg_shared.envelope import IngestEnvelope, InputFormat, SourceCoordinates
from cayg_shared.ids import event_id as derive_event_id
from cayg_shared.schema import BACKFILL_MARKER, CLOUDEVENTS_JSON
from cayg_shared.tenants import TenantProfile, TenantRegistry
from cayg_shared.topics import TopicError, tenant_from_topic

_CORRELATION_ID: Final = re.compile(r"^[\x21-\x7e]{1,128}$")
_TRACEPARENT: Final = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_XML_MEDIA_TYPES: Final = frozenset({"application/xml", "text/xml"})
_HTML_MEDIA_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
#: The format family in event ids: both CloudEvent modes are one family, so an event
#: re-sent in the other mode is recognised as the same event.
_CLOUDEVENT_FAMILY: Final = "cloudevent"


def admit(
    message: InboundMessage,
    tenants: TenantRegistry,
    limits: IngestLimits,
    *,
    received_at: datetime,
) -> IngestEnvelope:
    """The envelope for an SIS record; raises :class:`Rejection` with a reason if refused."""
    return Admission(tenants, limits).admit(message, received_at=received_at)


class Admission:
    """:func:`admit` for one tenant registry and one set of service limits, as a service
    runs it: what depends only on the topic (its tenant's profile and that tenant's
    limits) is worked out once per topic instead of once per record. The registry is
    immutable, so the cached answer never goes stale; topics that are refused are not
    cached (they are re-checked, and cannot fill the cache)."""

    #: Most topics remembered (the cache is emptied when full).
    MAX_TOPICS: Final = 4096

    def __init__(self, tenants: TenantRegistry, limits: IngestLimits) -> None:
        self.tenants = tenants
        self.limits = limits
        self._topics: dict[str, tuple[TenantProfile, IngestLimits]] = {}

    def tenant_of(self, topic: str) -> tuple[TenantProfile, IngestLimits]:
        """The profile of the tenant ``topic`` belongs to and the limits that apply to it."""
        known = self._topics.get(topic)
        if known is None:
            profile = _tenant(topic, self.tenants)
            known = (profile, self.limits.for_tenant(profile.limits))
            if len(self._topics) >= self.MAX_TOPICS:
                self._topics.clear()
            self._topics[topic] = known
        return known

    def admit(self, message: InboundMessage, *, received_at: datetime) -> IngestEnvelope:
        """The envelope for an SIS record; raises :class:`Rejection` if refused."""
        profile, limits = self.tenant_of(message.topic)
        tenants = self.tenants
        headers = _headers(message, limits)
        value = _value(message, limits)
        received = (
            received_at if received_at.tzinfo is not None else received_at.replace(tzinfo=UTC)
        )
        source = SourceCoordinates(
            topic=message.topic,
            partition=max(message.partition, 0),
            offset=max(message.offset, 0),
            timestamp_ms=message.timestamp_ms,
        )
        ctx = _Context(profile, tenants, limits, headers, source, received)
        content_type = media_type(headers.get(h.CONTENT_TYPE))
        try:
            return _by_format(value, content_type, ctx)
        except Rejection as rejection:
            rejection.tenant = profile.tenant_id
            raise


def _by_format(value: bytes, content_type: str, ctx: _Context) -> IngestEnvelope:
    headers, limits = ctx.headers, ctx.limits
    if h.CE_SPECVERSION in headers:
        return _binary_cloudevent(value, content_type, ctx)
    if content_type.startswith("application/cloudevents-batch"):
        raise Rejection(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            "CloudEvent batches are not accepted: send one event per record",
            h.CONTENT_TYPE,
        )
    _refuse_markup(value, content_type)
    if content_type == CLOUDEVENTS_JSON:
        document = _object(decode_json(value, limits))
        return _cloudevent(document, InputFormat.CLOUDEVENT_STRUCTURED, CLOUDEVENTS_JSON, ctx)
    if content_type and not is_json_media_type(content_type) and content_type != "text/plain":
        raise Rejection(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            f"content-type {content_type[:64]!r} is not JSON",
            h.CONTENT_TYPE,
        )
    document = _object(decode_json(value, limits))
    if BACKFILL_MARKER in document:
        return _backfill(document, ctx)
    if "specversion" in document:
        return _cloudevent(document, InputFormat.CLOUDEVENT_STRUCTURED, CLOUDEVENTS_JSON, ctx)
    if looks_like_ethos(document):
        return _ethos(document, ctx)
    raise Rejection(
        Reason.UNKNOWN_FORMAT,
        "not an Ethos change notification, a CloudEvent or a backfill record",
        "$",
    )


# --------------------------------------------------------------------------- transport


def _tenant(topic: str, tenants: TenantRegistry) -> TenantProfile:
    try:
        tenant = tenant_from_topic(topic)
    except TopicError:
        raise Rejection(Reason.BAD_TOPIC, "the topic is not sis.events.<tenant>", "topic") from None
    profile = tenants.get(tenant)
    if profile is None:
        raise Rejection(
            Reason.UNKNOWN_TENANT,
            f"tenant {tenant!r} is not in the tenant registry",
            "topic",
            tenant=tenant,
        )
    return profile


def _headers(message: InboundMessage, limits: IngestLimits) -> dict[str, str]:
    if len(message.headers) > limits.max_headers:
        raise Rejection(Reason.TOO_LARGE, f"more than {limits.max_headers} headers", "headers")
    for name, value in message.headers:
        if len(name) > 256 or len(value) > limits.max_header_value_bytes:
            raise Rejection(
                Reason.TOO_LARGE,
                f"a header is larger than {limits.max_header_value_bytes} bytes",
                name[:64],
            )
        if name.startswith("ce_") or name == h.CONTENT_TYPE:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejection(
                    Reason.INVALID_FIELD, "header value is not UTF-8", name[:64]
                ) from None
    return h.decode_headers(message.headers)


def _value(message: InboundMessage, limits: IngestLimits) -> bytes:
    if message.key is not None and len(message.key) > limits.max_key_bytes:
        raise Rejection(
            Reason.TOO_LARGE, f"the key is larger than {limits.max_key_bytes} bytes", "key"
        )
    value = message.value
    if value is None or not value.strip():
        raise Rejection(Reason.EMPTY, "the record has no value", "$")
    limit = limits.max_message_bytes
    if len(value) > limit:
        raise Rejection(
            Reason.TOO_LARGE, f"the value is {len(value)} bytes, over the {limit} limit", "$"
        )
    return value


def _is_markup(value: bytes) -> bool:
    return strip_bom(value).lstrip()[:1] == b"<"


def _looks_like_html(value: bytes) -> bool:
    # Only the head is inspected (never parsed): an HTML page opens with a doctype, an
    # <html>/<head>/<body> tag, possibly after comments or an XML declaration (XHTML).
    head = strip_bom(value).lstrip()[:1024].lower()
    while head.startswith((b"<!--", b"<?")):
        end = head.find(b"-->" if head.startswith(b"<!--") else b"?>")
        if end < 0:
            return False
        head = head[end + (3 if head.startswith(b"<!--") else 2) :].lstrip()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _refuse_markup(value: bytes, content_type: str) -> None:
    """Refuse HTML and XML without parsing them, each under its own reason."""
    if content_type in _HTML_MEDIA_TYPES or (_is_markup(value) and _looks_like_html(value)):
        raise Rejection(
            Reason.HTML_NOT_SUPPORTED,
            "looks like an HTML page (an error page from a proxy?); refused, never parsed",
            "$",
        )
    if content_type in _XML_MEDIA_TYPES or content_type.endswith("+xml") or _is_markup(value):
        raise Rejection(
            Reason.XML_NOT_SUPPORTED,
            "XML payloads are refused (never parsed); send JSON",
            "$",
        )


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        hint = " (send one notification or event per record)" if isinstance(value, list) else ""
        raise Rejection(Reason.NOT_OBJECT, f"the payload is not a JSON object{hint}", "$")
    return value


# --------------------------------------------------------------------------- ids


def _correlation_id(headers: dict[str, str], event_id: str) -> str:
    given = headers.get(h.CORRELATION_ID, "").strip()
    return given if _CORRELATION_ID.match(given) else event_id


def _traceparent(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate is not None and _TRACEPARENT.match(candidate.strip()):
            return candidate.strip()
    return None


def _envelope(payload: dict[str, Any], **fields: Any) -> IngestEnvelope:
    """The envelope of ``fields`` around ``payload``.

    Every field is validated except the payload itself: it is what the bounded JSON
    decoder returned (or a part of it), so it is JSON by construction, and validating it
    again as ``JsonValue`` would only copy it at a Python call per value — the largest
    single cost of admission before.
    """
    try:
        head = IngestEnvelope(payload={}, **fields)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        path = json_path(tuple(first["loc"]))
        raise Rejection(Reason.INVALID_FIELD, f"envelope {path}: {first['msg']}", path) from None
    return head.model_copy(update={"payload": payload})


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class _Context:
    """What every format's admission needs besides the payload."""

    profile: TenantProfile
    tenants: TenantRegistry
    limits: IngestLimits
    headers: dict[str, str]
    source: SourceCoordinates
    received: datetime

    def envelope(self, event_id: UUID, **fields: Any) -> IngestEnvelope:
        return _envelope(
            event_id=event_id,
            tenant=self.profile.tenant_id,
            received_at=self.received,
            source=self.source,
            correlation_id=_correlation_id(self.headers, str(event_id)),
            **fields,
        )


def _ethos(document: dict[str, Any], ctx: _Context) -> IngestEnvelope:
    facts = read_ethos(document, ctx.profile, ctx.tenants)
    fmt = InputFormat.ETHOS_CHANGE_NOTIFICATION
    identity = f"{facts.publisher_id.casefold()}/{facts.message_id}"
    return ctx.envelope(
        derive_event_id(ctx.profile.tenant_id, fmt.value, identity),
        format=fmt,
        source_message_id=facts.message_id,
        subject_type=facts.resource_name,
        subject_id=facts.resource_id,
        occurred_at=facts.published,
        traceparent=_traceparent(ctx.headers.get(h.TRACEPARENT)),
        content_type="application/json",
        payload=minimized(document),
    )


def _binary_cloudevent(value: bytes, content_type: str, ctx: _Context) -> IngestEnvelope:
    if content_type and not is_json_media_type(content_type):
        raise Rejection(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            "CloudEvent data must be JSON (content-type application/json)",
            h.CONTENT_TYPE,
        )
    # A declared JSON content type may still carry a proxy's HTML page or XML.
    _refuse_markup(value, "")
    data = decode_json(value, ctx.limits, where="$.data")
    event = binary_event(ctx.headers, data)
    return _cloudevent(
        event, InputFormat.CLOUDEVENT_BINARY, content_type or "application/json", ctx
    )


def _cloudevent(
    event: dict[str, Any], fmt: InputFormat, content_type: str, ctx: _Context
) -> IngestEnvelope:
    facts = read_cloudevent(event, ctx.profile, ctx.tenants)
    identity = f"{facts.source}\x1f{facts.id}"
    return ctx.envelope(
        derive_event_id(ctx.profile.tenant_id, _CLOUDEVENT_FAMILY, identity),
        format=fmt,
        source_message_id=facts.id,
        subject_type=facts.type.value,
        subject_id=facts.subject_id,
        occurred_at=facts.time,
        traceparent=_traceparent(ctx.headers.get(h.TRACEPARENT), facts.traceparent),
        content_type=content_type,
        payload=facts.event,
    )


def _backfill(document: dict[str, Any], ctx: _Context) -> IngestEnvelope:
    facts = read_backfill(document, ctx.profile)
    fmt = InputFormat.BACKFILL_RECORD
    return ctx.envelope(
        derive_event_id(ctx.profile.tenant_id, fmt.value, facts.message_id),
        format=fmt,
        source_message_id=facts.message_id,
        subject_type=facts.record.type.value,
        subject_id=facts.subject_id,
        occurred_at=facts.record.recorded_at,
        traceparent=_traceparent(ctx.headers.get(h.TRACEPARENT)),
        content_type="application/json",
        payload=document,
    )
