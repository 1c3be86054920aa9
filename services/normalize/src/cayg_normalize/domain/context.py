"""What every mapping needs: the envelope, the tenant, the version, and a Change builder."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from cayg_normalize.domain.errors import MappingError, Reason, from_validation_error
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.schema import (
    Change,
    CtdlCredentialType,
    Entity,
    EntityKey,
    EntityType,
    Operation,
    SourceVersion,
    parse_sis_date,
)
from cayg_shared.tenants import REGISTRY_MIN_DESCRIPTION_CHARS, TenantProfile

M = TypeVar("M", bound=BaseModel)


#: A GUID already in the form :func:`canonical_id` gives (most Ethos ids): kept as it is.
_CANONICAL_GUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(value: str) -> str:
    """An SIS id as cayg keys it: GUIDs lower-case and hyphenated, anything else stripped.

    Banner and Colleague do not agree on GUID case; one entity must have one key.
    """
    text = value.strip()
    if _CANONICAL_GUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


@dataclass(frozen=True)
class MappingContext:
    """One envelope being mapped for one tenant."""

    envelope: IngestEnvelope
    tenant: TenantProfile
    version: SourceVersion

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def source_time(self) -> datetime:
        return self.version.time

    def definition_description(
        self, given: str | None, credential_type: CtdlCredentialType, name: str, path: str
    ) -> tuple[str, bool]:
        """A definition's description and whether it was generated.

        The SIS's own when it has at least the registry's 15 characters; else the
        tenant's template over type, name and institution, or ``missing-description``
        under the ``refuse`` policy.
        """
        if given is not None and len(given.strip()) >= REGISTRY_MIN_DESCRIPTION_CHARS:
            return given, False
        generated = self.tenant.mapping.fallback_description(
            credential_type, name, self.tenant.display_name
        )
        if generated is None:
            raise MappingError(
                Reason.MISSING_DESCRIPTION,
                f"{path} is absent or under {REGISTRY_MIN_DESCRIPTION_CHARS} characters and "
                "the tenant's missing_description policy is refuse",
                path,
            )
        return generated, True

    def refuse_other_tenants_institution(
        self, role: str, path: str, *, source_id: str | None = None, ctid: str | None = None
    ) -> None:
        """``tenant-mismatch`` when an institution acting for this tenant's record (``role``)
        is another tenant's home institution; its own and external ones are legal."""
        other = self.tenant.other_tenant_of(source_id=source_id, ctid=ctid)
        if other is not None:
            raise MappingError(
                Reason.TENANT_MISMATCH,
                f"{path} names the home institution of tenant {other} as {role}; a "
                f"record of {self.tenant_id} may only name it as a partner or reference",
                path,
            )

    def key(self, entity_type: EntityType, source_id: str, part: str | None = None) -> EntityKey:
        """The key of an entity of this tenant."""
        return build(
            EntityKey,
            "$",
            tenant=self.tenant_id,
            entity_type=entity_type,
            source_id=source_id,
            part=part,
        )

    def change(
        self,
        operation: Operation,
        key: EntityKey,
        entity: Entity | None = None,
        *,
        retain_parts: tuple[str, ...] | None = None,
    ) -> Change:
        """A change caused by this envelope, with its deterministic id."""
        envelope = self.envelope
        return build(
            Change,
            "$",
            event_id=Change.derive_event_id(envelope.event_id, key, operation),
            causation_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            traceparent=envelope.traceparent,
            tenant=self.tenant_id,
            operation=operation,
            entity_key=key,
            entity=entity,
            retain_parts=retain_parts,
            source_version=self.version,
            source_format=envelope.format,
            subject_type=envelope.subject_type,
        )


def build(model: Callable[..., M], path: str, **fields: Any) -> M:
    """A schema model, or a :class:`MappingError` saying which rule the mapping broke.

    ``path`` is where in the payload the entity came from (the model's own field names
    differ from the SIS's, so the detail names the model field).
    """
    try:
        return model(**fields)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False, include_context=False)[0]
        location = ".".join(str(part) for part in first["loc"]) or "entity"
        title = getattr(model, "__name__", "entity")
        raise MappingError(
            Reason.INVALID_ENTITY,
            f"{title}.{location}: {first['msg']}",
            path,
        ) from None


def parse_model(model: type[M], data: Any, path: str) -> M:
    """Validate SIS data with a (lenient or strict) input model, errors at their JSON path."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_validation_error(error, path) from None


def sis_date(value: str | None, path: str) -> date | None:
    """An SIS date field, or a :class:`MappingError` at ``path``."""
    if value is None:
        return None
    try:
        return parse_sis_date(value)
    except ValueError:
        raise MappingError(Reason.INVALID_FIELD, f"{path} is not a date", path) from None
