"""cayg CloudEvents and backfill records → changes.

Both carry the data of one :class:`~cayg_shared.schema.CaygEventType`; a backfill record
is the same data replayed from a file. Decisions:

* CTIDs: an event may state the CTID it expects (``ctid``). It must equal the CTID the
  tenant imported or derives for that SIS id — otherwise ``ctid-conflict``: accepting it
  would make other references to the same SIS id point at a different CTID.
* Credential type: ``credentialType`` if it is a concrete CTDL class; omitted, inferred
  from ``code`` and ``name`` like Ethos credentials; undecidable or abstract
  (``Degree``), the tenant policy applies (``unknown-credential-type`` under ``reject``).
* ``retro-award``: explicit ``approach`` always wins. Live CloudEvents are tagged by the
  tenant's ``retro_award_after_days`` like Ethos awards; backfill rows never are, because
  a historic award replayed today is not a retro-award.
* Descriptions: a definition without one of at least 15 characters gets the tenant's
  ``missing_description`` policy (template, ``description_generated: true``; or
  ``missing-description``), exactly like an Ethos credential.
* Institutions: one rule for every format (:mod:`cayg_shared.tenants`). An offerer
  (``offeredBy``) or an ``organization.upserted`` that is another tenant's home
  institution, by ``sourceId`` or ``ctid``, is ``tenant-mismatch``. Partners, approvers,
  accreditors and transfer acceptors may be another tenant's institution: references
  resolve to its CTID. Awards name no institution (the issuer is the tenant).
* ``award.revoked`` → ``revoke`` of that award (entity None: the issued credential is
  known to publish). ``definition.deleted`` → ``delete``.
* Ordering: ``sourceVersion``, when sent, is a sequence in stream ``sis-row-version``;
  time is the event ``time`` (backfill: ``recordedAt``), else the receive time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from pydantic import BaseModel

from cayg_normalize.domain.context import MappingContext, build, canonical_id, parse_model
from cayg_normalize.domain.errors import MappingError, Reason
from cayg_normalize.domain.inference import (
    AUDIENCE_LEVEL_FOR,
    UndecidedCredentialType,
    infer_credential_type,
)
from cayg_shared.envelope import IngestEnvelope, InputFormat
from cayg_shared.schema import (
    EVENT_DATA_MODELS,
    Approach,
    AwardIssuedData,
    AwardRevokedData,
    BackfillRecord,
    CaygEventType,
    Change,
    Competency,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    CreditValue,
    CtdlCredentialType,
    DefinitionDeletedData,
    DefinitionUpsertedData,
    EntityType,
    Evidence,
    LearnerRef,
    Operation,
    Organization,
    OrganizationRef,
    OrganizationUpsertedData,
    Result,
    SourceVersion,
    TransferValue,
    TypeBasis,
    ob_achievement_type,
)
from cayg_shared.schema.sis_events import (
    CreditValueData,
    DefinitionRefData,
    OrganizationRefData,
)
from cayg_shared.tenants import TenantProfile, UnknownTypePolicy

#: Stream of SIS row versions (``sourceVersion``): comparable between CloudEvents and
#: backfill rows of the same entity, which come from the same SIS tables.
ROW_VERSION_STREAM: Final = "sis-row-version"


def normalize_cloudevent(envelope: IngestEnvelope, tenant: TenantProfile) -> list[Change]:
    """The changes a cayg CloudEvent (structured form in the payload) stands for."""
    payload = envelope.payload
    event_type = _event_type(payload.get("type"), "$.type")
    data = payload.get("data")
    return _map(envelope, tenant, event_type, data, "$.data", backfill=False)


def normalize_backfill(envelope: IngestEnvelope, tenant: TenantProfile) -> list[Change]:
    """The changes a backfill record stands for."""
    record = parse_model(BackfillRecord, envelope.payload, "$")
    return _map(envelope, tenant, record.type, record.data, "$.data", backfill=True)


def _event_type(value: Any, path: str) -> CaygEventType:
    try:
        return CaygEventType(value)
    except ValueError:
        raise MappingError(
            Reason.UNSUPPORTED_TYPE, f"{path} is not a cayg event type", path
        ) from None


def _map(
    envelope: IngestEnvelope,
    tenant: TenantProfile,
    event_type: CaygEventType,
    raw: Any,
    path: str,
    *,
    backfill: bool,
) -> list[Change]:
    if not isinstance(raw, dict):
        raise MappingError(Reason.INVALID_FIELD, f"{path} must be an object", path)
    data = parse_model(EVENT_DATA_MODELS[event_type], raw, path)
    sequence = getattr(data, "source_version", None)
    version = SourceVersion(
        stream=ROW_VERSION_STREAM,
        sequence=sequence,
        time=envelope.occurred_at or envelope.received_at,
    )
    ctx = _EventContext(MappingContext(envelope, tenant, version), path, backfill=backfill)
    return ctx.map(data)


class _EventContext:
    """Maps one event's data; holds the context its helpers share."""

    def __init__(self, ctx: MappingContext, path: str, *, backfill: bool) -> None:
        self.ctx = ctx
        self.tenant = ctx.tenant
        self.path = path
        self.backfill = backfill

    def map(self, data: BaseModel) -> list[Change]:
        if isinstance(data, DefinitionUpsertedData):
            return self.definition_upserted(data)
        if isinstance(data, DefinitionDeletedData):
            key = self.ctx.key(EntityType.CREDENTIAL_DEFINITION, data.source_id)
            return [self.ctx.change(Operation.DELETE, key)]
        if isinstance(data, AwardIssuedData):
            return self.award_issued(data)
        if isinstance(data, AwardRevokedData):
            key = self.ctx.key(EntityType.CREDENTIAL_AWARD, data.award_id)
            return [self.ctx.change(Operation.REVOKE, key)]
        if isinstance(data, OrganizationUpsertedData):
            return self.organization_upserted(data)
        raise MappingError(Reason.UNSUPPORTED_TYPE, "no mapping for this event data", self.path)

    # ----------------------------------------------------------------- references

    def definition_ctid(
        self, source_id: str, code: str | None, stated: str | None
    ) -> tuple[str, bool]:
        ctid, imported = self.tenant.definition_ctid(source_id, code)
        if stated is not None and stated != ctid:
            raise MappingError(
                Reason.CTID_CONFLICT,
                "ctid differs from the CTID the tenant imported or derives for sourceId; "
                "import it in the tenant's definition_ctids",
                f"{self.path}.ctid",
            )
        return ctid, imported

    def credential_ref(self, ref: DefinitionRefData) -> CredentialRef:
        if ref.source_id is not None:
            source_id = canonical_id(ref.source_id)
            ctid, _ = self.tenant.definition_ctid(source_id)
            if ref.ctid is not None and ref.ctid != ctid:
                raise MappingError(
                    Reason.CTID_CONFLICT,
                    "a credential reference names a sourceId and a different ctid",
                    self.path,
                )
            return CredentialRef(ctid=ctid, source_id=source_id, name=ref.name)
        assert ref.ctid is not None  # DefinitionRefData requires one of the two
        return CredentialRef(ctid=ref.ctid, name=ref.name)

    def credential_refs(self, refs: Sequence[DefinitionRefData]) -> tuple[CredentialRef, ...]:
        return tuple(self.credential_ref(r) for r in refs)

    def organization_ref(self, ref: OrganizationRefData) -> OrganizationRef:
        if ref.source_id is not None:
            source_id = canonical_id(ref.source_id)
            ctid, registered = self.tenant.organization_ctid_for(source_id)
            if ref.ctid is not None and ref.ctid != ctid:
                raise MappingError(
                    Reason.CTID_CONFLICT,
                    "an organization reference names a sourceId and a different ctid",
                    self.path,
                )
            # A derived CTID names nothing until the organization is published: keep the SIS
            # id so publish can resolve it (the tenant's own and imported CTIDs are real).
            derived = None if registered or ctid == self.tenant.org_ctid else source_id
            return build(
                OrganizationRef,
                self.path,
                ctid=ctid,
                name=ref.name,
                webpage=ref.webpage,
                source_id=derived,
            )
        return build(OrganizationRef, self.path, ctid=ref.ctid, name=ref.name, webpage=ref.webpage)

    def organization_refs(self, refs: Sequence[OrganizationRefData]) -> tuple[OrganizationRef, ...]:
        return tuple(self.organization_ref(r) for r in refs)

    def credit(self, value: CreditValueData | None, path: str) -> CreditValue | None:
        if value is None:
            return None
        return build(
            CreditValue,
            path,
            value=value.value,
            min_value=value.min_value,
            max_value=value.max_value,
            unit=value.unit,
            description=value.description,
        )

    # ----------------------------------------------------------------- definitions

    def credential_type(self, data: DefinitionUpsertedData) -> tuple[CtdlCredentialType, TypeBasis]:
        mapping = self.tenant.mapping
        if data.credential_type is not None:
            try:
                return CtdlCredentialType.parse(data.credential_type), TypeBasis.EXPLICIT
            except ValueError:
                if (
                    mapping.unknown_credential_type is UnknownTypePolicy.USE_DEFAULT
                    and mapping.default_credential_type is not None
                ):
                    return mapping.default_credential_type, TypeBasis.TENANT_DEFAULT
                raise MappingError(
                    Reason.UNKNOWN_CREDENTIAL_TYPE,
                    "credentialType is not a concrete CTDL credential class (generic "
                    "Credential and Degree are not accepted by the registry)",
                    f"{self.path}.credentialType",
                ) from None
        try:
            return infer_credential_type(
                sis_type=None, code=data.code, title=data.name, mapping=mapping
            )
        except UndecidedCredentialType:
            raise MappingError(
                Reason.UNKNOWN_CREDENTIAL_TYPE,
                "credentialType is absent and code and name do not reveal it",
                f"{self.path}.credentialType",
            ) from None

    def definition_upserted(self, data: DefinitionUpsertedData) -> list[Change]:
        source_id = canonical_id(data.source_id)
        ctid, imported = self.definition_ctid(source_id, data.code, data.ctid)
        credential_type, basis = self.credential_type(data)
        organization = self.tenant.organization_ref()
        path = self.path
        description, generated = self.ctx.definition_description(
            data.description, credential_type, data.name, f"{path}.description"
        )
        for index, offerer in enumerate(data.offered_by):
            self.ctx.refuse_other_tenants_institution(
                "offerer",
                f"{path}.offeredBy[{index}]",
                source_id=offerer.source_id,
                ctid=offerer.ctid,
            )
        definition = build(
            CredentialDefinition,
            path,
            source_id=source_id,
            code=data.code,
            ctid=ctid,
            ctid_imported=imported,
            credential_type=credential_type,
            type_basis=basis,
            achievement_type=data.achievement_type or ob_achievement_type(credential_type),
            name=data.name,
            description=description,
            description_generated=generated,
            webpage=data.webpage,
            language=data.language or self.tenant.mapping.default_language,
            status=data.status,
            owned_by=(organization,),
            offered_by=self.organization_refs(data.offered_by) or (organization,),
            audience_level=data.audience_level or AUDIENCE_LEVEL_FOR.get(credential_type),
            credit_value=self.credit(data.credit_value, f"{path}.creditValue"),
            competencies=tuple(
                build(Competency, f"{path}.competencies", **c.model_dump())
                for c in data.competencies
            ),
            approaches=data.approaches,
            has_part=self.credential_refs(data.has_part),
            is_part_of=self.credential_refs(data.is_part_of),
            is_preparation_for=self.credential_refs(data.is_preparation_for),
            is_advanced_standing_for=self.credential_refs(data.is_advanced_standing_for),
            transfer_values=tuple(
                build(
                    TransferValue,
                    f"{path}.transferValues",
                    name=t.name,
                    description=t.description,
                    ctid=t.ctid,
                    credit_value=self.credit(t.credit_value, f"{path}.transferValues"),
                    accepted_by=self.organization_ref(t.accepted_by),
                    counts_towards=self.credential_ref(t.counts_towards)
                    if t.counts_towards
                    else None,
                    start_date=t.start_date,
                    end_date=t.end_date,
                )
                for t in data.transfer_values
            ),
            partner_organizations=self.organization_refs(data.partner_organizations),
            approved_by=self.organization_refs(data.approved_by),
            accredited_by=self.organization_refs(data.accredited_by),
        )
        key = self.ctx.key(EntityType.CREDENTIAL_DEFINITION, source_id)
        return [self.ctx.change(Operation.UPSERT, key, definition)]

    # ----------------------------------------------------------------- awards

    def approach(self, explicit: Approach | None, awarded_on: date) -> Approach | None:
        if explicit is not None or self.backfill:
            return explicit
        threshold = self.tenant.mapping.retro_award_after_days
        if threshold is None:
            return None
        lag = (self.ctx.source_time.date() - awarded_on).days
        return Approach.RETRO_AWARD if lag >= threshold else None

    def award_issued(self, data: AwardIssuedData) -> list[Change]:
        path = self.path
        learner = data.learner
        credits = self.credit(data.credits_earned, f"{path}.creditsEarned")
        award = build(
            CredentialAward,
            path,
            award_id=data.award_id,
            learner=build(
                LearnerRef,
                f"{path}.learner",
                person_ref=canonical_id(learner.person_id) if learner.person_id else None,
                institution_id=learner.institution_id,
                email=learner.email,
            ),
            definition=self.credential_ref(data.definition),
            awarded_on=data.awarded_on,
            valid_from=data.valid_from,
            valid_until=data.valid_until,
            results=tuple(
                build(
                    Result, f"{path}.results", name=r.name, result_type=r.result_type, value=r.value
                )
                for r in data.results
            ),
            credits_earned=credits,
            evidence=tuple(
                build(Evidence, f"{path}.evidence", **e.model_dump()) for e in data.evidence
            ),
            approach=self.approach(data.approach, data.awarded_on),
            supersedes=data.supersedes,
        )
        key = self.ctx.key(EntityType.CREDENTIAL_AWARD, data.award_id)
        return [self.ctx.change(Operation.UPSERT, key, award)]

    # ----------------------------------------------------------------- organizations

    def organization_upserted(self, data: OrganizationUpsertedData) -> list[Change]:
        source_id = canonical_id(data.source_id)
        self.ctx.refuse_other_tenants_institution(
            "the organization described", self.path, source_id=source_id, ctid=data.ctid
        )
        ctid, imported = self.tenant.organization_ctid_for(source_id)
        if data.ctid is not None and data.ctid != ctid:
            raise MappingError(
                Reason.CTID_CONFLICT,
                "ctid differs from the CTID the tenant imported or derives for sourceId; "
                "import it in the tenant's organization_ctids",
                f"{self.path}.ctid",
            )
        organization = build(
            Organization,
            self.path,
            tenant=self.ctx.tenant_id,
            source_id=source_id,
            name=data.name,
            ctid=ctid,
            ctid_imported=imported,
            webpage=data.webpage,
            description=data.description,
            email=data.email,
            roles=data.roles,
        )
        key = self.ctx.key(EntityType.ORGANIZATION, source_id)
        return [self.ctx.change(Operation.UPSERT, key, organization)]


def is_cloudevent(envelope: IngestEnvelope) -> bool:
    """Whether the envelope holds a CloudEvent (either mode)."""
    return envelope.format in (InputFormat.CLOUDEVENT_BINARY, InputFormat.CLOUDEVENT_STRUCTURED)
