"""The shared ledger: PostgreSQL, for several publish instances.

Each operation is one transaction that locks the entity's row (``SELECT … FOR UPDATE``)
before reading it, so two instances deciding or recording the same entity take turns; a
row that does not exist yet is created with ``INSERT … ON CONFLICT DO NOTHING`` and, if
another instance created it first, the operation starts over on the now-existing row.
Together with the version guard of the domain transitions, no interleaving can move the
applied version backwards.

Connections come from a small built-in pool (``psycopg.AsyncConnection``); broken ones
are dropped and replaced on the next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from pydantic import SecretStr

from cayg_publish.domain import (
    IN_FLIGHT,
    CatalogRow,
    LedgerEntry,
    LedgerTotals,
    catalog_rows,
    catalog_transition,
    revoke_transition,
)
from cayg_publish.ledger._catalog_reads import SqlCatalogReads
from cayg_publish.ledger._rows import (
    CATALOG_COLUMNS,
    CATALOG_KEY,
    CATALOG_VALUES,
    COLUMNS,
    SCHEMA_VERSION,
    VALUE_COLUMNS,
    catalog_row_from_sql,
    catalog_row_to_sql,
    catalog_statements,
    create_catalog_table,
    create_meta_table,
    create_table,
    entry_from_row,
    entry_to_row,
    statements,
)
from cayg_publish.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError, Mutation, utc_now
from cayg_shared.schema import (
    Change,
)

T = TypeVar("T")

#: Taken (transaction-scoped) while migrating, so instances starting together take turns.
_MIGRATION_LOCK_ID: Final = 0x63617967_6C656467  # "caygledg"

_SQL: Final = statements("%s")
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: create_table(integer="BIGINT", timestamp="TIMESTAMPTZ"),
    2: create_catalog_table(integer="BIGINT", timestamp="TIMESTAMPTZ"),
}
_CATALOG_SQL: Final = catalog_statements("%s", for_update=True)

#: Attempts at "row absent → insert" before giving up; a lost insert race retries once.
_MAX_INSERT_RACES: Final = 5


class PostgresDatabase:
    """A small pool of ``psycopg.AsyncConnection``s (autocommit; explicit transactions)."""

    def __init__(
        self, dsn: SecretStr | str, *, pool_size: int = 4, connect_timeout: float = 10.0
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        # The DSN may carry a password: kept as a SecretStr, never in repr or errors.
        self._dsn = dsn if isinstance(dsn, SecretStr) else SecretStr(dsn)
        self.pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresDatabase(pool_size={self.pool_size})"

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; broken ones are closed instead of returned to the pool."""
        if self._closed:
            raise LedgerError("the ledger is closed")
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            if connection is not None and (connection.closed or connection.broken):
                connection = None
            try:
                if connection is None:
                    connection = await psycopg.AsyncConnection.connect(
                        self._dsn.get_secret_value(),
                        autocommit=True,
                        connect_timeout=max(1, int(self._connect_timeout)),
                    )
                yield connection
            except psycopg.Error as exc:
                if connection is not None and not connection.closed:
                    await connection.close()
                # psycopg's messages do not include the password; the DSN itself is not
                # repeated here.
                raise LedgerError(f"postgres ledger: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                if connection is not None and not connection.closed:
                    await connection.close()
                raise
            else:
                if self._closed or connection.closed or connection.broken:
                    await connection.close()
                else:
                    self._idle.append(connection)

    async def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class PostgresLedger(Ledger):
    """A :class:`~cayg_publish.ledger.port.Ledger` in a PostgreSQL database."""

    def __init__(
        self,
        dsn: SecretStr | str,
        *,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
        clock: Callable[[], datetime] = utc_now,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(claim_ttl=claim_ttl, clock=clock)
        self._db = PostgresDatabase(dsn, pool_size=pool_size, connect_timeout=connect_timeout)
        self._catalog = PostgresCatalog(self._db)

    def __repr__(self) -> str:
        return f"PostgresLedger(pool_size={self._db.pool_size})"

    @property
    def catalog(self) -> PostgresCatalog:
        """The catalog kept in the same database."""
        return self._catalog

    # -- primitives ----------------------------------------------------------------------

    async def migrate(self) -> None:
        """Create the tables; instances migrating at once serialize on an advisory lock."""
        async with self._db.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            await connection.execute(create_meta_table())
            cursor = await connection.execute(_SQL.read_schema_version)
            row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger schema {current} is newer than this code ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    await connection.execute(statement)
            await connection.execute(_SQL.write_schema_version, (str(SCHEMA_VERSION),))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._db.close()

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""
        async with self._db.connection() as connection:
            cursor = await connection.execute(_SQL.select, (target, entity_key))
            row = await cursor.fetchone()
        return None if row is None else entry_from_row(row)

    async def totals(self) -> LedgerTotals:
        """Counts per target and last outcome."""
        async with self._db.connection() as connection:
            cursor = await connection.execute(_SQL.totals, (IN_FLIGHT,))
            rows = await cursor.fetchall()
        by_target: dict[str, dict[str, int]] = {}
        for target, outcome, count in rows:
            by_target.setdefault(target, {})[outcome] = int(count)
        return LedgerTotals(by_target=by_target)

    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[T]) -> T:
        async with self._db.connection() as connection:
            for _ in range(_MAX_INSERT_RACES):
                async with connection.transaction():
                    cursor = await connection.execute(_SQL.select_for_update, (target, entity_key))
                    row = await cursor.fetchone()
                    before = None if row is None else entry_from_row(row)
                    result, after = mutation(before)
                    if after is None:
                        return result
                    values = entry_to_row(after)
                    if before is not None:
                        await connection.execute(
                            _SQL.update, [values[c] for c in VALUE_COLUMNS] + [target, entity_key]
                        )
                        return result
                    cursor = await connection.execute(
                        _SQL.insert_if_absent, [values[c] for c in COLUMNS]
                    )
                    if cursor.rowcount == 1:
                        return result
                # Another instance inserted the row between our SELECT and INSERT: decide
                # again, this time on the locked existing row.
            raise LedgerError(f"could not create the ledger row for {target}/{entity_key}")


class PostgresCatalog(SqlCatalogReads):
    """A :class:`~cayg_publish.domain.Catalog` in the ledger's PostgreSQL database.

    Writers lock the rows they replace (``FOR UPDATE``) and insert with ``ON CONFLICT DO
    NOTHING``, starting over if another instance created the row first; with the version
    guard of :func:`~cayg_publish.domain.catalog_transition`, a newer snapshot is never
    replaced by an older one.
    """

    _sql = _CATALOG_SQL

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return "PostgresCatalog()"

    async def remember(self, change: Change) -> None:
        """Store what ``change`` says, unless a newer snapshot is already stored."""
        rows = catalog_rows(change)
        key = change.entity_key
        async with self._db.connection() as connection:
            for incoming in rows:
                await self._remember_one(connection, incoming)
            if not rows:  # a record-level revoke
                async with connection.transaction():
                    cursor = await connection.execute(
                        _CATALOG_SQL.select_record,
                        (change.tenant, key.entity_type.value, key.source_id),
                    )
                    for found in await cursor.fetchall():
                        existing = _catalog_row(found)
                        new = revoke_transition(existing, change)
                        if new is not None:
                            await connection.execute(_CATALOG_SQL.update, _update_params(new))

    @staticmethod
    async def _remember_one(connection: psycopg.AsyncConnection[Any], incoming: CatalogRow) -> None:
        key = (incoming.tenant, incoming.entity_type.value, incoming.source_id, incoming.part)
        for _ in range(_MAX_INSERT_RACES):
            async with connection.transaction():
                cursor = await connection.execute(_CATALOG_SQL.select_one + " FOR UPDATE", key)
                found = await cursor.fetchone()
                existing = None if found is None else _catalog_row(found)
                new = catalog_transition(existing, incoming)
                if new is None:
                    return
                if existing is not None:
                    await connection.execute(_CATALOG_SQL.update, _update_params(new))
                    return
                values = catalog_row_to_sql(new)
                cursor = await connection.execute(
                    _CATALOG_SQL.insert, [values[c] for c in CATALOG_COLUMNS]
                )
                if cursor.rowcount == 1:
                    return
        raise LedgerError(f"could not create the catalog row for {'/'.join(key)}")

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[CatalogRow]:
        async with self._db.connection() as connection:
            cursor = await connection.execute(sql, params)
            found = await cursor.fetchall()
        return [_catalog_row(r) for r in found]


def _catalog_row(found: Sequence[Any]) -> CatalogRow:
    return catalog_row_from_sql(dict(zip(CATALOG_COLUMNS, found, strict=True)))


def _update_params(row: CatalogRow) -> list[Any]:
    values = catalog_row_to_sql(row)
    return [values[c] for c in CATALOG_VALUES] + [values[c] for c in CATALOG_KEY]
