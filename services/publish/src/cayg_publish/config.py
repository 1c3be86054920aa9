"""Per-tenant target configuration: which registries and CLR hosts a tenant publishes to.

Loaded from a JSON or TOML file the operator maintains. Secrets are never written in the
file: each is a :class:`SecretRef` naming a file (a mounted Kubernetes/Docker secret) or
an environment variable, resolved only when the composition root builds the targets, and
held as ``SecretStr`` from then on (hidden in ``repr`` and logs).

Example (TOML)::

    [ledger]
    kind = "sqlite"
    path = "/var/lib/cayg/publish-ledger.sqlite3"

    [[tenants.acme.targets]]
    kind = "credential-engine"
    name = "acme-registry"
    base_url = "https://sandbox.credentialengine.org/assistant/"
    publish_for_organization = "ce-a588a18b-2616-4c74-bdcd-6507c0693d0e"
    api_key = { env = "ACME_CE_API_KEY" }

    [[tenants.acme.targets]]
    kind = "clr"
    name = "acme-clr"
    base_url = "https://clr.example.edu/ims/clr/v2p0"
    client_id = "cayg-acme"
    client_secret = { file = "/run/secrets/acme-clr-secret" }
    identity_salt = { file = "/run/secrets/acme-identity-salt" }
    signing_key_file = "/run/secrets/acme-issuer-key.json"
    contexts_dir = "/etc/cayg/contexts"
    issuer = { id = "did:web:acme.edu", name = "Acme College", url = "https://acme.edu" }
    status_lists = { base_url = "https://acme.edu/credentials/status/" }
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    model_validator,
)

from cayg_publish.domain.catalog import TargetLimits
from cayg_publish.domain.projection import DocumentKind

SANDBOX_ASSISTANT_URL: Final = "https://sandbox.credentialengine.org/assistant/"
CLR_UPSERT_SCOPE: Final = "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.upsert"
OB_UPSERT_SCOPE: Final = "https://purl.imsglobal.org/spec/ob/v3p0/scope/credential.upsert"

#: A target's name: the ledger keys its entries by it, so it must stay stable.
TargetName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)
]
#: A Credential Engine CTID (``ce-`` + lowercase UUID).
CtidText = Annotated[
    str,
    StringConstraints(pattern=r"^ce-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
#: A tenant id as the topics spell it.
TenantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])$")]


class ConfigError(ValueError):
    """The target configuration is invalid or a secret cannot be resolved."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Model):
    """Where a secret lives: a file (first line, surrounding whitespace stripped) or an
    environment variable. Exactly one of the two."""

    file: Path | None = None
    env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.file is None) == (self.env is None):
            raise ValueError("a secret reference names exactly one of 'file' or 'env'")
        return self

    def resolve(self, environ: Mapping[str, str] | None = None) -> SecretStr:
        """The secret's value. Errors name where it was looked for, never what was found."""
        if self.file is not None:
            try:
                text = self.file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from None
            value = text.strip()
            if not value:
                raise ConfigError(f"secret file {self.file} is empty")
            return SecretStr(value)
        name = self.env or ""
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if not value:
            raise ConfigError(f"environment variable {name} (a secret) is not set")
        return SecretStr(value)


class HttpTimeouts(_Model):
    """Explicit HTTP timeouts, in seconds: a target never gets to hang a delivery."""

    connect: float = Field(default=5.0, gt=0)
    read: float = Field(default=30.0, gt=0)
    write: float = Field(default=30.0, gt=0)
    pool: float = Field(default=5.0, gt=0)


class Limits(_Model):
    """Protection of one target: concurrent calls, sustained rate, burst."""

    # Defaults that do not cap a backfill: 8 calls at once, 100 a second on average (a
    # registry account or CLR host that needs less is configured per target).
    max_concurrency: int = Field(default=8, ge=1, le=256)
    rate_per_second: float | None = Field(default=100.0, gt=0)
    burst: int = Field(default=100, ge=1)

    def to_domain(self) -> TargetLimits:
        """The domain's :class:`~cayg_publish.domain.TargetLimits`."""
        return TargetLimits(
            max_concurrency=self.max_concurrency,
            rate_per_second=self.rate_per_second,
            burst=self.burst,
        )


class CredentialEngineTargetConfig(_Model):
    """A Credential Engine Registry Assistant account publishing for one organization."""

    kind: Literal["credential-engine"] = "credential-engine"

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """What a registry account holds: credentials and the organization."""
        return frozenset({DocumentKind.CREDENTIAL, DocumentKind.ORGANIZATION})

    name: TargetName
    base_url: HttpUrl = HttpUrl(SANDBOX_ASSISTANT_URL)
    """The Assistant API base; the sandbox unless configured (production differs)."""
    api_key: SecretRef
    """The organization's 36-character API key (``Authorization: ApiToken <key>``)."""
    publish_for_organization: CtidText
    """The CTID of the organization the account publishes for
    (``PublishForOrganizationIdentifier``)."""
    default_language: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")
    ] = "en-US"
    on_delete: Literal["deprecate", "delete"] = "deprecate"
    """What an SIS delete of a definition does in the registry: republish as
    ``credentialStat:Deprecated`` (keeps the record for holders) or ``credential/delete``."""
    timeouts: HttpTimeouts = HttpTimeouts()
    limits: Limits = Limits()


