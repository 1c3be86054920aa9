"""Building publish's delivery core from the target configuration.

:class:`Publisher` is what a Kafka handler needs: ``await publisher.deliver(change)``. It
owns the ledger (and its catalog), every tenant's targets with their HTTP clients, one
throttle book and the retry policy. Nothing connects at construction; :meth:`start`
migrates the ledger, :meth:`aclose` releases everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

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
from cayg_publish.domain import Catalog, Target
from cayg_publish.ledger import Ledger, PostgresLedger, SqliteLedger
from cayg_publish.projection import DocumentKind, DocumentRef, RetrySchedule
from cayg_publish.projector import OutcomeHook, Projector, ThrottleBook
from cayg_publish.render.ctdl import RegistryOptions, RegistryRenderer
from cayg_publish.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    sign_for_upload,
)
from cayg_publish.retry import RetryPolicy
from cayg_shared.schema import Change
from cayg_signing import ContextLoader, SigningKey, SigningPool, sign_credential

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
    pools: SigningPools | None = None,
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

    async def pooled(body: Mapping[str, Any]) -> dict[str, Any]:
        assert pools is not None
        return await pools.for_contexts(config.contexts_dir).sign_with_embedded(body, key)

    return ClrTarget(
        config.name,
        ClrClient.from_config(config, environ=environ, transport=transport),
        OpenBadgesRenderer(options_ob, catalog, api=config.api),
        signer if pools is None else pooled,
        limits=limits,
    )


class SigningPools:
    """One :class:`~cayg_signing.SigningPool` per contexts directory, shared by every CLR/OB
    target of the process: signing runs in worker processes (``workers``; 0 signs inline)
    and each distinct credential content is signed once (the pool's cache), so a nested
    AchievementCredential is not re-signed with every re-issue of its learner's record."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers
        self._pools: dict[Path, SigningPool] = {}

    def for_contexts(self, contexts_dir: Path) -> SigningPool:
        """The pool signing with the contexts in ``contexts_dir``."""
        key = Path(contexts_dir).resolve()
        pool = self._pools.get(key)
        if pool is None:
            pool = SigningPool(key, max_workers=self._workers)
            self._pools[key] = pool
        return pool

    async def start(self) -> None:
        """Start every pool's workers (a broken installation fails here)."""
        for pool in self._pools.values():
            await pool.start()

    async def aclose(self) -> None:
        """Stop every pool's workers."""
        for pool in self._pools.values():
            await pool.aclose()


class Publisher:
    """Ledger, targets per tenant, and the projector that delivers to them.

    The consume path calls :meth:`record` (catalog + dirty documents, one ledger
    transaction, no remote call); :meth:`projector` builds the loop that delivers.
    """

    def __init__(
        self,
        ledger: Ledger,
        targets: Mapping[str, Sequence[Target]],
        *,
        policy: RetryPolicy | None = None,
        schedule: RetrySchedule | None = None,
        pools: SigningPools | None = None,
    ) -> None:
        self.ledger = ledger
        self._pools = pools
        self._targets = {tenant: tuple(items) for tenant, items in targets.items()}
        self._policy = policy or RetryPolicy()
        self._schedule = schedule or RetrySchedule()
        self._throttles = ThrottleBook()

    def __repr__(self) -> str:
        return f"Publisher(tenants={sorted(self._targets)}, ledger={self.ledger!r})"

    @classmethod
    def from_config(
        cls,
        config: PublishTargetsConfig,
        *,
        policy: RetryPolicy | None = None,
        schedule: RetrySchedule | None = None,
        environ: Mapping[str, str] | None = None,
        transports: Transports | None = None,
        signing_workers: int | None = None,
    ) -> Self:
        """Everything ``config`` describes; raises ``ConfigError`` for unresolvable secrets.

        ``signing_workers``: processes that sign credentials (None: one per CPU; 0: sign
        in a thread of this process, as tests do).
        """
        ledger = create_ledger(config.ledger, environ=environ)
        pools = SigningPools(signing_workers) if signing_workers != 0 else None
        targets = {
            tenant: [
                create_target(
                    target,
                    ledger.catalog,
                    environ=environ,
                    transport=(transports or {}).get(target.name),
                    pools=pools,
                )
                for target in tenant_targets.targets
            ]
            for tenant, tenant_targets in config.tenants.items()
        }
        return cls(ledger, targets, policy=policy, schedule=schedule, pools=pools)

    def tenants(self) -> tuple[str, ...]:
        """The tenants that have targets."""
        return tuple(self._targets)

    def targets_for(self, tenant: str) -> tuple[Target, ...]:
        """The targets of ``tenant`` (none for a tenant without configuration)."""
        return self._targets.get(tenant, ())

    def kinds_by_target(
        self, tenant: str, serves: Callable[[str], bool] | None = None
    ) -> dict[str, frozenset[DocumentKind]]:
        """The document kinds each of ``tenant``'s targets (of this lane) holds."""
        return {
            t.name: t.document_kinds
            for t in self.targets_for(tenant)
            if serves is None or serves(t.name)
        }

    async def start(self) -> None:
        """Migrate the ledger schema (idempotent) and start the signing workers."""
        await self.ledger.migrate()
        if self._pools is not None:
            await self._pools.start()

    async def record(
        self, change: Change, *, serves: Callable[[str], bool] | None = None
    ) -> list[tuple[str, DocumentRef]]:
        """Apply ``change`` to the catalog and mark the documents it affects at this lane's
        targets dirty, in one ledger transaction; what was marked."""
        return await self.ledger.record_change(change, self.kinds_by_target(change.tenant, serves))

    async def reconcile(
        self, tenant: str, *, serves: Callable[[str], bool] | None = None
    ) -> list[tuple[str, DocumentRef]]:
        """Mark every document of ``tenant`` dirty at its (matching) targets."""
        return await self.ledger.reconcile(tenant, self.kinds_by_target(tenant, serves))

    def projector(
        self,
        *,
        serves: Callable[[str], bool] | None = None,
        on_outcome: OutcomeHook | None = None,
        max_in_flight: int = 64,
        lease_ttl_s: float = 30.0,
        poll_s: float = 0.5,
    ) -> Projector:
        """The delivery loop for every target this lane serves."""
        targets = [
            t
            for tenant in self._targets
            for t in self._targets[tenant]
            if serves is None or serves(t.name)
        ]
        return Projector(
            self.ledger,
            targets,
            policy=self._policy,
            schedule=self._schedule,
            throttles=self._throttles,
            max_in_flight=max_in_flight,
            lease_ttl_s=lease_ttl_s,
            poll_s=poll_s,
            on_outcome=on_outcome or _ignore,
        )

    async def aclose(self) -> None:
        """Close every target's client and the ledger."""
        for targets in self._targets.values():
            for target in targets:
                close = getattr(target, "aclose", None)
                if close is not None:
                    await close()
        if self._pools is not None:
            await self._pools.aclose()
        await self.ledger.close()


def _ignore(target: str, outcome: str) -> None:
    del target, outcome
