"""Stack as you go inferred from programs: the rule publish applies with its ledger."""

from __future__ import annotations

from typing import Any

import pytest

from cayg_shared.schema import (
    CredentialDefinition,
    CredentialRef,
    CtdlCredentialType,
    OrganizationRef,
    Program,
    ProgramStatus,
    TypeBasis,
    ob_achievement_type,
    stack_rank,
    stacking_links,
)

pytestmark = pytest.mark.unit

T = CtdlCredentialType
OWNER = OrganizationRef(ctid="ce-f14c0753-01b1-54ab-bb17-6e08d520801a")


def _ctid(n: int) -> str:
    return f"ce-00000000-0000-4000-8000-{n:012d}"


def _definition(n: int, credential_type: CtdlCredentialType) -> CredentialDefinition:
    return CredentialDefinition(
        source_id=f"cred-{n}",
        ctid=_ctid(n),
        credential_type=credential_type,
        type_basis=TypeBasis.EXPLICIT,
        achievement_type=ob_achievement_type(credential_type),
        name=f"Credential {n}",
        language="en",
        owned_by=(OWNER,),
    )


def _program(numbers: list[int], **fields: Any) -> Program:
    return Program(
        source_id="prog-1",
        name="Business Analytics (AAS)",
        status=fields.pop("status", ProgramStatus.ACTIVE),
        owned_by=OWNER,
        credentials=tuple(CredentialRef(ctid=_ctid(n)) for n in numbers),
        **fields,
    )


def _index(*definitions: CredentialDefinition) -> dict[str, CredentialDefinition]:
    return {d.ctid: d for d in definitions}


def test_lower_ranked_credentials_of_a_program_stack_into_the_single_top_one() -> None:
    micro = _definition(1, T.MICRO_CREDENTIAL)
    certificate = _definition(2, T.CERTIFICATE)
    degree = _definition(3, T.ASSOCIATE_DEGREE)
    links = stacking_links(_program([3, 1, 2]), _index(micro, certificate, degree))
    assert [(link.part.ctid, link.whole.ctid) for link in links] == [
        (_ctid(1), _ctid(3)),
        (_ctid(2), _ctid(3)),
    ]
    assert links[0].whole.source_id == "cred-3"


def test_no_links_when_the_top_is_shared_inactive_or_unknown() -> None:
    a, b = _definition(1, T.BACHELOR_DEGREE), _definition(2, T.BACHELOR_OF_SCIENCE_DEGREE)
    micro = _definition(3, T.MICRO_CREDENTIAL)
    assert stacking_links(_program([1, 2, 3]), _index(a, b, micro)) == ()
    assert stacking_links(_program([1, 3], status=ProgramStatus.INACTIVE), _index(a, micro)) == ()
    assert stacking_links(_program([1, 9]), _index(a)) == ()
    assert stacking_links(_program([1, 1]), _index(a)) == ()


def test_every_credential_type_has_a_rank_and_degrees_outrank_certificates() -> None:
    for credential_type in CtdlCredentialType:
        assert 1 <= stack_rank(credential_type) <= 7
    assert stack_rank(T.MICRO_CREDENTIAL) < stack_rank(T.CERTIFICATE)
    assert stack_rank(T.CERTIFICATE) < stack_rank(T.ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE)
    assert stack_rank(T.ASSOCIATE_DEGREE) < stack_rank(T.BACHELOR_DEGREE)
    assert stack_rank(T.MASTER_DEGREE) < stack_rank(T.PROFESSIONAL_DOCTORATE)
