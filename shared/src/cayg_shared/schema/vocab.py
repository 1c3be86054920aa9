"""Controlled vocabularies of the schema, with their CTDL and Open Badges spellings.

Values are the terms the standards use, so publish can copy them out without a lookup
table of its own: CTDL classes (``ceterms:…``), CTDL concept schemes (``audLevel:…``,
``creditUnit:…``, ``credentialStat:…``) and OB 3.0 ``achievementType`` values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class CtdlCredentialType(StrEnum):
    """A concrete CTDL credential class the Credential Registry accepts.

    Every subclass of ``ceterms:Credential`` in the registry's subclass tree, except the
    abstract ``ceterms:Credential`` and ``ceterms:Degree`` themselves, which the registry
    rejects. (A test keeps this list equal to the tree in the conformance data.)
    """

    BADGE = "ceterms:Badge"
    DIGITAL_BADGE = "ceterms:DigitalBadge"
    OPEN_BADGE = "ceterms:OpenBadge"
    CERTIFICATE = "ceterms:Certificate"
    APPRENTICESHIP_CERTIFICATE = "ceterms:ApprenticeshipCertificate"
    JOURNEYMAN_CERTIFICATE = "ceterms:JourneymanCertificate"
    MASTER_CERTIFICATE = "ceterms:MasterCertificate"
    CERTIFICATE_OF_COMPLETION = "ceterms:CertificateOfCompletion"
    CERTIFICATION = "ceterms:Certification"
    LICENSE = "ceterms:License"
    MICRO_CREDENTIAL = "ceterms:MicroCredential"
    QUALITY_ASSURANCE_CREDENTIAL = "ceterms:QualityAssuranceCredential"
    ASSOCIATE_DEGREE = "ceterms:AssociateDegree"
    ASSOCIATE_OF_APPLIED_ARTS_DEGREE = "ceterms:AssociateOfAppliedArtsDegree"
    ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE = "ceterms:AssociateOfAppliedScienceDegree"
    ASSOCIATE_OF_ARTS_DEGREE = "ceterms:AssociateOfArtsDegree"
    ASSOCIATE_OF_SCIENCE_DEGREE = "ceterms:AssociateOfScienceDegree"
    BACHELOR_DEGREE = "ceterms:BachelorDegree"
    BACHELOR_OF_ARTS_DEGREE = "ceterms:BachelorOfArtsDegree"
    BACHELOR_OF_SCIENCE_DEGREE = "ceterms:BachelorOfScienceDegree"
    MASTER_DEGREE = "ceterms:MasterDegree"
    MASTER_OF_ARTS_DEGREE = "ceterms:MasterOfArtsDegree"
    MASTER_OF_SCIENCE_DEGREE = "ceterms:MasterOfScienceDegree"
    DOCTORAL_DEGREE = "ceterms:DoctoralDegree"
    PROFESSIONAL_DOCTORATE = "ceterms:ProfessionalDoctorate"
    RESEARCH_DOCTORATE = "ceterms:ResearchDoctorate"
    SPECIALIST_DEGREE = "ceterms:SpecialistDegree"
    DIPLOMA = "ceterms:Diploma"
    GENERAL_EDUCATION_DEVELOPMENT = "ceterms:GeneralEducationDevelopment"
    SECONDARY_SCHOOL_DIPLOMA = "ceterms:SecondarySchoolDiploma"

    @property
    def local_name(self) -> str:
        """The class name without the ``ceterms:`` prefix (``BachelorDegree``)."""
        return self.value.removeprefix("ceterms:")

    @classmethod
    def parse(cls, text: str) -> CtdlCredentialType:
        """A type from ``ceterms:BachelorDegree`` or ``BachelorDegree`` (case-insensitive)."""
        wanted = text.strip().removeprefix("ceterms:").casefold()
        for member in cls:
            if member.local_name.casefold() == wanted:
                return member
        raise ValueError(f"not a concrete CTDL credential type: {text[:64]!r}")


#: Open Badges 3.0 ``achievementType`` values (the closed part of the extensible list).
OB_ACHIEVEMENT_TYPES: Final = frozenset(
    {
        "Achievement",
        "ApprenticeshipCertificate",
        "Assessment",
        "Assignment",
        "AssociateDegree",
        "Award",
        "Badge",
        "BachelorDegree",
        "Certificate",
        "CertificateOfCompletion",
        "Certification",
        "CommunityService",
        "Competency",
        "Course",
        "CoCurricular",
        "Degree",
        "Diploma",
        "DoctoralDegree",
        "Fieldwork",
        "GeneralEducationDevelopment",
        "JourneymanCertificate",
        "LearningProgram",
        "License",
        "Membership",
        "ProfessionalDoctorate",
        "QualityAssuranceCredential",
        "MasterCertificate",
        "MasterDegree",
        "MicroCredential",
        "ResearchDoctorate",
        "SecondarySchoolDiploma",
    },
)

_T = CtdlCredentialType
#: The OB 3.0 ``achievementType`` matching each CTDL class. CTDL subclasses without an OB
#: term of their own (``AssociateOfArtsDegree``, ``DigitalBadge``…) map to their parent's
#: term; ``SpecialistDegree`` has none and maps to OB's generic ``Degree``.
OB_ACHIEVEMENT_TYPE_FOR: Final[dict[CtdlCredentialType, str]] = {
    _T.BADGE: "Badge",
    _T.DIGITAL_BADGE: "Badge",
    _T.OPEN_BADGE: "Badge",
    _T.CERTIFICATE: "Certificate",
    _T.APPRENTICESHIP_CERTIFICATE: "ApprenticeshipCertificate",
    _T.JOURNEYMAN_CERTIFICATE: "JourneymanCertificate",
    _T.MASTER_CERTIFICATE: "MasterCertificate",
    _T.CERTIFICATE_OF_COMPLETION: "CertificateOfCompletion",
    _T.CERTIFICATION: "Certification",
    _T.LICENSE: "License",
    _T.MICRO_CREDENTIAL: "MicroCredential",
    _T.QUALITY_ASSURANCE_CREDENTIAL: "QualityAssuranceCredential",
    _T.ASSOCIATE_DEGREE: "AssociateDegree",
    _T.ASSOCIATE_OF_APPLIED_ARTS_DEGREE: "AssociateDegree",
    _T.ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE: "AssociateDegree",
    _T.ASSOCIATE_OF_ARTS_DEGREE: "AssociateDegree",
    _T.ASSOCIATE_OF_SCIENCE_DEGREE: "AssociateDegree",
    _T.BACHELOR_DEGREE: "BachelorDegree",
    _T.BACHELOR_OF_ARTS_DEGREE: "BachelorDegree",
    _T.BACHELOR_OF_SCIENCE_DEGREE: "BachelorDegree",
    _T.MASTER_DEGREE: "MasterDegree",
    _T.MASTER_OF_ARTS_DEGREE: "MasterDegree",
    _T.MASTER_OF_SCIENCE_DEGREE: "MasterDegree",
    _T.DOCTORAL_DEGREE: "DoctoralDegree",
    _T.PROFESSIONAL_DOCTORATE: "ProfessionalDoctorate",
    _T.RESEARCH_DOCTORATE: "ResearchDoctorate",
    _T.SPECIALIST_DEGREE: "Degree",
    _T.DIPLOMA: "Diploma",
    _T.GENERAL_EDUCATION_DEVELOPMENT: "GeneralEducationDevelopment",
    _T.SECONDARY_SCHOOL_DIPLOMA: "SecondarySchoolDiploma",
}


def ob_achievement_type(credential_type: CtdlCredentialType) -> str:
    """The OB 3.0 ``achievementType`` for a CTDL credential class."""
    return OB_ACHIEVEMENT_TYPE_FOR[credential_type]


class AudienceLevel(StrEnum):
    """CTDL ``ceterms:audienceLevelType`` concepts (scheme ``audLevel:``)."""

    ADVANCED = "audLevel:AdvancedLevel"
    ASSOCIATES_DEGREE = "audLevel:AssociatesDegreeLevel"
    BACHELORS_DEGREE = "audLevel:BachelorsDegreeLevel"
    BEGINNER = "audLevel:BeginnerLevel"
    DOCTORAL_DEGREE = "audLevel:DoctoralDegreeLevel"
    GRADUATE = "audLevel:GraduateLevel"
    INTERMEDIATE = "audLevel:IntermediateLevel"
    LOWER_DIVISION = "audLevel:LowerDivisionLevel"
    MASTERS_DEGREE = "audLevel:MastersDegreeLevel"
    POST_SECONDARY = "audLevel:PostSecondaryLevel"
    PROFESSIONAL = "audLevel:ProfessionalLevel"
    SECONDARY = "audLevel:SecondaryLevel"
    UNDERGRADUATE = "audLevel:UndergraduateLevel"
    UPPER_DIVISION = "audLevel:UpperDivisionLevel"


class CreditUnit(StrEnum):
    """CTDL ``ceterms:creditUnitType`` concepts (scheme ``creditUnit:``)."""

    CLOCK_HOUR = "creditUnit:ClockHour"
    CONTACT_HOUR = "creditUnit:ContactHour"
    CONTINUING_EDUCATION_UNIT = "creditUnit:ContinuingEducationUnit"
    DEGREE_CREDIT = "creditUnit:DegreeCredit"
    QUARTER_HOUR = "creditUnit:QuarterHour"
    SEMESTER_HOUR = "creditUnit:SemesterHour"


class CredentialStatus(StrEnum):
    """Lifecycle of a credential *definition* (CTDL ``ceterms:credentialStatusType``)."""

    ACTIVE = "active"
    """Offered and awarded."""
    DEPRECATED = "deprecated"
    """No longer offered; existing awards stay valid. The registry keeps the record."""
    SUSPENDED = "suspended"
    """Temporarily not offered or awarded."""

    @property
    def ctdl_term(self) -> str:
        """The ``credentialStat:`` concept, e.g. ``credentialStat:Active``."""
        return f"credentialStat:{self.value.capitalize()}"


class AwardStatus(StrEnum):
    """State of one award to one learner."""

    AWARDED = "awarded"
    """Issued and valid."""
    REVOKED = "revoked"
    """Withdrawn (rescinded, awarded in error): verifiers must see it as revoked."""
    SUPERSEDED = "superseded"
    """Replaced by a newer award of the same learning (see ``CredentialAward.supersedes``)."""


class Approach(StrEnum):
    """The six Credential As You Go approaches a credential is designed for."""

    LEARN = "learn"
    """Learn as you go: stands on its own, for upskilling or reskilling."""
    SPECIALIZE = "specialize"
    """Specialize as you go: adds advanced learning to a certificate or degree."""
    STACK = "stack"
    """Stack as you go: purposefully stacks into another credential on a pathway."""
    TRANSFER = "transfer"
    """Transfer as you go: built to transfer across institutions or programs."""
    PARTNER = "partner"
    """Partner as you go: developed with, or accepted by, a business/industry partner."""
    RETRO_AWARD = "retro-award"
    """Retro award as you go: awarded for learning already acquired but not credentialed."""


class OrganizationRole(StrEnum):
    """What an organization is to the credentials of a tenant."""

    ISSUER = "issuer"
    """Owns, offers and awards credentials (a college, a training provider)."""
    INDUSTRY_PARTNER = "industry-partner"
    """Co-designs or recognises credentials (an employer, an industry association)."""
    ACCREDITOR = "accreditor"
    """Accredits the issuer or its credentials (CTDL ``QACredentialOrganization``)."""
    APPROVER = "approver"
    """Approves credentials (a state agency, a board)."""
    TRANSFER_PARTNER = "transfer-partner"
    """Accepts credentials for transfer or advanced standing (another institution)."""


class ResultType(StrEnum):
    """OB 3.0 ``ResultDescription.resultType`` values a SIS can report."""

    GRADE_POINT_AVERAGE = "GradePointAverage"
    LETTER_GRADE = "LetterGrade"
    PERCENT = "Percent"
    PERFORMANCE_LEVEL = "PerformanceLevel"
    RAW_SCORE = "RawScore"
    RESULT = "Result"
    SCALED_SCORE = "ScaledScore"
    STATUS = "Status"


class Operation(StrEnum):
    """What a :class:`~cayg_shared.schema.Change` asks publish to do."""

    UPSERT = "upsert"
    """Create or replace the entity; ``Change.entity`` holds its whole new state."""
    DELETE = "delete"
    """The SIS no longer has the entity; ``Change.entity`` is None."""
    REVOKE = "revoke"
    """Awards only: withdraw issued credentials (see ``Change.retain_parts``)."""


class EntityType(StrEnum):
    """The kinds of entity that flow on ``cayg.normalized.v1``."""

    ORGANIZATION = "organization"
    CREDENTIAL_DEFINITION = "credential-definition"
    CREDENTIAL_AWARD = "credential-award"
    LEARNER_IDENTITY = "learner-identity"
    PROGRAM = "program"


class TypeBasis(StrEnum):
    """Why a definition has the CTDL type it has: the audit trail of type inference."""

    EXPLICIT = "explicit"
    """The SIS event named the type."""
    TENANT_OVERRIDE = "tenant-override"
    """The tenant's configuration maps this SIS code to a type."""
    ABBREVIATION = "abbreviation"
    """Inferred from the SIS abbreviation (``BS`` → bachelor's degree)."""
    TITLE = "title"
    """Inferred from words in the title ('Associate of…', 'Microcredential:…')."""
    SIS_TYPE = "sis-type"
    """Taken from the SIS's own coarse type (Ethos ``certificate`` → Certificate)."""
    TENANT_DEFAULT = "tenant-default"
    """Nothing matched; the tenant's configured default type was applied."""


class ProgramStatus(StrEnum):
    """Whether an SIS academic program is running."""

    ACTIVE = "active"
    INACTIVE = "inactive"
