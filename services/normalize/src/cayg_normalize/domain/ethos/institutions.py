"""``educational-institutions`` → :class:`Organization` (the tenant's own only).

* ``homeInstitution: home`` → upsert of the tenant's institution: its CTID is the
  tenant's (imported or derived), its webpage the tenant's (Ethos has none), role
  ``issuer``. If this is another tenant's home institution, or the tenant configured
  ``ethos_home_institution_id`` and this is another GUID: ``tenant-mismatch`` (the rule
  every resource naming an institution follows, see :mod:`cayg_shared.tenants`).
* ``external`` → nothing. External institutions are the schools learners came from;
  they have registry records of their own (if any), and minting CTIDs for them would
  create duplicates in a public registry. Events that need them reference their CTIDs.
* deleted → nothing: withdrawing an institution from the registry is an operator decision,
  and a deleted GUID does not say whether it was the home institution.
"""

from __future__ import annotations

from typing import Any

from cayg_normalize.domain.context import MappingContext, build, canonical_id, parse_model
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos.models import EducationalInstitution
from cayg_shared.schema import Change, EntityType, Operation, Organization, OrganizationRole


def upserted(ctx: MappingContext, resource_id: str, content: dict[str, Any]) -> list[Change]:
    """The tenant's organization, if this is its home institution."""
    institution = parse_model(EducationalInstitution, content, "$.content")
    source_id = canonical_id(institution.id)
    if source_id != resource_id:
        raise MappingError(
            Reason.INCONSISTENT_ID, "$.content.id differs from $.resource.id", "$.content.id"
        )
    if institution.homeInstitution != "home":
        return []
    ctx.refuse_other_tenants_institution(
        "its home institution", "$.content.id", source_id=source_id
    )
    configured = ctx.tenant.ethos_home_institution_id
    if configured is not None and canonical_id(configured) != source_id:
        raise MappingError(
            Reason.TENANT_MISMATCH,
            f"the home institution is not the one configured for {ctx.tenant_id}",
            "$.content.id",
        )
    organization = build(
        Organization,
        "$.content",
        tenant=ctx.tenant_id,
        source_id=source_id,
        name=institution.title,
        ctid=ctx.tenant.org_ctid,
        ctid_imported=ctx.tenant.organization_ctid is not None,
        webpage=ctx.tenant.webpage,
        description=institution.description or ctx.tenant.description,
        roles=(OrganizationRole.ISSUER,),
    )
    key = ctx.key(EntityType.ORGANIZATION, source_id)
    return [ctx.change(Operation.UPSERT, key, organization)]


def deleted(ctx: MappingContext, resource_id: str) -> list[Change]:  # noqa: ARG001
    """Nothing (see module docs)."""
    return []
