"""Backfill records: rows of historic definitions and awards the operator CLI replays.

The format is :class:`cayg_shared.schema.BackfillRecord`; ``data`` is the data of the
cayg CloudEvent type the row names, validated by normalize.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from cayg_ingest.domain.model import Reason, Rejection
from cayg_shared.schema import BackfillRecord, CaygEventType
from cayg_shared.tenants import TenantProfile

_SUBJECT_FIELD: Final[dict[CaygEventType, str]] = {
    CaygEventType.DEFINITION_UPSERTED: "sourceId",
    CaygEventType.DEFINITION_DELETED: "sourceId",
    CaygEventType.AWARD_ISSUED: "awardId",
    CaygEventType.AWARD_REVOKED: "awardId",
    CaygEventType.ORGANIZATION_UPSERTED: "sourceId",
}


@dataclass(frozen=True)
class BackfillFacts:
    """What ingest learned from a valid backfill record."""

    record: BackfillRecord
    message_id: str
    subject_id: str | None


def json_path(location: tuple[str | int, ...]) -> str:
    """A pydantic error location as a JSON path (``$.data.learner``, ``$.items[2]``)."""
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def read_backfill(document: dict[str, Any], profile: TenantProfile) -> BackfillFacts:
    """Check a backfill record against the tenant."""
    if not profile.backfill_enabled:
        raise Rejection(
            Reason.FORMAT_NOT_ENABLED,
            f"backfill is not enabled for {profile.tenant_id}",
            "$.caygBackfill",
            tenant=profile.tenant_id,
        )
    try:
        record = BackfillRecord.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        reason = Reason.MISSING_FIELD if first["type"] == "missing" else Reason.INVALID_FIELD
        path = json_path(tuple(first["loc"]))
        raise Rejection(reason, f"{path}: {first['msg']}", path) from None
    if record.tenant is not None and record.tenant != profile.tenant_id:
        raise Rejection(
            Reason.TENANT_MISMATCH,
            f"the record was exported for another tenant, not {profile.tenant_id}",
            "$.tenant",
            tenant=profile.tenant_id,
        )
    message_id = f"{record.batch_id}/{record.record_id}"
    if len(message_id) > 256:
        raise Rejection(
            Reason.INVALID_FIELD, "batchId and recordId together exceed 255 characters", "$"
        )
    field = _SUBJECT_FIELD[record.type]
    subject = record.data.get(field)
    subject_id = subject.strip() if isinstance(subject, str) and 0 < len(subject) <= 256 else None
    return BackfillFacts(record=record, message_id=message_id, subject_id=subject_id or None)
