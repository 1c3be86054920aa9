"""Deciding the CTDL credential type of a definition the SIS describes only coarsely.

Ethos ``academic-credentials.type`` is only ``degree``, ``honorary``, ``diploma`` or
``certificate``; the level, and whether a certificate is really a microcredential, must be
inferred. The rules, in order (the first that decides wins):

1. **Tenant override** — ``mapping.credential_type_overrides[abbreviation]``.
2. **Microcredential** (unless the SIS says degree/honorary) — the abbreviation starts
   with one of ``mapping.microcredential_prefixes`` (default ``MC-``, ``MICRO``), or the
   title says 'microcredential' / 'micro-credential'. **Badge**: the title says 'badge'.
3. **Degrees** (SIS type degree/honorary, or no SIS type) — the abbreviation, or its first
   token (``BS-NURS`` → ``BS``), in :data:`DEGREE_ABBREVIATIONS`:

   =====================================================  ============================
   abbreviations                                          CTDL type
   =====================================================  ============================
   AA AS AAS AAA AAT AGS AFA AE AET ASN AOS               AssociateDegree
   BA BS BSC BFA BBA BAS BSN BSW BM BMUS BARCH BENG BSE   BachelorDegree
   BED BAA BPS BGS BSBA BAT
   MA MS MSC MBA MED MFA MSW MPA MPH MSN MENG MAT MLIS    MasterDegree
   MPP MARCH MM MMUS LLM MAED MST MPS MSED MSA MAcc
   PHD EDD DBA DNP PSYD DMA DA SCD DPH THD DLITT LLD DHL  DoctoralDegree
   JD MD DO DDS DMD PHARMD DPT DVM AUD OD OTD DC          ProfessionalDoctorate
   EDS SSP                                                SpecialistDegree
   =====================================================  ============================

   else title words: 'associate' → associate, 'bachelor'/'baccalaureate' → bachelor,
   'master of'/'master's' → master, 'doctor'/'doctorate' → doctoral, 'specialist' →
   specialist.
4. **SIS type** — ``certificate`` → Certificate (title 'apprenticeship' →
   ApprenticeshipCertificate, 'journeyman'/'journeyworker' → JourneymanCertificate,
   'certificate of completion' → CertificateOfCompletion); ``diploma`` → Diploma (title
   'high school'/'secondary' → SecondarySchoolDiploma, 'GED'/'general education
   development' → GeneralEducationDevelopment). Without SIS type, title words
   'certificate', 'certification', 'license'/'licence', 'diploma' decide likewise.
5. **Undecided** (a degree of unknown level, an unknown SIS type): the tenant policy —
   ``reject`` (default) raises :class:`UndecidedCredentialType`; ``use-default`` applies
   ``mapping.default_credential_type``.
"""

from __future__ import annotations

import re
from typing import Final

from cayg_shared.schema import AudienceLevel, CtdlCredentialType, TypeBasis
from cayg_shared.tenants import MappingDefaults, UnknownTypePolicy, normalize_code

_T = CtdlCredentialType


def _table(types: dict[CtdlCredentialType, str]) -> dict[str, CtdlCredentialType]:
    return {normalize_code(code): ctdl for ctdl, codes in types.items() for code in codes.split()}


#: SIS degree abbreviations (compared without dots/spaces, case-insensitively).
DEGREE_ABBREVIATIONS: Final = _table(
    {
        _T.ASSOCIATE_DEGREE: "AA AS AAS AAA AAT AGS AFA AE AET ASN AOS",
        _T.BACHELOR_DEGREE: (
            "BA BS BSC BFA BBA BAS BSN BSW BM BMUS BARCH BENG BSE BED BAA BPS BGS BSBA BAT"
        ),
        _T.MASTER_DEGREE: (
            "MA MS MSC MBA MED MFA MSW MPA MPH MSN MENG MAT MLIS MPP MARCH MM MMUS LLM MAED "
            "MST MPS MSED MSA MACC"
        ),
        _T.DOCTORAL_DEGREE: "PHD EDD DBA DNP PSYD DMA DA SCD DPH THD DLITT LLD DHL",
        _T.PROFESSIONAL_DOCTORATE: "JD MD DO DDS DMD PHARMD DPT DVM AUD OD OTD DC",
        _T.SPECIALIST_DEGREE: "EDS SSP",
    },
)

