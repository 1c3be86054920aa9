"""Status lists in a SQL ledger (SQLite and PostgreSQL), over the projection's transactions.

Two tables of their own, created idempotently beside the ledger's:

* ``cayg_status_lists`` — one row per list: scope, number, size, how many entries are
  handed out, the permutation key, and the signed copy last published (served by any
  instance);
* ``cayg_status_entries`` — one row per credential and generation: list and position
  (unique per list, so a position is never handed out twice), what it belongs to, and when
  it was seen revoked.

Allocation locks the scope's newest list row (PostgreSQL ``FOR UPDATE``; SQLite's
``BEGIN IMMEDIATE`` serializes every writer) before re-reading the credential's entry, so
two instances never hand out two entries for one credential or one position twice.
"""

# Statements are assembled from the module's own constant identifiers, never from input.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, Final

from cayg_publish.adapters.ledger._projection_sql import (
    DOCUMENT_COLUMNS,
    DOCUMENTS_TABLE,
    Dialect,
    Tx,
    document_from_sql,
    document_to_sql,
)
from cayg_publish.adapters.ledger.status_store import (
    Allocated,
    StatusEntryRow,
    StatusListRow,
    StatusScope,
    StatusStore,
    coalesced_dirty,
    new_list,
    next_entry,
)
from cayg_publish.domain.projection import DocumentRef
from cayg_publish.domain.status import StatusKind, StatusPurpose

LISTS_TABLE: Final = "cayg_status_lists"
ENTRIES_TABLE: Final = "cayg_status_entries"
_LIST_COLUMNS: Final = (
    "list_id",
    "tenant",
    "issuer",
    "purpose",
    "list_no",
    "size",
    "allocated",
    "perm_key",
    "created_ms",
    "published",
    "etag",
    "published_ms",
    "valid_from_ms",
    "valid_until_ms",
)
_ENTRY_COLUMNS: Final = (
    "tenant",
    "issuer",
    "purpose",
    "credential_id",
    "generation",
    "list_id",
    "idx",
    "kind",
    "subject",
    "revoked_ms",
    "created_ms",
)
#: Taken while creating the tables on PostgreSQL, so instances starting together take turns.
_PG_MIGRATION_LOCK: Final = 0x63617967_73746174  # "caygstat"


def create_status_tables(*, integer: str) -> tuple[str, ...]:
    """DDL of the two tables and their indexes."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {LISTS_TABLE} (
            list_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            issuer TEXT NOT NULL,
            purpose TEXT NOT NULL,
            list_no INTEGER NOT NULL,
            size INTEGER NOT NULL,
            allocated INTEGER NOT NULL,
            perm_key TEXT NOT NULL,
            created_ms {integer} NOT NULL,
            published TEXT,
            etag TEXT,
            published_ms {integer},
            valid_from_ms {integer},
            valid_until_ms {integer},
            UNIQUE (tenant, issuer, purpose, list_no)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {ENTRIES_TABLE} (
            tenant TEXT NOT NULL,
            issuer TEXT NOT NULL,
            purpose TEXT NOT NULL,
            credential_id TEXT NOT NULL,
            generation INTEGER NOT NULL,
            list_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            revoked_ms {integer},
            created_ms {integer} NOT NULL,
            PRIMARY KEY (tenant, issuer, purpose, credential_id, generation),
            UNIQUE (list_id, idx)
        )""",
    )


def _list_row(found: Sequence[Any]) -> StatusListRow:
    v = dict(zip(_LIST_COLUMNS, found, strict=True))
    return StatusListRow(
        list_id=v["list_id"],
        scope=StatusScope(v["tenant"], v["issuer"], StatusPurpose(v["purpose"])),
        list_no=int(v["list_no"]),
        size=int(v["size"]),
        allocated=int(v["allocated"]),
        perm_key=bytes.fromhex(v["perm_key"]),
        created_ms=int(v["created_ms"]),
        published=v["published"],
        etag=v["etag"],
        published_ms=None if v["published_ms"] is None else int(v["published_ms"]),
        valid_from_ms=None if v["valid_from_ms"] is None else int(v["valid_from_ms"]),
        valid_until_ms=None if v["valid_until_ms"] is None else int(v["valid_until_ms"]),
    )


