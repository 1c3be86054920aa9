"""The projection's storage, written once for both SQL backends.

Catalog writes, dirty marking, leases and settlements run over a small transaction port
(:class:`Tx`) that SQLite (a worker thread per statement, ``BEGIN IMMEDIATE``) and
PostgreSQL (``psycopg``, row locks and ``FOR UPDATE SKIP LOCKED``) each provide. Rules
live in :mod:`cayg_publish.domain.catalog` and :mod:`cayg_publish.domain.projection`; this
module only moves rows.
"""

# Statements are assembled from the module's own constant identifiers, never from input.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from cayg_publish.adapters.ledger._rows import (
    CATALOG_COLUMNS,
    CATALOG_KEY,
    CATALOG_TABLE,
    CATALOG_VALUES,
)
from cayg_publish.domain.catalog import (
    CatalogRow,
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
    documents_of_rows,
    lease_transition,
    reason_of,
    route,
    settle_transition,
)
from cayg_shared.schema import Change, CredentialRef

DOCUMENTS_TABLE: Final = "cayg_publish_documents"
DOCUMENT_COLUMNS: Final = (
    "target",
    "doc_key",
    "tenant",
    "kind",
    "dirty_seq",
    "done_seq",
    "state",
    "reason",
    "waiting_for",
    "next_attempt_ms",
    "attempts",
    "last_error",
    "lease_token",
    "lease_expires_ms",
    "updated_ms",
)


def create_documents_table(*, integer: str) -> tuple[str, ...]:
    """DDL of the documents table, and the catalog's definition-reference columns
    (awards are found by the definition they name when that definition changes)."""
    return (
        f"ALTER TABLE {CATALOG_TABLE} ADD COLUMN definition_ctid TEXT",
        f"ALTER TABLE {CATALOG_TABLE} ADD COLUMN definition_source TEXT",
        f"CREATE INDEX IF NOT EXISTS {CATALOG_TABLE}_def_ctid ON {CATALOG_TABLE} "
        "(tenant, definition_ctid)",
        f"CREATE INDEX IF NOT EXISTS {CATALOG_TABLE}_def_source ON {CATALOG_TABLE} "
        "(tenant, definition_source)",
        f"""CREATE TABLE IF NOT EXISTS {DOCUMENTS_TABLE} (
            target TEXT NOT NULL,
            doc_key TEXT NOT NULL,
            tenant TEXT NOT NULL,
            kind TEXT NOT NULL,
            dirty_seq {integer} NOT NULL,
            done_seq {integer} NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            waiting_for TEXT,
            next_attempt_ms {integer} NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            lease_token TEXT,
            lease_expires_ms {integer},
            updated_ms {integer} NOT NULL,
            PRIMARY KEY (target, doc_key)
        )""",
        f"CREATE INDEX IF NOT EXISTS {DOCUMENTS_TABLE}_due ON {DOCUMENTS_TABLE} "
        "(target, next_attempt_ms)",
        f"CREATE INDEX IF NOT EXISTS {DOCUMENTS_TABLE}_tenant ON {DOCUMENTS_TABLE} (tenant, state)",
    )


class Tx(Protocol):
    """One open transaction of a SQL backend."""

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a query; all rows."""
        ...

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def catalog_params(self, row: CatalogRow, columns: Sequence[str]) -> list[Any]:
        """Parameters of a catalog row's ``columns`` in this driver's types."""
        ...

    def catalog_row(self, found: Sequence[Any]) -> CatalogRow:
        """The catalog row of a selected tuple (:data:`CATALOG_COLUMNS` order)."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL: the placeholder and row locking."""

    placeholder: str
    #: Appended to reads that the transaction will write back (PostgreSQL: FOR UPDATE).
    lock: str
    #: Appended to the lease query (PostgreSQL: FOR UPDATE SKIP LOCKED).
    skip_locked: str

    def marks(self, count: int) -> str:
        """``count`` placeholders, comma-separated."""
        return ", ".join(self.placeholder for _ in range(count))


SQLITE: Final = Dialect(placeholder="?", lock="", skip_locked="")
POSTGRES: Final = Dialect(
    placeholder="%s", lock=" FOR UPDATE", skip_locked=" FOR UPDATE SKIP LOCKED"
)

