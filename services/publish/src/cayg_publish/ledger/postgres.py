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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from pydantic import SecretStr

from cayg_publish.domain import IN_FLIGHT, LedgerEntry, LedgerTotals
from cayg_publish.ledger._rows import (
    COLUMNS,
    SCHEMA_VERSION,
    VALUE_COLUMNS,
    create_meta_table,
    create_table,
    entry_from_row,
    entry_to_row,
    statements,
)
from cayg_publish.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError, Mutation, utc_now

T = TypeVar("T")

#: Taken (transaction-scoped) while migrating, so instances starting together take turns.
_MIGRATION_LOCK_ID: Final = 0x63617967_6C656467  # "caygledg"

_SQL: Final = statements("%s")
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: create_table(integer="BIGINT", timestamp="TIMESTAMPTZ"),
}

#: Attempts at "row absent → insert" before giving up; a lost insert race retries once.
_MAX_INSERT_RACES: Final = 5


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
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        # The DSN may carry a password: kept as a SecretStr, never in repr or errors.
        self._dsn = dsn if isinstance(dsn, SecretStr) else SecretStr(dsn)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresLedger(pool_size={self._pool_size})"

    # -- plumbing ------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
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

    # -- primitives ----------------------------------------------------------------------

    async def migrate(self) -> None:
        """Create the tables; instances migrating at once serialize on an advisory lock."""
        async with self._connection() as connection, connection.transaction():
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
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""
        async with self._connection() as connection:
            cursor = await connection.execute(_SQL.select, (target, entity_key))
            row = await cursor.fetchone()
        return None if row is None else entry_from_row(row)

    async def totals(self) -> LedgerTotals:
        """Counts per target and last outcome."""
        async with self._connection() as connection:
            cursor = await connection.execute(_SQL.totals, (IN_FLIGHT,))
            rows = await cursor.fetchall()
        by_target: dict[str, dict[str, int]] = {}
        for target, outcome, count in rows:
            by_target.setdefault(target, {})[outcome] = int(count)
        return LedgerTotals(by_target=by_target)

    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[T]) -> T:
        async with self._connection() as connection:
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
