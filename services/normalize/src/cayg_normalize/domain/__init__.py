"""Normalize's domain: SIS envelopes → :class:`~cayg_shared.schema.Change` lists. Pure.

Stateless and deterministic: the same envelope and tenant profile always give the same
changes, with the same ids. :func:`normalize` returns the changes (possibly none: an
external institution, a deleted institution) or raises :class:`MappingError`.
Decisions per input are documented in :mod:`.ethos` (and its modules), :mod:`.cayg_events`
and :mod:`.inference`.
"""

from __future__ import annotations

from cayg_normalize.domain.cayg_events import (
    ROW_VERSION_STREAM,
    is_cloudevent,
    normalize_backfill,
    normalize_cloudevent,
)
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos import normalize_ethos
from cayg_normalize.domain.inference import (
    DEGREE_ABBREVIATIONS,
    credential_type_hint,
    infer_credential_type,
)
from cayg_shared.envelope import IngestEnvelope, InputFormat
from cayg_shared.schema import Change
from cayg_shared.tenants import TenantProfile


def normalize(envelope: IngestEnvelope, tenant: TenantProfile) -> list[Change]:
    """The changes an ingested SIS message stands for, in the order to apply them."""
    if envelope.tenant != tenant.tenant_id:
        raise MappingError(
            Reason.TENANT_MISMATCH,
            f"the envelope is for {envelope.tenant}, the profile for {tenant.tenant_id}",
            None,
        )
    if envelope.format is InputFormat.ETHOS_CHANGE_NOTIFICATION:
        return normalize_ethos(envelope, tenant)
    if is_cloudevent(envelope):
        return normalize_cloudevent(envelope, tenant)
    if envelope.format is InputFormat.BACKFILL_RECORD:
        return normalize_backfill(envelope, tenant)
    raise MappingError(  # pragma: no cover - every InputFormat is handled above
        Reason.UNSUPPORTED_FORMAT, f"format {envelope.format} is not mapped", None
    )


__all__ = [
    "DEGREE_ABBREVIATIONS",
    "ROW_VERSION_STREAM",
    "MappingError",
    "Reason",
    "credential_type_hint",
    "infer_credential_type",
    "normalize",
]
