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
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from pydantic import SecretStr

from cayg_publish.adapters.ledger._catalog_reads import SqlCatalogReads
from cayg_publish.adapters.ledger._projection_sql import (
    POSTGRES,
    ProjectionSql,
    SqlProjectionStore,
    create_documents_table,
)
from cayg_publish.adapters.ledger._rows import (
    CATALOG_COLUMNS,
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
from cayg_publish.adapters.ledger._status_sql import SqlStatusStore
from cayg_publish.adapters.ledger.port import (
    DEFAULT_CLAIM_TTL,
    Ledger,
    LedgerError,
    Mutation,
    utc_now,
)
from cayg_publish.domain.catalog import (
    IN_FLIGHT,
    CatalogRow,
    LedgerEntry,
    LedgerTotals,
)
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
    3: create_documents_table(integer="BIGINT"),
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


class PostgresTx:
    """A :class:`~cayg_publish.adapters.ledger._projection_sql.Tx` on one psycopg connection."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a query."""
        cursor = await self._connection.execute(sql, list(params))
        return [tuple(row) for row in await cursor.fetchall()]

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement."""
        cursor = await self._connection.execute(sql, list(params))
        return cursor.rowcount

    def catalog_params(self, row: CatalogRow, columns: Sequence[str]) -> list[Any]:
        """Catalog values as psycopg adapts them."""
        values = catalog_row_to_sql(row)
        return [values[c] for c in columns]

    def catalog_row(self, found: Sequence[Any]) -> CatalogRow:
        """A catalog row from PostgreSQL values."""
        return _catalog_row(found)


class PostgresLedger(SqlProjectionStore, Ledger):
    """A :class:`~cayg_publish.adapters.ledger.port.Ledger` in a PostgreSQL database."""

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
        self._projection = ProjectionSql(POSTGRES)
        self._status = SqlStatusStore(self._tx, POSTGRES, integer="BIGINT", postgres=True)

    @property
    def status(self) -> SqlStatusStore:
        """Status lists in the same database."""
        return self._status

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[PostgresTx]:
        async with self._db.connection() as connection, connection.transaction():
            yield PostgresTx(connection)

    def _tx(self) -> AbstractAsyncContextManager[PostgresTx]:
        return self._session()

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
        await self._status.migrate()

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._db.close()

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""
        async with self._db.connection() as connection:
            cursor = await connection.execute(_SQL.select, (target, entity_key))
            row = await cursor.fetchone()
        return None if row is None else entry_from_row(row)

    async def entries(
        self, target: str, *, prefix: str = "", limit: int = 10_000
    ) -> list[LedgerEntry]:
        """Entries of ``target`` whose key starts with ``prefix``."""
        async with self._db.connection() as connection:
            cursor = await connection.execute(_SQL.entries, (target, len(prefix), prefix, limit))
            rows = await cursor.fetchall()
        return [entry_from_row(r) for r in rows]

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
        async with self._db.connection() as connection, connection.transaction():
            await ProjectionSql(POSTGRES).write_catalog(PostgresTx(connection), change)

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[CatalogRow]:
        async with self._db.connection() as connection:
            cursor = await connection.execute(sql, params)
            found = await cursor.fetchall()
        return [_catalog_row(r) for r in found]


def _catalog_row(found: Sequence[Any]) -> CatalogRow:
    return catalog_row_from_sql(dict(zip(CATALOG_COLUMNS, found, strict=True)))