def _entry_row(found: Sequence[Any]) -> StatusEntryRow:
    v = dict(zip(_ENTRY_COLUMNS, found, strict=True))
    return StatusEntryRow(
        scope=StatusScope(v["tenant"], v["issuer"], StatusPurpose(v["purpose"])),
        credential_id=v["credential_id"],
        generation=int(v["generation"]),
        list_id=v["list_id"],
        index=int(v["idx"]),
        kind=StatusKind(v["kind"]),
        subject=v["subject"],
        revoked_ms=None if v["revoked_ms"] is None else int(v["revoked_ms"]),
        created_ms=int(v["created_ms"]),
    )


class SqlStatusStore(StatusStore):
    """:class:`StatusStore` on a SQL ledger's transactions."""

    def __init__(
        self,
        transaction: Callable[[], AbstractAsyncContextManager[Tx]],
        dialect: Dialect,
        *,
        integer: str,
        postgres: bool,
    ) -> None:
        self._tx = transaction
        self._postgres = postgres
        self._integer = integer
        p = dialect.placeholder
        self._p = p
        self._lock = dialect.lock
        scope = f"tenant = {p} AND issuer = {p} AND purpose = {p}"
        lists = f"SELECT {', '.join(_LIST_COLUMNS)} FROM {LISTS_TABLE}"
        entries = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM {ENTRIES_TABLE}"
        self._newest_list = f"{lists} WHERE {scope} ORDER BY list_no DESC LIMIT 1{dialect.lock}"
        self._list_by_id = f"{lists} WHERE list_id = {p}"
        self._lists_all = f"{lists} ORDER BY tenant, issuer, purpose, list_no"
        self._lists_of = f"{lists} WHERE {scope} ORDER BY list_no"
        self._insert_list = (
            f"INSERT INTO {LISTS_TABLE} ({', '.join(_LIST_COLUMNS)}) "
            f"VALUES ({dialect.marks(len(_LIST_COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        self._count = f"UPDATE {LISTS_TABLE} SET allocated = {p} WHERE list_id = {p}"
        self._current_sql = (
            f"{entries} WHERE {scope} AND credential_id = {p} ORDER BY generation DESC LIMIT 1"
        )
        self._insert_entry = (
            f"INSERT INTO {ENTRIES_TABLE} ({', '.join(_ENTRY_COLUMNS)}) "
            f"VALUES ({dialect.marks(len(_ENTRY_COLUMNS))})"
        )
        self._revoke_one = (
            f"UPDATE {ENTRIES_TABLE} SET revoked_ms = {p} WHERE {scope} AND credential_id = {p} "
            f"AND generation = {p} AND revoked_ms IS NULL"
        )
        self._revoked_lists = (
            f"SELECT DISTINCT list_id FROM {ENTRIES_TABLE} WHERE {scope} AND revoked_ms IS NULL"
        )
        self._revoke_scope = (
            f"UPDATE {ENTRIES_TABLE} SET revoked_ms = {p} WHERE {scope} AND revoked_ms IS NULL"
        )
        self._revoked = (
            f"SELECT idx FROM {ENTRIES_TABLE} WHERE list_id = {p} AND revoked_ms IS NOT NULL "
            "ORDER BY idx"
        )
        self._publish = (
            f"UPDATE {LISTS_TABLE} SET published = {p}, etag = {p}, published_ms = {p}, "
            f"valid_from_ms = {p}, valid_until_ms = {p} WHERE list_id = {p}"
        )
        self._doc_one = (
            f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM {DOCUMENTS_TABLE} "
            f"WHERE target = {p} AND doc_key = {p}{dialect.lock}"
        )
        self._doc_insert = (
            f"INSERT INTO {DOCUMENTS_TABLE} ({', '.join(DOCUMENT_COLUMNS)}) "
            f"VALUES ({dialect.marks(len(DOCUMENT_COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        self._doc_update = (
            f"UPDATE {DOCUMENTS_TABLE} SET "
            f"{', '.join(f'{c} = {p}' for c in DOCUMENT_COLUMNS[2:])} "
            f"WHERE target = {p} AND doc_key = {p}"
        )

    async def migrate(self) -> None:
        """Create the tables (idempotent; PostgreSQL instances take turns)."""
        async with self._tx() as tx:
            if self._postgres:
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})", ())
            for statement in create_status_tables(integer=self._integer):
                await tx.execute(statement, ())

    @staticmethod
    def _scope(scope: StatusScope) -> tuple[str, str, str]:
        return scope.tenant, scope.issuer, scope.purpose.value

    async def _current(self, tx: Tx, scope: StatusScope, credential: str) -> StatusEntryRow | None:
        found = await tx.fetchall(self._current_sql, (*self._scope(scope), credential))
        return _entry_row(found[0]) if found else None

    async def current_entry(self, scope: StatusScope, credential_id: str) -> StatusEntryRow | None:
        """The newest generation."""
        async with self._tx() as tx:
            return await self._current(tx, scope, credential_id)

    async def _newest_locked(self, tx: Tx, scope: StatusScope, now_ms: int) -> StatusListRow:
        found = await tx.fetchall(self._newest_list, self._scope(scope))
        if found:
            return _list_row(found[0])
        first = new_list(scope, 0, now_ms)
        await self._insert(tx, first)
        found = await tx.fetchall(self._newest_list, self._scope(scope))
        return _list_row(found[0])

    async def _insert(self, tx: Tx, row: StatusListRow) -> int:
        return await tx.execute(
            self._insert_list,
            (
                row.list_id,
                *self._scope(row.scope),
                row.list_no,
                row.size,
                row.allocated,
                row.perm_key.hex(),
                row.created_ms,
                None,
                None,
                None,
                None,
                None,
            ),
        )

    async def allocate(
        self,
        scope: StatusScope,
        credential_id: str,
        *,
        kind: StatusKind,
        subject: str,
        replacing: int | None,
        now_ms: int,
    ) -> Allocated:
        """Hand out an entry (see :meth:`StatusStore.allocate`)."""
        async with self._tx() as tx:
            newest = await self._newest_locked(tx, scope, now_ms)
            # Read after the lock: an instance that allocated meanwhile has committed.
            current = await self._current(tx, scope, credential_id)
            if current is not None and (replacing is None or current.generation != replacing):
                return Allocated(current, None)
            got, _ = await self._allocate_locked(
                tx, scope, newest, credential_id, kind, subject, current, now_ms
            )
            return got

    async def issue_all(
        self,
        scope: StatusScope,
        credentials: Sequence[tuple[str, StatusKind, str]],
        *,
        now_ms: int,
    ) -> list[Allocated]:
        """Every credential's live entry in one transaction (see
        :meth:`StatusStore.issue_all`): a learner's record issues several at once."""
        if not credentials:
            return []
        async with self._tx() as tx:
            newest = await self._newest_locked(tx, scope, now_ms)
            issued = []
            for credential_id, kind, subject in credentials:
                current = await self._current(tx, scope, credential_id)
                if current is not None and current.revoked_ms is None:
                    issued.append(Allocated(current, None))
                    continue
                got, newest = await self._allocate_locked(
                    tx, scope, newest, credential_id, kind, subject, current, now_ms
                )
                issued.append(got)
            return issued

    async def _allocate_locked(  # noqa: PLR0917 - one step of allocate/issue_all
        self,
        tx: Tx,
        scope: StatusScope,
        newest: StatusListRow,
        credential_id: str,
        kind: StatusKind,
        subject: str,
        current: StatusEntryRow | None,
        now_ms: int,
    ) -> tuple[Allocated, StatusListRow]:
        """Allocate the next entry of ``credential_id`` (after ``current``) with the
        scope's newest list locked; the allocation, and the newest list after it."""
        opened = newest if newest.allocated == 0 and newest.published is None else None
        chosen = newest
        if newest.allocated >= newest.size:
            chosen = opened = new_list(scope, newest.list_no + 1, now_ms)
            await self._insert(tx, chosen)
            found = await tx.fetchall(self._newest_list, self._scope(scope))
            chosen = _list_row(found[0])
        entry = next_entry(
            scope,
            credential_id,
            chosen,
            current=current,
            kind=kind,
            subject=subject,
            now_ms=now_ms,
        )
        await tx.execute(self._count, (chosen.allocated + 1, chosen.list_id))
        await tx.execute(
            self._insert_entry,
            (
                *self._scope(scope),
                credential_id,
                entry.generation,
                entry.list_id,
                entry.index,
                entry.kind.value,
                entry.subject,
                None,
                now_ms,
            ),
        )
        return Allocated(entry, opened), replace(chosen, allocated=chosen.allocated + 1)

    async def revoke(self, scope: StatusScope, credential_id: str, *, now_ms: int) -> str | None:
        """Mark the current entry revoked."""
        async with self._tx() as tx:
            current = await self._current(tx, scope, credential_id)
            if current is None or current.revoked_ms is not None:
                return None
            changed = await tx.execute(
                self._revoke_one, (now_ms, *self._scope(scope), credential_id, current.generation)
            )
            return current.list_id if changed else None

    async def revoke_all(self, scope: StatusScope, *, now_ms: int) -> list[str]:
        """Mark every entry of ``scope`` revoked."""
        async with self._tx() as tx:
            found = await tx.fetchall(self._revoked_lists, self._scope(scope))
            await tx.execute(self._revoke_scope, (now_ms, *self._scope(scope)))
            return sorted(str(row[0]) for row in found)

    async def list_row(self, list_id: str) -> StatusListRow | None:
        """One list."""
        async with self._tx() as tx:
            found = await tx.fetchall(self._list_by_id, (list_id,))
        return _list_row(found[0]) if found else None

    async def lists(self, scope: StatusScope | None = None) -> list[StatusListRow]:
        """Every list (of ``scope``)."""
        async with self._tx() as tx:
            if scope is None:
                found = await tx.fetchall(self._lists_all, ())
            else:
                found = await tx.fetchall(self._lists_of, self._scope(scope))
        return [_list_row(f) for f in found]

    async def revoked_indexes(self, list_id: str) -> list[int]:
        """Positions whose bit is set."""
        async with self._tx() as tx:
            found = await tx.fetchall(self._revoked, (list_id,))
        return [int(row[0]) for row in found]

    async def record_published(
        self,
        list_id: str,
        *,
        body: str,
        etag: str,
        published_ms: int,
        valid_from_ms: int,
        valid_until_ms: int,
    ) -> None:
        """Keep the signed list."""
        async with self._tx() as tx:
            await tx.execute(
                self._publish,
                (body, etag, published_ms, valid_from_ms, valid_until_ms, list_id),
            )

    async def mark_dirty(
        self,
        target: str,
        ref: DocumentRef,
        *,
        now_ms: int,
        not_before_ms: int,
        in_flight_not_before_ms: int | None = None,
    ) -> None:
        """Make the list's document due (coalesced: see :func:`coalesced_dirty`)."""
        async with self._tx() as tx:
            for _ in range(3):
                found = await tx.fetchall(self._doc_one, (target, ref.key))
                current = document_from_sql(found[0]) if found else None
                after = coalesced_dirty(
                    current,
                    target=target,
                    ref=ref,
                    now_ms=now_ms,
                    not_before_ms=not_before_ms,
                    in_flight_not_before_ms=in_flight_not_before_ms,
                )
                values = document_to_sql(after)
                if current is not None:
                    await tx.execute(self._doc_update, values[2:] + values[:2])
                    return
                if await tx.execute(self._doc_insert, values):
                    return
                # Another instance inserted it first: update its row instead.
