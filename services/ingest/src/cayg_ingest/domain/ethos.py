"""Ellucian Ethos change notifications (``application/vnd.hedtech.change-notifications``).

``{id, published, publisher{id, applicationName, tenant?}, resource{name, id, version},
operation, contentType, content}``. Ingest checks the envelope, not the resource: the
publisher must be one of the tenant's, the resource one cayg consumes, the operation one
it can apply. ``content`` is mapped (and validated) by normalize.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cayg_ingest.domain.fields import get_object, get_text, get_time, require_identifier
from cayg_ingest.domain.model import Reason, Rejection
from cayg_shared.tenants import TenantProfile, TenantRegistry

#: The Ethos resources cayg consumes.
ETHOS_RESOURCES: Final = frozenset(
    {
        "academic-credentials",
        "student-academic-credentials",
        "academic-programs",
        "educational-institutions",
        "persons",
    },
)
ETHOS_OPERATIONS: Final = frozenset({"created", "replaced", "deleted"})
#: contentType values that mean "the whole resource"; ``patch``/``partial``/``limited``
#: would make a full-state upsert wipe fields, so they are refused.
_FULL_CONTENT: Final = frozenset({"resource-representation"})
#: The ``persons`` fields cayg reads; everything else (names, birth date, addresses,
#: phones…) is dropped at the boundary so it never sits in cayg's topics.
_PERSON_FIELDS: Final = ("id", "credentials", "emails", "privacyStatus")
#: Ethos person credential types that are national identifiers: dropped at the boundary.
_NATIONAL_ID_TYPES: Final = frozenset({"ssn", "sin", "taxidentificationnumber"})


def minimized(document: dict[str, Any]) -> dict[str, Any]:
    """The notification with a ``persons`` representation cut down to what cayg reads.

    Data minimization at the trust boundary: ``cayg.ingested.v1`` is retained and
    replayable, so names, birth dates and national ids (SSN, SIN, tax ids) must not reach
    it. Other resources are returned unchanged.
    """
    resource = document.get("resource")
    content = document.get("content")
    if not isinstance(resource, dict) or resource.get("name") != "persons":
        return document
    if not isinstance(content, dict):
        return document
    kept = {key: content[key] for key in _PERSON_FIELDS if key in content}
    credentials = kept.get("credentials")
    if isinstance(credentials, list):
        kept["credentials"] = [
            c
            for c in credentials
            if not (
                isinstance(c, dict)
                and isinstance(c.get("type"), str)
                and c["type"].casefold() in _NATIONAL_ID_TYPES
            )
        ]
    return {**document, "content": kept}


def looks_like_ethos(document: dict[str, Any]) -> bool:
    """Whether a JSON object is shaped like an Ethos change notification."""
    return "resource" in document and "operation" in document


@dataclass(frozen=True)
class EthosFacts:
    """What ingest learned from a valid notification."""

    message_id: str
    publisher_id: str
    resource_name: str
    resource_id: str
    published: datetime | None


def read_ethos(
    document: dict[str, Any],
    profile: TenantProfile,
    registry: TenantRegistry,
) -> EthosFacts:
    """Check an Ethos notification against the tenant; :class:`Rejection` if unfit."""
    message_id = require_identifier(document, "id", "$.id")
    published = get_time(document, "published", "$.published", default_tz=profile.mapping.zone)
    publisher = get_object(document, "publisher", "$.publisher")
    publisher_id = require_identifier(publisher, "id", "$.publisher.id")
    _check_publisher(publisher, publisher_id, profile, registry)

    resource = get_object(document, "resource", "$.resource")
    name = get_text(resource, "name", "$.resource.name", max_length=128)
    assert name is not None
    if name not in ETHOS_RESOURCES:
        raise Rejection(
            Reason.UNSUPPORTED_RESOURCE,
            f"Ethos resource {name[:64]!r} is not consumed by cayg",
            "$.resource.name",
        )
    resource_id = get_text(resource, "id", "$.resource.id")
    assert resource_id is not None
    get_text(resource, "version", "$.resource.version", required=False)

    operation = get_text(document, "operation", "$.operation", max_length=32)
    if operation not in ETHOS_OPERATIONS:
        raise Rejection(
            Reason.UNSUPPORTED_OPERATION,
            f"Ethos operation {str(operation)[:32]!r} is not created, replaced or deleted",
            "$.operation",
        )
    content_type = get_text(document, "contentType", "$.contentType", required=False)
    if operation == "deleted":
        content = document.get("content")
        if content is not None and not isinstance(content, dict):
            raise Rejection(Reason.INVALID_FIELD, "$.content must be an object", "$.content")
    else:
        if content_type is not None and content_type not in _FULL_CONTENT:
            raise Rejection(
                Reason.UNSUPPORTED_CONTENT_TYPE,
                f"contentType {content_type[:32]!r} is not a full resource representation",
                "$.contentType",
            )
        get_object(document, "content", "$.content")
    return EthosFacts(
        message_id=message_id,
        publisher_id=publisher_id,
        resource_name=name,
        resource_id=resource_id,
        published=published,
    )


def _check_publisher(
    publisher: dict[str, Any],
    publisher_id: str,
    profile: TenantProfile,
    registry: TenantRegistry,
) -> None:
    registered = profile.ethos_publisher(publisher_id)
    if registered is None:
        owner = registry.owner_of_ethos_publisher(publisher_id)
        where = "another tenant" if owner is not None else "no tenant"
        raise Rejection(
            Reason.TENANT_MISMATCH,
            f"Ethos publisher {publisher_id[:64]} belongs to {where}, not {profile.tenant_id}",
            "$.publisher.id",
            tenant=profile.tenant_id,
        )
    name = get_text(publisher, "applicationName", "$.publisher.applicationName", required=False)
    if (
        registered.application_name is not None
        and name is not None
        and name.casefold() != registered.application_name.casefold()
    ):
        raise Rejection(
            Reason.TENANT_MISMATCH,
            "publisher.applicationName differs from the registered publisher's",
            "$.publisher.applicationName",
            tenant=profile.tenant_id,
        )
    ethos_tenant = publisher.get("tenant")
    if ethos_tenant is None or not profile.ethos_tenant_ids:
        return
    if not isinstance(ethos_tenant, dict):
        raise Rejection(
            Reason.INVALID_FIELD, "$.publisher.tenant must be an object", "$.publisher.tenant"
        )
    tenant_id = get_text(ethos_tenant, "id", "$.publisher.tenant.id", required=False)
    if tenant_id is not None and tenant_id.casefold() not in {
        t.casefold() for t in profile.ethos_tenant_ids
    }:
        raise Rejection(
            Reason.TENANT_MISMATCH,
            f"publisher.tenant.id is not an Ethos tenant of {profile.tenant_id}",
            "$.publisher.tenant.id",
            tenant=profile.tenant_id,
        )
