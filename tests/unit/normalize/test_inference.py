"""The credential type table: Ethos's four coarse types to concrete CTDL classes."""

from __future__ import annotations

import pytest

from cayg_normalize.domain import credential_type_hint, infer_credential_type
from cayg_normalize.domain.inference import AUDIENCE_LEVEL_FOR, UndecidedCredentialType
from cayg_shared.schema import AudienceLevel, CtdlCredentialType, TypeBasis
from cayg_shared.tenants import MappingDefaults, UnknownTypePolicy

pytestmark = pytest.mark.unit

T = CtdlCredentialType
B = TypeBasis
DEFAULTS = MappingDefaults()


@pytest.mark.parametrize(
    ("sis_type", "code", "title", "expected", "basis"),
    [
        ("degree", "AA", "Associate of Arts", T.ASSOCIATE_DEGREE, B.ABBREVIATION),
        ("degree", "AS", "Associate of Science", T.ASSOCIATE_DEGREE, B.ABBREVIATION),
        ("degree", "A.A.S.", "Associate in Applied Science", T.ASSOCIATE_DEGREE, B.ABBREVIATION),
        ("degree", "BA", "Bachelor of Arts", T.BACHELOR_DEGREE, B.ABBREVIATION),
        ("degree", "B.S.", "Bachelor of Science", T.BACHELOR_DEGREE, B.ABBREVIATION),
        ("degree", "BS-NURS", "BS Nursing", T.BACHELOR_DEGREE, B.ABBREVIATION),
        ("degree", "MS", "Master of Science", T.MASTER_DEGREE, B.ABBREVIATION),
        ("degree", "MBA", "Master of Business Administration", T.MASTER_DEGREE, B.ABBREVIATION),
        ("degree", "PhD", "Doctor of Philosophy", T.DOCTORAL_DEGREE, B.ABBREVIATION),
        ("degree", "EdD", "Doctor of Education", T.DOCTORAL_DEGREE, B.ABBREVIATION),
        ("degree", "JD", "Juris Doctor", T.PROFESSIONAL_DOCTORATE, B.ABBREVIATION),
        ("degree", "EdS", "Education Specialist", T.SPECIALIST_DEGREE, B.ABBREVIATION),
        ("degree", "ABA", "Associate of Business Administration", T.ASSOCIATE_DEGREE, B.TITLE),
        ("degree", None, "Baccalaureate in Social Work", T.BACHELOR_DEGREE, B.TITLE),
        ("degree", "MPROF", "Master's in Professional Studies", T.MASTER_DEGREE, B.TITLE),
        ("honorary", "LHD", "Doctor of Humane Letters", T.DOCTORAL_DEGREE, B.TITLE),
        ("certificate", "MC-SQL", "SQL for Analysts", T.MICRO_CREDENTIAL, B.ABBREVIATION),
        ("certificate", "MICRO-PY", "Python Basics", T.MICRO_CREDENTIAL, B.ABBREVIATION),
        ("certificate", "DA1", "Data Analytics Micro-credential", T.MICRO_CREDENTIAL, B.TITLE),
        ("certificate", "BDG-EXCEL", "Excel Skills Badge", T.DIGITAL_BADGE, B.TITLE),
        ("certificate", "CERT", "Welding Certificate", T.CERTIFICATE, B.SIS_TYPE),
        ("certificate", "MA", "Medical Assisting", T.CERTIFICATE, B.SIS_TYPE),
        (
            "certificate",
            "APPR",
            "Electrician Apprenticeship",
            T.APPRENTICESHIP_CERTIFICATE,
            B.TITLE,
        ),
        ("certificate", "JW", "Journeyworker Plumber", T.JOURNEYMAN_CERTIFICATE, B.TITLE),
        (
            "certificate",
            "COC",
            "Certificate of Completion in Phlebotomy",
            T.CERTIFICATE_OF_COMPLETION,
            B.TITLE,
        ),
        ("diploma", "DIP", "Diploma in Culinary Arts", T.DIPLOMA, B.SIS_TYPE),
        ("diploma", "HSD", "Adult High School Diploma", T.SECONDARY_SCHOOL_DIPLOMA, B.TITLE),
        ("diploma", "GED", "GED Credential", T.GENERAL_EDUCATION_DEVELOPMENT, B.TITLE),
        ("DEGREE", "bs", "bachelor of science", T.BACHELOR_DEGREE, B.ABBREVIATION),
        (None, "CT-WELD", "Welding Technology Certificate", T.CERTIFICATE, B.TITLE),
        (None, "CNA", "Nursing Assistant License", T.LICENSE, B.TITLE),
        (None, "AWS-CW", "AWS Certified Welder Certification", T.CERTIFICATION, B.TITLE),
        (None, "AAS-NURS", "Nursing", T.ASSOCIATE_DEGREE, B.ABBREVIATION),
    ],
)
def test_the_type_table(
    sis_type: str | None,
    code: str | None,
    title: str,
    expected: CtdlCredentialType,
    basis: TypeBasis,
) -> None:
    assert infer_credential_type(sis_type=sis_type, code=code, title=title, mapping=DEFAULTS) == (
        expected,
        basis,
    )


