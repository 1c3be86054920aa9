"""The message on ``cayg.normalized.v1``: one change to one entity, in order per entity.

Ordering contract
-----------------
The Kafka key of a change is its entity's :meth:`EntityKey.kafka_key`, so every change of
one entity lands in one partition, in the order normalize produced them. Across
redeliveries, replays and backfills that order is not enough, so each change carries a
:class:`SourceVersion` and publish applies a change only if it is not older than what it
last applied for that entity (see :meth:`SourceVersion.compare`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from cayg_shared.envelope import InputFormat, TenantId
from cayg_shared.ids import derived_id
from cayg_shared.schema._base import REVEAL_LEARNER_IDENTIFIERS, DomainModel, SourceId
from cayg_shared.schema.entities import (
    CredentialAward,
    CredentialDefinition,
    LearnerIdentity,
    Organization,
    Program,
)
from cayg_shared.schema.vocab import AwardStatus, EntityType, Operation

#: Version of the shared schema. Readers accept any ``1.x``: minor versions only add
#: optional fields (checked against golden schema files); a breaking change is ``2.0`` on
#: a new topic.
SCHEMA_VERSION: Final = "1.0"

#: Separator of the parts of a Kafka key: tenant ids and entity types cannot contain it.
_KEY_SEPARATOR: Final = "/"

Entity = Annotated[
    Organization | CredentialDefinition | CredentialAward | LearnerIdentity | Program,
    Field(discriminator="kind"),
]
"""Any entity of the schema, told apart by its ``kind``."""

_KIND_OF: Final[dict[EntityType, str]] = {
    EntityType.ORGANIZATION: "organization",
    EntityType.CREDENTIAL_DEFINITION: "credential-definition",
    EntityType.CREDENTIAL_AWARD: "credential-award",
    EntityType.LEARNER_IDENTITY: "learner-identity",
    EntityType.PROGRAM: "program",
}


class EntityKey(DomainModel):
    """Which entity a change is about: tenant + entity type + the SIS's id of it.

    ``part`` tells apart several entities the SIS keeps in one record (an Ethos
    ``student-academic-credentials`` record awarding a degree *and* a certificate). The
    Kafka key leaves ``part`` out, so a whole record — and a record-level revoke — stays in
    one partition, in order.
    """

    tenant: TenantId
    """The tenant, from the topic the SIS wrote to."""
    entity_type: EntityType
    """The kind of entity."""
    source_id: SourceId
    """The SIS's id of the entity or of the record holding it."""
    part: SourceId | None = None
    """The member of a multi-entity record (for awards: the credential's SIS id)."""

    def kafka_key(self) -> str:
        """``<tenant>/<entity type>/<source id>``: the partitioning key on Kafka."""
        # The entity type is a StrEnum, a str itself: joined without the slow ``.value``.
        return _KEY_SEPARATOR.join((self.tenant, self.entity_type, self.source_id))

    def kafka_key_bytes(self) -> bytes:
        """:meth:`kafka_key` as UTF-8 bytes, ready for a producer."""
        return self.kafka_key().encode("utf-8")

    def record_key(self) -> EntityKey:
        """The key of the whole record this entity belongs to (``part`` dropped)."""
        return self if self.part is None else self.model_copy(update={"part": None})

    def __str__(self) -> str:
        """The Kafka key, plus ``#<part>`` when there is one: unique per entity."""
        key = self.kafka_key()
        return key if self.part is None else f"{key}#{self.part}"

    @classmethod
    def parse_kafka_key(cls, key: str | bytes) -> EntityKey:
        """The record key a Kafka key was made from (the source id may contain ``/``)."""
        text = key.decode("utf-8") if isinstance(key, bytes) else key
        tenant, entity_type, source_id = text.split(_KEY_SEPARATOR, 2)
        return cls(tenant=tenant, entity_type=EntityType(entity_type), source_id=source_id)


class SourceVersion(DomainModel):
    """How new a change is, in the source's own terms.

    * ``stream`` names an ordering domain in which ``sequence`` numbers are comparable:
      ``ethos:<publisher id>`` (Ethos notification ids increase per publisher queue) or
      ``sis-row-version`` (a per-entity row version sent by a cayg CloudEvent or backfill
      record as ``sourceVersion``).
    * ``sequence`` is that number, when the source gives one.
    * ``time`` is when the source says the change happened (Ethos ``published``,
      CloudEvent ``time``, backfill ``recordedAt``), or when ingest received it if the
      source said nothing.

    Publish compares a new change to the last applied one of the same entity with
    :meth:`compare`: sequences when both share a stream, otherwise times.
    """

    stream: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    """The ordering domain of ``sequence``."""
    sequence: int | None = Field(default=None, ge=0)
    """A number that increases with every change in ``stream``, if the source has one."""
    time: AwareDatetime
    """When the change happened at the source."""

    def compare(self, other: SourceVersion) -> int:
        """-1 if ``self`` is older than ``other``, 1 if newer, 0 if neither can be told.

        1. Same ``stream`` and both have a ``sequence``: the larger sequence is newer.
           Clocks of SIS servers drift and Ethos timestamps can tie; sequences cannot.
        2. Otherwise the later ``time`` is newer.
        3. Equal: 0. Publish then treats the change as the same version: it skips it when
           the content is unchanged, and applies it (arrival order, which Kafka keeps
           per entity) when the content differs.
        """
        if (
            self.stream == other.stream
            and self.sequence is not None
            and other.sequence is not None
            and self.sequence != other.sequence
        ):
            return 1 if self.sequence > other.sequence else -1
        if self.time != other.time:
            return 1 if self.time > other.time else -1
        return 0

    def is_newer_than(self, other: SourceVersion) -> bool:
        """True if this version must replace ``other``."""
        return self.compare(other) > 0


