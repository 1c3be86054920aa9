"""What each kind of message in ``cayg_ops.feed.mixed_feed`` must come to: the label of a
message says what it is meant to show, this says where it has to end and why."""

from __future__ import annotations

#: Kinds ingest must refuse, and the reason each deserves.
INGEST_REASONS = {
    "bad:not-json": "not-json",
    "bad:garbage": "not-json",
    "bad:not-object": "not-object",
    "bad:xml": "xml-not-supported",
    "bad:unknown-format": "unknown-format",
    "bad:unsupported-content-type": "unsupported-content-type",
    "bad:too-large": "too-large",
    "bad:spoofed-tenant": "tenant-mismatch",
    "bad:spoofed-publisher": "tenant-mismatch",
    "bad:spoofed-ethos-tenant": "tenant-mismatch",
    "bad:spoofed-source": "tenant-mismatch",
    "bad:spoofed-backfill": "tenant-mismatch",
    "bad:cloudevent-specversion": "unsupported-specversion",
    "bad:cloudevent-no-id": "missing-field",
    "bad:cloudevent-type": "unsupported-type",
    "bad:cloudevent-data": "invalid-field",
    "bad:cloudevent-data-base64": "unsupported-content-type",
    "bad:cloudevent-time": "invalid-field",
    "bad:cloudevent-binary-xml": "unsupported-content-type",
    "bad:cloudevent-batch": "unsupported-content-type",
}
#: Kinds ingest admits and normalize must park, and why.
NORMALIZE_REASONS = {
    "unmappable:missing-field": "missing-field",
    "unmappable:unknown-credential-type": "unknown-credential-type",
    "unmappable:no-learner-identifier": "no-learner-identifier",
    "unmappable:unsupported-version": "unsupported-version",
    "unmappable:invalid-field": "invalid-field",
}
#: Kinds that must become changes (a deleted institution record: none).
MAPPED = frozenset(
    {"organization", "definition", "program", "learner", "award", "retro-award"}
    | {"revocation", "delete"}
)


def kind_of(label: str) -> str:
    """The label of the original message (re-sends are labelled after what they repeat)."""
    for prefix in ("duplicate:", "other-mode:"):
        label = label.removeprefix(prefix)
    return label
