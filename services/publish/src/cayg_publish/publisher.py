"""Publish's delivery core, composed from the configuration.

:class:`Publisher` is what a Kafka handler needs: ``await publisher.record(change, serves)``
(catalog + dirty documents, one ledger transaction, no remote call). It owns the ledger
(and its catalog), every tenant's targets with their HTTP clients, one throttle book and
the retry policy, and builds the :class:`~cayg_publish.projector.Projector` that delivers.
Nothing connects at construction; :meth:`Publisher.start` migrates the ledger,
:meth:`Publisher.aclose` releases everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import httpx

from cayg_publish.adapters.factory import (
    SigningPools,
    create_ledger,
    create_status_target,
    create_target,
)
from cayg_publish.adapters.ledger import Ledger
from cayg_publish.adapters.status import StatusListTarget
from cayg_publish.config import (
    ClrTargetConfig,
    PublishTargetsConfig,
)
from cayg_publish.domain.catalog import Target
from cayg_publish.domain.projection import (
    DocumentKind,
    DocumentRef,
    DocumentState,
    RetrySchedule,
    Waiting,
)
from cayg_publish.domain.retry import RetryPolicy
from cayg_publish.projector import OutcomeHook, Projector, RequestHook, ThrottleBook
from cayg_shared.schema import Change

#: Test hook: an httpx transport per target name (e.g. respx or an ASGI app).
Transports = Mapping[str, httpx.AsyncBaseTransport]


@dataclass(frozen=True, slots=True)
class Drift:
    """A document a target holds otherwise than the ledger believes."""

    target: str
    document: DocumentRef
    #: The ledger's key of the request (forget it to make the projector send again).
    ledger_key: str
    remote_id: str | None
    problem: str


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
        signing_nice: int = 0,
    ) -> Self:
        """Everything ``config`` describes; raises ``ConfigError`` for unresolvable secrets.

        ``signing_workers``: processes that sign credentials (None: one per CPU less one,
        at least one; 0: sign in a thread of this process, as tests do); ``signing_nice``:
        how much lower their CPU priority is than this process's.
        """
        ledger = create_ledger(config.ledger, environ=environ)
        pools = SigningPools(signing_workers, nice=signing_nice) if signing_workers != 0 else None
        targets: dict[str, list[Target]] = {}
        for tenant, tenant_targets in config.tenants.items():
            built: list[Target] = []
            # One status target per issuer of the tenant: the first target naming it.
            owners: dict[str, str] = {}
            for target in tenant_targets.targets:
                owner: str | None = None
                if isinstance(target, ClrTargetConfig) and target.status_lists is not None:
                    owner = owners.setdefault(target.issuer.id, target.name)
                built.append(
                    create_target(
                        target,
                        ledger.catalog,
                        environ=environ,
                        transport=(transports or {}).get(target.name),
                        pools=pools,
                        status_store=ledger.status if owner else None,
                        tenant=tenant,
                        status_owner=owner,
                    )
                )
                if owner == target.name and isinstance(target, ClrTargetConfig):
                    built.append(
                        create_status_target(target, ledger.status, tenant=tenant, pools=pools)
                    )
            targets[tenant] = built
        return cls(ledger, targets, policy=policy, schedule=schedule, pools=pools)

    async def drift(self, tenant: str, target: str | None = None) -> list[Drift]:
        """Documents a target holds otherwise than the ledger believes it does.

        For every delivered document of ``tenant`` (at ``target``) whose rendering now is
        what the ledger says the target holds, the target is read back (CLR/OB listing;
        the registry's graph against what ``credential/format`` renders) and each
        difference reported. Documents the ledger already knows to be behind are left to
        the projector. Nothing is changed.
        """
        found: list[Drift] = []
        for delivering in self.targets_for(tenant):
            if target is not None and delivering.name != target:
                continue
            read_back = getattr(delivering, "read_back", None)
            if read_back is None:
                continue  # nothing to read back from (the status lists live in the ledger)
            check = await read_back()
            rows = await self.ledger.documents(
                tenant=tenant,
                target=delivering.name,
                states=[DocumentState.CLEAN],
                limit=10_000_000,
            )
            for row in rows:
                try:
                    renderings = await delivering.render_document(row.ref)
                except Waiting:
                    continue
                for rendering in renderings:
                    key = rendering.subject
                    entry = None if key is None else await self.ledger.get(delivering.name, key)
                    if entry is None or entry.applied_hash != rendering.content_hash:
                        continue
                    problem = await check(rendering, entry.remote_url)
                    if problem is not None:
                        found.append(
                            Drift(
                                delivering.name,
                                row.ref,
                                entry.entity_key,
                                rendering.remote_id,
                                problem,
                            )
                        )
        return found

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
            if serves is None or serves(lane_name(t))
        }

    async def start(self, serves: Callable[[str], bool] | None = None) -> None:
        """Migrate the ledger schema (idempotent) and start the signing workers of the
        targets this lane serves (``serves``; None: every target)."""
        await self.ledger.migrate()
        if self._pools is not None:
            await self._pools.start(serves)

    async def record(
        self, change: Change, *, serves: Callable[[str], bool] | None = None
    ) -> list[tuple[str, DocumentRef]]:
        """Apply ``change`` to the catalog and mark the documents it affects at this lane's
        targets dirty, in one ledger transaction; what was marked."""
        return await self.ledger.record_change(change, self.kinds_by_target(change.tenant, serves))

    async def record_batch(
        self, changes: Sequence[Change], *, serves: Callable[[str], bool] | None = None
    ) -> list[tuple[str, DocumentRef]]:
        """:meth:`record` for each change in order, in one ledger transaction."""
        return await self.ledger.record_changes(
            [(change, self.kinds_by_target(change.tenant, serves)) for change in changes]
        )

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
        on_request: RequestHook | None = None,
        max_in_flight: int = 64,
        lease_ttl_s: float = 30.0,
        delivery_timeout_s: float = 300.0,
        poll_s: float = 0.5,
    ) -> Projector:
        """The delivery loop for every target this lane serves."""
        targets = [
            t
            for tenant in self._targets
            for t in self._targets[tenant]
            if serves is None or serves(lane_name(t))
        ]
        return Projector(
            self.ledger,
            targets,
            policy=self._policy,
            schedule=self._schedule,
            throttles=self._throttles,
            max_in_flight=max_in_flight,
            lease_ttl_s=lease_ttl_s,
            delivery_timeout_s=delivery_timeout_s,
            poll_s=poll_s,
            on_outcome=on_outcome or _ignore,
            on_request=on_request,
        )

    def status_targets(self, serves: Callable[[str], bool] | None = None) -> list[StatusListTarget]:
        """The status-list targets (of this lane)."""
        return [
            t
            for targets in self._targets.values()
            for t in targets
            if isinstance(t, StatusListTarget) and (serves is None or serves(lane_name(t)))
        ]

    async def refresh_status_lists(self, serves: Callable[[str], bool] | None = None) -> int:
        """Make due every list (of this lane) that was never published or must be re-signed
        for the current period; how many."""
        touched = 0
        for target in self.status_targets(serves):
            touched += await target.refresh()
        return touched

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


def lane_name(target: Target) -> str:
    """The name a lane's patterns are matched against: a status-list target runs in the
    lane of the CLR/OB target it belongs to."""
    return str(getattr(target, "lane_name", target.name))


def _ignore(target: str, outcome: str) -> None:
    del target, outcome
