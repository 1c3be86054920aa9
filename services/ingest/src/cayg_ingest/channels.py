"""Ingest's channels, declared for its AsyncAPI document (``docs/asyncapi/ingest.json``,
served at ``/asyncapi.json``).

Ingest reads every ``sis.events.<tenant>`` topic with its batch loop
(:mod:`cayg_shared.batching`), so nothing here consumes: the channels are declared on a
:func:`~cayg_shared.service.declaration_broker` and FastStream generates the document from
them. An SIS may send an Ethos change notification, a cayg CloudEvent (structured mode: the
event as JSON; binary mode: the event's data as JSON and its attributes as ``ce_*``
headers) or a backfill record; the models below describe what ingest reads of an Ethos
notification and a structured CloudEvent (ingest itself parses bounded JSON, see
:mod:`cayg_ingest.domain`).

Regenerate the committed document with ``uv run python -m cayg_ingest.channels``.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict, Field

from cayg_shared.envelope import DeadLetter, IngestEnvelope
from cayg_shared.schema import (
    AwardIssuedData,
    AwardRevokedData,
    BackfillRecord,
    CaygEventType,
    DefinitionDeletedData,
    DefinitionUpsertedData,
    OrganizationUpsertedData,
)
from cayg_shared.service import (
    DOCUMENTED_BOOTSTRAP,
    asyncapi_json,
    asyncapi_specification,
    declaration_broker,
)
from cayg_shared.topics import Topics

DESCRIPTION = (
    "The trust boundary: reads each institution's SIS topic (the tenant is the topic's, "
    "never the payload's), enforces size and shape limits, recognises Ethos change "
    "notifications, cayg CloudEvents and backfill records, and forwards each as an ingest "
    "envelope with a deterministic event id; what it refuses goes to its dead-letter topic "
    "with a reason. Consumer group cayg-ingest; topics carry TOPIC_PREFIX when one is set."
)


class EthosPublisher(BaseModel):
    """The Ethos publisher (an SIS application); must belong to the topic's tenant."""

    model_config = ConfigDict(extra="allow")
    id: str
    applicationName: str | None = None  # Ethos spelling


class EthosResource(BaseModel):
    """The changed resource: its name (``academic-credentials``…), id and media type."""

    model_config = ConfigDict(extra="allow")
    name: str
    id: str
    version: str | None = None


class EthosChangeNotification(BaseModel):
    """An Ellucian Ethos change notification (Banner, Colleague)."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(description="notification id, sequential per publisher")
    published: str
    publisher: EthosPublisher
    resource: EthosResource
    operation: Literal["created", "replaced", "deleted"]
    contentType: str | None = None  # Ethos spelling
    content: dict[str, Any] = Field(default_factory=dict)


class StructuredCloudEvent(BaseModel):
    """A cayg CloudEvent in structured mode (``content-type: application/cloudevents+json``).
    In binary mode the value is ``data`` alone and the attributes are ``ce_*`` headers."""

    specversion: Literal["1.0"]
    id: str
    source: str = Field(description="must be one of the tenant's registered sources")
    type: CaygEventType
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    data: (
        DefinitionUpsertedData
        | DefinitionDeletedData
        | AwardIssuedData
        | AwardRevokedData
        | OrganizationUpsertedData
    )


def specification(bootstrap: str = DOCUMENTED_BOOTSTRAP, topic_prefix: str = "") -> AsyncAPI:
    """Ingest's AsyncAPI document: the SIS topics in, envelopes and dead letters out."""
    topics = Topics(topic_prefix)
    broker = declaration_broker(bootstrap)

    @broker.subscriber(
        pattern=f"{topics.prefix}sis.events.{{tenant}}",
        group_id="cayg-ingest",
        title="sis-events",
        description="One topic per institution; the ACL lets only that institution's SIS "
        "write it, which is what makes the topic a trustworthy tenant identity.",
    )
    async def sis_events(
        body: EthosChangeNotification | StructuredCloudEvent | BackfillRecord,
    ) -> None:
        """Declared only (never called): the batch loop admits each record."""

    broker.publisher(
        topics.ingested,
        schema=IngestEnvelope,
        title="ingested",
        description="Admitted messages: the envelope (trusted tenant, event id, raw payload). "
        "Key: tenant:subject id.",
    )
    broker.publisher(
        topics.ingest_dlq,
        schema=DeadLetter,
        title="ingest-dlq",
        description="Refused messages with a reason and the original record (for replay).",
    )
    return asyncapi_specification(broker, service="ingest", description=DESCRIPTION)


def main() -> None:
    """Print the committed form of the document (``> docs/asyncapi/ingest.json``)."""
    sys.stdout.write(asyncapi_json(specification()))


if __name__ == "__main__":
    main()
