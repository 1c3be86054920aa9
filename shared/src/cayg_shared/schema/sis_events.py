"""cayg's own SIS event types, for systems without Ellucian Ethos, and backfill records.

An SIS emits CloudEvents 1.0 on ``sis.events.<tenant>``, in binary mode (``ce_*`` Kafka
headers, ``data`` as the value) or structured mode (``content-type:
application/cloudevents+json``, the whole event as the value). Five types:

====================================================  =====================================
type                                                  data
====================================================  =====================================
``org.caygsync.definition.upserted.v1``               :class:`DefinitionUpsertedData`
``org.caygsync.definition.deleted.v1``                :class:`DefinitionDeletedData`
``org.caygsync.award.issued.v1``                      :class:`AwardIssuedData`
``org.caygsync.award.revoked.v1``                     :class:`AwardRevokedData`
``org.caygsync.organization.upserted.v1``             :class:`OrganizationUpsertedData`
====================================================  =====================================

Data fields are camelCase. Every data object may carry ``sourceVersion``: a number that
increases with every change of that entity in the SIS (a row version). Given, it orders
changes exactly; absent, the event ``time`` does.

A **backfill record** (:class:`BackfillRecord`) wraps the same data for the operator CLI,
which feeds CSV/JSONL files through the same topic and ingest path.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from cayg_shared.envelope import TenantId
from cayg_shared.schema._base import (
    Code,
    Ctid,
    LanguageTag,
    LearnerEmail,
    LearnerSecret,
    Name,
    SourceId,
    Text,
    UniqueTuple,
    WebUrl,
)
from cayg_shared.schema.dates import parse_sis_date, parse_sis_datetime
from cayg_shared.schema.vocab import (
    Approach,
    AudienceLevel,
    CredentialStatus,
    CreditUnit,
    OrganizationRole,
    ResultType,
)

CLOUDEVENTS_SPECVERSION: Final = "1.0"
#: Content type of a structured-mode CloudEvent.
CLOUDEVENTS_JSON: Final = "application/cloudevents+json"
#: The key that marks a JSON object as a backfill record, and its current version.
BACKFILL_MARKER: Final = "caygBackfill"
BACKFILL_VERSION: Final = "1.0"


class CaygEventType(StrEnum):
    """The CloudEvent ``type`` values cayg understands."""

    DEFINITION_UPSERTED = "org.caygsync.definition.upserted.v1"
    """A credential definition was created or changed."""
    DEFINITION_DELETED = "org.caygsync.definition.deleted.v1"
    """A credential definition was removed from the SIS."""
    AWARD_ISSUED = "org.caygsync.award.issued.v1"
    """A learner was awarded a credential (or an award was corrected)."""
    AWARD_REVOKED = "org.caygsync.award.revoked.v1"
    """An award was rescinded."""
    ORGANIZATION_UPSERTED = "org.caygsync.organization.upserted.v1"
    """An organization (issuer, partner, accreditor…) was created or changed."""


def _date(value: Any) -> Any:
    return parse_sis_date(value) if isinstance(value, str) else value


def _datetime(value: Any) -> Any:
    return parse_sis_datetime(value) if isinstance(value, str) else value


def _prefixed(prefix: str) -> Any:
    def add(value: Any) -> Any:
        if isinstance(value, str) and ":" not in value:
            return f"{prefix}:{value}"
        return value

    return add


def _either_spelling(values: list[str], description: str) -> WithJsonSchema:
    """JSON Schema of a concept accepted with or without its scheme prefix."""
    local = [v.split(":", 1)[1] for v in values]
    return WithJsonSchema({"type": "string", "enum": values + local, "description": description})


#: A CTDL credit unit, ``SemesterHour`` or ``creditUnit:SemesterHour``.
CreditUnitTerm = Annotated[
    CreditUnit,
    BeforeValidator(_prefixed("creditUnit")),
    _either_spelling([u.value for u in CreditUnit], "A CTDL creditUnit concept."),
]
#: A CTDL audience level, ``BachelorsDegreeLevel`` or ``audLevel:BachelorsDegreeLevel``.
AudienceLevelTerm = Annotated[
    AudienceLevel,
    BeforeValidator(_prefixed("audLevel")),
    _either_spelling([a.value for a in AudienceLevel], "A CTDL audLevel concept."),
]


#: A calendar date ``YYYY-MM-DD``.
SisDate = Annotated[date, BeforeValidator(_date)]
#: A date-time in ISO 8601; without offset it is read as UTC.
SisDateTime = Annotated[datetime, BeforeValidator(_datetime)]
#: A non-negative row version.
SourceVersionNumber = Annotated[int, Field(ge=0, le=2**63 - 1)]


class SisEventModel(BaseModel):
    """Base of event data: camelCase on the wire, immutable, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )


