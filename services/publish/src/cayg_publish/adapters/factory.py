"""Building publish's adapters from the target configuration: the ledger a config names, a
target's HTTP client and renderer, and the signing pools CLR/OB targets share. Nothing
connects at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from cayg_publish.adapters.clr import ClrClient, ClrTarget
from cayg_publish.adapters.credential_engine import CredentialEngineClient, CredentialEngineTarget
from cayg_publish.adapters.ledger import Ledger, PostgresLedger, SqliteLedger
from cayg_publish.adapters.ledger.status_store import StatusScope, StatusStore
from cayg_publish.adapters.status import (
    AsyncSigner,
    LedgerStatusAllocator,
    Signer,
    StatusListTarget,
    status_target_name,
)
from cayg_publish.config import (
    ClrTargetConfig,
    CredentialEngineTargetConfig,
    PostgresLedgerConfig,
    SqliteLedgerConfig,
)
from cayg_publish.domain.catalog import Catalog
from cayg_publish.domain.render.ctdl import RegistryOptions, RegistryRenderer
from cayg_publish.domain.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    sign_for_upload,
)
from cayg_publish.domain.status import StatusWindow
from cayg_shared.settings import available_cpus
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
    status_store: StatusStore | None = None,
    tenant: str | None = None,
    status_owner: str | None = None,
) -> CredentialEngineTarget | ClrTarget:
    """One target from its configuration; secrets and keys are read here.

    A CLR/OB target with ``status_lists`` takes the entries of ``tenant`` from
    ``status_store``; its lists
    are published by the status target of ``status_owner`` (itself by default; another
    target of the tenant with the same issuer when that one was configured first)."""
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
    issuer = config.issuer
    allocator = (
        status_allocator(config, status_store, tenant=tenant, owner=status_owner or config.name)
        if config.status_lists is not None and status_store is not None and tenant
        else None
    )
    if config.status_lists is not None and allocator is None:
        raise ValueError(f"{config.name}: status lists need the ledger's status store and tenant")
    options_ob = OpenBadgesOptions(
        issuer=Issuer(
            id=issuer.id,
            name=issuer.name,
            url=str(issuer.url) if issuer.url else None,
            email=issuer.email,
            image=issuer.image,
        ),
        identity_salt=config.identity_salt.resolve(environ),
        achievement_id_base=str(config.achievement_id_base) if config.achievement_id_base else None,
        achievement_id_pattern=config.achievement_id_pattern,
        achievement_image=config.achievement_image,
        achievement_images=dict(config.achievement_images),
        status=allocator,
        signer=key.verification_method,
    )
    return ClrTarget(
        config.name,
        ClrClient.from_config(config, environ=environ, transport=transport),
        OpenBadgesRenderer(options_ob, catalog, api=config.api),
        issuer_signer(config, key, pools),
        limits=limits,
    )


def issuer_signer(
    config: ClrTargetConfig, key: SigningKey, pools: SigningPools | None
) -> Signer | AsyncSigner:
    """Signs a credential (and a CLR's embedded ones first) with the issuer's key: in the
    shared signing pool, or inline when there is none."""
    if pools is None:
        loader = ContextLoader.from_directory(config.contexts_dir)

        def signer(body: Mapping[str, Any]) -> dict[str, Any]:
            return sign_for_upload(body, lambda document: sign_credential(document, key, loader))

        return signer

    # Chosen now, not at the first credential: the pool is then known to
    # :meth:`SigningPools.start`, which starts its workers before the service is ready.
    pool = pools.for_contexts(config.contexts_dir, user=config.name)

    async def pooled(body: Mapping[str, Any]) -> dict[str, Any]:
        return await pool.sign_with_embedded(body, key)

    return pooled


def status_allocator(
    config: ClrTargetConfig, store: StatusStore, *, tenant: str, owner: str
) -> LedgerStatusAllocator:
    """The status entries of ``tenant``'s issuer in ``config`` (lists published by the
    status target of ``owner``)."""
    assert config.status_lists is not None
    return LedgerStatusAllocator(
        store,
        StatusScope(tenant=tenant, issuer=config.issuer.id),
        list_base_url=str(config.status_lists.base_url),
        status_target=status_target_name(owner),
        min_interval=timedelta(seconds=config.status_lists.min_interval_s),
    )


def create_status_target(
    config: ClrTargetConfig,
    store: StatusStore,
    *,
    tenant: str,
    pools: SigningPools | None = None,
) -> StatusListTarget:
    """The target that signs and keeps the status lists of ``tenant``'s issuer in ``config``."""
    if config.status_lists is None:
        raise ValueError(f"{config.name} has no status lists")
    key = SigningKey.from_file(config.signing_key_file)
    lists = config.status_lists
    return StatusListTarget(
        status_allocator(config, store, tenant=tenant, owner=config.name),
        store,
        owner=config.name,
        issuer=config.issuer.id,
        window=StatusWindow(
            refresh=timedelta(seconds=lists.refresh_s),
            validity=timedelta(seconds=lists.validity_s) if lists.validity_s else None,
        ),
        signer=issuer_signer(config, key, pools),
        signer_id=key.verification_method,
    )


def default_signing_workers() -> int:
    """Signing processes when none are configured: one per CPU this process may run on,
    less the one its own work needs, and at least one.

    While documents are delivered the service's own process (consuming, the ledger,
    rendering, HTTP) keeps about one CPU busy; more workers than the CPUs left only
    compete with it and each costs memory. Measured with the projection benchmark on two
    CPUs: one worker delivered as fast as two (223 and 229 awards/s) with 27 MiB less
    memory for the lane.
    """
    return max(1, available_cpus() - 1)


class SigningPools:
    """One :class:`~cayg_signing.SigningPool` per contexts directory, shared by every CLR/OB
    target of the process: signing runs in worker processes (``workers``; 0 signs inline)
    and each distinct credential content is signed once (the pool's cache), so a nested
    AchievementCredential is not re-signed with every re-issue of its learner's record.

    Each pool remembers which targets sign with it, so a lane starts only the workers its
    own targets need (see :meth:`start`)."""

    def __init__(self, workers: int | None = None, *, nice: int = 0) -> None:
        """``workers`` per pool (None: :func:`default_signing_workers`; 0: inline);
        ``nice``: how much lower their CPU priority is than this process's."""
        self._workers = default_signing_workers() if workers is None else workers
        self._nice = nice
        self._pools: dict[Path, SigningPool] = {}
        self._users: dict[Path, set[str]] = {}

    def for_contexts(self, contexts_dir: Path, *, user: str | None = None) -> SigningPool:
        """The pool signing with the contexts in ``contexts_dir``; ``user`` names the
        target that will sign with it. Creating a pool starts no process."""
        key = Path(contexts_dir).resolve()
        pool = self._pools.get(key)
        if pool is None:
            pool = SigningPool(key, max_workers=self._workers, worker_nice=self._nice)
            self._pools[key] = pool
        if user is not None:
            self._users.setdefault(key, set()).add(user)
        return pool

    async def start(self, serves: Callable[[str], bool] | None = None) -> None:
        """Start the workers of every pool a served target signs with (all pools when
        ``serves`` is None) and wait until they are up: a broken installation fails here,
        and the first credentials do not wait for worker processes to start. A pool no
        served target uses starts no worker (a registry lane signs nothing)."""
        for key, pool in self._pools.items():
            users = self._users.get(key, set())
            if serves is None or not users or any(serves(user) for user in users):
                await pool.start()

    async def aclose(self) -> None:
        """Stop every pool's workers."""
        for pool in self._pools.values():
            await pool.aclose()
