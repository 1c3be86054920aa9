"""The entities of the incremental-credential schema.

* :class:`Organization` — who issues, partners, accredits or approves.
* :class:`CredentialDefinition` — a credential an organization offers (CTDL credential,
  OB ``Achievement``), with the Credential As You Go approaches and its links to others.
* :class:`CredentialAward` — one credential awarded to one learner (OB
  ``AchievementCredential``, an entry of the learner's CLR).
* :class:`LearnerIdentity` — the identifiers that address a learner's CLR (from Ethos
  ``persons``); never logged, hashed by publish.
* :class:`Program` — an SIS academic program and the credentials it can award; the only
  stacking signal Ethos gives (see :func:`cayg_shared.schema.stacking_links`).

Every entity carries ``kind`` so that a :class:`~cayg_shared.schema.Change` can hold any of
them and a reader knows which it got.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from cayg_shared.envelope import TenantId
from cayg_shared.schema._base import (
    Code,
    Ctid,
    DomainModel,
    LanguageTag,
    LearnerEmail,
    LearnerSecret,
    Name,
    SourceId,
    Text,
    UniqueTuple,
    WebUrl,
)
from cayg_shared.schema.vocab import (
    OB_ACHIEVEMENT_TYPE_FOR,
    OB_ACHIEVEMENT_TYPES,
    Approach,
    AudienceLevel,
    AwardStatus,
    CredentialStatus,
    CreditUnit,
    CtdlCredentialType,
    OrganizationRole,
    ProgramStatus,
    ResultType,
    TypeBasis,
)

# --------------------------------------------------------------------------- references


class OrganizationRef(DomainModel):
    """A reference to an organization: by CTID when it is in the registry, else by name.

    CTDL allows an organization that is not (yet) in the registry to be described inline
    by name and webpage; the registry then stores it as a blank node.
    """

    ctid: Ctid | None = None
    """The organization's CTID in the Credential Registry."""
    name: Name | None = None
    """Its name; required when there is no CTID."""
    webpage: WebUrl | None = None
    """Its home page (CTDL ``subjectWebpage``); required when there is no CTID."""
    source_id: SourceId | None = None
    """The SIS id the ``ctid`` was derived from, when the organization is not known to be
    registered (not the tenant's institution, no imported CTID). Such a CTID exists only
    once the organization is published; publish resolves the reference from the
    organization records it holds (inline by name and webpage) instead."""

    @model_validator(mode="after")
    def _identified(self) -> OrganizationRef:
        if self.ctid is None and (self.name is None or self.webpage is None):
            raise ValueError("an organization without a CTID needs a name and a webpage")
        return self


class CredentialRef(DomainModel):
    """A reference to a credential definition, by CTID.

    CTIDs of the tenant's own definitions are derived deterministically from the SIS id,
    so a reference can be made before the referenced definition has been published.
    """

    ctid: Ctid
    """The referenced credential's CTID."""
    source_id: SourceId | None = None
    """The SIS id of the referenced definition, when it belongs to the same tenant."""
    name: Name | None = None
    """Its name, when known (informational)."""


# --------------------------------------------------------------------------- organization


class Organization(DomainModel):
    """An organization that issues, co-designs, accredits or approves credentials.

    Maps to ``ceterms:CredentialOrganization`` (``ceterms:QACredentialOrganization`` for
    accreditors) and to the OB 3.0 / CLR ``Profile`` of an issuer.
    """

    kind: Literal["organization"] = "organization"
    tenant: TenantId
    """The tenant whose SIS described this organization."""
    source_id: SourceId
    """The SIS's id of the organization (Ethos ``educational-institutions`` GUID, code)."""
    name: Name
    """Its official name."""
    ctid: Ctid
    """Its CTID: imported from the registry when it was published before, else derived."""
    ctid_imported: bool = False
    """True when ``ctid`` is an existing registry CTID imported via tenant configuration
    (never re-minted); false when cayg derived it from tenant and SIS id."""
    webpage: WebUrl
    """Its home page (CTDL ``subjectWebpage``, required by the registry)."""
    description: Text | None = None
    """What the organization is and does."""
    email: Name | None = None
    """A public contact address of the organization (not a person's)."""
    roles: UniqueTuple[OrganizationRole] = Field(min_length=1)
    """What the organization is to the tenant's credentials; at least one role."""

    @property
    def ctdl_type(self) -> str:
        """The CTDL class: ``QACredentialOrganization`` for accreditors."""
        if OrganizationRole.ACCREDITOR in self.roles:
            return "ceterms:QACredentialOrganization"
        return "ceterms:CredentialOrganization"

    def ref(self) -> OrganizationRef:
        """A reference to this organization."""
        return OrganizationRef(ctid=self.ctid, name=self.name, webpage=self.webpage)