def test_a_degree_does_not_become_a_microcredential_by_its_prefix() -> None:
    result = infer_credential_type(
        sis_type="degree", code="MICRO-BS", title="Bachelor of Science", mapping=DEFAULTS
    )
    assert result == (T.BACHELOR_DEGREE, B.ABBREVIATION)


def test_tenant_overrides_win_over_everything() -> None:
    mapping = MappingDefaults.model_validate(
        {
            "credential_type_overrides": {
                "BS": "ceterms:BachelorOfScienceDegree",
                "MC-SQL": "ceterms:OpenBadge",
            }
        }
    )
    assert infer_credential_type(sis_type="degree", code="B.S.", title="x", mapping=mapping) == (
        T.BACHELOR_OF_SCIENCE_DEGREE,
        B.TENANT_OVERRIDE,
    )
    assert (
        infer_credential_type(sis_type="certificate", code="mc-sql", title="x", mapping=mapping)[0]
        is T.OPEN_BADGE
    )


@pytest.mark.parametrize(
    ("sis_type", "code", "title"),
    [
        ("degree", "GEN", "General Studies Degree"),
        ("honorary", None, "Honorary Degree"),
        ("award", "X", "Dean's List"),
        (None, "XYZ", "Something"),
    ],
)
def test_undecidable_types_follow_the_tenant_policy(
    sis_type: str | None, code: str | None, title: str
) -> None:
    with pytest.raises(UndecidedCredentialType):
        infer_credential_type(sis_type=sis_type, code=code, title=title, mapping=DEFAULTS)
    lenient = MappingDefaults(
        unknown_credential_type=UnknownTypePolicy.USE_DEFAULT,
        default_credential_type=T.CERTIFICATE_OF_COMPLETION,
    )
    assert infer_credential_type(sis_type=sis_type, code=code, title=title, mapping=lenient) == (
        T.CERTIFICATE_OF_COMPLETION,
        B.TENANT_DEFAULT,
    )


def test_custom_microcredential_prefixes() -> None:
    mapping = MappingDefaults.model_validate({"microcredential_prefixes": ["MCR"]})
    assert (
        infer_credential_type(sis_type="certificate", code="MCR101", title="x", mapping=mapping)[0]
        is T.MICRO_CREDENTIAL
    )
    assert (
        infer_credential_type(sis_type="certificate", code="MC-1", title="x", mapping=mapping)[0]
        is T.CERTIFICATE
    )


def test_degree_levels() -> None:
    assert AUDIENCE_LEVEL_FOR[T.ASSOCIATE_DEGREE] is AudienceLevel.ASSOCIATES_DEGREE
    assert AUDIENCE_LEVEL_FOR[T.PROFESSIONAL_DOCTORATE] is AudienceLevel.DOCTORAL_DEGREE
    assert T.CERTIFICATE not in AUDIENCE_LEVEL_FOR


@pytest.mark.parametrize(
    ("code", "title", "expected"),
    [
        ("BUSAN.AAS", "Business Analytics (AAS)", T.ASSOCIATE_DEGREE),
        (None, "Nursing (B.S.N.)", T.BACHELOR_DEGREE),
        ("WEBDEV.CERT", "Web Development Certificate", None),
        ("HIST", "History", None),
    ],
)
def test_program_type_hints(
    code: str | None, title: str, expected: CtdlCredentialType | None
) -> None:
    assert credential_type_hint(code, title) is expected
