"""An in-process ledger: for tests and single-shot tools, never for production."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from cayg_publish.adapters.ledger.port import (
    DEFAULT_CLAIM_TTL,
    Ledger,
    LedgerError,
    Mutation,
    utc_now,
)
from cayg_publish.adapters.ledger.status_store import InMemoryStatusStore
from cayg_publish.domain.catalog import (
    IN_FLIGHT,
    CatalogRow,
    CatalogStatus,
    HeldAward,
    LedgerEntry,
    LedgerTotals,
    catalog_rows,
    catalog_transition,
    revoke_transition,
)
from cayg_publish.domain.projection import (
    DeliveryResult,
    DocumentKind,
    DocumentRef,
    DocumentRow,
    DocumentState,
    Lease,
    RetrySchedule,
    affected_rows,
    dirty_transition,
    documents_of_rows,
    leasable,
    lease_transition,
    reason_of,
    route,
    settle_transition,
)
from cayg_shared.schema import (
    Change,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    EntityType,
    LearnerIdentity,
)

T = TypeVar("T")


class InMemoryLedger(Ledger):
    # The projection's storage in dicts: the same transitions as the SQL adapters
    # (cayg_publish.domain.projection), one asyncio lock instead of transactions.
    """A :class:`~cayg_publish.adapters.ledger.port.Ledger` in a dict; nothing survives the
    process."""

    def __init__(
        self,
        *,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(claim_ttl=claim_ttl, clock=clock)
        self._rows: dict[tuple[str, str], LedgerEntry] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._catalog = InMemoryCatalog()
        self._documents: dict[tuple[str, str], DocumentRow] = {}
        self._status = InMemoryStatusStore(self._documents)

    @property
    def status(self) -> InMemoryStatusStore:
        """Status lists living as long as this ledger."""
        return self._status

    @property
    def catalog(self) -> InMemoryCatalog:
        """A catalog living as long as this ledger."""
        return self._catalog

    def __repr__(self) -> str:
        return f"InMemoryLedger(entries={len(self._rows)})"

    async def migrate(self) -> None:
        """Nothing to migrate."""
        if self._closed:
            raise LedgerError("the ledger is closed")

    async def close(self) -> None:
        """Forget nothing, accept nothing more."""
        self._closed = True

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""
        return self._rows.get((target, entity_key))

    async def entries(
        self, target: str, *, prefix: str = "", limit: int = 10_000
    ) -> list[LedgerEntry]:
        """Entries of ``target`` whose key starts with ``prefix``."""
        found = sorted(
            (e for (t, k), e in self._rows.items() if t == target and k.startswith(prefix)),
            key=lambda e: e.entity_key,
        )
        return found[:limit]

    async def totals(self) -> LedgerTotals:
        """Counts per target and last outcome."""
        by_target: dict[str, dict[str, int]] = {}
        for (target, _), entry in self._rows.items():
            outcome = IN_FLIGHT if entry.last_outcome is None else str(entry.last_outcome)
            counts = by_target.setdefault(target, {})
            counts[outcome] = counts.get(outcome, 0) + 1
        return LedgerTotals(by_target=by_target)

    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[T]) -> T:
        if self._closed:
            raise LedgerError("the ledger is closed")
        async with self._lock:
            result, after = mutation(self._rows.get((target, entity_key)))
            if after is not None:
                self._rows[(target, entity_key)] = after
            return result

    # -- the projection ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError("the ledger is closed")

    def _mark(self, pairs: Sequence[tuple[str, DocumentRef]]) -> None:
        now = self._now_ms()
        for target, ref in pairs:
            key = (target, ref.key)
            self._documents[key] = dirty_transition(
                self._documents.get(key), target=target, ref=ref, now_ms=now
            )

    async def record_change(
        self, change: Change, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Catalog and dirty marking under one lock."""
        self._check_open()
        async with self._lock:
            return await self._record(change, kinds_by_target)

    async def record_changes(
        self, changes: Sequence[tuple[Change, Mapping[str, frozenset[DocumentKind]]]]
    ) -> list[tuple[str, DocumentRef]]:
        """Every change under one lock, in order."""
        self._check_open()
        marked: list[tuple[str, DocumentRef]] = []
        async with self._lock:
            for change, kinds_by_target in changes:
                marked += await self._record(change, kinds_by_target)
        return marked

    async def _record(
        self, change: Change, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        written = self._catalog.write(change)
        if not written or not kinds_by_target:
            return []
        rows = await affected_rows(written, self._catalog)
        pairs = route(documents_of_rows(rows), kinds_by_target)
        self._mark(pairs)
        return pairs

    async def lease_documents(
        self, targets: Sequence[str], *, limit: int, ttl_ms: int
    ) -> list[Lease]:
        """Due documents, earliest first."""
        self._check_open()
        now = self._now_ms()
        token = uuid.uuid4().hex
        async with self._lock:
            due = sorted(
                (row for row in self._documents.values() if row.target in targets),
                key=lambda row: row.next_attempt_ms,
            )
            leases: list[Lease] = []
            for row in due:
                if len(leases) >= limit:
                    break
                if not leasable(row, now):
                    continue
                lease, after = lease_transition(row, token=token, now_ms=now, ttl_ms=ttl_ms)
                self._documents[(row.target, row.ref.key)] = after
                leases.append(lease)
            return leases

    async def renew_lease(self, lease: Lease, ttl_ms: int) -> bool:
        """Push the expiry on while the token still holds."""
        self._check_open()
        async with self._lock:
            key = (lease.target, lease.ref.key)
            row = self._documents.get(key)
            if row is None or row.lease_token != lease.token:
                return False
            self._documents[key] = replace(row, lease_expires_ms=self._now_ms() + ttl_ms)
            return True

    async def settle_document(
        self, lease: Lease, result: DeliveryResult, schedule: RetrySchedule
    ) -> DocumentRow | None:
        """Apply the settlement transition."""
        self._check_open()
        async with self._lock:
            row = self._documents.get((lease.target, lease.ref.key))
            if row is None:
                return None
            after = settle_transition(row, lease, result, now_ms=self._now_ms(), schedule=schedule)
            if after is not None:
                self._documents[(lease.target, lease.ref.key)] = after
            return after

    async def reconcile(
        self, tenant: str, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Every document of the tenant's catalog, dirty."""
        self._check_open()
        async with self._lock:
            refs = documents_of_rows(self._catalog.rows_of(tenant))
            pairs = route(refs, kinds_by_target)
            self._mark(pairs)
            return pairs

    async def documents(
        self,
        *,
        tenant: str | None = None,
        target: str | None = None,
        states: Sequence[DocumentState] | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[DocumentRow]:
        """Filtered, most recently changed first."""
        found = [
            row
            for row in self._documents.values()
            if (tenant is None or row.ref.tenant == tenant)
            and (target is None or row.target == target)
            and (not states or row.state in states)
            and (subject is None or row.ref.subject == subject)
        ]
        found.sort(key=lambda row: row.updated_ms, reverse=True)
        return found[:limit]

    async def document_counts(self) -> list[tuple[str, str, str, str, int]]:
        """Counts per target, tenant, state and reason."""
        counts: dict[tuple[str, str, str, str], int] = {}
        for row in self._documents.values():
            key = (row.target, row.ref.tenant, row.state.value, reason_of(row) or "")
            counts[key] = counts.get(key, 0) + 1
        return [(*key, count) for key, count in sorted(counts.items())]

    def forget(self, target: str, entity_key: str) -> None:
        """Drop a row, as if its write had been lost (crash tests)."""
        self._rows.pop((target, entity_key), None)


class InMemoryCatalog:
    """A :class:`~cayg_publish.domain.Catalog` in a dict."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str, str], CatalogRow] = {}

    def __repr__(self) -> str:
        return f"InMemoryCatalog(entries={len(self._rows)})"

    async def remember(self, change: Change) -> None:
        """Store what ``change`` says, unless a newer snapshot is already stored."""
        self.write(change)

    def write(self, change: Change) -> list[CatalogRow]:
        """Apply ``change``; the rows as written (a newer stored row is kept)."""
        written: list[CatalogRow] = []
        rows = catalog_rows(change)
        for incoming in rows:
            key = (incoming.tenant, incoming.entity_type.value, incoming.source_id, incoming.part)
            new = catalog_transition(self._rows.get(key), incoming)
            if new is not None:
                self._rows[key] = new
                written.append(new)
        if not rows:  # a record-level revoke
            record = (
                change.tenant,
                change.entity_key.entity_type.value,
                change.entity_key.source_id,
            )
            for key, existing in sorted(self._rows.items()):
                if key[:3] == record:
                    new = revoke_transition(existing, change)
                    if new is not None:
                        self._rows[key] = new
                        written.append(new)
        return written

    async def awards_naming(
        self, tenant: str, ctid: str | None, source: str | None
    ) -> list[CatalogRow]:
        """Award rows naming a definition by CTID or SIS id."""
        return [
            row
            for row in self._rows.values()
            if row.tenant == tenant
            and isinstance(row.entity, CredentialAward)
            and (
                (ctid is not None and row.entity.definition.ctid == ctid)
                or (source is not None and row.entity.definition.source_id == source)
            )
        ]

    async def award_history(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Award rows of a learner, whatever their status."""
        return await self.award_rows_of(tenant, learner)

    async def programs(self, tenant: str) -> list[CatalogRow]:
        """Current program rows of the tenant."""
        return [
            row
            for row in self._rows.values()
            if row.tenant == tenant
            and row.entity_type is EntityType.PROGRAM
            and row.status is CatalogStatus.CURRENT
        ]

    async def definitions(self, tenant: str) -> list[CatalogRow]:
        """Current definition rows of the tenant."""
        return [
            row
            for row in self._rows.values()
            if row.tenant == tenant
            and row.entity_type is EntityType.CREDENTIAL_DEFINITION
            and row.status is CatalogStatus.CURRENT
        ]

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        """A definition row by CTID, else by SIS id."""
        row = await self.definition_row(tenant, ref.ctid)
        if row is None and ref.source_id is not None:
            row = await self.row(tenant, EntityType.CREDENTIAL_DEFINITION, ref.source_id)
        return row

    def rows_of(self, tenant: str) -> list[CatalogRow]:
        """Every catalog row of ``tenant``."""
        return [row for row in self._rows.values() if row.tenant == tenant]

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> CatalogRow | None:
        """The catalog row of one entity, whatever its status."""
        return self._rows.get((tenant, entity_type.value, source_id, part))

    async def award_rows_of(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Every award row of a learner: current, revoked and deleted."""
        return sorted(
            (
                row
                for row in self._rows.values()
                if row.tenant == tenant
                and row.entity_type is EntityType.CREDENTIAL_AWARD
                and row.learner_key == learner
            ),
            key=lambda row: (row.source_id, row.part),
        )

    async def definition(self, tenant: str, ctid: str) -> CredentialDefinition | None:
        """The last known definition with ``ctid``."""
        row = await self.definition_row(tenant, ctid)
        entity = None if row is None else row.entity
        return entity if isinstance(entity, CredentialDefinition) else None

    async def definition_row(self, tenant: str, ctid: str) -> CatalogRow | None:
        """The newest catalog row of the definition with ``ctid``."""
        found = [
            row
            for row in self._rows.values()
            if row.tenant == tenant
            and row.entity_type is EntityType.CREDENTIAL_DEFINITION
            and row.ctid == ctid
        ]
        found.sort(key=lambda row: row.version.time, reverse=True)
        return found[0] if found else None

    async def definition_by_source(
        self, tenant: str, source_id: str
    ) -> CredentialDefinition | None:
        """The last known definition with SIS id ``source_id``."""
        row = self._rows.get((tenant, EntityType.CREDENTIAL_DEFINITION.value, source_id, ""))
        entity = None if row is None else row.entity
        return entity if isinstance(entity, CredentialDefinition) else None

    async def learner(self, tenant: str, person_ref: str) -> LearnerIdentity | None:
        """The current identity of a learner."""
        row = self._rows.get((tenant, EntityType.LEARNER_IDENTITY.value, person_ref, ""))
        if row is None or row.status is not CatalogStatus.CURRENT:
            return None
        return row.entity if isinstance(row.entity, LearnerIdentity) else None

    async def awards_of(self, tenant: str, learner: str) -> tuple[HeldAward, ...]:
        """The current awards of a learner."""
        rows = sorted(
            (
                row
                for row in self._rows.values()
                if row.tenant == tenant
                and row.entity_type is EntityType.CREDENTIAL_AWARD
                and row.learner_key == learner
                and row.status is CatalogStatus.CURRENT
            ),
            key=lambda row: (row.source_id, row.part),
        )
        return tuple(h for h in map(HeldAward.of, rows) if h is not None)

    async def last_award_change(self, tenant: str, learner: str) -> datetime | None:
        """The newest source time of any award row of the learner."""
        return max(
            (
                row.version.time
                for row in self._rows.values()
                if row.tenant == tenant
                and row.entity_type is EntityType.CREDENTIAL_AWARD
                and row.learner_key == learner
            ),
            default=None,
        )