# --------------------------------------------------------------------------- definition


class CreditValue(DomainModel):
    """An amount of academic credit, with CTDL ``ceterms:ValueProfile`` semantics.

    Either an exact ``value``, or a range ``min_value``..``max_value`` (both given), in
    one ``unit`` — e.g. 12 ``creditUnit:SemesterHour``, or 3 to 6 ``ContinuingEducationUnit``.
    """

    value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """The exact amount (CTDL ``schema:value``)."""
    min_value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Lower bound of a range (CTDL ``schema:minValue``)."""
    max_value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Upper bound of a range (CTDL ``schema:maxValue``)."""
    unit: CreditUnit
    """The kind of credit (CTDL ``ceterms:creditUnitType``)."""
    description: Text | None = None
    """Clarification of the credit rules, if any."""

    @model_validator(mode="after")
    def _value_or_range(self) -> CreditValue:
        if self.value is not None:
            if self.min_value is not None or self.max_value is not None:
                raise ValueError("give either value or min_value/max_value, not both")
        elif self.min_value is None or self.max_value is None:
            raise ValueError("give value, or both min_value and max_value")
        elif self.min_value > self.max_value:
            raise ValueError("min_value must not exceed max_value")
        return self


class Competency(DomainModel):
    """A competency the credential certifies (CTDL ``ceasn:Competency``; OB ``Alignment``)."""

    name: Name
    """The competency statement or its short name (OB ``targetName``)."""
    description: Text | None = None
    """Longer statement of the competency."""
    ctid: Ctid | None = None
    """Its CTID when the competency is published in the registry."""
    url: WebUrl | None = None
    """Where the competency is described (OB ``targetUrl``)."""
    framework_name: Name | None = None
    """The framework it belongs to (OB ``targetFramework``)."""
    code: Code | None = None
    """Its code in that framework (OB ``targetCode``)."""


class TransferValue(DomainModel):
    """Credit a receiving organization grants for this credential (CTDL
    ``ceterms:TransferValueProfile``): the heart of *transfer as you go*."""

    name: Name
    """A title, e.g. 'Transfer credit toward BS Business Analytics'."""
    description: Text | None = None
    """Conditions and details."""
    ctid: Ctid | None = None
    """The transfer value profile's own CTID, when it is published separately."""
    credit_value: CreditValue
    """How much credit is granted (CTDL ``ceterms:transferValue``)."""
    accepted_by: OrganizationRef
    """The organization that grants the credit (owner of the profile)."""
    counts_towards: CredentialRef | None = None
    """The credential the credit counts towards (CTDL ``ceterms:transferValueFor``)."""
    start_date: date | None = None
    """First day the agreement applies."""
    end_date: date | None = None
    """Last day the agreement applies."""

    @model_validator(mode="after")
    def _dates(self) -> TransferValue:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class CredentialDefinition(DomainModel):
    """A credential an organization offers: what the registry describes and what each
    award's OB ``Achievement`` is.

    ``ctid`` is fixed by tenant and SIS id (:func:`cayg_shared.ids.ctid`) unless the tenant
    imported an existing registry CTID, so republishing updates the registry in place.
    """

    kind: Literal["credential-definition"] = "credential-definition"
    source_id: SourceId
    """The SIS's id of the definition (Ethos ``academic-credentials`` GUID or SIS code)."""
    code: Code | None = None
    """The SIS code or abbreviation (``AAS``, ``MC-SQL``), shown as OB ``humanCode``."""
    ctid: Ctid
    """The registry CTID."""
    ctid_imported: bool = False
    """True when ``ctid`` was imported from the registry rather than derived."""
    credential_type: CtdlCredentialType
    """The concrete CTDL class (never the abstract ``Credential`` or ``Degree``)."""
    type_basis: TypeBasis
    """How ``credential_type`` was decided (explicit, inferred, tenant default…)."""
    achievement_type: str
    """The OB 3.0 ``achievementType``: the term matching ``credential_type`` or ``ext:…``."""
    name: Name
    """The credential's name ('Associate of Applied Science in Business Analytics')."""
    description: Text | None = None
    """What the credential certifies. The registry wants at least 15 characters."""
    description_generated: bool = False
    """True when the SIS sent no usable description and ``description`` was rendered
    from the tenant's ``description_template`` (type, name and institution)."""
    webpage: WebUrl | None = None
    """A page describing the credential (CTDL ``subjectWebpage``)."""
    language: LanguageTag
    """Language of name and description (CTDL ``inLanguage``, OB ``inLanguage``)."""
    status: CredentialStatus = CredentialStatus.ACTIVE
    """Lifecycle status (CTDL ``credentialStatusType``)."""
    owned_by: tuple[OrganizationRef, ...] = Field(min_length=1)
    """Who owns the credential (CTDL ``ownedBy``); the issuer first."""
    offered_by: tuple[OrganizationRef, ...] = ()
    """Who offers it (CTDL ``offeredBy``); empty means the owners."""
    audience_level: AudienceLevel | None = None
    """The educational level it is intended for (CTDL ``audienceLevelType``)."""
    credit_value: CreditValue | None = None
    """Credit the credential carries (CTDL ``creditValue``, OB ``creditsAvailable``)."""
    competencies: tuple[Competency, ...] = ()
    """What a holder can do (CTDL ``requires``/competency links; OB ``alignment``)."""
    approaches: UniqueTuple[Approach] = ()
    """The Credential As You Go approaches the credential is designed for."""
    has_part: tuple[CredentialRef, ...] = ()
    """Credentials that stack into this one (CTDL ``hasPart``)."""
    is_part_of: tuple[CredentialRef, ...] = ()
    """Credentials this one stacks into (CTDL ``isPartOf``)."""
    is_preparation_for: tuple[CredentialRef, ...] = ()
    """Credentials this one prepares for (CTDL ``isPreparationFor``)."""
    is_advanced_standing_for: tuple[CredentialRef, ...] = ()
    """Credentials where this one earns advanced standing (CTDL ``isAdvancedStandingFor``)."""
    transfer_values: tuple[TransferValue, ...] = ()
    """Credit receiving organizations grant for it (CTDL ``TransferValueProfile``)."""
    partner_organizations: tuple[OrganizationRef, ...] = ()
    """Industry partners that co-designed or recognise it (*partner as you go*)."""
    approved_by: tuple[OrganizationRef, ...] = ()
    """Organizations that approve it (CTDL ``approvedBy``)."""
    accredited_by: tuple[OrganizationRef, ...] = ()
    """Organizations that accredit it (CTDL ``accreditedBy``)."""

    @model_validator(mode="after")
    def _consistent(self) -> CredentialDefinition:
        ach = self.achievement_type
        if not ach.startswith("ext:") and ach not in OB_ACHIEVEMENT_TYPES:
            raise ValueError("achievement_type is not an OB 3.0 achievementType")
        expected = OB_ACHIEVEMENT_TYPE_FOR[self.credential_type]
        if not ach.startswith("ext:") and ach != expected:
            raise ValueError(
                f"achievement_type {ach!r} does not match {self.credential_type.value} "
                f"(expected {expected!r} or an ext: type)",
            )
        links = (
            *self.has_part,
            *self.is_part_of,
            *self.is_preparation_for,
            *self.is_advanced_standing_for,
        )
        if any(link.ctid == self.ctid for link in links):
            raise ValueError("a credential cannot link to itself")
        return self

    def ref(self) -> CredentialRef:
        """A reference to this definition."""
        return CredentialRef(ctid=self.ctid, source_id=self.source_id, name=self.name)


