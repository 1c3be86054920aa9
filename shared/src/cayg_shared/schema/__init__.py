"""The shared incremental-credential schema: what every cayg service says to the next.

Read it as documentation of the domain:

* :mod:`~cayg_shared.schema.entities` — :class:`Organization`,
  :class:`CredentialDefinition`, :class:`CredentialAward`, :class:`LearnerIdentity`,
  :class:`Program` and the value objects they are made of;
* :mod:`~cayg_shared.schema.change` — :class:`Change`, the message on
  ``cayg.normalized.v1``, its :class:`EntityKey` and :class:`SourceVersion` ordering;
* :mod:`~cayg_shared.schema.vocab` — controlled vocabularies in CTDL / OB spelling;
* :mod:`~cayg_shared.schema.sis_events` — cayg's own CloudEvent types and backfill records;
* :mod:`~cayg_shared.schema.stacking` — the stacking rule for programs;
* :mod:`~cayg_shared.schema.dates` — SIS date parsing.

Models are pydantic v2, frozen, refuse unknown fields, and are exported as JSON Schema to
``shared/schemas/`` (``python -m cayg_shared.export_schemas``).
"""

from cayg_shared.schema._base import (
    MASKED,
    REVEAL_LEARNER_IDENTIFIERS,
    Ctid,
    DomainModel,
    LanguageTag,
    LearnerEmail,
    LearnerSecret,
    WebUrl,
    sorted_unique,
)
from cayg_shared.schema.change import (
    SCHEMA_VERSION,
    Change,
    Entity,
    EntityKey,
    SourceVersion,
)
from cayg_shared.schema.dates import parse_sis_date, parse_sis_datetime
from cayg_shared.schema.entities import (
    Competency,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    CreditValue,
    Evidence,
    LearnerIdentifier,
    LearnerIdentity,
    LearnerRef,
    Organization,
    OrganizationRef,
    Program,
    Result,
    TransferValue,
)
from cayg_shared.schema.sis_events import (
    BACKFILL_MARKER,
    BACKFILL_VERSION,
    CLOUDEVENTS_JSON,
    CLOUDEVENTS_SPECVERSION,
    EVENT_DATA_MODELS,
    AwardIssuedData,
    AwardRevokedData,
    BackfillRecord,
    CaygEventType,
    DefinitionDeletedData,
    DefinitionUpsertedData,
    OrganizationUpsertedData,
    SisEventModel,
    cloudevent_json_schema,
)
from cayg_shared.schema.stacking import StackingLink, stack_rank, stacking_links
from cayg_shared.schema.vocab import (
    OB_ACHIEVEMENT_TYPE_FOR,
    OB_ACHIEVEMENT_TYPES,
    Approach,
    AudienceLevel,
    AwardStatus,
    CredentialStatus,
    CreditUnit,
    CtdlCredentialType,
    EntityType,
    Operation,
    OrganizationRole,
    ProgramStatus,
    ResultType,
    TypeBasis,
    ob_achievement_type,
)

__all__ = [
    "BACKFILL_MARKER",
    "BACKFILL_VERSION",
    "CLOUDEVENTS_JSON",
    "CLOUDEVENTS_SPECVERSION",
    "EVENT_DATA_MODELS",
    "MASKED",
    "OB_ACHIEVEMENT_TYPES",
    "OB_ACHIEVEMENT_TYPE_FOR",
    "REVEAL_LEARNER_IDENTIFIERS",
    "SCHEMA_VERSION",
    "Approach",
    "AudienceLevel",
    "AwardIssuedData",
    "AwardRevokedData",
    "AwardStatus",
    "BackfillRecord",
    "CaygEventType",
    "Change",
    "Competency",
    "CredentialAward",
    "CredentialDefinition",
    "CredentialRef",
    "CredentialStatus",
    "CreditUnit",
    "CreditValue",
    "CtdlCredentialType",
    "Ctid",
    "DefinitionDeletedData",
    "DefinitionUpsertedData",
    "DomainModel",
    "Entity",
    "EntityKey",
    "EntityType",
    "Evidence",
    "LanguageTag",
    "LearnerEmail",
    "LearnerIdentifier",
    "LearnerIdentity",
    "LearnerRef",
    "LearnerSecret",
    "Operation",
    "Organization",
    "OrganizationRef",
    "OrganizationRole",
    "OrganizationUpsertedData",
    "Program",
    "ProgramStatus",
    "Result",
    "ResultType",
    "SisEventModel",
    "SourceVersion",
    "StackingLink",
    "TransferValue",
    "TypeBasis",
    "WebUrl",
    "cloudevent_json_schema",
    "ob_achievement_type",
    "parse_sis_date",
    "parse_sis_datetime",
    "sorted_unique",
    "stack_rank",
    "stacking_links",
]