_MICRO_TITLE: Final = re.compile(r"\bmicro[\s-]?credential", re.IGNORECASE)
_BADGE_TITLE: Final = re.compile(r"\bbadge\b", re.IGNORECASE)
_DEGREE_TITLES: Final = (
    (re.compile(r"\bassociate(?:'?s)?\b(?! certificate)", re.IGNORECASE), _T.ASSOCIATE_DEGREE),
    (re.compile(r"\b(?:bachelor|baccalaureate)", re.IGNORECASE), _T.BACHELOR_DEGREE),
    (re.compile(r"\bmaster(?:'?s)?\s+(?:of|degree|in)\b", re.IGNORECASE), _T.MASTER_DEGREE),
    (re.compile(r"\bdoctor(?:ate|al)?\b", re.IGNORECASE), _T.DOCTORAL_DEGREE),
    (re.compile(r"\bspecialist\b", re.IGNORECASE), _T.SPECIALIST_DEGREE),
)
_CERTIFICATE_TITLES: Final = (
    (re.compile(r"\bapprentice(?:ship)?\b", re.IGNORECASE), _T.APPRENTICESHIP_CERTIFICATE),
    (re.compile(r"\bjourney(?:man|worker)\b", re.IGNORECASE), _T.JOURNEYMAN_CERTIFICATE),
    (re.compile(r"\bcertificate of completion\b", re.IGNORECASE), _T.CERTIFICATE_OF_COMPLETION),
)
_DIPLOMA_TITLES: Final = (
    (re.compile(r"\b(?:high school|secondary)\b", re.IGNORECASE), _T.SECONDARY_SCHOOL_DIPLOMA),
    (
        re.compile(r"\b(?:GED|general education development)\b", re.IGNORECASE),
        _T.GENERAL_EDUCATION_DEVELOPMENT,
    ),
)
_GENERIC_TITLES: Final = (
    (re.compile(r"\bcertification\b", re.IGNORECASE), _T.CERTIFICATION),
    (re.compile(r"\bcertificate\b", re.IGNORECASE), _T.CERTIFICATE),
    (re.compile(r"\blicen[cs]e\b", re.IGNORECASE), _T.LICENSE),
    (re.compile(r"\bdiploma\b", re.IGNORECASE), _T.DIPLOMA),
)
_DEGREE_SIS_TYPES: Final = frozenset({"degree", "honorary"})
_TOKEN_SPLIT: Final = re.compile(r"[-_/.\s()]+")

#: The audience level each degree type implies (other types: none).
AUDIENCE_LEVEL_FOR: Final[dict[CtdlCredentialType, AudienceLevel]] = {
    **dict.fromkeys(
        (
            _T.ASSOCIATE_DEGREE,
            _T.ASSOCIATE_OF_APPLIED_ARTS_DEGREE,
            _T.ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE,
            _T.ASSOCIATE_OF_ARTS_DEGREE,
            _T.ASSOCIATE_OF_SCIENCE_DEGREE,
        ),
        AudienceLevel.ASSOCIATES_DEGREE,
    ),
    **dict.fromkeys(
        (_T.BACHELOR_DEGREE, _T.BACHELOR_OF_ARTS_DEGREE, _T.BACHELOR_OF_SCIENCE_DEGREE),
        AudienceLevel.BACHELORS_DEGREE,
    ),
    **dict.fromkeys(
        (_T.MASTER_DEGREE, _T.MASTER_OF_ARTS_DEGREE, _T.MASTER_OF_SCIENCE_DEGREE),
        AudienceLevel.MASTERS_DEGREE,
    ),
    **dict.fromkeys(
        (_T.DOCTORAL_DEGREE, _T.PROFESSIONAL_DOCTORATE, _T.RESEARCH_DOCTORATE),
        AudienceLevel.DOCTORAL_DEGREE,
    ),
    _T.SPECIALIST_DEGREE: AudienceLevel.GRADUATE,
    _T.SECONDARY_SCHOOL_DIPLOMA: AudienceLevel.SECONDARY,
    _T.GENERAL_EDUCATION_DEVELOPMENT: AudienceLevel.SECONDARY,
}