# --------------------------------------------------------------------------- learners


class LearnerRef(DomainModel):
    """Who received an award: an SIS person reference and/or identifiers to be hashed.

    ``person_ref`` is the SIS's opaque person id (the Ethos ``persons`` GUID): publish
    resolves it to a :class:`LearnerIdentity`. Events from systems without that resource
    carry the identifiers inline instead. At least one of the three is present.
    """

    person_ref: SourceId | None = None
    """The SIS's opaque person id (not itself a learner identifier)."""
    institution_id: LearnerSecret | None = None
    """The learner's institutional id (student number). Secret: never logged."""
    email: LearnerEmail | None = None
    """The learner's email address. Secret: never logged."""

    @model_validator(mode="after")
    def _some_identifier(self) -> LearnerRef:
        if self.person_ref is None and self.institution_id is None and self.email is None:
            raise ValueError("a learner needs a person_ref, an institution_id or an email")
        return self


class LearnerIdentifier(DomainModel):
    """One institutional identifier of a learner, with the SIS's name for its kind."""

    type: Code
    """The SIS's identifier type (``bannerId``, ``colleaguePersonId``…)."""
    value: LearnerSecret
    """The identifier. Secret: never logged."""


class LearnerIdentity(DomainModel):
    """What identifies a learner to a CLR host: from Ethos ``persons``, nothing more.

    Names, birth dates and national ids are deliberately absent (data minimization).
    publish stores this per ``person_ref`` and hashes the identifiers (OB ``IdentityObject``
    with ``hashed: true``) when it addresses the learner's CLR.
    """

    kind: Literal["learner-identity"] = "learner-identity"
    person_ref: SourceId
    """The SIS's opaque person id that awards refer to."""
    institution_ids: tuple[LearnerIdentifier, ...] = ()
    """Institutional identifiers, in the tenant's order of preference."""
    emails: tuple[LearnerEmail, ...] = ()
    """Email addresses, the preferred (primary) first."""
    privacy_restricted: bool = False
    """The SIS marks the person's directory information as restricted (FERPA)."""

    @model_validator(mode="after")
    def _some_identifier(self) -> LearnerIdentity:
        if not self.institution_ids and not self.emails:
            raise ValueError("a learner identity needs an institutional id or an email")
        return self