#: The largest ``data:`` URI accepted as an image (characters): wallets show it inline, and
#: it travels in every credential that names the achievement or issuer.
MAX_IMAGE_DATA_URI: Final = 128 * 1024
_DATA_URI: Final = re.compile(
    r"^data:image/(png|jpeg|gif|webp|svg\+xml);base64,([A-Za-z0-9+/]+={0,2})$"
)


def _image(value: str) -> str:
    if value.startswith("data:"):
        if len(value) > MAX_IMAGE_DATA_URI:
            raise ValueError(
                f"an image data URI is {len(value)} characters, over the {MAX_IMAGE_DATA_URI} "
                "limit: host the image and give its https URL"
            )
        match = _DATA_URI.match(value)
        if match is None:
            raise ValueError(
                "an image data URI is data:image/<png|jpeg|gif|webp|svg+xml>;base64,<data>"
            )
        try:
            base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            raise ValueError("the image data URI's base64 does not decode") from None
        return value
    if not value.startswith("https://") or len(value) > 2048 or any(c.isspace() for c in value):
        raise ValueError("an image is an https URL (at most 2048 characters) or a data URI")
    return value


#: An image: an https URL or a ``data:image/...;base64,`` URI within :data:`MAX_IMAGE_DATA_URI`.
ImageRef = Annotated[str, AfterValidator(_image)]


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (a test or demo address, not a public one)."""
    host = (HttpUrl(url).host or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PublishedKeyConfig(_Model):
    """A key the issuer still lists but no longer signs with (rotated out): its public half."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    """Its verification method id, ``<issuer id>#<fragment>``."""
    public_key_multibase: Annotated[str, StringConstraints(pattern=r"^z6Mk[1-9A-HJ-NP-Za-km-z]+$")]


class IssuerProfile(_Model):
    """The OB 3.0 / CLR ``Profile`` of the issuer signing the tenant's credentials."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    """The issuer's id: ``did:web:<domain>`` (resolvable through the institution's domain),
    an https URL (a controller document hosted there) or a ``did:key``; the verification
    method of the signing key hangs off it."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    url: HttpUrl | None = None
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    image: ImageRef | None = None
    """The institution's logo (https URL or data URI), shown by wallets."""
    previous_keys: tuple[PublishedKeyConfig, ...] = ()
    """Keys rotated out that still verify what they signed: ``cayg issuer export`` lists
    them beside the current signing key. A leaked key is removed from here, not kept."""

    @model_validator(mode="after")
    def _keys_are_the_issuers(self) -> Self:
        for key in self.previous_keys:
            if key.id.partition("#")[0] != self.id or not key.id.partition("#")[2]:
                raise ValueError(f"previous key {key.id!r} is not <{self.id}>#<fragment>")
        return self


class StatusListsConfig(_Model):
    """W3C Bitstring Status Lists for the credentials a CLR/OB target issues."""

    base_url: HttpUrl
    """The public URL prefix of the lists (``<base_url><list id>``), e.g.
    ``https://acme.edu/credentials/status/``: route it to publish's ``/status-lists/``."""
    min_interval_s: float = Field(default=30.0, ge=0.1, le=3600)
    """A list is re-published at most this often after revocations (they coalesce)."""
    refresh_s: float = Field(default=3600.0, ge=1, le=86_400)
    """Each list is re-signed at the start of every period this long."""
    validity_s: float | None = Field(default=None, gt=0)
    """How long each signed list is valid (default: two refresh periods)."""

    @model_validator(mode="after")
    def _base(self) -> Self:
        if not str(self.base_url).endswith("/"):
            raise ValueError("status_lists.base_url must end with '/'")
        if self.validity_s is not None and self.validity_s < self.refresh_s:
            raise ValueError("status_lists.validity_s must be at least refresh_s")
        return self