def _requires_one_of(*groups: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema extra: at least one group of fields present and not null."""
    return {
        "anyOf": [
            {
                "required": list(group),
                "properties": {name: {"not": {"type": "null"}} for name in group},
            }
            for group in groups
        ],
    }


class DefinitionRefData(SisEventModel):
    """A credential: one of the tenant's own by ``sourceId``, or any by ``ctid``."""

    model_config = ConfigDict(json_schema_extra=_requires_one_of(("sourceId",), ("ctid",)))

    source_id: SourceId | None = None
    """The SIS id of one of the tenant's definitions."""
    ctid: Ctid | None = None
    """The registry CTID of any credential (e.g. at another institution)."""
    name: Name | None = None
    """Its name (informational)."""

    @model_validator(mode="after")
    def _identified(self) -> DefinitionRefData:
        if self.source_id is None and self.ctid is None:
            raise ValueError("a credential reference needs sourceId or ctid")
        return self


class OrganizationRefData(SisEventModel):
    """An organization: by ``ctid``, by the ``sourceId`` of an organization this SIS
    published with ``organization.upserted``, or by ``name`` + ``webpage``."""

    model_config = ConfigDict(
        json_schema_extra=_requires_one_of(("ctid",), ("sourceId",), ("name", "webpage"))
    )

    ctid: Ctid | None = None
    """Its registry CTID."""
    source_id: SourceId | None = None
    """The SIS id of an organization sent as ``organization.upserted``."""
    name: Name | None = None
    """Its name."""
    webpage: WebUrl | None = None
    """Its home page."""

    @model_validator(mode="after")
    def _identified(self) -> OrganizationRefData:
        if self.ctid is None and self.source_id is None and (not self.name or not self.webpage):
            raise ValueError("an organization reference needs ctid, sourceId or name+webpage")
        return self


class CreditValueData(SisEventModel):
    """Credit: an exact ``value`` or a ``minValue``..``maxValue`` range, in one unit."""

    model_config = ConfigDict(
        json_schema_extra=_requires_one_of(("value",), ("minValue", "maxValue"))
    )

    value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """The exact amount; omit when giving a range."""
    min_value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Lower bound of a range (with ``maxValue``)."""
    max_value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Upper bound of a range (with ``minValue``)."""
    unit: CreditUnitTerm
    """``SemesterHour``, ``QuarterHour``, ``ClockHour``, ``ContactHour``,
    ``ContinuingEducationUnit`` or ``DegreeCredit`` (``creditUnit:`` prefix optional)."""
    description: Text | None = None
    """Clarification of the credit rules."""


class CompetencyData(SisEventModel):
    """A competency the credential certifies."""

    name: Name
    description: Text | None = None
    ctid: Ctid | None = None
    url: WebUrl | None = None
    framework_name: Name | None = None
    code: Code | None = None


class TransferValueData(SisEventModel):
    """Credit another organization grants for the credential."""

    name: Name
    description: Text | None = None
    ctid: Ctid | None = None
    credit_value: CreditValueData
    accepted_by: OrganizationRefData
    counts_towards: DefinitionRefData | None = None
    start_date: SisDate | None = None
    end_date: SisDate | None = None


class DefinitionUpsertedData(SisEventModel):
    """Data of ``org.caygsync.definition.upserted.v1``: the whole definition."""

    source_id: SourceId
    """The SIS's stable id of the credential; the CTID is derived from it."""
    code: Code | None = None
    """The SIS code or abbreviation (``MC-SQL``)."""
    ctid: Ctid | None = None
    """An existing registry CTID, when the credential was published before cayg."""
    credential_type: Annotated[str, StringConstraints(max_length=80)] | None = None
    """CTDL class (``MicroCredential`` or ``ceterms:MicroCredential``). Omitted: inferred
    from ``code`` and ``name`` like Ethos credentials, then the tenant's default policy."""
    achievement_type: Annotated[str, StringConstraints(pattern=r"^ext:[A-Za-z0-9._-]+$")] | None = (
        None
    )
    """A custom OB achievement type (``ext:…``); omitted, it follows ``credentialType``."""
    name: Name
    description: Text | None = None
    webpage: WebUrl | None = None
    language: LanguageTag | None = None
    """Omitted: the tenant's default language."""
    status: CredentialStatus = CredentialStatus.ACTIVE
    audience_level: AudienceLevelTerm | None = None
    """``AssociatesDegreeLevel``, ``BachelorsDegreeLevel``… (``audLevel:`` prefix optional)."""
    credit_value: CreditValueData | None = None
    competencies: list[CompetencyData] = Field(default_factory=list, max_length=500)
    approaches: UniqueTuple[Approach] = ()
    offered_by: list[OrganizationRefData] = Field(default_factory=list, max_length=50)
    """Omitted: the tenant's organization."""
    has_part: list[DefinitionRefData] = Field(default_factory=list, max_length=500)
    is_part_of: list[DefinitionRefData] = Field(default_factory=list, max_length=500)
    is_preparation_for: list[DefinitionRefData] = Field(default_factory=list, max_length=500)
    is_advanced_standing_for: list[DefinitionRefData] = Field(default_factory=list, max_length=500)
    transfer_values: list[TransferValueData] = Field(default_factory=list, max_length=500)
    partner_organizations: list[OrganizationRefData] = Field(default_factory=list, max_length=50)
    approved_by: list[OrganizationRefData] = Field(default_factory=list, max_length=50)
    accredited_by: list[OrganizationRefData] = Field(default_factory=list, max_length=50)
    source_version: SourceVersionNumber | None = None


class DefinitionDeletedData(SisEventModel):
    """Data of ``org.caygsync.definition.deleted.v1``."""

    source_id: SourceId
    source_version: SourceVersionNumber | None = None


class LearnerData(SisEventModel):
    """The learner, by the SIS's person id and/or identifiers (hashed before publishing,
    never logged). At least one is required; an email lets the CLR host address the
    learner's record."""

    model_config = ConfigDict(
        json_schema_extra=_requires_one_of(("personId",), ("institutionId",), ("email",))
    )

    person_id: SourceId | None = None
    institution_id: LearnerSecret | None = None
    email: LearnerEmail | None = None

    @model_validator(mode="after")
    def _identified(self) -> LearnerData:
        if self.person_id is None and self.institution_id is None and self.email is None:
            raise ValueError("a learner needs personId, institutionId or email")
        return self


class ResultData(SisEventModel):
    """A result achieved with the award."""

    name: Name
    result_type: ResultType
    value: Name


class EvidenceData(SisEventModel):
    """Evidence of the learning behind the award."""

    url: WebUrl | None = None
    name: Name | None = None
    description: Text | None = None
    narrative: Text | None = None
    genre: Name | None = None


class AwardIssuedData(SisEventModel):
    """Data of ``org.caygsync.award.issued.v1``: the whole award."""

    award_id: SourceId
    """The SIS's stable id of the award."""
    learner: LearnerData
    definition: DefinitionRefData
    awarded_on: SisDate
    valid_from: SisDateTime | None = None
    valid_until: SisDate | None = None
    results: list[ResultData] = Field(default_factory=list, max_length=100)
    credits_earned: CreditValueData | None = None
    evidence: list[EvidenceData] = Field(default_factory=list, max_length=100)
    approach: Approach | None = None
    """``retro-award`` for learning credentialed after the fact."""
    supersedes: SourceId | None = None
    """The ``awardId`` of an earlier award this one replaces."""
    source_version: SourceVersionNumber | None = None


class AwardRevokedData(SisEventModel):
    """Data of ``org.caygsync.award.revoked.v1``."""

    award_id: SourceId
    source_version: SourceVersionNumber | None = None


class OrganizationUpsertedData(SisEventModel):
    """Data of ``org.caygsync.organization.upserted.v1``."""

    source_id: SourceId
    ctid: Ctid | None = None
    """An existing registry CTID (never re-minted)."""
    name: Name
    webpage: WebUrl
    description: Text | None = None
    email: Name | None = None
    roles: UniqueTuple[OrganizationRole] = Field(min_length=1)
    source_version: SourceVersionNumber | None = None


EVENT_DATA_MODELS: Final[dict[CaygEventType, type[SisEventModel]]] = {
    CaygEventType.DEFINITION_UPSERTED: DefinitionUpsertedData,
    CaygEventType.DEFINITION_DELETED: DefinitionDeletedData,
    CaygEventType.AWARD_ISSUED: AwardIssuedData,
    CaygEventType.AWARD_REVOKED: AwardRevokedData,
    CaygEventType.ORGANIZATION_UPSERTED: OrganizationUpsertedData,
}


class BackfillRecord(SisEventModel):
    """One row of a backfill file, as the operator CLI writes it to ``sis.events.<tenant>``.

    ``{"caygBackfill": "1.0", "batchId": …, "recordId": …, "type": <cayg event type>,
    "recordedAt": …, "data": {…}}``. ``data`` is exactly the data of that CloudEvent type.
    The event id is derived from ``batchId`` + ``recordId``: re-running a file is
    idempotent; a corrected re-run takes a new ``batchId``.
    """

    cayg_backfill: Literal["1.0"]
    """Marks the object as a backfill record, and its format version."""
    batch_id: Code
    """The backfill run (one file/onboarding step)."""
    record_id: SourceId
    """The row within the batch (line number or the SIS's row id)."""
    type: CaygEventType
    """What the row is, as a cayg event type."""
    recorded_at: SisDateTime
    """When the SIS last changed the row: orders the row against live events, so an
    old backfill row never overwrites a newer live change."""
    tenant: TenantId | None = None
    """The tenant the file was exported for; checked against the topic when given."""
    data: dict[str, JsonValue]
    """The event data, as for the CloudEvent of ``type``."""


def cloudevent_json_schema(event_type: CaygEventType) -> dict[str, Any]:
    """JSON Schema of a structured-mode CloudEvent of ``event_type``, data included.

    In binary mode the same attributes travel as ``ce_<name>`` headers and the value is
    ``data``: validate the value against ``$defs/<Data model>``.
    """
    model = EVENT_DATA_MODELS[event_type]
    data_schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = dict(data_schema.pop("$defs", {}))
    defs[model.__name__] = data_schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://cayg-sync.org/schemas/cloudevents/{event_type.value}.json",
        "title": event_type.value,
        "description": (
            f"A CloudEvents 1.0 event of type {event_type.value} in structured JSON mode. "
            "Binary mode carries the attributes as ce_<name> Kafka headers and data as "
            "the message value."
        ),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": CLOUDEVENTS_SPECVERSION},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "source": {"type": "string", "format": "uri-reference", "minLength": 1},
            "type": {"const": event_type.value},
            "subject": {"type": "string", "maxLength": 256},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"enum": ["application/json"]},
            "dataschema": {"type": "string", "format": "uri"},
            "data": {"$ref": f"#/$defs/{model.__name__}"},
        },
        "patternProperties": {"^[a-z0-9]{1,20}$": {}},
        "additionalProperties": False,
        "$defs": defs,
    }