# --------------------------------------------------------------------------- award


class Result(DomainModel):
    """A result achieved with the award (OB ``Result`` with its ``ResultDescription``)."""

    name: Name
    """What was measured ('Cumulative GPA', 'Honors')."""
    result_type: ResultType
    """The kind of result (OB ``resultType``)."""
    value: Name
    """The value achieved ('3.84', 'Magna Cum Laude')."""


class Evidence(DomainModel):
    """Evidence of the learning behind an award (OB ``Evidence``)."""

    url: WebUrl | None = None
    """A page presenting the evidence (OB ``id``)."""
    name: Name | None = None
    """A title for it."""
    description: Text | None = None
    """A short description."""
    narrative: Text | None = None
    """How the learner met the criteria, in prose."""
    genre: Name | None = None
    """The kind of evidence ('Thesis', 'Portfolio', 'Prior learning assessment')."""

    @model_validator(mode="after")
    def _not_empty(self) -> Evidence:
        if self.url is None and self.narrative is None and self.description is None:
            raise ValueError("evidence needs a url, a description or a narrative")
        return self


class CredentialAward(DomainModel):
    """One credential awarded to one learner: an OB ``AchievementCredential`` and an entry
    of the learner's CLR.

    Its entity key is the SIS's award record; an Ethos record naming several credentials
    yields one award per credential, told apart by ``EntityKey.part``.
    """

    kind: Literal["credential-award"] = "credential-award"
    award_id: SourceId
    """The SIS's id of the award record."""
    learner: LearnerRef
    """Who received it."""
    definition: CredentialRef
    """Which credential was awarded."""
    awarded_on: date
    """The date the learner earned it (Ethos ``earnedOn``)."""
    valid_from: AwareDatetime | None = None
    """When the credential becomes valid, if not the award date (OB ``validFrom``)."""
    valid_until: date | None = None
    """Last day it is valid, for credentials that expire (OB ``validUntil``)."""
    results: tuple[Result, ...] = ()
    """Grades, GPA, honours achieved with it."""
    credits_earned: CreditValue | None = None
    """Credit earned (OB ``creditsEarned``); an exact ``value``."""
    evidence: tuple[Evidence, ...] = ()
    """Evidence of the learning."""
    status: AwardStatus = AwardStatus.AWARDED
    """Awarded, revoked or superseded."""
    approach: Approach | None = None
    """The approach the award exemplifies, notably ``retro-award``."""
    supersedes: SourceId | None = None
    """The ``award_id`` of an earlier award this one replaces."""
    revocation_reason: Text | None = None
    """Why it was revoked, for the learner and verifiers (no personal data)."""

    @model_validator(mode="after")
    def _consistent(self) -> CredentialAward:
        if self.valid_until is not None and self.valid_until < self.awarded_on:
            raise ValueError("valid_until is before awarded_on")
        if self.credits_earned is not None and self.credits_earned.value is None:
            raise ValueError("credits_earned must be an exact value, not a range")
        if self.revocation_reason is not None and self.status is not AwardStatus.REVOKED:
            raise ValueError("revocation_reason is only for revoked awards")
        if self.supersedes is not None and self.supersedes == self.award_id:
            raise ValueError("an award cannot supersede itself")
        return self


# --------------------------------------------------------------------------- program


class Program(DomainModel):
    """An SIS academic program and the credentials completing it can award.

    Ethos has no stacking link; a program listing several credentials is the nearest
    signal. :func:`cayg_shared.schema.stacking_links` turns a program plus the definitions
    it lists into hasPart/isPartOf links (publish holds the definitions to apply it).
    """

    kind: Literal["program"] = "program"
    source_id: SourceId
    """The SIS's id of the program (Ethos ``academic-programs`` GUID)."""
    code: Code | None = None
    """The SIS program code (``BUSAN.AAS``)."""
    name: Name
    """The program title."""
    description: Text | None = None
    """What the program is."""
    status: ProgramStatus
    """Whether it is running."""
    start_on: date | None = None
    """First day it is offered."""
    end_on: date | None = None
    """Last day it is offered."""
    owned_by: OrganizationRef
    """The organization that authorizes the program."""
    credentials: tuple[CredentialRef, ...] = ()
    """Credentials completing (parts of) the program can award."""
    credential_type_hint: CtdlCredentialType | None = None
    """The credential type the program's own code or title suggests ('(AAS)'), if any."""
