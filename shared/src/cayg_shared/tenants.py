"""The tenant registry: which institutions cayg serves and what belongs to each.

Loaded from a JSON file (``deploy/config/tenants.json``)::

    {"schema_version": "1.0",
     "tenants": {"<tenant id>": {"display_name": …, "webpage": …, …}, …}}

The tenant of a message is always the one its topic names (``sis.events.<tenant>``). The
registry adds what ingest needs to refuse a payload that names *another* institution —
the Ethos publishers and CloudEvent sources each tenant owns — the per-tenant mapping
policy normalize applies, and per-tenant size limits (:class:`TenantLimits`).

Institutions: a tenant's records may name its own home institution and any institution
that is no tenant's (a partner, an accreditor, a school learners came from). A record
that makes *another tenant's* home institution act for it — as the home institution, a
program's authorizing institution, a credential's owner or offerer, the organization an
event describes — is refused (``tenant-mismatch``); :meth:`TenantProfile.other_tenant_of`
answers which tenant an institution id or CTID belongs to. References to another
tenant's institution in relationship roles (partner, approver, accreditor, the
organization accepting a transfer) are legal and resolve to that tenant's CTID.

Mapping policy for credential types that cannot be decided (an Ethos ``degree`` whose
abbreviation and title reveal no level, a CloudEvent without ``credentialType`` whose code
and name reveal nothing): ``unknown_credential_type`` is ``reject`` by default — the
message goes to the normalize DLQ with reason ``unknown-credential-type`` and the operator
adds a ``credential_type_overrides`` entry, because publishing a wrong type to a public
registry is worse than publishing late. A tenant may instead choose ``use-default`` with a
``default_credential_type``; the definition then records ``type_basis: tenant-default``.

Missing descriptions: Ethos ``academic-credentials.description`` is optional, but the
Credential Registry requires a description of at least 15 characters and an OB
Achievement needs one. ``missing_description`` is ``template`` by default: a definition
without a description (or with one under 15 characters) gets ``description_template``
rendered with these placeholders, and records ``description_generated: true``:

* ``{name}`` — the credential's name ('Certified Nursing Assistant');
* ``{type_label}`` — its CTDL type in words ('License', 'Associate of applied science
  degree', 'Microcredential');
* ``{institution}`` — the tenant's ``display_name``.

The default, ``"{type_label} awarded by {institution}: {name}."``, always yields at least
15 characters; a template that could yield fewer is refused when the registry is loaded.
Under ``refuse`` such a definition goes to the normalize DLQ (``missing-description``).
"""

from __future__ import annotations

import json
import re
import string
import uuid
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
    PrivateAttr,
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

#: The shortest description the Credential Registry accepts (Registry Assistant API).
REGISTRY_MIN_DESCRIPTION_CHARS: Final = 15
#: The template a definition without a description gets unless the tenant sets its own.
DEFAULT_DESCRIPTION_TEMPLATE: Final = "{type_label} awarded by {institution}: {name}."
#: Placeholders a description template may use (see module docs).
#: Most derived definition CTIDs the process remembers (emptied when full).
_MAX_DERIVED_CTIDS: Final = 16_384
#: Derived definition CTIDs by (tenant id, SIS id), at most :data:`_MAX_DERIVED_CTIDS`.
_DERIVED_CTIDS: Final[dict[tuple[str, str], str]] = {}
DESCRIPTION_PLACEHOLDERS: Final = frozenset({"name", "type_label", "institution"})
#: The largest message any tenant may be allowed (also the largest free text the shared
#: schema carries, so that what ingest admits, normalize can map).
MAX_MESSAGE_BYTES_CEILING: Final = 16 * 1024 * 1024

# Words of CTDL class names that read badly when split at capitals.
_TYPE_LABEL_OVERRIDES: Final = {
    CtdlCredentialType.MICRO_CREDENTIAL: "Microcredential",
    CtdlCredentialType.BACHELOR_DEGREE: "Bachelor's degree",
    CtdlCredentialType.MASTER_DEGREE: "Master's degree",
    CtdlCredentialType.GENERAL_EDUCATION_DEVELOPMENT: "General Educational Development (GED)",
}


def type_label(credential_type: CtdlCredentialType) -> str:
    """A CTDL credential type in words: ``AssociateOfAppliedScienceDegree`` →
    'Associate of applied science degree'."""
    override = _TYPE_LABEL_OVERRIDES.get(credential_type)
    if override is not None:
        return override
    words = re.findall(r"[A-Z][a-z]*", credential_type.local_name)
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def _institution_key(value: str) -> str:
    # Banner and Colleague disagree on GUID case; an institution must have one key.
    text = value.strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text.casefold()


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


