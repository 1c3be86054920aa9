"""Lenient readers of the Ethos payloads normalize maps (see ``reference/ethos.md``).

Only the fields cayg uses are declared; Ethos resources have many more, and new optional
ones appear with minor versions, so unknown fields are ignored. Field names are Ethos's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from cayg_shared.schema import Code, Name, SourceId, Text


def _id_text(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


_Id = Annotated[SourceId, BeforeValidator(_id_text)]
_Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)]
_DateText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


_OptCode = Annotated[Code | None, BeforeValidator(_blank_to_none)]
_OptText = Annotated[Text | None, BeforeValidator(_blank_to_none)]


class EthosModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class GuidRef(EthosModel):
    """A ``{"id": "<guid>"}`` reference."""

    id: _Id


class Publisher(EthosModel):
    id: _Id
    applicationName: _Short | None = None


class Resource(EthosModel):
    name: _Short
    id: _Id
    version: _Short | None = None


class ChangeNotification(EthosModel):
    """The notification envelope (already checked by ingest; re-read, not re-trusted)."""

    id: _Id
    published: _DateText | None = None
    publisher: Publisher
    resource: Resource
    operation: Literal["created", "replaced", "deleted"]
    content: dict[str, object] | None = None


class AcademicCredential(EthosModel):
    """``academic-credentials`` v6."""

    id: _Id
    title: Name
    abbreviation: _OptCode = None
    description: _OptText = None
    type: _Short | None = None


class EarnedCredential(EthosModel):
    credential: GuidRef
    earnedOn: _DateText | None = None


class StudentAcademicCredential(EthosModel):
    """``student-academic-credentials`` v1.0.0."""

    id: _Id
    student: GuidRef
    credentials: list[EarnedCredential] = Field(max_length=100)
    graduatedOn: _DateText | None = None
    thesisTitle: _OptText = None


class Authorizing(EthosModel):
    institution: GuidRef | None = None


class AcademicProgram(EthosModel):
    """``academic-programs`` v15.x."""

    id: _Id
    title: Name
    code: _OptCode = None
    description: _OptText = None
    authorizing: Authorizing | None = None
    credentials: list[GuidRef] = Field(default_factory=list, max_length=200)
    status: Literal["active", "inactive"] | None = None
    startOn: _DateText | None = None
    endOn: _DateText | None = None


class EducationalInstitution(EthosModel):
    """``educational-institutions`` v6.x."""

    id: _Id
    title: Name
    description: _OptText = None
    type: _Short | None = None
    homeInstitution: Literal["home", "external"]


class PersonCredential(EthosModel):
    type: _Short
    value: Annotated[str, StringConstraints(max_length=320)]


class EmailType(EthosModel):
    emailType: _Short | None = None


class PersonEmail(EthosModel):
    type: EmailType | None = None
    preference: _Short | None = None
    address: Annotated[str, StringConstraints(max_length=320)]


class PrivacyStatus(EthosModel):
    privacyCategory: _Short | None = None


class Person(EthosModel):
    """``persons`` v12.x: identifying fields only; names and the rest are not read."""

    id: _Id
    credentials: list[PersonCredential] = Field(default_factory=list, max_length=100)
    emails: list[PersonEmail] = Field(default_factory=list, max_length=100)
    privacyStatus: PrivacyStatus | None = None


__all__ = [
    "AcademicCredential",
    "AcademicProgram",
    "ChangeNotification",
    "EducationalInstitution",
    "Person",
    "StudentAcademicCredential",
]
