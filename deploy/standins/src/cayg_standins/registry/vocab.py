"""The slice of CTDL the registry stand-in knows: property kinds and concept schemes.

Property names here are CTDL local names (``subjectWebpage``); the Assistant API spells
them in PascalCase (``SubjectWebpage``) and the converter maps one to the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CONCEPT_PROPERTIES",
    "CONNECTION_PROPERTIES",
    "CREDENTIAL_STATUS",
    "CTDL_CONTEXT",
    "CTID_PATTERN",
    "DURATION_PROPERTIES",
    "ENTITY_TYPES",
    "LANGUAGE_PROPERTIES",
    "PROFILE_PROPERTIES",
    "REFERENCE_PROPERTIES",
    "SCHEMA_NAMESPACE_PROPERTIES",
    "URL_PROPERTIES",
    "ConceptScheme",
    "camel_label",
]

CTDL_CONTEXT = "https://credreg.net/ctdl/schema/context/json"
CTID_PATTERN = re.compile(r"^ce-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class ConceptScheme:
    """A CTDL concept scheme (``credentialStat:``, ``costType:`` ...).

    ``terms`` maps each term the stand-in knows to (label, description). A ``closed``
    scheme accepts only those; an open one (whose full list the stand-in does not hold)
    accepts any well-formed term and labels unknown ones from their spelling.
    """

    prefix: str
    framework_slug: str
    framework_name: str
    terms: Mapping[str, tuple[str, str]] | None = None
    closed: bool = True

    @property
    def framework(self) -> str:
        """The scheme's URL on credreg.net."""
        return f"https://credreg.net/ctdl/terms/{self.framework_slug}"


