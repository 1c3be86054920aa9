"""The values ingest's admission logic works on: the inbound record, limits, rejections."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from cayg_shared.tenants import TenantLimits


@dataclass(frozen=True)
class InboundMessage:
    """A record as read from ``sis.events.<tenant>``: transport facts only, nothing trusted.

    ``topic`` is the contract name (without any deployment prefix): the tenant is taken
    from it and from nothing else.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class IngestLimits:
    """Size and shape limits every SIS message must respect before it is parsed further.

    These are the service's; a tenant's ``limits`` in the tenant registry replace any of
    them (:meth:`for_tenant`). The limits are coherent: by default no string, key or
    count of values can be refused in a message that is within ``max_message_bytes``
    (a string of n characters needs at least n bytes), so only the message size and the
    nesting depth bind unless a tighter limit is set on purpose.
    """

    max_message_bytes: int = 1_048_576
    """Largest value accepted, in bytes."""
    max_key_bytes: int = 1024
    """Largest record key accepted (the key is never trusted, only carried)."""
    max_headers: int = 64
    """Most headers one record may carry."""
    max_header_value_bytes: int = 8192
    """Largest header value."""
    max_json_depth: int = 32
    """Deepest nesting of JSON objects and arrays (Ethos resources need about 6)."""
    max_json_nodes: int | None = None
    """Most JSON values (objects, arrays, scalars) in one payload; None: as many as
    ``max_message_bytes`` can hold."""
    max_string_chars: int | None = None
    """Longest JSON string (or object key); None: ``max_message_bytes``."""

    @property
    def string_limit(self) -> int:
        """The longest string accepted (the message limit unless set tighter)."""
        return (
            self.max_string_chars if self.max_string_chars is not None else self.max_message_bytes
        )

    @property
    def node_limit(self) -> int:
        """The most JSON values accepted (what the message can hold unless set tighter)."""
        # The smallest JSON value with its separator takes two bytes ("0,").
        if self.max_json_nodes is not None:
            return self.max_json_nodes
        return self.max_message_bytes // 2 + 1

    def for_tenant(self, tenant: TenantLimits) -> IngestLimits:
        """These limits with the tenant's overrides applied."""
        overrides = {k: v for k, v in tenant.model_dump().items() if v is not None}
        return replace(self, **overrides) if overrides else self


class Reason:
    """The short codes a :class:`Rejection` carries (``DeadLetter.reason``)."""

    BAD_TOPIC: Final = "bad-topic"
    """The topic is not ``sis.events.<valid tenant id>``."""
    UNKNOWN_TENANT: Final = "unknown-tenant"
    """The topic names a tenant the registry does not know."""
    TENANT_MISMATCH: Final = "tenant-mismatch"
    """The payload's publisher, source or tenant belongs to another (or no) tenant."""
    FORMAT_NOT_ENABLED: Final = "format-not-enabled"
    """The tenant does not accept this format (e.g. backfill switched off)."""
    EMPTY: Final = "empty"
    """No value (or only whitespace)."""
    TOO_LARGE: Final = "too-large"
    """Value, key, a header, or header count over the limit."""
    TOO_DEEP: Final = "too-deep"
    """JSON nested deeper than allowed."""
    TOO_COMPLEX: Final = "too-complex"
    """Too many JSON values, or a string too long."""
    NOT_JSON: Final = "not-json"
    """Not UTF-8 JSON, duplicate keys, or non-finite numbers."""
    NOT_OBJECT: Final = "not-object"
    """JSON, but not an object (a batch array, a bare string…)."""
    XML_NOT_SUPPORTED: Final = "xml-not-supported"
    """An XML payload: refused without parsing it."""
    HTML_NOT_SUPPORTED: Final = "html-not-supported"
    """An HTML page (typically a proxy's or gateway's error page sent as the payload):
    refused without parsing it."""
    UNKNOWN_FORMAT: Final = "unknown-format"
    """A JSON object that is no Ethos notification, CloudEvent or backfill record."""
    UNSUPPORTED_CONTENT_TYPE: Final = "unsupported-content-type"
    """A content type ingest does not read (CloudEvent batches, binary data…)."""
    UNSUPPORTED_SPECVERSION: Final = "unsupported-specversion"
    """A CloudEvent of a spec version other than 1.0."""
    UNSUPPORTED_TYPE: Final = "unsupported-type"
    """A CloudEvent type that is not one of cayg's."""
    UNSUPPORTED_RESOURCE: Final = "unsupported-resource"
    """An Ethos resource cayg does not consume."""
    UNSUPPORTED_OPERATION: Final = "unsupported-operation"
    """An Ethos operation other than created/replaced/deleted (e.g. ``patched``)."""
    MISSING_FIELD: Final = "missing-field"
    """A required field is absent."""
    INVALID_FIELD: Final = "invalid-field"
    """A field has the wrong type or an unreadable value."""


class Rejection(Exception):
    """A message ingest refuses; the handler parks it on the ingest DLQ.

    ``detail`` is for operators: it names fields, never their values, so it cannot carry
    learner identifiers.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        field_path: str | None = None,
        *,
        tenant: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        """A short code from :class:`Reason`."""
        self.detail = detail
        """What is wrong, for a human."""
        self.field_path = field_path
        """JSON path of the offending field (``$.publisher.id``), or a header name."""
        self.tenant = tenant
        """The tenant of the topic, when it was established."""