class MissingDescriptionPolicy(StrEnum):
    """What normalize does with a definition that has no usable description."""

    TEMPLATE = "template"
    """Render ``description_template`` and record ``description_generated: true``."""
    REFUSE = "refuse"
    """Send the message to the normalize DLQ (``missing-description``)."""


def _description_template(value: str) -> str:
    fields: list[str] = []
    try:
        for _text, field, spec, conversion in string.Formatter().parse(value):
            if field is None:
                continue
            if spec or conversion:
                raise ValueError(f"placeholder {{{field}}} may not carry a format or conversion")
            fields.append(field)
    except ValueError as error:
        raise ValueError(f"not a description template: {error}") from None
    unknown = sorted(set(fields) - DESCRIPTION_PLACEHOLDERS)
    if unknown:
        allowed = ", ".join(f"{{{p}}}" for p in sorted(DESCRIPTION_PLACEHOLDERS))
        raise ValueError(f"unknown placeholder(s) {unknown}; use {allowed}")
    if "name" not in fields:
        raise ValueError("the template must contain {name}")
    # The shortest text it can ever yield: a one-letter name and institution and the
    # shortest type label. The registry must accept even that.
    shortest_label = min((type_label(t) for t in CtdlCredentialType), key=len)
    shortest = _render_description(value, name="X", label=shortest_label, institution="X")
    if len(shortest) < REGISTRY_MIN_DESCRIPTION_CHARS:
        raise ValueError(
            f"the template can yield {shortest!r}, under the registry's "
            f"{REGISTRY_MIN_DESCRIPTION_CHARS} characters; add words"
        )
    return value


