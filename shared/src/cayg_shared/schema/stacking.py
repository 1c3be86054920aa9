"""Stack as you go, inferred: which credentials of a program stack into which.

Ethos has no stacking link. Its nearest signal is an academic program listing several
credentials (a microcredential and a certificate on the way to an AAS). The rule:

1. Rank each listed definition by its credential type: badge/microcredential (1) <
   certificate, certification, license, diploma (2) < associate (3) < bachelor (4) <
   master (5) < specialist (6) < doctoral (7).
2. The single highest-ranked definition is the *whole*; every lower-ranked one is a
   *part* of it (whole ``hasPart`` part, part ``isPartOf`` whole).
3. No links when the program is inactive, when fewer than two listed definitions are
   known, or when the top rank is shared (two degrees on one program: nothing to infer).

Normalize is stateless and sees only the program's credential ids, so the rule runs where
the definitions are known: in publish, with its ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cayg_shared.schema._base import DomainModel
from cayg_shared.schema.entities import CredentialDefinition, CredentialRef, Program
from cayg_shared.schema.vocab import CtdlCredentialType, ProgramStatus

_T = CtdlCredentialType
_RANKS: Final[dict[int, frozenset[CtdlCredentialType]]] = {
    1: frozenset({_T.BADGE, _T.DIGITAL_BADGE, _T.OPEN_BADGE, _T.MICRO_CREDENTIAL}),
    2: frozenset(
        {
            _T.CERTIFICATE,
            _T.APPRENTICESHIP_CERTIFICATE,
            _T.JOURNEYMAN_CERTIFICATE,
            _T.MASTER_CERTIFICATE,
            _T.CERTIFICATE_OF_COMPLETION,
            _T.CERTIFICATION,
            _T.LICENSE,
            _T.QUALITY_ASSURANCE_CREDENTIAL,
            _T.DIPLOMA,
            _T.GENERAL_EDUCATION_DEVELOPMENT,
            _T.SECONDARY_SCHOOL_DIPLOMA,
        },
    ),
    3: frozenset(
        {
            _T.ASSOCIATE_DEGREE,
            _T.ASSOCIATE_OF_APPLIED_ARTS_DEGREE,
            _T.ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE,
            _T.ASSOCIATE_OF_ARTS_DEGREE,
            _T.ASSOCIATE_OF_SCIENCE_DEGREE,
        },
    ),
    4: frozenset({_T.BACHELOR_DEGREE, _T.BACHELOR_OF_ARTS_DEGREE, _T.BACHELOR_OF_SCIENCE_DEGREE}),
    5: frozenset({_T.MASTER_DEGREE, _T.MASTER_OF_ARTS_DEGREE, _T.MASTER_OF_SCIENCE_DEGREE}),
    6: frozenset({_T.SPECIALIST_DEGREE}),
    7: frozenset({_T.DOCTORAL_DEGREE, _T.PROFESSIONAL_DOCTORATE, _T.RESEARCH_DOCTORATE}),
}
_RANK_OF: Final[dict[CtdlCredentialType, int]] = {
    member: rank for rank, members in _RANKS.items() for member in members
}


def stack_rank(credential_type: CtdlCredentialType) -> int:
    """How far up a stack a credential type sits (1 = smallest)."""
    return _RANK_OF[credential_type]


class StackingLink(DomainModel):
    """``part`` stacks into ``whole``: whole ``hasPart`` part, part ``isPartOf`` whole."""

    part: CredentialRef
    """The smaller credential."""
    whole: CredentialRef
    """The credential it stacks into."""


def stacking_links(
    program: Program,
    definitions: Mapping[str, CredentialDefinition],
) -> tuple[StackingLink, ...]:
    """The stacking links a program implies, given its definitions keyed by CTID."""
    if program.status is not ProgramStatus.ACTIVE:
        return ()
    seen: set[str] = set()
    known: list[CredentialDefinition] = []
    for ref in program.credentials:
        definition = definitions.get(ref.ctid)
        if definition is not None and definition.ctid not in seen:
            seen.add(definition.ctid)
            known.append(definition)
    if len(known) < 2:
        return ()
    top = max(stack_rank(d.credential_type) for d in known)
    wholes = [d for d in known if stack_rank(d.credential_type) == top]
    if len(wholes) != 1:
        return ()
    whole = wholes[0].ref()
    parts = sorted(
        (d for d in known if stack_rank(d.credential_type) < top),
        key=lambda d: d.ctid,
    )
    return tuple(StackingLink(part=d.ref(), whole=whole) for d in parts)