class Change(DomainModel):
    """One change to one entity: the message normalize writes to ``cayg.normalized.v1``.

    * ``upsert``: ``entity`` is the entity's whole new state.
    * ``delete``: the SIS no longer has the entity; ``entity`` is None. For definitions,
      publish decides between registry delete and deprecation.
    * ``revoke`` (awards only): withdraw issued credentials. With ``entity_key.part`` set,
      that one award; without, every award of the record **except** the parts listed in
      ``retain_parts`` (an empty tuple revokes them all). ``entity``, if present, is the
      award with status ``revoked``.

    Encode with :meth:`to_kafka_value` (the only encoding that keeps learner identifiers)
    and decode with :meth:`from_kafka_value`; key with :meth:`kafka_key`.
    """

    schema_version: Annotated[str, StringConstraints(pattern=r"^1\.\d+$")] = SCHEMA_VERSION
    """Schema version of the writer; readers accept any ``1.x``."""
    event_id: UUID
    """This change's own id, deterministic: the same input always yields the same id."""
    causation_id: UUID
    """The ingest event id of the SIS message that caused this change."""
    correlation_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    """Ties together everything that follows from one SIS message (or request)."""
    traceparent: str | None = None
    """W3C trace context of the SIS message, when it had one."""
    tenant: TenantId
    """The tenant, as ingest established it from the topic."""
    operation: Operation
    """What to do."""
    entity_key: EntityKey
    """Which entity."""
    entity: Entity | None = None
    """The entity's new state (upsert), the revoked award (revoke), or None."""
    retain_parts: tuple[SourceId, ...] | None = None
    """For a record-level revoke: the parts of the record that stay awarded."""
    source_version: SourceVersion
    """How new the change is; see :meth:`SourceVersion.compare`."""
    source_format: InputFormat
    """The SIS format the change came from."""
    subject_type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """What the SIS message was (Ethos resource name, CloudEvent type)."""

    @property
    def source_time(self) -> datetime:
        """When the change happened at the source (``source_version.time``)."""
        return self.source_version.time

    def kafka_key(self) -> str:
        """The record key: all changes of one entity (record) share a partition."""
        return self.entity_key.kafka_key()

    def to_kafka_value(self) -> bytes:
        """The message value: compact JSON **with** learner identifiers in clear text.

        The only serialization that reveals them; every other dump masks them.
        """
        return self.model_dump_json(
            context={REVEAL_LEARNER_IDENTIFIERS: True},
            exclude_none=False,
        ).encode("utf-8")

    @classmethod
    def from_kafka_value(cls, value: bytes | str) -> Change:
        """Decode a message value written by :meth:`to_kafka_value`."""
        return cls.model_validate_json(value)

    def to_jsonable(self, *, reveal_learner_identifiers: bool = False) -> dict[str, Any]:
        """A JSON-compatible dict (masked unless asked otherwise), e.g. for golden files."""
        context = {REVEAL_LEARNER_IDENTIFIERS: reveal_learner_identifiers}
        result: dict[str, Any] = json.loads(self.model_dump_json(context=context))
        return result

    @staticmethod
    def derive_event_id(causation_id: UUID, entity_key: EntityKey, operation: Operation) -> UUID:
        """The deterministic id of the change ``operation`` on ``entity_key`` caused by one
        ingest event: redelivered input gives the same id, so duplicates are recognisable."""
        return derived_id("change", str(causation_id), str(entity_key), operation.value)

    @model_validator(mode="after")
    def _consistent(self) -> Change:
        key = self.entity_key
        if key.tenant != self.tenant:
            raise ValueError("entity_key.tenant differs from tenant")
        entity = self.entity
        if entity is not None and entity.kind != _KIND_OF[key.entity_type]:
            raise ValueError(f"entity kind {entity.kind!r} does not match {key.entity_type}")
        if self.operation is Operation.UPSERT:
            if entity is None:
                raise ValueError("an upsert carries the entity")
        elif self.operation is Operation.DELETE:
            if entity is not None:
                raise ValueError("a delete carries no entity")
        elif key.entity_type is not EntityType.CREDENTIAL_AWARD:
            raise ValueError("only awards can be revoked")
        elif isinstance(entity, CredentialAward) and entity.status is not AwardStatus.REVOKED:
            raise ValueError("a revoke carries the award with status revoked, or nothing")
        if self.retain_parts is not None and (
            self.operation is not Operation.REVOKE or key.part is not None
        ):
            raise ValueError("retain_parts belongs to a record-level revoke only")
        if isinstance(entity, Organization) and entity.tenant != self.tenant:
            raise ValueError("organization.tenant differs from tenant")
        if entity is not None and _entity_source_id(entity) != key.source_id:
            raise ValueError("the entity's own SIS id differs from entity_key.source_id")
        if (
            isinstance(entity, CredentialAward)
            and key.part is not None
            and entity.definition.source_id != key.part
        ):
            raise ValueError("an award part is keyed by its definition's SIS id")
        return self


def _entity_source_id(
    entity: Organization | CredentialDefinition | CredentialAward | LearnerIdentity | Program,
) -> str:
    if isinstance(entity, CredentialAward):
        return entity.award_id
    if isinstance(entity, LearnerIdentity):
        return entity.person_ref
    return entity.source_id
