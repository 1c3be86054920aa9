"""``academic-programs`` → :class:`Program`.

A program lists the credentials completing it can award. Normalize cannot decide
stacking alone (it sees credential GUIDs, not their types), so it publishes the program
with CTID references and a ``credential_type_hint`` from its code or title; publish
applies :func:`cayg_shared.schema.stacking_links` with the definitions it holds.
The owner is always the tenant's institution (a program authorized by another institution
gets no CTID minted for that institution). A program whose ``authorizing.institution`` is
*another tenant's* home institution is ``tenant-mismatch``, the rule every resource naming
an institution follows (see :mod:`cayg_shared.tenants`); the tenant's own and external
authorizers (a partner university, a state board) are legal. Missing ``status`` is
``inactive`` iff an ``endOn`` is set (Colleague's own rule). Deleted → ``delete`` of the program.
"""

from __future__ import annotations

from typing import Any

from cayg_normalize.domain.context import (
    MappingContext,
    build,
    canonical_id,
    parse_model,
    sis_date,
)
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos.models import AcademicProgram
from cayg_normalize.domain.inference import credential_type_hint
from cayg_shared.schema import (
    Change,
    CredentialRef,
    EntityType,
    Operation,
    Program,
    ProgramStatus,
)


def upserted(ctx: MappingContext, resource_id: str, content: dict[str, Any]) -> list[Change]:
    """The program an ``academic-programs`` representation describes."""
    program = parse_model(AcademicProgram, content, "$.content")
    source_id = canonical_id(program.id)
    if source_id != resource_id:
        raise MappingError(
            Reason.INCONSISTENT_ID, "$.content.id differs from $.resource.id", "$.content.id"
        )
    authorizer = program.authorizing.institution if program.authorizing else None
    if authorizer is not None:
        ctx.refuse_other_tenants_institution(
            "the authorizing institution",
            "$.content.authorizing.institution.id",
            source_id=canonical_id(authorizer.id),
        )
    end_on = sis_date(program.endOn, "$.content.endOn")
    status = program.status or ("inactive" if end_on is not None else "active")
    refs: dict[str, CredentialRef] = {}
    for reference in program.credentials:
        credential_id = canonical_id(reference.id)
        ctid, _ = ctx.tenant.definition_ctid(credential_id)
        refs.setdefault(credential_id, CredentialRef(ctid=ctid, source_id=credential_id))
    entity = build(
        Program,
        "$.content",
        source_id=source_id,
        code=program.code,
        name=program.title,
        description=program.description,
        status=ProgramStatus(status),
        start_on=sis_date(program.startOn, "$.content.startOn"),
        end_on=end_on,
        owned_by=ctx.tenant.organization_ref(),
        credentials=tuple(refs[k] for k in sorted(refs)),
        credential_type_hint=credential_type_hint(program.code, program.title),
    )
    return [ctx.change(Operation.UPSERT, ctx.key(EntityType.PROGRAM, source_id), entity)]


def deleted(ctx: MappingContext, resource_id: str) -> list[Change]:
    """The SIS removed the program."""
    return [ctx.change(Operation.DELETE, ctx.key(EntityType.PROGRAM, resource_id))]
