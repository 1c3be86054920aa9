"""Publish's channels, declared for its AsyncAPI document (``docs/asyncapi/publish.json``,
served at ``/asyncapi.json``).

Publish's subscriber reads raw records (it decodes each change itself, so that one it
cannot decode becomes a dead letter instead of an error), so its own declaration would
document no payload. The channels are declared on a
:func:`~cayg_shared.service.declaration_broker` (never started) with the project's topic
names and payload models, and FastStream generates the document from them. Each publish
lane is its own consumer group (``cayg-publish.<lane>``) on the same topic. The retry topics
of earlier versions are gone: failing deliveries are retried from the ledger.

Regenerate the committed document with ``uv run python -m cayg_publish.channels``.
"""

from __future__ import annotations

import sys

from faststream.specification import AsyncAPI

from cayg_shared.envelope import DeadLetter
from cayg_shared.schema import Change
from cayg_shared.service import (
    DOCUMENTED_BOOTSTRAP,
    asyncapi_json,
    asyncapi_specification,
    declaration_broker,
)
from cayg_shared.topics import Topics

DESCRIPTION = (
    "Owns every external effect: applies each change to its catalog and marks the target "
    "documents it affects dirty (one ledger transaction), then a projector delivers them to "
    "the Credential Registry and CLR/OB hosts. Only changes it cannot decode are "
    "dead-lettered. Consumer group cayg-publish (cayg-publish.<lane> per lane); topics carry "
    "TOPIC_PREFIX when one is set."
)


def specification(bootstrap: str = DOCUMENTED_BOOTSTRAP, topic_prefix: str = "") -> AsyncAPI:
    """Publish's AsyncAPI document: changes in, undecodable changes out."""
    topics = Topics(topic_prefix)
    broker = declaration_broker(bootstrap)

    @broker.subscriber(
        topics.normalized,
        group_id="cayg-publish",
        title="normalized",
        description="Changes written by normalize.",
    )
    async def normalized(body: Change) -> None:
        """Declared only (never called): publish's handler records each change."""

    broker.publisher(
        topics.publish_dlq,
        schema=DeadLetter,
        title="publish-dlq",
        description="Changes that cannot be decoded, with the validation error and the "
        "original record.",
    )
    return asyncapi_specification(broker, service="publish", description=DESCRIPTION)


def main() -> None:
    """Print the committed form of the document (``> docs/asyncapi/publish.json``)."""
    sys.stdout.write(asyncapi_json(specification()))


if __name__ == "__main__":
    main()
