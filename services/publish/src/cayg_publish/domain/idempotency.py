"""Content hashes and idempotency keys.

The content hash is what the ledger compares ("same content → no call"); the idempotency
key is sent as ``Idempotency-Key`` with every request, so a target that deduplicates can
recognise a retry of a request it already applied (a timed-out call that did succeed, or a
delivery resumed after a crash between the call and the ledger write).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any, Final

from cayg_publish.domain.catalog import Version

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_SEPARATOR: Final = "\x1f"


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no insignificant whitespace.

    Two structurally equal documents always give the same bytes, whatever the key order
    they were built in. NaN and infinities are rejected: JSON has no such values.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def content_hash(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def idempotency_key(target: str, entity_key: str, version: Version, content_hash: str) -> str:
    """The key of one delivery: the same target, entity, version and content give the same key.

    A hex sha256 (64 characters): opaque, fixed length, and free of the entity key's own
    characters (which may identify a learner).
    """
    material = _SEPARATOR.join(
        (
            "cayg-publish/v1",
            target,
            entity_key,
            version.stream,
            "" if version.sequence is None else str(version.sequence),
            # One instant, one spelling, whatever the offset the source wrote it in.
            version.time.astimezone(UTC).isoformat(),
            content_hash,
        )
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