def _render_description(template: str, *, name: str, label: str, institution: str) -> str:
    text = template.format_map({"name": name, "type_label": label, "institution": institution})
    return " ".join(text.split())


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
    missing_description: MissingDescriptionPolicy = MissingDescriptionPolicy.TEMPLATE
    """Policy for definitions without a description of at least 15 characters (see
    module docs): ``template`` (default) or ``refuse``."""
    description_template: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
        AfterValidator(_description_template),
    ] = DEFAULT_DESCRIPTION_TEMPLATE
    """The description a definition without one gets under ``template``; placeholders
    ``{name}``, ``{type_label}``, ``{institution}``. Must yield at least 15 characters
    even for a one-letter name."""
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

    def fallback_description(
        self, credential_type: CtdlCredentialType, name: str, institution: str
    ) -> str | None:
        """The generated description of a definition without one; None under ``refuse``."""
        if self.missing_description is MissingDescriptionPolicy.REFUSE:
            return None
        return _render_description(
            self.description_template,
            name=name,
            label=type_label(credential_type),
            institution=institution,
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


class TenantLimits(_Config):
    """Per-tenant size and shape limits of ingest; each unset limit is the service's.

    They are coherent by construction: a string or a key can never be refused for its
    length when its message is within ``max_message_bytes`` unless a tenant sets a
    tighter ``max_string_chars`` on purpose (by default it *is* the message limit), and
    ``max_json_nodes`` defaults to what the message size allows. What stays independent
    is ``max_json_depth``, which protects the parser, not memory.
    """

    max_message_bytes: int | None = Field(default=None, ge=1024, le=MAX_MESSAGE_BYTES_CEILING)
    """Largest record value, in bytes (service default 1 MiB)."""
    max_json_depth: int | None = Field(default=None, ge=4, le=256)
    """Deepest nesting of JSON objects and arrays (service default 32)."""
    max_json_nodes: int | None = Field(default=None, ge=16, le=MAX_MESSAGE_BYTES_CEILING)
    """Most JSON values in one payload (default: as many as the message can hold)."""
    max_string_chars: int | None = Field(default=None, ge=256, le=MAX_MESSAGE_BYTES_CEILING)
    """Longest JSON string or object key (default: the message limit, so never binding)."""
    max_key_bytes: int | None = Field(default=None, ge=16, le=65536)
    """Largest record key (service default 1024)."""
    max_headers: int | None = Field(default=None, ge=1, le=1024)
    """Most headers on one record (service default 64)."""
    max_header_value_bytes: int | None = Field(default=None, ge=256, le=1024 * 1024)
    """Largest header value (service default 8192)."""


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
    limits: TenantLimits = Field(default_factory=TenantLimits)
    """Per-tenant overrides of ingest's size and shape limits."""
    max_message_bytes: int | None = Field(default=None, ge=1024, le=MAX_MESSAGE_BYTES_CEILING)
    """The older spelling of ``limits.max_message_bytes``: either may be given (equal
    if both are); the loaded profile carries the value in both."""

    # Home institution ids (GUIDs, lower-case) and organization CTIDs of the *other*
    # tenants of the registry → (tenant id, organization CTID); set by TenantRegistry.
    _other_institutions: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    # (tenant id, SIS id) → derived definition CTID: awards name the same few definitions
    # over and over, and each derivation is a SHA-1 and a UUID. Keyed by tenant id too, so
    # a copy with another tenant id can never read a CTID that is not its own.

    @model_validator(mode="before")
    @classmethod
    def _one_message_limit(cls, data: Any) -> Any:
        # Both spellings are readable; the profile carries the one value in both.
        if not isinstance(data, dict):
            return data
        limits = data.get("limits")
        if isinstance(limits, TenantLimits):
            limits = limits.model_dump(exclude_none=True)
        if limits is not None and not isinstance(limits, dict):
            return data
        top = data.get("max_message_bytes")
        nested = (limits or {}).get("max_message_bytes")
        if top is not None and nested is not None and top != nested:
            raise ValueError("max_message_bytes and limits.max_message_bytes differ")
        value = top if top is not None else nested
        if value is None:
            return data
        return {
            **data,
            "max_message_bytes": value,
            "limits": {**(limits or {}), "max_message_bytes": value},
        }

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
        # A derived CTID depends on tenant id and SIS id alone, so one cache serves every
        # profile (a module dict: a pydantic private attribute costs a lookup per read).
        key = (self.tenant_id, source_id)
        derived = _DERIVED_CTIDS.get(key)
        if derived is None:
            if len(_DERIVED_CTIDS) >= _MAX_DERIVED_CTIDS:
                _DERIVED_CTIDS.clear()
            derived = derive_ctid(self.tenant_id, EntityType.CREDENTIAL_DEFINITION.value, source_id)
            _DERIVED_CTIDS[key] = derived
        return derived, False

    def organization_ctid_for(self, source_id: str) -> tuple[str, bool]:
        """The CTID of an organization the tenant's SIS describes, and whether imported.

        The institution itself (SIS id = tenant id or its Ethos home institution id) has
        :attr:`org_ctid`; another tenant's home institution (by its Ethos GUID) that
        tenant's CTID; others an imported CTID from ``organization_ctids`` or one derived
        from tenant and SIS id.
        """
        if source_id in (self.tenant_id, self.ethos_home_institution_id):
            return self.org_ctid, self.organization_ctid is not None
        other = self._other_institutions.get(_institution_key(source_id))
        if other is not None:
            # Another tenant's home institution: its own CTID, never a second one.
            return other[1], True
        imported = self.organization_ctids.get(source_id)
        if imported is not None:
            return imported, True
        return derive_ctid(self.tenant_id, EntityType.ORGANIZATION.value, source_id), False

    def other_tenant_of(
        self, *, source_id: str | None = None, ctid: str | None = None
    ) -> str | None:
        """The other tenant whose home institution this is (by GUID/id or CTID), if any.

        The tenant's own institution and institutions that are no tenant's give None.
        """
        for key in (
            _institution_key(source_id) if source_id else None,
            ctid.strip().lower() if ctid else None,
        ):
            if key is not None and key in self._other_institutions:
                return self._other_institutions[key][0]
        return None

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
                elif isinstance(value, TenantProfile):
                    # Its own copy: this registry tells it about *its* other tenants,
                    # without changing a profile another registry holds.
                    with_id = value.model_copy()
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
        self._share_institutions()
        return self

    def _share_institutions(self) -> None:
        owners: dict[str, tuple[str, str]] = {}
        for key, profile in self.tenants.items():
            ids = [profile.org_ctid.lower()]
            if profile.ethos_home_institution_id is not None:
                ids.append(_institution_key(profile.ethos_home_institution_id))
            for institution in ids:
                other, _ = owners.setdefault(institution, (key, profile.org_ctid))
                if other != key:
                    raise ValueError(f"institution {institution} is the home of {other} and {key}")
        for key, profile in self.tenants.items():
            profile._other_institutions = {i: o for i, o in owners.items() if o[0] != key}

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
