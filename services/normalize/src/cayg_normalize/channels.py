"""Normalize's channels, declared for its AsyncAPI document (``docs/asyncapi/normalize.json``,
served at ``/asyncapi.json``).

Normalize consumes with its batch loop (:mod:`cayg_shared.batching`), not a FastStream
subscriber, so its channels are declared on a
:func:`~cayg_shared.service.declaration_broker` (never started) with the project's topic
names and payload models, and FastStream generates the document from them.

Regenerate the committed document with ``uv run python -m cayg_normalize.channels``.
"""

from __future__ import annotations

import sys

from faststream.specification import AsyncAPI

from cayg_shared.envelope import DeadLetter, IngestEnvelope
from cayg_shared.schema import Change
from cayg_shared.service import (
    DOCUMENTED_BOOTSTRAP,
    asyncapi_json,
    asyncapi_specification,
    declaration_broker,
)
from cayg_shared.topics import Topics

DESCRIPTION = (
    "Pure mapping: each ingest envelope becomes zero or more changes in the shared "
    "incremental-credential schema; what cannot be mapped goes to its dead-letter topic "
    "with a reason. Consumer group cayg-normalize; topics carry TOPIC_PREFIX when one is set."
)


def specification(bootstrap: str = DOCUMENTED_BOOTSTRAP, topic_prefix: str = "") -> AsyncAPI:
    """Normalize's AsyncAPI document: envelopes in, changes and dead letters out."""
    topics = Topics(topic_prefix)
    broker = declaration_broker(bootstrap)

    @broker.subscriber(
        topics.ingested,
        group_id="cayg-normalize",
        title="ingested",
        description="Envelopes written by ingest.",
    )
    async def ingested(body: IngestEnvelope) -> None:
        """Declared only (never called): the batch loop maps each record."""

    broker.publisher(
        topics.normalized,
        schema=Change,
        title="normalized",
        description="Changes (upsert, delete, revoke) of definitions, awards, organizations, "
        "programs and learner identities. Key: the entity key.",
    )
    broker.publisher(
        topics.normalize_dlq,
        schema=DeadLetter,
        title="normalize-dlq",
        description="Envelopes that cannot be mapped, with a reason and the original record.",
    )
    return asyncapi_specification(broker, service="normalize", description=DESCRIPTION)


def main() -> None:
    """Print the committed form of the document (``> docs/asyncapi/normalize.json``)."""
    sys.stdout.write(asyncapi_json(specification()))


if __name__ == "__main__":
    main()