_CATALOG_SELECT: Final = f"SELECT {', '.join(CATALOG_COLUMNS)} FROM {CATALOG_TABLE}"
_DOC_SELECT: Final = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM {DOCUMENTS_TABLE}"


def document_from_sql(found: Sequence[Any]) -> DocumentRow:
    """The document row of a selected tuple (:data:`DOCUMENT_COLUMNS` order)."""
    values = dict(zip(DOCUMENT_COLUMNS, found, strict=True))
    return DocumentRow(
        target=values["target"],
        ref=DocumentRef.parse(values["doc_key"]),
        dirty_seq=int(values["dirty_seq"]),
        done_seq=int(values["done_seq"]),
        state=DocumentState(values["state"]),
        waiting_for=values["waiting_for"],
        next_attempt_ms=int(values["next_attempt_ms"]),
        attempts=int(values["attempts"]),
        last_error=values["last_error"],
        lease_token=values["lease_token"],
        lease_expires_ms=(
            None if values["lease_expires_ms"] is None else int(values["lease_expires_ms"])
        ),
        updated_ms=int(values["updated_ms"]),
    )


def document_to_sql(row: DocumentRow) -> list[Any]:
    """Parameters of a document row in :data:`DOCUMENT_COLUMNS` order."""
    return [
        row.target,
        row.ref.key,
        row.ref.tenant,
        row.ref.kind.value,
        row.dirty_seq,
        row.done_seq,
        row.state.value,
        reason_of(row),
        row.waiting_for,
        row.next_attempt_ms,
        row.attempts,
        row.last_error,
        row.lease_token,
        row.lease_expires_ms,
        row.updated_ms,
    ]


