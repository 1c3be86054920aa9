"""Builders of schema objects and a scripted fake target for publish's tests.

Import as ``unit.publish.publish_factories`` (``tests/`` is on the path).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from cayg_publish.domain.catalog import Applied, Rendering, TargetFailure, TargetLimits
from cayg_publish.domain.catalog import Operation as RenderOperation
from cayg_publish.domain.idempotency import content_hash
from cayg_publish.domain.projection import DocumentKind, DocumentRef, Waiting
from cayg_publish.domain.retry import Failure
from cayg_shared.envelope import InputFormat
from cayg_shared.ids import ctid
from cayg_shared.schema import (
    Change,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    CreditValue,
    EntityKey,
    EntityType,
    LearnerIdentifier,
    LearnerIdentity,
    LearnerRef,
    Operation,
    Organization,
    OrganizationRef,
    SourceVersion,
)
from cayg_shared.schema.vocab import (
    CreditUnit,
    CtdlCredentialType,
    OrganizationRole,
    TypeBasis,
    ob_achievement_type,
)

TENANT = "northfield-cc"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORG_CTID = ctid(TENANT, "organization", "northfield")


def version(sequence: int, stream: str = "ethos:publisher-1") -> SourceVersion:
    """Version ``sequence`` of a test stream (times increase with the sequence)."""
    return SourceVersion(stream=stream, sequence=sequence, time=T0 + timedelta(seconds=sequence))


def definition(
    source_id: str = "MC-SQL",
    *,
    name: str = "Microcredential in SQL Databases",
    credential_type: CtdlCredentialType = CtdlCredentialType.MICRO_CREDENTIAL,
    **changes: Any,
) -> CredentialDefinition:
    """A valid credential definition of the test tenant."""
    values: dict[str, Any] = {
        "source_id": source_id,
        "code": source_id,
        "ctid": ctid(TENANT, "credential-definition", source_id),
        "credential_type": credential_type,
        "type_basis": TypeBasis.EXPLICIT,
        "achievement_type": ob_achievement_type(credential_type),
        "name": name,
        "description": f"{name}: what a holder has shown they can do, assessed in practice.",
        "webpage": f"https://www.northfield.example/credentials/{source_id.lower()}",
        "language": "en-US",
        "owned_by": (OrganizationRef(ctid=ORG_CTID),),
        "credit_value": CreditValue(value=3, unit=CreditUnit.SEMESTER_HOUR),
    }
    values.update(changes)
    return CredentialDefinition(**values)


def organization(**changes: Any) -> Organization:
    """The test tenant's issuing organization."""
    values: dict[str, Any] = {
        "tenant": TENANT,
        "source_id": "northfield",
        "name": "Northfield Community College",
        "ctid": ORG_CTID,
        "webpage": "https://www.northfield.example/",
        "description": "A community college serving the Northfield region since 1967.",
        "roles": (OrganizationRole.ISSUER,),
    }
    values.update(changes)
    return Organization(**values)


def learner_identity(person_ref: str = "person-1") -> LearnerIdentity:
    """A learner with one institutional id and one email."""
    return LearnerIdentity(
        person_ref=person_ref,
        institution_ids=(LearnerIdentifier(type="colleaguePersonId", value=SecretStr("0012345")),),
        emails=(SecretStr("ada.learner@student.northfield.example"),),
    )


def award(
    award_id: str = "AW-1",
    *,
    of: CredentialDefinition | None = None,
    person_ref: str = "person-1",
    **changes: Any,
) -> CredentialAward:
    """An award of ``of`` (default: :func:`definition`) to a learner."""
    defined = of or definition()
    values: dict[str, Any] = {
        "award_id": award_id,
        "learner": LearnerRef(person_ref=person_ref),
        "definition": CredentialRef(ctid=defined.ctid, source_id=defined.source_id),
        "awarded_on": date(2026, 1, 15),
    }
    values.update(changes)
    return CredentialAward(**values)


