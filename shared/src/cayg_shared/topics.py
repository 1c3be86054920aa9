"""Kafka topic names: the only place they are spelled.

SIS platforms write to one topic per tenant, ``sis.events.<tenant>``; the broker's ACLs let
each SIS write only its own topic, which is what makes the topic a trustworthy source of
tenant identity. Everything downstream is versioned (``.v1``) so a breaking change gets a
new topic instead of breaking consumers in place.
"""

from __future__ import annotations

import re
from typing import Final

SIS_TOPIC_PREFIX: Final = "sis.events."
SIS_TOPIC_PATTERN: Final = r"sis\.events\..+"
INGESTED: Final = "cayg.ingested.v1"
NORMALIZED: Final = "cayg.normalized.v1"
INGEST_DLQ: Final = "cayg.ingest.dlq.v1"
NORMALIZE_DLQ: Final = "cayg.normalize.dlq.v1"
PUBLISH_DLQ: Final = "cayg.publish.dlq.v1"
#: The operators' record of what they did with dead letters (replayed where, resolved
#: why); compacted, written and read only by ``cayg dlq``.
DLQ_ACTIONS: Final = "cayg.dlq.actions.v1"

#: A tenant id: lowercase letters, digits and hyphens, 2-63 characters, as a DNS label.
TENANT_ID_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])$")


class TopicError(ValueError):
    """A topic name that does not follow the cayg naming rules."""


def sis_topic(tenant: str) -> str:
    """The topic an SIS of ``tenant`` writes its events to."""
    if not TENANT_ID_RE.match(tenant):
        raise TopicError(f"invalid tenant id {tenant!r}")
    return f"{SIS_TOPIC_PREFIX}{tenant}"


def tenant_from_topic(topic: str) -> str:
    """The tenant a message belongs to, taken from the topic it was read from."""
    if not topic.startswith(SIS_TOPIC_PREFIX):
        raise TopicError(f"{topic!r} is not an SIS event topic")
    tenant = topic[len(SIS_TOPIC_PREFIX) :]
    if not TENANT_ID_RE.match(tenant):
        raise TopicError(f"{topic!r} does not name a valid tenant")
    return tenant


class Topics:
    """Every topic name under an optional deployment prefix.

    A prefix (``staging.``) lets several environments, or several test runs, share one
    cluster without reading each other's messages. The unprefixed names above are the
    contract; the prefix is deployment detail and is stripped before tenant lookup.
    """

    def __init__(self, prefix: str = "") -> None:
        if prefix and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", prefix):
            raise TopicError(f"invalid topic prefix {prefix!r}")
        self.prefix = prefix
        self.ingested = prefix + INGESTED
        self.normalized = prefix + NORMALIZED
        self.ingest_dlq = prefix + INGEST_DLQ
        self.normalize_dlq = prefix + NORMALIZE_DLQ
        self.publish_dlq = prefix + PUBLISH_DLQ
        self.dlq_actions = prefix + DLQ_ACTIONS
        self.sis_pattern = re.escape(prefix) + SIS_TOPIC_PATTERN

    def sis(self, tenant: str) -> str:
        """The (prefixed) topic an SIS of ``tenant`` writes to."""
        return self.prefix + sis_topic(tenant)

    def unprefixed(self, topic: str) -> str:
        """``topic`` without this deployment's prefix (as the contract names it)."""
        return topic.removeprefix(self.prefix) if self.prefix else topic