class ProjectionSql:
    """The projection's operations for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        p = dialect.placeholder
        self.catalog_one = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = {p} AND source_id = {p} "
            f"AND part = {p}{dialect.lock}"
        )
        self._catalog_record = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = {p} AND source_id = {p} "
            f"ORDER BY part{dialect.lock}"
        )
        self._catalog_insert = (
            f"INSERT INTO {CATALOG_TABLE} ({', '.join(CATALOG_COLUMNS)}) "
            f"VALUES ({dialect.marks(len(CATALOG_COLUMNS))}) "
            f"ON CONFLICT ({', '.join(CATALOG_KEY)}) DO NOTHING"
        )
        self._catalog_update = (
            f"UPDATE {CATALOG_TABLE} SET {', '.join(f'{c} = {p}' for c in CATALOG_VALUES)} "
            f"WHERE tenant = {p} AND entity_type = {p} AND source_id = {p} AND part = {p}"
        )
        self.awards_by_definition = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = 'credential-award' "
            f"AND (definition_ctid = {p} OR definition_source = {p})"
        )
        self.awards_by_learner = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = 'credential-award' "
            f"AND learner_key = {p}"
        )
        self._tenant_rows = f"{_CATALOG_SELECT} WHERE tenant = {p}"
        self.programs = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = 'program' "
            "AND status = 'current'"
        )
        self.definition_by_ctid = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = 'credential-definition' "
            f"AND entity_ctid = {p} ORDER BY version_time DESC LIMIT 1"
        )
        self.definitions = (
            f"{_CATALOG_SELECT} WHERE tenant = {p} AND entity_type = 'credential-definition' "
            "AND status = 'current'"
        )
        self._mark_dirty = (
            f"INSERT INTO {DOCUMENTS_TABLE} ({', '.join(DOCUMENT_COLUMNS)}) "
            f"VALUES ({dialect.marks(len(DOCUMENT_COLUMNS))}) "
            f"ON CONFLICT (target, doc_key) DO UPDATE SET "
            f"dirty_seq = {DOCUMENTS_TABLE}.dirty_seq + 1, "
            f"state = CASE WHEN {DOCUMENTS_TABLE}.state = 'failing' THEN 'failing' "
            "ELSE 'dirty' END, "
            f"reason = CASE WHEN {DOCUMENTS_TABLE}.state = 'failing' THEN "
            f"{DOCUMENTS_TABLE}.reason ELSE NULL END, "
            "waiting_for = NULL, "
            f"next_attempt_ms = CASE WHEN {DOCUMENTS_TABLE}.state = 'failing' THEN "
            f"{DOCUMENTS_TABLE}.next_attempt_ms ELSE excluded.next_attempt_ms END, "
            "updated_ms = excluded.updated_ms"
        )
        self._doc_one = f"{_DOC_SELECT} WHERE target = {p} AND doc_key = {p}{dialect.lock}"
        self._renew = (
            f"UPDATE {DOCUMENTS_TABLE} SET lease_expires_ms = {p} "
            f"WHERE target = {p} AND doc_key = {p} AND lease_token = {p}"
        )
        self._doc_update = (
            f"UPDATE {DOCUMENTS_TABLE} SET "
            f"{', '.join(f'{c} = {p}' for c in DOCUMENT_COLUMNS[2:])} "
            f"WHERE target = {p} AND doc_key = {p}"
        )

    # -- catalog ----------------------------------------------------------------------

    async def write_catalog(self, tx: Tx, change: Change) -> list[CatalogRow]:
        """Apply ``change`` to the catalog; the rows as written (newer ones kept)."""
        written: list[CatalogRow] = []
        rows = catalog_rows(change)
        for incoming in rows:
            key = (incoming.tenant, incoming.entity_type.value, incoming.source_id, incoming.part)
            found = await tx.fetchall(self.catalog_one, key)
            existing = tx.catalog_row(found[0]) if found else None
            new = catalog_transition(existing, incoming)
            if new is None:
                continue
            if existing is None:
                inserted = await tx.execute(
                    self._catalog_insert, tx.catalog_params(new, CATALOG_COLUMNS)
                )
                if inserted == 0:
                    # Another instance inserted it first: decide again on its row.
                    found = await tx.fetchall(self.catalog_one, key)
                    existing = tx.catalog_row(found[0])
                    new = catalog_transition(existing, incoming)
                    if new is None:
                        continue
                    await self._update_catalog(tx, new)
            else:
                await self._update_catalog(tx, new)
            written.append(new)
        if not rows:  # a record-level revoke: every stored part not retained
            key3 = (change.tenant, change.entity_key.entity_type.value, change.entity_key.source_id)
            for found_row in await tx.fetchall(self._catalog_record, key3):
                existing = tx.catalog_row(found_row)
                new = revoke_transition(existing, change)
                if new is not None:
                    await self._update_catalog(tx, new)
                    written.append(new)
        return written

    async def _update_catalog(self, tx: Tx, row: CatalogRow) -> None:
        await tx.execute(
            self._catalog_update,
            tx.catalog_params(row, CATALOG_VALUES) + tx.catalog_params(row, CATALOG_KEY),
        )

    def lookup(self, tx: Tx) -> _TxLookup:
        """Dependency lookups inside ``tx``."""
        return _TxLookup(self, tx)

    # -- documents --------------------------------------------------------------------

    async def record_change(
        self,
        tx: Tx,
        change: Change,
        kinds_by_target: Mapping[str, frozenset[DocumentKind]],
        now_ms: int,
    ) -> list[tuple[str, DocumentRef]]:
        """Catalog + dirty marking of every affected document, in ``tx``."""
        written = await self.write_catalog(tx, change)
        if not written or not kinds_by_target:
            return []
        rows = await affected_rows(written, self.lookup(tx))
        pairs = route(documents_of_rows(rows), kinds_by_target)
        await self.mark_dirty(tx, pairs, now_ms)
        return pairs

    async def mark_dirty(
        self, tx: Tx, pairs: Sequence[tuple[str, DocumentRef]], now_ms: int
    ) -> None:
        """Make each (target, document) dirty (in sorted order: no lock-order deadlocks)."""
        for target, ref in sorted(pairs):
            fresh = DocumentRow(
                target=target,
                ref=ref,
                dirty_seq=1,
                done_seq=0,
                state=DocumentState.DIRTY,
                waiting_for=None,
                next_attempt_ms=now_ms,
                attempts=0,
                last_error=None,
                lease_token=None,
                lease_expires_ms=None,
                updated_ms=now_ms,
            )
            await tx.execute(self._mark_dirty, document_to_sql(fresh))

    async def tenant_documents(self, tx: Tx, tenant: str) -> set[DocumentRef]:
        """Every document the catalog of ``tenant`` gives rise to (for reconcile)."""
        found = await tx.fetchall(self._tenant_rows, (tenant,))
        return documents_of_rows(tx.catalog_row(f) for f in found)

    async def lease(
        self,
        tx: Tx,
        targets: Sequence[str],
        *,
        token: str,
        now_ms: int,
        ttl_ms: int,
        limit: int,
    ) -> list[Lease]:
        """Take up to ``limit`` due, unleased documents of ``targets``."""
        if not targets:
            return []
        p = self.d.placeholder
        sql = (
            f"{_DOC_SELECT} WHERE target IN ({self.d.marks(len(targets))}) "
            f"AND (dirty_seq > done_seq OR state = 'failing') AND next_attempt_ms <= {p} "
            f"AND (lease_expires_ms IS NULL OR lease_expires_ms <= {p}) "
            f"ORDER BY next_attempt_ms LIMIT {p}{self.d.skip_locked}"
        )
        found = await tx.fetchall(sql, [*targets, now_ms, now_ms, limit])
        leases: list[Lease] = []
        for item in found:
            row = document_from_sql(item)
            lease, after = lease_transition(row, token=token, now_ms=now_ms, ttl_ms=ttl_ms)
            await self._write_document(tx, after)
            leases.append(lease)
        return leases

    async def renew(self, tx: Tx, lease: Lease, *, now_ms: int, ttl_ms: int) -> bool:
        """Extend a lease still held under its token."""
        return (
            await tx.execute(
                self._renew, (now_ms + ttl_ms, lease.target, lease.ref.key, lease.token)
            )
            > 0
        )

    async def settle(
        self,
        tx: Tx,
        lease: Lease,
        result: DeliveryResult,
        *,
        now_ms: int,
        schedule: RetrySchedule,
    ) -> DocumentRow | None:
        """Record how a leased delivery ended (None: the lease had been lost)."""
        found = await tx.fetchall(self._doc_one, (lease.target, lease.ref.key))
        if not found:
            return None
        after = settle_transition(
            document_from_sql(found[0]), lease, result, now_ms=now_ms, schedule=schedule
        )
        if after is not None:
            await self._write_document(tx, after)
        return after

    async def _write_document(self, tx: Tx, row: DocumentRow) -> None:
        values = document_to_sql(row)
        await tx.execute(self._doc_update, values[2:] + values[:2])

    async def documents(
        self,
        tx: Tx,
        *,
        tenant: str | None,
        target: str | None,
        states: Sequence[DocumentState] | None,
        subject: str | None,
        limit: int,
    ) -> list[DocumentRow]:
        """Documents matching the filters, most recently changed first."""
        p = self.d.placeholder
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append(f"tenant = {p}")
            params.append(tenant)
        if target is not None:
            where.append(f"target = {p}")
            params.append(target)
        if states:
            where.append(f"state IN ({self.d.marks(len(states))})")
            params.extend(s.value for s in states)
        if subject is not None:
            # The key ends in "|<subject>" (no LIKE: a subject may hold % or _).
            where.append(f"substr(doc_key, length(doc_key) - {p}) = {p}")
            params.extend([len(subject), f"|{subject}"])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        found = await tx.fetchall(
            f"{_DOC_SELECT}{clause} ORDER BY updated_ms DESC LIMIT {p}", [*params, limit]
        )
        return [document_from_sql(f) for f in found]

    async def counts(self, tx: Tx) -> list[tuple[str, str, str, str, int]]:
        """(target, tenant, state, reason, count) for every combination present."""
        found = await tx.fetchall(
            f"SELECT target, tenant, state, COALESCE(reason, ''), COUNT(*) "
            f"FROM {DOCUMENTS_TABLE} GROUP BY target, tenant, state, COALESCE(reason, '')",
            (),
        )
        return [(t, n, s, r, int(c)) for t, n, s, r, c in found]


class SqlProjectionStore(ABC):
    """The projection operations of a SQL ledger, given its transactions and clock."""

    _projection: ProjectionSql

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction (committed on exit, rolled back on error)."""

    _clock: Callable[[], datetime]

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    async def record_change(
        self, change: Change, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Apply ``change`` to the catalog and mark every affected document dirty, in one
        transaction; the (target, document) pairs marked."""
        async with self._tx() as tx:
            return await self._projection.record_change(tx, change, kinds_by_target, self._now_ms())

    async def record_changes(
        self, changes: Sequence[tuple[Change, Mapping[str, frozenset[DocumentKind]]]]
    ) -> list[tuple[str, DocumentRef]]:
        """Every change in order, in one transaction."""
        marked: list[tuple[str, DocumentRef]] = []
        async with self._tx() as tx:
            now_ms = self._now_ms()
            for change, kinds_by_target in changes:
                marked += await self._projection.record_change(tx, change, kinds_by_target, now_ms)
                await asyncio.sleep(0)  # a long batch lets deliveries in flight go on
        return marked

    async def lease_documents(
        self, targets: Sequence[str], *, limit: int, ttl_ms: int
    ) -> list[Lease]:
        """Take up to ``limit`` due documents of ``targets`` for ``ttl_ms``."""
        token = uuid.uuid4().hex
        async with self._tx() as tx:
            return await self._projection.lease(
                tx, targets, token=token, now_ms=self._now_ms(), ttl_ms=ttl_ms, limit=limit
            )

    async def renew_lease(self, lease: Lease, ttl_ms: int) -> bool:
        """Extend ``lease`` while its delivery runs (False: no longer held)."""
        async with self._tx() as tx:
            return await self._projection.renew(tx, lease, now_ms=self._now_ms(), ttl_ms=ttl_ms)

    async def settle_document(
        self, lease: Lease, result: DeliveryResult, schedule: RetrySchedule
    ) -> DocumentRow | None:
        """Record how the delivery under ``lease`` ended."""
        async with self._tx() as tx:
            return await self._projection.settle(
                tx, lease, result, now_ms=self._now_ms(), schedule=schedule
            )

    async def reconcile(
        self, tenant: str, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Mark every document of ``tenant`` at the given targets dirty."""
        async with self._tx() as tx:
            refs = await self._projection.tenant_documents(tx, tenant)
            pairs = route(refs, kinds_by_target)
            await self._projection.mark_dirty(tx, pairs, self._now_ms())
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
        """Documents matching the filters, most recently changed first."""
        async with self._tx() as tx:
            return await self._projection.documents(
                tx, tenant=tenant, target=target, states=states, subject=subject, limit=limit
            )

    async def document_counts(self) -> list[tuple[str, str, str, str, int]]:
        """(target, tenant, state, reason, count) of every document."""
        async with self._tx() as tx:
            return await self._projection.counts(tx)


class _TxLookup:
    """:class:`~cayg_publish.domain.projection.DependencyLookup` over one transaction."""

    def __init__(self, sql: ProjectionSql, tx: Tx) -> None:
        self._sql = sql
        self._tx = tx

    async def _rows(self, statement: str, params: Sequence[Any]) -> list[CatalogRow]:
        return [self._tx.catalog_row(f) for f in await self._tx.fetchall(statement, params)]

    async def awards_naming(
        self, tenant: str, ctid: str | None, source: str | None
    ) -> list[CatalogRow]:
        """Award rows naming a definition."""
        return await self._rows(self._sql.awards_by_definition, (tenant, ctid, source))

    async def award_history(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Award rows of a learner."""
        return await self._rows(self._sql.awards_by_learner, (tenant, learner))

    async def programs(self, tenant: str) -> list[CatalogRow]:
        """Current program rows of the tenant."""
        return await self._rows(self._sql.programs, (tenant,))

    async def definitions(self, tenant: str) -> list[CatalogRow]:
        """Current definition rows of the tenant."""
        return await self._rows(self._sql.definitions, (tenant,))

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        """A definition row by CTID, else by SIS id."""
        found = await self._rows(self._sql.definition_by_ctid, (tenant, ref.ctid))
        if not found and ref.source_id is not None:
            key = (tenant, "credential-definition", ref.source_id, "")
            found = await self._rows(self._sql.catalog_one, key)
        return found[0] if found else None
