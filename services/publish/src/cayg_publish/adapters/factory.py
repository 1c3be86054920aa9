"""Building publish's delivery core from the target configuration.

:class:`Publisher` is what a Kafka handler needs: ``await publisher.deliver(change)``. It
owns the ledger (and its catalog), every tenant's targets with their HTTP clients, one
throttle book and the retry policy. Nothing connects at construction; :meth:`start`
migrates the ledger, :meth:`aclose` releases everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Self

import httpx

from cayg_publish.adapters.clr import ClrClient, ClrTarget
from cayg_publish.adapters.credential_engine import CredentialEngineClient, CredentialEngineTarget
from cayg_publish.config import (
    ClrTargetConfig,
    CredentialEngineTargetConfig,
    PostgresLedgerConfig,
    PublishTargetsConfig,
    SqliteLedgerConfig,
)
from cayg_publish.domain import Catalog, DeliveryReport, Target
from cayg_publish.ledger import Ledger, PostgresLedger, SqliteLedger
from cayg_publish.render.ctdl import RegistryOptions, RegistryRenderer
from cayg_publish.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    sign_for_upload,
)
from cayg_publish.retry import RetryPolicy
from cayg_publish.signing import ContextLoader, SigningKey, sign_credential
from cayg_publish.usecase import ThrottleBook, deliver
from cayg_shared.schema import Change

#: Test hook: an httpx transport per target name (e.g. respx or an ASGI app).
Transports = Mapping[str, httpx.AsyncBaseTransport]


def create_ledger(
    config: SqliteLedgerConfig | PostgresLedgerConfig, *, environ: Mapping[str, str] | None = None
) -> Ledger:
    """The configured ledger (not yet migrated)."""
    if isinstance(config, SqliteLedgerConfig):
        return SqliteLedger(config.path)
    return PostgresLedger(config.dsn.resolve(environ), pool_size=config.pool_size)


def create_target(
    config: CredentialEngineTargetConfig | ClrTargetConfig,
    catalog: Catalog,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CredentialEngineTarget | ClrTarget:
    """One target from its configuration; secrets and keys are read here."""
    limits = config.limits.to_domain()
    if isinstance(config, CredentialEngineTargetConfig):
        options = RegistryOptions(
            publish_for_organization=config.publish_for_organization,
            default_language=config.default_language,
            on_delete=config.on_delete,
        )
        return CredentialEngineTarget(
            config.name,
            CredentialEngineClient.from_config(config, environ=environ, transport=transport),
            RegistryRenderer(options, catalog),
            limits=limits,
        )
    key = SigningKey.from_file(config.signing_key_file)
    loader = ContextLoader.from_directory(config.contexts_dir)
    issuer = config.issuer
    options_ob = OpenBadgesOptions(
        issuer=Issuer(
            id=issuer.id,
            name=issuer.name,
            url=str(issuer.url) if issuer.url else None,
            email=issuer.email,
        ),
        identity_salt=config.identity_salt.resolve(environ),
        achievement_id_base=str(config.achievement_id_base) if config.achievement_id_base else None,
    )

    def signer(body: Mapping[str, object]) -> dict[str, object]:
        return sign_for_upload(body, lambda document: sign_credential(document, key, loader))

    return ClrTarget(
        config.name,
        ClrClient.from_config(config, environ=environ, transport=transport),
        OpenBadgesRenderer(options_ob, catalog, api=config.api),
        signer,
        limits=limits,
    )


class Publisher:
    """Ledger, targets per tenant, throttles and retry policy, ready to deliver changes."""

    def __init__(
        self,
        ledger: Ledger,
        targets: Mapping[str, Sequence[Target]],
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self._targets = {tenant: tuple(items) for tenant, items in targets.items()}
        self._policy = policy or RetryPolicy()
        self._throttles = ThrottleBook()

    def __repr__(self) -> str:
        return f"Publisher(tenants={sorted(self._targets)}, ledger={self.ledger!r})"

    @classmethod
    def from_config(
        cls,
        config: PublishTargetsConfig,
        *,
        policy: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        transports: Transports | None = None,
    ) -> Self:
        """Everything ``config`` describes; raises ``ConfigError`` for unresolvable secrets."""
        ledger = create_ledger(config.ledger, environ=environ)
        targets = {
            tenant: [
                create_target(
                    target,
                    ledger.catalog,
                    environ=environ,
                    transport=(transports or {}).get(target.name),
                )
                for target in tenant_targets.targets
            ]
            for tenant, tenant_targets in config.tenants.items()
        }
        return cls(ledger, targets, policy=policy)

    def tenants(self) -> tuple[str, ...]:
        """The tenants that have targets."""
        return tuple(self._targets)

    def targets_for(self, tenant: str) -> tuple[Target, ...]:
        """The targets of ``tenant`` (none for a tenant without configuration)."""
        return self._targets.get(tenant, ())

    async def start(self) -> None:
        """Migrate the ledger schema (idempotent)."""
        await self.ledger.migrate()

    async def deliver(
        self,
        change: Change,
        only_target: str | None = None,
        *,
        serves: Callable[[str], bool] | None = None,
    ) -> DeliveryReport:
        """Deliver ``change`` to its tenant's targets (or to ``only_target`` of them, for a
        retry of one target), keeping to the targets ``serves`` accepts (this lane's)."""
        targets = self.targets_for(change.tenant)
        if only_target is not None:
            targets = tuple(t for t in targets if t.name == only_target)
        if serves is not None:
            targets = tuple(t for t in targets if serves(t.name))
        return await deliver(
            change, targets, self.ledger, throttles=self._throttles, policy=self._policy
        )

    async def aclose(self) -> None:
        """Close every target's client and the ledger."""
        for targets in self._targets.values():
            for target in targets:
                close = getattr(target, "aclose", None)
                if close is not None:
                    await close()
        await self.ledger.close()
