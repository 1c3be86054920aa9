"""Building publish's adapters from the target configuration: the ledger a config names, a
target's HTTP client and renderer, and the signing pools CLR/OB targets share. Nothing
connects at construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from cayg_publish.adapters.clr import ClrClient, ClrTarget
from cayg_publish.adapters.credential_engine import CredentialEngineClient, CredentialEngineTarget
from cayg_publish.adapters.ledger import Ledger, PostgresLedger, SqliteLedger
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
