"""``persons`` → :class:`LearnerIdentity`: how to address a learner's CLR, nothing more.

* created/replaced → upsert of the identity keyed by the person GUID (what awards refer
  to). Kept: ``credentials`` of the tenant's ``learner_id_types`` in that preference order
  (never SSN, SIN or tax ids), emails with the primary first then school, personal,
  business, others (unusable addresses are skipped), and whether the privacy category is
  ``restricted``. Names, birth date and everything else are not read.
* A person without any usable identifier → ``no-learner-identifier`` (DLQ): publish could
  not address a CLR for them, and an operator should know.
* deleted → ``delete``: publish forgets the identifiers.

Identifiers travel in clear only inside ``cayg.normalized.v1`` messages; publish hashes
them (OB ``IdentityObject``) before they leave cayg.
"""

from __future__ import annotations

import re
from typing import Any, Final

from cayg_normalize.domain.context import MappingContext, build, canonical_id, parse_model
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos.models import Person, PersonEmail
from cayg_shared.schema import Change, EntityType, LearnerIdentifier, LearnerIdentity, Operation

_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_EMAIL_TYPE_ORDER: Final = ("school", "personal", "business")


def _email_rank(email: PersonEmail) -> tuple[int, int]:
    primary = 0 if (email.preference or "").casefold() == "primary" else 1
    kind = (email.type.emailType if email.type else None) or ""
    try:
        type_rank = _EMAIL_TYPE_ORDER.index(kind)
    except ValueError:
        type_rank = len(_EMAIL_TYPE_ORDER)
    return primary, type_rank


def upserted(ctx: MappingContext, resource_id: str, content: dict[str, Any]) -> list[Change]:
    """The learner identity a ``persons`` representation yields."""
    person = parse_model(Person, content, "$.content")
    person_ref = canonical_id(person.id)
    if person_ref != resource_id:
        raise MappingError(
            Reason.INCONSISTENT_ID, "$.content.id differs from $.resource.id", "$.content.id"
        )
    wanted = ctx.tenant.mapping.learner_id_types
    identifiers: list[LearnerIdentifier] = []
    seen: set[tuple[str, str]] = set()
    by_preference = sorted(
        (c for c in person.credentials if c.type in wanted and c.value.strip()),
        key=lambda c: wanted.index(c.type),
    )
    for credential in by_preference:
        marker = (credential.type, credential.value.strip())
        if marker not in seen:
            seen.add(marker)
            identifiers.append(
                build(
                    LearnerIdentifier,
                    "$.content.credentials",
                    type=credential.type,
                    value=credential.value,
                )
            )
    emails: list[str] = []
    for email in sorted(person.emails, key=_email_rank):
        address = email.address.strip().lower()
        if _EMAIL.match(address) and len(address) <= 254 and address not in emails:
            emails.append(address)
    if not identifiers and not emails:
        raise MappingError(
            Reason.NO_LEARNER_IDENTIFIER,
            "the person has no institutional id of the tenant's learner_id_types and no "
            "usable email",
            "$.content.credentials",
        )
    restricted = (
        person.privacyStatus is not None
        and (person.privacyStatus.privacyCategory or "").casefold() == "restricted"
    )
    identity = build(
        LearnerIdentity,
        "$.content",
        person_ref=person_ref,
        institution_ids=tuple(identifiers),
        emails=tuple(emails),
        privacy_restricted=restricted,
    )
    key = ctx.key(EntityType.LEARNER_IDENTITY, person_ref)
    return [ctx.change(Operation.UPSERT, key, identity)]


def deleted(ctx: MappingContext, resource_id: str) -> list[Change]:
    """The SIS removed the person: publish forgets the identifiers."""
    return [ctx.change(Operation.DELETE, ctx.key(EntityType.LEARNER_IDENTITY, resource_id))]
