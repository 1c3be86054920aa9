"""The values ingest's admission logic works on: the inbound record, limits, rejections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


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

    A tenant's ``max_message_bytes`` in the tenant registry replaces the size limit here.
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
    max_json_nodes: int = 200_000
    """Most JSON values (objects, arrays, scalars) in one payload."""
    max_string_chars: int = 100_000
    """Longest JSON string (or object key)."""


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
