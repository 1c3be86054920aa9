"""``academic-credentials`` → :class:`CredentialDefinition`.

* created/replaced → upsert of the whole definition. The CTDL type is inferred
  (:mod:`cayg_normalize.domain.inference`); owner and offerer are the tenant's
  institution; language is the tenant default; Ethos has no status, so ``active``.
  ``description`` is optional in Ethos (absent in about 40% of real records): without
  one of at least 15 characters the tenant's ``missing_description`` policy applies — a
  description rendered from its template (``description_generated: true``), or
  ``missing-description`` under ``refuse``.
* deleted → ``delete`` of the definition (publish chooses registry delete or deprecation).
"""

from __future__ import annotations

from typing import Any

from cayg_normalize.domain.context import MappingContext, build, canonical_id, parse_model
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos.models import AcademicCredential
from cayg_normalize.domain.inference import (
    AUDIENCE_LEVEL_FOR,
    UndecidedCredentialType,
    infer_credential_type,
)
from cayg_shared.schema import (
    Change,
    CredentialDefinition,
    CredentialStatus,
    EntityType,
    Operation,
    ob_achievement_type,
)


def upserted(ctx: MappingContext, resource_id: str, content: dict[str, Any]) -> list[Change]:
    """The definition an ``academic-credentials`` representation describes."""
    credential = parse_model(AcademicCredential, content, "$.content")
    source_id = canonical_id(credential.id)
    if source_id != resource_id:
        raise MappingError(
            Reason.INCONSISTENT_ID, "$.content.id differs from $.resource.id", "$.content.id"
        )
    try:
        credential_type, basis = infer_credential_type(
            sis_type=credential.type,
            code=credential.abbreviation,
            title=credential.title,
            mapping=ctx.tenant.mapping,
        )
    except UndecidedCredentialType:
        raise MappingError(
            Reason.UNKNOWN_CREDENTIAL_TYPE,
            f"type {str(credential.type)[:32]!r} with this abbreviation and title has no "
            "known CTDL type; add a credential_type_overrides entry for the tenant",
            "$.content.type",
        ) from None
    ctid, imported = ctx.tenant.definition_ctid(source_id, credential.abbreviation)
    organization = ctx.tenant.organization_ref()
    description, generated = ctx.definition_description(
        credential.description, credential_type, credential.title, "$.content.description"
    )
    definition = build(
        CredentialDefinition,
        "$.content",
        source_id=source_id,
        code=credential.abbreviation,
        ctid=ctid,
        ctid_imported=imported,
        credential_type=credential_type,
        type_basis=basis,
        achievement_type=ob_achievement_type(credential_type),
        name=credential.title,
        description=description,
        description_generated=generated,
        webpage=ctx.tenant.mapping.credential_webpage(credential.abbreviation),
        language=ctx.tenant.mapping.default_language,
        status=CredentialStatus.ACTIVE,
        owned_by=(organization,),
        offered_by=(organization,),
        audience_level=AUDIENCE_LEVEL_FOR.get(credential_type),
    )
    key = ctx.key(EntityType.CREDENTIAL_DEFINITION, source_id)
    return [ctx.change(Operation.UPSERT, key, definition)]


def deleted(ctx: MappingContext, resource_id: str) -> list[Change]:
    """The SIS removed the definition."""
    return [ctx.change(Operation.DELETE, ctx.key(EntityType.CREDENTIAL_DEFINITION, resource_id))]
