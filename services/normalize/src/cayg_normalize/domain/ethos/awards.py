"""``student-academic-credentials`` → :class:`CredentialAward` (one per credential).

Ethos awards have no status. Decisions:

* created/replaced: one ``upsert`` per listed credential, keyed by the record id with
  the credential's id as ``part``. Each award's date is its ``earnedOn``, else the
  record's ``graduatedOn`` (neither: ``missing-field``). A credential listed twice keeps
  its latest ``earnedOn``. ``thesisTitle`` becomes evidence when the record awards
  exactly one credential (it cannot be attributed otherwise).
* replaced additionally emits a record-level ``revoke`` retaining the listed credentials:
  a credential *dropped* from a record was rescinded, and normalize, being stateless,
  cannot know which was dropped — publish revokes whatever it issued for the record
  beyond ``retain_parts``. (A ``replaced`` for a record publish never saw is a create;
  the revoke then finds nothing.)
* deleted → record-level ``revoke`` with nothing retained. An issued verifiable credential
  cannot be un-issued; a deleted award, rescinded or entered in error, must stop
  verifying, which is revocation, not deletion.
* ``retro-award``: an award whose ``earnedOn`` lies ``mapping.retro_award_after_days`` or
  more before the notification was published.
* The learner is the ``student`` person GUID (``LearnerRef.person_ref``); identifiers come
  from ``persons`` changes (:mod:`.persons`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cayg_normalize.domain.context import (
    MappingContext,
    build,
    canonical_id,
    parse_model,
    sis_date,
)
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.ethos.models import StudentAcademicCredential
from cayg_shared.schema import (
    Approach,
    Change,
    CredentialAward,
    CredentialRef,
    EntityType,
    Evidence,
    LearnerRef,
    Operation,
)


def retro_award(ctx: MappingContext, earned: date) -> Approach | None:
    """``retro-award`` when the award was recorded long after it was earned."""
    threshold = ctx.tenant.mapping.retro_award_after_days
    if threshold is None:
        return None
    lag = (ctx.source_time.date() - earned).days
    return Approach.RETRO_AWARD if lag >= threshold else None


def upserted(
    ctx: MappingContext, resource_id: str, content: dict[str, Any], operation: str
) -> list[Change]:
    """The awards a ``student-academic-credentials`` record lists."""
    record = parse_model(StudentAcademicCredential, content, "$.content")
    record_id = canonical_id(record.id)
    if record_id != resource_id:
        raise MappingError(
            Reason.INCONSISTENT_ID, "$.content.id differs from $.resource.id", "$.content.id"
        )
    graduated = sis_date(record.graduatedOn, "$.content.graduatedOn")
    earned_by_credential: dict[str, date] = {}
    for index, entry in enumerate(record.credentials):
        path = f"$.content.credentials[{index}].earnedOn"
        earned = sis_date(entry.earnedOn, path) or graduated
        if earned is None:
            raise MappingError(
                Reason.MISSING_FIELD, f"{path} is required when graduatedOn is absent", path
            )
        credential_id = canonical_id(entry.credential.id)
        previous = earned_by_credential.get(credential_id)
        earned_by_credential[credential_id] = earned if previous is None else max(previous, earned)

    evidence: tuple[Evidence, ...] = ()
    if record.thesisTitle and len(earned_by_credential) == 1:
        evidence = (
            build(
                Evidence,
                "$.content.thesisTitle",
                name="Thesis",
                narrative=record.thesisTitle,
                genre="Thesis",
            ),
        )
    learner = build(LearnerRef, "$.content.student", person_ref=canonical_id(record.student.id))
    changes: list[Change] = []
    for credential_id in sorted(earned_by_credential):
        earned = earned_by_credential[credential_id]
        ctid, _ = ctx.tenant.definition_ctid(credential_id)
        award = build(
            CredentialAward,
            "$.content.credentials",
            award_id=record_id,
            learner=learner,
            definition=CredentialRef(ctid=ctid, source_id=credential_id),
            awarded_on=earned,
            evidence=evidence,
            approach=retro_award(ctx, earned),
        )
        key = ctx.key(EntityType.CREDENTIAL_AWARD, record_id, credential_id)
        changes.append(ctx.change(Operation.UPSERT, key, award))
    if operation == "replaced":
        record_key = ctx.key(EntityType.CREDENTIAL_AWARD, record_id)
        retained = tuple(sorted(earned_by_credential))
        changes.append(ctx.change(Operation.REVOKE, record_key, retain_parts=retained))
    return changes


def deleted(ctx: MappingContext, resource_id: str) -> list[Change]:
    """The SIS deleted the award record: revoke every award it held."""
    key = ctx.key(EntityType.CREDENTIAL_AWARD, resource_id)
    return [ctx.change(Operation.REVOKE, key, retain_parts=())]
