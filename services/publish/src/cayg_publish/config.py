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
    issuer = { id = "https://acme.edu/issuers/1", name = "Acme College", url = "https://acme.edu" }
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
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


class IssuerProfile(_Model):
    """The OB 3.0 / CLR ``Profile`` of the issuer signing the tenant's credentials."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    """The issuer's id: an https URL or a DID; the verification method hangs off it."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    url: HttpUrl | None = None
    email: Annotated[str, StringConstraints(max_length=254)] | None = None


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
    timeouts: HttpTimeouts = HttpTimeouts()
    limits: Limits = Limits()

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
