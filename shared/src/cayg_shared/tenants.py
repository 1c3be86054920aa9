"""The tenant registry: which institutions cayg serves and what belongs to each.

Loaded from a JSON file (``deploy/config/tenants.json``)::

    {"schema_version": "1.0",
     "tenants": {"<tenant id>": {"display_name": …, "webpage": …, …}, …}}

The tenant of a message is always the one its topic names (``sis.events.<tenant>``). The
registry adds what ingest needs to refuse a payload that names *another* institution —
the Ethos publishers and CloudEvent sources each tenant owns — and the per-tenant mapping
policy normalize applies.

Mapping policy for credential types that cannot be decided (an Ethos ``degree`` whose
abbreviation and title reveal no level, a CloudEvent without ``credentialType`` whose code
and name reveal nothing): ``unknown_credential_type`` is ``reject`` by default — the
message goes to the normalize DLQ with reason ``unknown-credential-type`` and the operator
adds a ``credential_type_overrides`` entry, because publishing a wrong type to a public
registry is worse than publishing late. A tenant may instead choose ``use-default`` with a
``default_credential_type``; the definition then records ``type_basis: tenant-default``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cayg_shared.envelope import TenantId
from cayg_shared.ids import ctid as derive_ctid
from cayg_shared.schema import (
    CtdlCredentialType,
    Ctid,
    EntityType,
    LanguageTag,
    OrganizationRef,
    WebUrl,
)

TENANTS_SCHEMA_VERSION: Final = "1.0"

#: Ethos person credential types that must never leave the SIS through cayg.
FORBIDDEN_LEARNER_ID_TYPES: Final = frozenset({"ssn", "sin", "taxIdentificationNumber"})

_Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


def normalize_code(code: str) -> str:
    """An SIS code for comparison: upper case, without dots and spaces (``A.A.S.`` → ``AAS``)."""
    return re.sub(r"[.\s]", "", code).upper()


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class UnknownTypePolicy(StrEnum):
    """What normalize does with a credential whose CTDL type cannot be decided."""

    REJECT = "reject"
    """Send the message to the normalize DLQ (``unknown-credential-type``)."""
    USE_DEFAULT = "use-default"
    """Use ``default_credential_type`` and record ``type_basis: tenant-default``."""


class EthosPublisher(_Config):
    """An Ethos publisher (an SIS application) that belongs to the tenant."""

    id: _Label
    """The ``publisher.id`` of its change notifications."""
    application_name: _Label | None = None
    """Its ``publisher.applicationName``; when set, notifications must match it
    (case-insensitively)."""


class MappingDefaults(_Config):
    """How normalize fills what the SIS does not say."""

    default_language: LanguageTag = "en-US"
    """Language of names and descriptions."""
    time_zone: Annotated[str, AfterValidator(_zone)] = "UTC"
    """IANA zone of SIS timestamps that carry no offset."""
    unknown_credential_type: UnknownTypePolicy = UnknownTypePolicy.REJECT
    """Policy for credentials whose type cannot be decided (see module docs)."""
    default_credential_type: CtdlCredentialType | None = None
    """The type used under ``use-default``."""
    credential_type_overrides: dict[str, CtdlCredentialType] = Field(default_factory=dict)
    """SIS abbreviation → CTDL type, checked before any inference (``CPT`` → Certification).
    Keys compare without dots/spaces, case-insensitively."""
    microcredential_prefixes: tuple[_Label, ...] = ("MC-", "MICRO")
    """Abbreviation prefixes that mark a microcredential."""
    retro_award_after_days: int | None = Field(default=365, ge=1)
    """An Ethos award published this many days or more after ``earnedOn`` is tagged
    ``retro-award``; None disables the inference."""
    credential_webpage_template: (
        Annotated[str, StringConstraints(pattern=r"^https?://\S+\{code\}\S*$", max_length=512)]
        | None
    ) = None
    """The registry needs a webpage per credential and Ethos sends none: with a template
    such as ``https://college.example/credentials/{code}``, a definition without one gets
    it from its SIS code (URL-quoted, lowercase). None leaves the webpage empty."""
    learner_id_types: tuple[_Label, ...] = (
        "bannerId",
        "colleaguePersonId",
        "elevateId",
        "bannerSourcedId",
        "bannerUserName",
        "colleagueUserName",
    )
    """Ethos ``persons.credentials`` types kept as learner identifiers, in preference
    order. National ids (SSN, SIN, tax ids) are never accepted here."""

    def credential_webpage(self, code: str | None) -> str | None:
        """The templated webpage of a credential with SIS code ``code``, if configured."""
        if self.credential_webpage_template is None or not code:
            return None
        return self.credential_webpage_template.replace(
            "{code}", quote(code.strip().lower(), safe="")
        )

    @field_validator("credential_type_overrides")
    @classmethod
    def _normalized_keys(
        cls, value: dict[str, CtdlCredentialType]
    ) -> dict[str, CtdlCredentialType]:
        return {normalize_code(k): v for k, v in value.items()}

    @field_validator("microcredential_prefixes")
    @classmethod
    def _normalized_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_code(p) for p in value)

    @field_validator("learner_id_types")
    @classmethod
    def _no_national_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        forbidden = sorted(set(value) & FORBIDDEN_LEARNER_ID_TYPES)
        if forbidden:
            raise ValueError(f"national identifiers cannot be learner ids: {forbidden}")
        return value

    @model_validator(mode="after")
    def _default_given(self) -> MappingDefaults:
        if (
            self.unknown_credential_type is UnknownTypePolicy.USE_DEFAULT
            and self.default_credential_type is None
        ):
            raise ValueError("use-default needs default_credential_type")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """:attr:`time_zone` as a tzinfo."""
        return ZoneInfo(self.time_zone)


def _tenant_id_from_key(schema: dict[str, Any]) -> None:
    # In the file, a profile's tenant_id may be left out: the registry key supplies it.
    required = schema.get("required")
    if isinstance(required, list) and "tenant_id" in required:
        required.remove("tenant_id")


class TenantProfile(_Config):
    """One institution cayg serves."""

    model_config = ConfigDict(json_schema_extra=_tenant_id_from_key)

    tenant_id: TenantId
    """The id in ``sis.events.<tenant id>``; in the file, defaults to the registry key."""
    display_name: _Label
    """The institution's name, for operators and as a fallback organization name."""
    webpage: WebUrl
    """The institution's home page (the organization's ``subjectWebpage``)."""
    description: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=15, max_length=4000)]
        | None
    ) = None
    """What the institution is, for its registry entry when the SIS sends no description."""
    organization_ctid: Ctid | None = None
    """The institution's existing registry CTID, imported; None derives one."""
    ethos_publishers: tuple[EthosPublisher, ...] = ()
    """Ethos publishers that belong to the tenant; no entry means Ethos is refused."""
    ethos_tenant_ids: tuple[_Label, ...] = ()
    """Ethos ``publisher.tenant.id`` values of this institution; when set and a
    notification names a tenant, it must be one of them."""
    ethos_home_institution_id: _Label | None = None
    """The ``educational-institutions`` GUID of the institution itself, when known."""
    cloudevent_sources: tuple[_Label, ...] = ()
    """CloudEvent ``source`` values that belong to the tenant: exact URIs, or prefixes
    ending in ``*``. No entry means CloudEvents are refused."""
    backfill_enabled: bool = True
    """Whether backfill records are accepted on the tenant's topic."""
    definition_ctids: dict[_Label, Ctid] = Field(default_factory=dict)
    """Existing registry CTIDs of credentials published before cayg, by SIS id or SIS
    code: imported, never re-minted."""
    organization_ctids: dict[_Label, Ctid] = Field(default_factory=dict)
    """Existing registry CTIDs of other organizations (partners, accreditors) the SIS
    describes, by their SIS id: imported, never re-minted."""
    mapping: MappingDefaults = Field(default_factory=MappingDefaults)
    """Mapping policy and defaults."""
    max_message_bytes: int | None = Field(default=None, ge=1024, le=16 * 1024 * 1024)
    """Per-tenant override of ingest's message size limit."""

    @property
    def org_ctid(self) -> str:
        """The institution's CTID: the imported one, else derived from the tenant id."""
        if self.organization_ctid is not None:
            return self.organization_ctid
        return derive_ctid(self.tenant_id, EntityType.ORGANIZATION.value, self.tenant_id)

    def organization_ref(self) -> OrganizationRef:
        """A reference to the institution itself."""
        return OrganizationRef(ctid=self.org_ctid, name=self.display_name, webpage=self.webpage)

    def definition_ctid(self, source_id: str, code: str | None = None) -> tuple[str, bool]:
        """The CTID of one of the tenant's definitions and whether it was imported.

        Imported CTIDs are looked up by SIS id, then by code; otherwise the CTID is
        derived from tenant and SIS id, so every reference computes the same one.
        """
        imported = self.definition_ctids.get(source_id)
        if imported is None and code is not None:
            imported = self._ctids_by_code().get(normalize_code(code))
        if imported is not None:
            return imported, True
        return derive_ctid(self.tenant_id, EntityType.CREDENTIAL_DEFINITION.value, source_id), False

    def organization_ctid_for(self, source_id: str) -> tuple[str, bool]:
        """The CTID of an organization the tenant's SIS describes, and whether imported.

        The institution itself (SIS id = tenant id or its Ethos home institution id) has
        :attr:`org_ctid`; others an imported CTID from ``organization_ctids`` or one
        derived from tenant and SIS id.
        """
        if source_id in (self.tenant_id, self.ethos_home_institution_id):
            return self.org_ctid, self.organization_ctid is not None
        imported = self.organization_ctids.get(source_id)
        if imported is not None:
            return imported, True
        return derive_ctid(self.tenant_id, EntityType.ORGANIZATION.value, source_id), False

    def _ctids_by_code(self) -> dict[str, str]:
        return {normalize_code(k): v for k, v in self.definition_ctids.items()}

    def ethos_publisher(self, publisher_id: str) -> EthosPublisher | None:
        """The tenant's Ethos publisher with this id (ids compare case-insensitively)."""
        wanted = publisher_id.strip().casefold()
        for publisher in self.ethos_publishers:
            if publisher.id.casefold() == wanted:
                return publisher
        return None

    def owns_cloudevent_source(self, source: str) -> bool:
        """Whether a CloudEvent ``source`` belongs to the tenant."""
        return any(_source_matches(pattern, source) for pattern in self.cloudevent_sources)