def camel_label(term: str) -> str:
    """``SemesterHour`` -> ``Semester Hour``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", term)


CREDENTIAL_STATUS = ConceptScheme(
    "credentialStat",
    "CredentialStatus",
    "Credential Status",
    {
        "Active": ("Active", "The credential is currently being awarded."),
        "Deprecated": ("Deprecated", "The credential is no longer awarded."),
        "Suspended": ("Suspended", "Awarding of the credential has been paused."),
        "Probationary": ("Probationary", "The credential is awarded under probation."),
        "TeachOut": ("Teach-Out", "Only learners already enrolled may still earn it."),
    },
)
_COST_TYPE = ConceptScheme(
    "costType",
    "CostType",
    "Cost Type",
    {
        "AggregateCost": ("Aggregate Cost", "The total of all costs."),
        "Application": ("Application", "A fee charged to apply."),
        "BackgroundCheck": ("Background Check", "A fee for a background check."),
        "Enrollment": ("Enrollment", "A fee charged to enroll."),
        "Examination": ("Examination", "A fee charged to sit an examination."),
        "GradingFee": ("Grading Fee", "A fee for grading or scoring."),
        "LearningResource": ("Learning Resource", "Books, supplies and other materials."),
        "Meals": ("Meals", "The cost of meals."),
        "ProgramSpecificFee": ("Program Specific Fee", "A fee particular to the program."),
        "RoomOrResidency": ("Room or Residency", "Housing costs."),
        "StandaloneAssessment": ("Standalone Assessment", "An assessment taken on its own."),
        "TechnologyFee": ("Technology Fee", "A fee for technology."),
        "Tuition": ("Tuition", "The charge for instruction."),
    },
    closed=False,
)
_CREDIT_UNIT = ConceptScheme(
    "creditUnit",
    "CreditUnit",
    "Credit Unit",
    {
        "CarnegieUnit": ("Carnegie Unit", "Secondary-school time-based credit."),
        "CertificateCredit": ("Certificate Credit", "Credit counted toward a certificate."),
        "ClockHour": ("Clock Hour", "Credit counted in hours of instruction."),
        "CompetencyCredit": ("Competency Credit", "Credit for demonstrated competencies."),
        "ContactHour": ("Contact Hour", "Credit counted in hours of contact time."),
        "ContinuingEducationUnit": ("Continuing Education Unit", "CEU credit."),
        "DegreeCredit": ("Degree Credit", "Credit applicable to a degree."),
        "QuarterHour": ("Quarter Hour", "Credit counted per quarter-term hour."),
        "SemesterHour": ("Semester Hour", "Credit counted per semester hour."),
        "TrimesterHour": ("Trimester Hour", "Credit counted per trimester hour."),
    },
    closed=False,
)
_AUDIENCE_LEVEL = ConceptScheme("audLevel", "AudienceLevel", "Audience Level", closed=False)
_AUDIENCE = ConceptScheme("audience", "Audience", "Audience Type", closed=False)
_DELIVERY = ConceptScheme("deliveryType", "Delivery", "Delivery Type", closed=False)
_RESIDENCY = ConceptScheme("residency", "Residency", "Residency", closed=False)
_ORG_TYPE = ConceptScheme("orgType", "OrganizationType", "Organization Type", closed=False)
_AGENT_SECTOR = ConceptScheme("agentSector", "AgentSector", "Agent Sector", closed=False)
_ASSESS_METHOD = ConceptScheme(
    "assessMethod", "AssessmentMethod", "Assessment Method", closed=False
)
_LEARN_METHOD = ConceptScheme("learnMethod", "LearningMethod", "Learning Method", closed=False)

CONCEPT_PROPERTIES: Mapping[str, tuple[ConceptScheme, bool]] = {
    # property -> (scheme, single-valued)
    "credentialStatusType": (CREDENTIAL_STATUS, True),
    "directCostType": (_COST_TYPE, True),
    "creditUnitType": (_CREDIT_UNIT, False),
    "audienceLevelType": (_AUDIENCE_LEVEL, False),
    "creditLevelType": (_AUDIENCE_LEVEL, False),
    "audienceType": (_AUDIENCE, False),
    "deliveryType": (_DELIVERY, False),
    "learningDeliveryType": (_DELIVERY, False),
    "assessmentDeliveryType": (_DELIVERY, False),
    "residencyType": (_RESIDENCY, False),
    "agentType": (_ORG_TYPE, False),
    "agentSectorType": (_AGENT_SECTOR, True),
    "assessmentMethodType": (_ASSESS_METHOD, False),
    "learningMethodType": (_LEARN_METHOD, False),
}

LANGUAGE_PROPERTIES = frozenset(
    {
        "name",
        "description",
        "alternateName",
        "keyword",
        "condition",
        "paymentPattern",
        "frameworkName",
        "targetNodeName",
        "targetNodeDescription",
        "identifierTypeName",
        "experience",
        "submissionOfDescription",
        "creditUnitTypeDescription",
        "subjectName",
    }
)

URL_PROPERTIES = frozenset(
    {
        "subjectWebpage",
        "costDetails",
        "image",
        "availableOnlineAt",
        "availabilityListing",
        "sameAs",
        "socialMedia",
        "processingAgentWebpage",
    }
)

REFERENCE_PROPERTIES = frozenset(
    {
        "ownedBy",
        "offeredBy",
        "accreditedBy",
        "approvedBy",
        "recognizedBy",
        "regulatedBy",
        "renewedBy",
        "revokedBy",
        "copyrightHolder",
        "assertedBy",
        "hasPart",
        "isPartOf",
        "targetCredential",
        "targetAssessment",
        "targetLearningOpportunity",
        "transferValueFrom",
        "transferValueFor",
        "owns",
        "offers",
    }
)

# Condition-profile ("connection") properties: each entry is a ConditionProfile object that
# names its targets (TargetCredential, ...), never a bare reference.
CONNECTION_PROPERTIES = frozenset(
    {
        "isPreparationFor",
        "preparationFrom",
        "isAdvancedStandingFor",
        "advancedStandingFrom",
        "isRequiredFor",
        "isRecommendedFor",
    }
)

PROFILE_PROPERTIES: Mapping[str, str] = {
    "estimatedCost": "ceterms:CostProfile",
    "estimatedDuration": "ceterms:DurationProfile",
    "requires": "ceterms:ConditionProfile",
    "recommends": "ceterms:ConditionProfile",
    "corequisite": "ceterms:ConditionProfile",
    "coPrerequisite": "ceterms:ConditionProfile",
    "renewal": "ceterms:ConditionProfile",
    "isPreparationFor": "ceterms:ConditionProfile",
    "preparationFrom": "ceterms:ConditionProfile",
    "isAdvancedStandingFor": "ceterms:ConditionProfile",
    "advancedStandingFrom": "ceterms:ConditionProfile",
    "isRequiredFor": "ceterms:ConditionProfile",
    "isRecommendedFor": "ceterms:ConditionProfile",
    "creditValue": "schema:ValueProfile",
    "transferValue": "schema:ValueProfile",
    "identifier": "ceterms:IdentifierValue",
    "financialAssistance": "ceterms:FinancialAssistanceProfile",
    "address": "ceterms:Place",
    "availableAt": "ceterms:Place",
    "jurisdiction": "ceterms:JurisdictionProfile",
}

# Inside these value profiles, the quantity properties live in the schema.org namespace.
SCHEMA_NAMESPACE_PROPERTIES = frozenset(
    {"value", "minValue", "maxValue", "percentage", "description"}
)

DURATION_PROPERTIES = frozenset({"exactDuration", "minimumDuration", "maximumDuration"})

# Assistant "Type" values of referenced entities -> CTDL classes of the blank nodes.
ENTITY_TYPES: Mapping[str, str] = {
    "LearningOpportunity": "ceterms:LearningOpportunityProfile",
    "LearningOpportunityProfile": "ceterms:LearningOpportunityProfile",
    "Assessment": "ceterms:AssessmentProfile",
    "AssessmentProfile": "ceterms:AssessmentProfile",
    "Organization": "ceterms:CredentialOrganization",
    "CredentialOrganization": "ceterms:CredentialOrganization",
    "QACredentialOrganization": "ceterms:QACredentialOrganization",
    "ValueProfile": "schema:ValueProfile",
}
