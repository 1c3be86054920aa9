"""Ethos change notifications → changes, per resource (see each module's decisions)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cayg_normalize.domain.context import MappingContext, canonical_id, parse_model
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos import awards, credentials, institutions, persons, programs
from cayg_normalize.domain.ethos.models import ChangeNotification
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.schema import Change, SourceVersion
from cayg_shared.tenants import TenantProfile

_MAJOR_VERSION: Final = re.compile(r"\.v(\d+)(?:\.\d+)*\+json")
#: Ethos sequence numbers fit comfortably; longer digit strings are not sequences.
_MAX_SEQUENCE_DIGITS: Final = 18

Upserted = Callable[[MappingContext, str, dict[str, Any], str], list[Change]]
Deleted = Callable[[MappingContext, str], list[Change]]


@dataclass(frozen=True)
class ResourceMapping:
    """How one Ethos resource maps, and which major versions of it are understood."""

    versions: frozenset[int]
    upserted: Upserted
    deleted: Deleted


def _without_operation(
    mapper: Callable[[MappingContext, str, dict[str, Any]], list[Change]],
) -> Upserted:
    def call(ctx: MappingContext, rid: str, content: dict[str, Any], _op: str) -> list[Change]:
        return mapper(ctx, rid, content)

    return call


RESOURCES: Final[dict[str, ResourceMapping]] = {
    "academic-credentials": ResourceMapping(
        frozenset({6}), _without_operation(credentials.upserted), credentials.deleted
    ),
    "student-academic-credentials": ResourceMapping(
        frozenset({1}), awards.upserted, awards.deleted
    ),
    "academic-programs": ResourceMapping(
        frozenset({15}), _without_operation(programs.upserted), programs.deleted
    ),
    "educational-institutions": ResourceMapping(
        frozenset({6}), _without_operation(institutions.upserted), institutions.deleted
    ),
    "persons": ResourceMapping(
        frozenset({12}), _without_operation(persons.upserted), persons.deleted
    ),
}


def source_version(envelope: IngestEnvelope, notification: ChangeNotification) -> SourceVersion:
    """Ethos ordering: notification ids increase per publisher; time is ``published``."""
    message_id = notification.id
    sequence = (
        int(message_id)
        if message_id.isdigit() and len(message_id) <= _MAX_SEQUENCE_DIGITS
        else None
    )
    return SourceVersion(
        stream=f"ethos:{canonical_id(notification.publisher.id).casefold()}",
        sequence=sequence,
        time=envelope.occurred_at or envelope.received_at,
    )


def normalize_ethos(envelope: IngestEnvelope, tenant: TenantProfile) -> list[Change]:
    """The changes an Ethos change notification stands for."""
    notification = parse_model(ChangeNotification, envelope.payload, "$")
    name = notification.resource.name
    mapping = RESOURCES.get(name)
    if mapping is None:
        raise MappingError(
            Reason.UNSUPPORTED_RESOURCE,
            f"Ethos resource {name[:64]!r} is not mapped",
            "$.resource.name",
        )
    version = notification.resource.version
    if version is not None:
        match = _MAJOR_VERSION.search(version)
        if match is None or int(match.group(1)) not in mapping.versions:
            majors = ", ".join(f"v{v}" for v in sorted(mapping.versions))
            raise MappingError(
                Reason.UNSUPPORTED_VERSION,
                f"{name} {version[:80]!r} is not a supported version ({majors})",
                "$.resource.version",
            )
    ctx = MappingContext(envelope, tenant, source_version(envelope, notification))
    resource_id = canonical_id(notification.resource.id)
    if notification.operation == "deleted":
        return mapping.deleted(ctx, resource_id)
    if not notification.content:
        raise MappingError(
            Reason.MISSING_FIELD, f"{notification.operation} carries no content", "$.content"
        )
    return mapping.upserted(ctx, resource_id, notification.content, notification.operation)