def _source_matches(pattern: str, source: str) -> bool:
    if pattern.endswith("*"):
        return source.startswith(pattern[:-1])
    return source == pattern


def _patterns_overlap(a: str, b: str) -> bool:
    a_prefix, b_prefix = a.endswith("*"), b.endswith("*")
    if a_prefix and b_prefix:
        return a[:-1].startswith(b[:-1]) or b[:-1].startswith(a[:-1])
    if a_prefix:
        return b.startswith(a[:-1])
    if b_prefix:
        return a.startswith(b[:-1])
    return a == b


class TenantRegistry(_Config):
    """All tenants, keyed by tenant id; no publisher or source belongs to two of them."""

    schema_version: Literal["1.0"] = TENANTS_SCHEMA_VERSION
    tenants: dict[TenantId, TenantProfile]
    """Tenant id → profile."""

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tenants"), dict):
            tenants = {}
            for key, value in data["tenants"].items():
                with_id = value
                if isinstance(value, dict) and "tenant_id" not in value:
                    with_id = {**value, "tenant_id": key}
                tenants[key] = with_id
            data = {**data, "tenants": tenants}
        return data

    @model_validator(mode="after")
    def _disjoint(self) -> TenantRegistry:
        publishers: dict[str, str] = {}
        sources: list[tuple[str, str]] = []
        for key, profile in self.tenants.items():
            if profile.tenant_id != key:
                raise ValueError(f"tenant {key!r} has tenant_id {profile.tenant_id!r}")
            for publisher in profile.ethos_publishers:
                other = publishers.setdefault(publisher.id.casefold(), key)
                if other != key:
                    raise ValueError(f"Ethos publisher {publisher.id} is in {other} and {key}")
            for pattern in profile.cloudevent_sources:
                for other_pattern, other in sources:
                    if other != key and _patterns_overlap(pattern, other_pattern):
                        raise ValueError(
                            f"CloudEvent source {pattern!r} of {key} overlaps "
                            f"{other_pattern!r} of {other}",
                        )
                sources.append((pattern, key))
        return self

    def get(self, tenant_id: str) -> TenantProfile | None:
        """The tenant's profile, or None when it is not registered."""
        return self.tenants.get(tenant_id)

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self.tenants

    def profiles(self) -> Iterator[TenantProfile]:
        """The profiles, in file order."""
        return iter(self.tenants.values())

    def owner_of_ethos_publisher(self, publisher_id: str) -> str | None:
        """Which tenant an Ethos publisher id belongs to, if any."""
        for profile in self.tenants.values():
            if profile.ethos_publisher(publisher_id) is not None:
                return profile.tenant_id
        return None

    def owner_of_cloudevent_source(self, source: str) -> str | None:
        """Which tenant a CloudEvent source belongs to, if any."""
        for profile in self.tenants.values():
            if profile.owns_cloudevent_source(source):
                return profile.tenant_id
        return None

    @classmethod
    def from_json(cls, data: str | bytes) -> TenantRegistry:
        """The registry from JSON text."""
        return cls.model_validate_json(data)

    @classmethod
    def load(cls, path: str | Path) -> TenantRegistry:
        """The registry from a JSON file."""
        return cls.from_json(Path(path).read_bytes())

    def to_json(self) -> str:
        """The registry as indented JSON (the file format)."""
        return json.dumps(
            self.model_dump(mode="json", exclude={"tenants": {"__all__": {"tenant_id"}}}),
            indent=2,
            ensure_ascii=False,
        )
