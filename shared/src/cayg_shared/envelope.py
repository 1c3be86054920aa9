"""The canonical envelope ingest wraps every accepted SIS message in, and the DLQ record.

The envelope is the trust boundary's output: ``tenant`` was taken from the transport (the
topic), never from the payload; ``event_id`` is deterministic, so a redelivered or replayed
SIS message carries the same id downstream.
"""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from cayg_shared.topics import TENANT_ID_RE

ENVELOPE_SCHEMA_VERSION: Final = "1.0"
DEAD_LETTER_SCHEMA_VERSION: Final = "1.0"


def _tenant_id(value: str) -> str:
    if not TENANT_ID_RE.match(value):
        raise ValueError("tenant ids are lowercase letters, digits and hyphens (2-63 chars)")
    return value


TenantId = Annotated[str, AfterValidator(_tenant_id)]


class InputFormat(StrEnum):
    """The SIS message formats ingest recognises."""

    ETHOS_CHANGE_NOTIFICATION = "ethos-change-notification"
    CLOUDEVENT_BINARY = "cloudevent-binary"
    CLOUDEVENT_STRUCTURED = "cloudevent-structured"
    BACKFILL_RECORD = "backfill-record"


class SourceCoordinates(BaseModel):
    """Where a message was read: enough to find the original on the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp_ms: int | None = None


class IngestEnvelope(BaseModel):
    """An accepted SIS message: trusted tenant, stable id, the payload as the SIS sent it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal["1.0"] = ENVELOPE_SCHEMA_VERSION
    event_id: UUID
    tenant: TenantId
    format: InputFormat
    #: The SIS's own id of the message (Ethos notification id, CloudEvent id, backfill row id).
    source_message_id: str = Field(min_length=1, max_length=256)
    #: What the message is about, e.g. ``academic-credentials`` or ``org.cayg.award.v1``.
    subject_type: str = Field(min_length=1, max_length=256)
    #: The SIS's id of the entity the message is about, when the format names one.
    subject_id: str | None = Field(default=None, max_length=256)
    #: When the SIS says the change happened (publish time), if it says.
    occurred_at: datetime | None = None
    received_at: datetime
    source: SourceCoordinates
    correlation_id: str = Field(min_length=1, max_length=128)
    traceparent: str | None = None
    content_type: str = "application/json"
    #: The decoded payload (for CloudEvents: the whole event, data included), unchanged with
    #: one exception: an Ethos ``persons`` payload is cut to the identifying fields cayg uses
    #: (ids minus national ids, emails, privacy status), so names, birth dates and national
    #: ids never reach ``cayg.ingested.v1``. The DLQ keeps original bytes only of rejects.
    payload: dict[str, JsonValue]


class Stage(StrEnum):
    """The pipeline stage that parked a message."""

    INGEST = "ingest"
    NORMALIZE = "normalize"
    PUBLISH = "publish"


class DeadLetter(BaseModel):
    """A message a stage could not process, parked with everything needed to replay it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal["1.0"] = DEAD_LETTER_SCHEMA_VERSION
    stage: Stage
    #: A short machine-readable code, e.g. ``too-large``, ``tenant-mismatch``.
    reason: str = Field(min_length=1, max_length=64)
    #: A human-readable explanation; never contains learner identifiers or secrets.
    detail: str = Field(max_length=4000)
    #: JSON path of the offending field, when there is one (``$.content.title``).
    field_path: str | None = None
    tenant: str | None = None
    event_id: UUID | None = None
    source: SourceCoordinates
    failed_at: datetime
    #: The original message key and value, base64, exactly as read (possibly truncated
    #: for oversized input, see ``value_truncated``).
    key_b64: str | None = None
    value_b64: str
    value_truncated: bool = False
    original_headers: dict[str, str] = Field(default_factory=dict)
    #: The target's answer, for publish failures (status, body excerpt).
    target_response: dict[str, Any] | None = None

    @staticmethod
    def encode(data: bytes | None) -> str | None:
        """Base64 text of raw bytes (None stays None)."""
        return None if data is None else base64.b64encode(data).decode("ascii")

    def original_value(self) -> bytes:
        """The original message value as bytes."""
        return base64.b64decode(self.value_b64)
