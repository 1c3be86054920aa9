"""Deterministic identifiers.

Replays, redeliveries and backfills must never mint new ids for the same thing, so every
id cayg derives is a UUIDv5 of stable inputs under a project namespace.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

#: The namespace of every cayg UUIDv5 (itself the UUIDv5 of the project URL in the URL namespace).
CAYG_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://cayg-sync.org/ns/v1")


def event_id(tenant: str, source_format: str, source_message_id: str) -> uuid.UUID:
    """The id of an ingested event: the same SIS message always gets the same id
    (``uuid.uuid5(CAYG_NAMESPACE, "event\x1f<tenant>\x1f<format>\x1f<message id>")``)."""
    return derived_id("event", tenant, source_format, source_message_id)


_NAMESPACE_BYTES: Final = CAYG_NAMESPACE.bytes
#: The variant (RFC 4122) and version (5) bits of a UUIDv5, as :func:`uuid.uuid5` sets them.
_V5_CLEAR: Final = ~((0xC000 << 48) | (0xF000 << 64))
_V5_SET: Final = (0x8000 << 48) | (5 << 76)


def derived_id(*parts: str) -> uuid.UUID:
    """A UUIDv5 of ``parts`` joined unambiguously (unit separator).

    Equal to ``uuid.uuid5(CAYG_NAMESPACE, "\x1f".join(parts))``, computed without the
    detour through 16 bytes that ``uuid5`` takes (an id is derived for every change).
    """
    digest = hashlib.sha1(  # noqa: S324 - UUIDv5 is SHA-1 by definition, not for security
        _NAMESPACE_BYTES + "\x1f".join(parts).encode("utf-8")
    ).digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16], "big") & _V5_CLEAR) | _V5_SET)


def ctid(tenant: str, entity_type: str, source_code: str) -> str:
    """A Credential Engine CTID (``ce-`` + lowercase UUID) fixed by tenant, kind and SIS code.

    The same tenant and SIS code always give the same CTID, so republishing updates the
    registry entry in place instead of creating a duplicate.
    """
    return f"ce-{derived_id('ctid', tenant, entity_type, source_code.strip().casefold())}"