class UndecidedCredentialType(Exception):
    """No rule decided the type and the tenant's policy is ``reject``."""


def _first_match(
    patterns: tuple[tuple[re.Pattern[str], CtdlCredentialType], ...], text: str
) -> CtdlCredentialType | None:
    for pattern, ctdl in patterns:
        if pattern.search(text):
            return ctdl
    return None


def degree_from_code(code: str | None) -> CtdlCredentialType | None:
    """The degree type an SIS code names: whole code first, then each of its tokens."""
    if not code:
        return None
    whole = DEGREE_ABBREVIATIONS.get(normalize_code(code))
    if whole is not None:
        return whole
    for token in _TOKEN_SPLIT.split(code):
        found = DEGREE_ABBREVIATIONS.get(normalize_code(token)) if token else None
        if found is not None:
            return found
    return None


def infer_credential_type(
    *,
    sis_type: str | None,
    code: str | None,
    title: str,
    mapping: MappingDefaults,
) -> tuple[CtdlCredentialType, TypeBasis]:
    """The CTDL type of a definition and how it was decided (see the module rules)."""
    decided = _decide(sis_type=sis_type, code=code, title=title, mapping=mapping)
    if decided is not None:
        return decided
    if (
        mapping.unknown_credential_type is UnknownTypePolicy.USE_DEFAULT
        and mapping.default_credential_type is not None
    ):
        return mapping.default_credential_type, TypeBasis.TENANT_DEFAULT
    raise UndecidedCredentialType


def _decide(
    *,
    sis_type: str | None,
    code: str | None,
    title: str,
    mapping: MappingDefaults,
) -> tuple[CtdlCredentialType, TypeBasis] | None:
    normalized = normalize_code(code) if code else ""
    if normalized and normalized in mapping.credential_type_overrides:
        return mapping.credential_type_overrides[normalized], TypeBasis.TENANT_OVERRIDE
    kind = sis_type.strip().casefold() if sis_type else None
    if kind not in _DEGREE_SIS_TYPES:
        if normalized and any(normalized.startswith(p) for p in mapping.microcredential_prefixes):
            return _T.MICRO_CREDENTIAL, TypeBasis.ABBREVIATION
        if _MICRO_TITLE.search(title):
            return _T.MICRO_CREDENTIAL, TypeBasis.TITLE
        if _BADGE_TITLE.search(title):
            return _T.DIGITAL_BADGE, TypeBasis.TITLE
    if kind is None or kind in _DEGREE_SIS_TYPES:
        by_code = degree_from_code(code)
        if by_code is not None:
            return by_code, TypeBasis.ABBREVIATION
        by_title = _first_match(_DEGREE_TITLES, title)
        if by_title is not None:
            return by_title, TypeBasis.TITLE
    if kind == "certificate":
        refined = _first_match(_CERTIFICATE_TITLES, title)
        if refined is not None:
            return refined, TypeBasis.TITLE
        return _T.CERTIFICATE, TypeBasis.SIS_TYPE
    if kind == "diploma":
        refined = _first_match(_DIPLOMA_TITLES, title)
        if refined is not None:
            return refined, TypeBasis.TITLE
        return _T.DIPLOMA, TypeBasis.SIS_TYPE
    if kind is None:
        refined = _first_match(_CERTIFICATE_TITLES + _DIPLOMA_TITLES + _GENERIC_TITLES, title)
        if refined is not None:
            return refined, TypeBasis.TITLE
    return None


def credential_type_hint(code: str | None, title: str) -> CtdlCredentialType | None:
    """The degree type a *program's* code or title names ('BUSAN.AAS', '… (AAS)'), if any."""
    found = degree_from_code(code)
    if found is not None:
        return found
    for group in re.findall(r"\(([^)]{1,16})\)", title):
        found = degree_from_code(group)
        if found is not None:
            return found
    return None