def change(
    entity: Any | None,
    *,
    seq: int = 1,
    operation: Operation = Operation.UPSERT,
    entity_type: EntityType | None = None,
    source_id: str | None = None,
    part: str | None = None,
) -> Change:
    """A change carrying ``entity`` (or a delete of ``entity_type``/``source_id``)."""
    if entity is not None:
        kind = {
            "organization": EntityType.ORGANIZATION,
            "credential-definition": EntityType.CREDENTIAL_DEFINITION,
            "credential-award": EntityType.CREDENTIAL_AWARD,
            "learner-identity": EntityType.LEARNER_IDENTITY,
            "program": EntityType.PROGRAM,
        }[entity.kind]
        entity_type = entity_type or kind
        if source_id is None:
            source_id = (
                entity.award_id
                if isinstance(entity, CredentialAward)
                else entity.person_ref
                if isinstance(entity, LearnerIdentity)
                else entity.source_id
            )
    assert entity_type is not None
    assert source_id is not None
    key = EntityKey(tenant=TENANT, entity_type=entity_type, source_id=source_id, part=part)
    causation = uuid.uuid5(uuid.NAMESPACE_URL, f"test/{key}/{seq}")
    return Change(
        event_id=Change.derive_event_id(causation, key, operation),
        causation_id=causation,
        correlation_id=f"corr-{seq}",
        tenant=TENANT,
        operation=operation,
        entity_key=key,
        entity=entity,
        source_version=version(seq),
        source_format=InputFormat.CLOUDEVENT_STRUCTURED,
        subject_type="org.cayg.test.v1",
    )


Step = Applied | Failure | Callable[[Rendering, str], Applied]


@dataclass
class FakeTarget:
    """A :class:`~cayg_publish.domain.Target` whose answers are scripted, call by call.

    It renders a document from ``contents`` (the test sets what each document key holds
    now, and its revision, which becomes the rendering's version); a key listed in
    ``waiting`` raises :class:`~cayg_publish.domain.projection.Waiting`; a key without content
    renders to nothing. ``script`` is consumed one step per ``apply``: an
    :class:`Applied` is returned, a :class:`Failure` raised; when it runs out, calls
    succeed.
    """

    name: str = "fake"
    script: list[Step] = field(default_factory=list)
    limits: TargetLimits = field(default_factory=TargetLimits)
    kinds: frozenset[DocumentKind] = frozenset(DocumentKind)
    calls: list[tuple[Rendering, str]] = field(default_factory=list)
    contents: dict[str, tuple[int, Any]] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    render_error: BaseException | None = None
    #: Sub-documents every document also renders to (as a definition's transfer values).
    parts: tuple[str, ...] = ()

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        return self.kinds

    def set(self, ref: DocumentRef, revision: int, content: Any) -> None:
        """What ``ref`` holds now (revision ``revision``)."""
        self.contents[ref.key] = (revision, content)

    async def render_document(self, ref: DocumentRef) -> list[Rendering]:
        if self.render_error is not None:
            raise self.render_error
        if ref.key in self.waiting:
            reason, key = self.waiting[ref.key]
            raise Waiting(reason, key)
        if ref.key not in self.contents:
            return []
        revision, content = self.contents[ref.key]
        subject_version = version(revision, stream="fake")
        body: dict[str, Any] = {"document": ref.key, "content": content}
        main = Rendering(
            action="things/upsert",
            operation=RenderOperation.UPSERT,
            body=body,
            remote_id=ref.key,
            content_hash=content_hash(body),
            subject=ref.key,
            subject_version=subject_version,
        )
        extra = [
            Rendering(
                action="parts/upsert",
                operation=RenderOperation.UPSERT,
                body={"part": part, **body},
                remote_id=f"{ref.key}/{part}",
                content_hash=content_hash({"part": part, **body}),
                part=part,
                subject=f"{ref.key}|{part}",
                subject_version=subject_version,
            )
            for part in self.parts
        ]
        return [main, *extra]

    async def apply(self, rendering: Rendering, idempotency_key: str) -> Applied:
        self.calls.append((rendering, idempotency_key))
        if not self.script:
            return Applied(remote_id=rendering.remote_id, remote_url="https://fake/x")
        step = self.script.pop(0)
        if isinstance(step, Failure):
            raise TargetFailure(step)
        if isinstance(step, Applied):
            return step
        return step(rendering, idempotency_key)


def keys_of(calls: Sequence[tuple[Rendering, str]]) -> list[str]:
    """The idempotency keys of recorded calls."""
    return [key for _, key in calls]