class ClrTargetConfig(_Model):
    """A 1EdTech CLR 2.0 (or OB 3.0) host receiving learners' signed credentials."""

    kind: Literal["clr"] = "clr"
    name: TargetName
    base_url: HttpUrl
    """The API base, e.g. ``https://host/ims/clr/v2p0`` (or ``…/ims/ob/v3p0``)."""
    api: Literal["clr", "ob"] = "clr"

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """Learners' records (CLR 2.0) or awards' credentials (OB 3.0)."""
        if self.api == "ob":
            return frozenset({DocumentKind.AWARD_CREDENTIAL})
        return frozenset({DocumentKind.LEARNER_RECORD})

    """``clr``: POST ``ClrCredential``s; ``ob``: POST ``AchievementCredential``s."""
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    client_secret: SecretRef
    scopes: tuple[str, ...] | None = None
    """OAuth scopes to request; default: the API's ``credential.upsert`` scope."""
    token_url: HttpUrl | None = None
    """Overrides the token URL found through ``GET /discovery``."""
    refresh_margin_seconds: float = Field(default=60.0, ge=0)
    """Renew a token this long before it expires."""
    issuer: IssuerProfile
    signing_key_file: Path
    """The issuer's Ed25519 key (see ``cayg_signing.SigningKey.from_file``)."""
    contexts_dir: Path
    """The pinned JSON-LD contexts used for signing (``ContextLoader.from_directory``)."""
    identity_salt: SecretRef
    """Secret from which per-credential salts of hashed learner identities are derived."""
    achievement_id_base: HttpUrl | None = None
    """If set, ``Achievement.id`` = this + CTID (e.g. the registry's resource URL base);
    otherwise a ``urn:uuid`` derived from the CTID."""
    achievement_id_pattern: (
        Annotated[str, StringConstraints(pattern=r"^https://\S*\{(ctid|code|source_id)\}")] | None
    ) = None
    """``Achievement.id`` from a pattern: ``{ctid}``, ``{code}``, ``{source_id}``, e.g.
    ``https://credentialengineregistry.org/resources/{ctid}``."""
    achievement_image: ImageRef | None = None
    """The image of every achievement without one of its own."""
    achievement_images: dict[str, ImageRef] = Field(default_factory=dict, max_length=10_000)
    """Images of single definitions, by SIS id, code or CTID."""
    status_lists: StatusListsConfig | None = None
    """Bitstring Status Lists: every credential carries a ``credentialStatus`` entry."""
    allow_loopback_urls: bool = False
    """Accept loopback addresses in achievement ids and status list URLs (the demo and
    tests only: a credential out in the world must never name this machine)."""
    timeouts: HttpTimeouts = HttpTimeouts()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _public_urls(self) -> Self:
        if self.allow_loopback_urls:
            return self
        named = {
            "achievement_id_base": str(self.achievement_id_base or ""),
            "achievement_id_pattern": (self.achievement_id_pattern or "").split("{", 1)[0],
            "status_lists.base_url": str(self.status_lists.base_url if self.status_lists else ""),
        }
        for field, url in named.items():
            if url and is_loopback(url):
                raise ValueError(
                    f"{field} {url} is a loopback address: credentials would name this "
                    "machine (allow_loopback_urls is for the demo and tests only)"
                )
        return self

    @property
    def effective_scopes(self) -> tuple[str, ...]:
        """The scopes to request."""
        if self.scopes is not None:
            return self.scopes
        return (CLR_UPSERT_SCOPE,) if self.api == "clr" else (OB_UPSERT_SCOPE,)


TargetConfig = Annotated[
    CredentialEngineTargetConfig | ClrTargetConfig, Field(discriminator="kind")
]


class TenantTargets(_Model):
    """The targets one tenant publishes to."""

    targets: tuple[TargetConfig, ...] = ()


class SqliteLedgerConfig(_Model):
    """The embedded ledger (one publish instance)."""

    kind: Literal["sqlite"] = "sqlite"
    path: Path


class PostgresLedgerConfig(_Model):
    """The shared ledger (several publish instances)."""

    kind: Literal["postgres"] = "postgres"
    dsn: SecretRef
    """libpq connection string or URL; a secret, since it may carry a password."""
    pool_size: int = Field(default=4, ge=1, le=64)


LedgerConfig = Annotated[SqliteLedgerConfig | PostgresLedgerConfig, Field(discriminator="kind")]


class PublishTargetsConfig(_Model):
    """The whole file: the ledger and every tenant's targets."""

    ledger: LedgerConfig = SqliteLedgerConfig(path=Path("publish-ledger.sqlite3"))
    tenants: dict[TenantName, TenantTargets] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_target_names(self) -> Self:
        # The ledger and the throttles key by target name: two targets with one name
        # would share ledger rows and limits.
        seen: dict[str, str] = {}
        for tenant, tenant_targets in self.tenants.items():
            for target in tenant_targets.targets:
                if target.name in seen:
                    raise ValueError(
                        f"target name {target.name!r} is used by tenants "
                        f"{seen[target.name]!r} and {tenant!r}; names must be unique"
                    )
                seen[target.name] = tenant
        return self

    def targets_for(
        self, tenant: str
    ) -> tuple[CredentialEngineTargetConfig | ClrTargetConfig, ...]:
        """The targets of ``tenant`` (none for an unknown tenant)."""
        entry = self.tenants.get(tenant)
        return () if entry is None else entry.targets

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Validate an already-parsed document."""
        return cls.model_validate(data)

    @classmethod
    def load(cls, path: Path | str) -> Self:
        """Load ``path``: TOML if it ends in ``.toml``, JSON otherwise."""
        file = Path(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read target configuration {file}: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8")) if file.suffix == ".toml" else json.loads(raw)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{file} is not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file} must hold an object at the top level")
        return cls.from_mapping(data)
