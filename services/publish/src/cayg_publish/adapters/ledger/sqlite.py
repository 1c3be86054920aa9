"""The embedded ledger and catalog: one SQLite file in WAL mode.

The default for a single publish instance. Blocking ``sqlite3`` calls run in a worker
thread (``asyncio.to_thread``) so they never stall the event loop. Every change runs in a
``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock before reading: the
read-decide-write of one operation cannot interleave with another writer, also when
several processes open the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from cayg_publish.adapters.ledger._catalog_reads import SqlCatalogReads
from cayg_publish.adapters.ledger._projection_sql import (
    SQLITE,
    ProjectionSql,
    SqlProjectionStore,
    create_documents_table,
)
from cayg_publish.adapters.ledger._rows import (
    CATALOG_COLUMNS,
    COLUMNS,
    SCHEMA_VERSION,
    TIME_COLUMNS,
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

_SQL: Final = statements("?")
_CATALOG_SQL: Final = catalog_statements("?", for_update=False)
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: create_table(integer="INTEGER", timestamp="TEXT", suffix=" WITHOUT ROWID"),
    2: create_catalog_table(integer="INTEGER", timestamp="TEXT"),
    3: create_documents_table(integer="INTEGER"),
}
_CATALOG_TIME_COLUMNS: Final = frozenset({"version_time"})


def _to_sql(name: str, value: Any, time_columns: frozenset[str] = TIME_COLUMNS) -> Any:
    if name in time_columns and isinstance(value, datetime):
        return value.isoformat()
    return value


def _from_sql(row: tuple[Any, ...]) -> LedgerEntry:
    values = dict(zip(COLUMNS, row, strict=True))
    for name in TIME_COLUMNS:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    return entry_from_row(values)


def _catalog_from_sql(row: tuple[Any, ...]) -> CatalogRow:
    values = dict(zip(CATALOG_COLUMNS, row, strict=True))
    values["version_time"] = datetime.fromisoformat(values["version_time"])
    return catalog_row_from_sql(values)


def _catalog_params(row: CatalogRow, columns: tuple[str, ...]) -> list[Any]:
    values = catalog_row_to_sql(row)
    return [_to_sql(c, values[c], _CATALOG_TIME_COLUMNS) for c in columns]


#: How long to wait between two attempts to switch a new database file to WAL.
_WAL_RETRY_S: Final = 0.01


def _enter_wal(connection: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch ``connection``'s database to write-ahead logging.

    Switching a new file needs it to itself for a moment, and SQLite answers "database
    is locked" at once, without waiting out the busy timeout, when another connection
    is doing the same: two instances (or a ledger and ``cayg status``) opening a new
    ledger together. So the switch is retried until the busy timeout has passed.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)
        else:
            return


class SqliteDatabase:
    """One SQLite connection, used by one dedicated worker thread.

    Every statement runs on that thread (``sqlite3`` blocks), so the event loop never
    stalls; an asyncio lock lets one operation at a time use the connection, and a
    :meth:`session` — a write transaction driven statement by statement from async code —
    holds it from ``BEGIN IMMEDIATE`` to ``COMMIT``. (A pool of threads blocking on a
    thread lock would deadlock: the session's next statement would find every worker
    waiting for the lock the session holds.) Other processes sharing the file wait on
    SQLite's own write lock (``busy_timeout``).

    Reads outside a transaction (:meth:`read`: rendering's catalog lookups, the ledger's
    listings) run on a second connection and thread, without that lock: in WAL mode they
    see the last committed state while a write transaction is open, so rendering does not
    queue behind recording. (An in-memory database has one connection only.)

    Point reads (:meth:`read_now`: rendering's catalog lookups, a few rows each) run on a
    third connection right on the caller's thread: a WAL reader never waits for a writer,
    and a lookup takes tens of microseconds, less than handing it to a thread and back
    (a learner's record needs dozens of them).
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cayg-sqlite")
        self._separate_reads = self.path != ":memory:"
        self._reader: sqlite3.Connection | None = None
        self._point_reader: sqlite3.Connection | None = None
        self._point_lock = threading.Lock()
        self._read_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="cayg-sqlite-read"
        )
        self._gate: asyncio.Lock | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerError("the ledger is closed")
        if self._connection is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                _enter_wal(connection, self._busy_timeout)
            except BaseException:
                connection.close()
                raise
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            self._connection = connection
        return self._connection

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:
            self._gate, self._gate_loop = asyncio.Lock(), loop
        return self._gate

    async def _run(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the connection's thread, mapping SQLite errors."""
        if self._closed:
            raise LedgerError("the ledger is closed")

        def guarded() -> T:
            try:
                return work()
            except sqlite3.Error as exc:
                raise LedgerError(f"sqlite ledger {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, guarded)

    def _direct(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the calling thread, inside a session (see :class:`SqliteTx`)."""
        if self._closed:
            raise LedgerError("the ledger is closed")
        try:
            return work(self._connect())
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite ledger {self.path}: {exc}") from exc

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connect()
        self._begin()
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a write transaction (``BEGIN IMMEDIATE``) on the connection's thread."""
        async with self._lock():
            return await self._run(lambda: self._transaction(work))

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` outside an explicit transaction: on the read connection's thread
        (the last committed state; no wait for a write transaction in progress)."""
        if not self._separate_reads:
            async with self._lock():
                return await self._run(lambda: work(self._connect()))
        if self._closed:
            raise LedgerError("the ledger is closed")

        def guarded() -> T:
            try:
                return work(self._read_connection())
            except sqlite3.Error as exc:
                raise LedgerError(f"sqlite ledger {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._read_executor, guarded)

    async def read_now(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small read (a few rows by index) on the caller's thread, on its own
        connection (the last committed state, as :meth:`read`)."""
        if not self._separate_reads:
            return await self.read(work)
        with self._point_lock:
            if self._closed:
                raise LedgerError("the ledger is closed")
            try:
                if self._point_reader is None:
                    self._point_reader = self._open_reader()
                return work(self._point_reader)
            except sqlite3.Error as exc:
                raise LedgerError(f"sqlite ledger {self.path}: {exc}") from exc

    def _open_reader(self) -> sqlite3.Connection:
        self._connect_for_reads_once()
        reader = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        reader.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        return reader

    def _read_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerError("the ledger is closed")
        if self._reader is None:
            self._reader = self._open_reader()
        return self._reader

    def _connect_for_reads_once(self) -> None:
        """The file (and WAL mode) exist before the first read connection opens."""
        if self._connection is None and not Path(self.path).exists():
            raise LedgerError(f"sqlite ledger {self.path}: not created yet (migrate first)")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SqliteTx]:
        """A write transaction (``BEGIN IMMEDIATE``) whose statements async code issues one
        by one (:class:`SqliteTx`); committed on exit, rolled back on error."""
        async with self._lock():
            try:
                await self._run(self._begin)
            except asyncio.CancelledError:
                # Cancelled while BEGIN was queued or running on the connection's thread: it
                # still runs there, so undo it after it (same thread, in order) before the
                # lock is released, or the next session would find a transaction open.
                await asyncio.shield(self._run(self._rollback_if_open))
                raise
            try:
                yield SqliteTx(self)
            except BaseException:
                await asyncio.shield(self._run(self._rollback_if_open))
                raise
            # Like the statements, COMMIT runs right here: the write lock is held, so it
            # waits for no one (a WAL commit appends; a checkpoint it triggers copies pages).
            self._direct(lambda c: c.execute("COMMIT"))

    def _begin(self) -> None:
        connection = self._connect()
        if connection.in_transaction:
            # Never expected (see session); if a transaction was left open all the same,
            # nothing was done in it that anyone was told of: undo it rather than fail
            # every session from now on.
            connection.execute("ROLLBACK")
        connection.execute("BEGIN IMMEDIATE")

    def _rollback_if_open(self) -> None:
        connection = self._connect()
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    async def close(self) -> None:
        """Close the connection; further use raises :class:`LedgerError`. Idempotent."""
        if self._closed:
            return

        def work() -> None:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        def close_reader() -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

        if self._gate is not None and self._gate_loop is asyncio.get_running_loop():
            async with self._gate:
                await asyncio.get_running_loop().run_in_executor(self._executor, work)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, work)
        await asyncio.get_running_loop().run_in_executor(self._read_executor, close_reader)
        with self._point_lock:
            if self._point_reader is not None:
                self._point_reader.close()
                self._point_reader = None
        self._executor.shutdown(wait=False)
        self._read_executor.shutdown(wait=False)


class SqliteTx:
    """A projection transaction (``Tx``) inside a :meth:`SqliteDatabase.session`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    # Inside the session the write lock is already held (BEGIN IMMEDIATE ran on the
    # connection's thread, where waiting for another process's lock belongs), and in WAL
    # mode nothing inside a write transaction waits for anyone: each statement is tens of
    # microseconds of work. Running them right here instead of handing each to the worker
    # thread spares two thread switches per statement, which were most of the cost of
    # recording a batch of changes.

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a query (the session's write lock is held)."""
        return self._db._direct(lambda c: list(c.execute(sql, tuple(params)).fetchall()))

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement (the session's write lock is held)."""
        return self._db._direct(lambda c: c.execute(sql, tuple(params)).rowcount)

    def catalog_params(self, row: CatalogRow, columns: Sequence[str]) -> list[Any]:
        """Catalog values with times as ISO text."""
        return _catalog_params(row, tuple(columns))

    def catalog_row(self, found: Sequence[Any]) -> CatalogRow:
        """A catalog row from SQLite values."""
        return _catalog_from_sql(tuple(found))


class SqliteLedger(SqlProjectionStore, Ledger):
    """A :class:`~cayg_publish.adapters.ledger.port.Ledger` in one SQLite database file."""

    def __init__(
        self,
        path: Path | str,
        *,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(claim_ttl=claim_ttl, clock=clock)
        self._db = SqliteDatabase(path, busy_timeout=busy_timeout)
        self._catalog = SqliteCatalog(self._db)
        self._projection = ProjectionSql(SQLITE)
        self._status = SqlStatusStore(self._tx, SQLITE, integer="INTEGER", postgres=False)

    @property
    def status(self) -> SqlStatusStore:
        """Status lists in the same database file."""
        return self._status

    def _tx(self) -> AbstractAsyncContextManager[SqliteTx]:
        return self._db.session()

    def __repr__(self) -> str:
        return f"SqliteLedger(path={self._db.path!r})"

    @property
    def catalog(self) -> SqliteCatalog:
        """The catalog kept in the same database."""
        return self._catalog

    async def migrate(self) -> None:
        """Create the tables (idempotent; concurrent migrations serialize on the write lock)."""

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(create_meta_table())
            row = connection.execute(_SQL.read_schema_version).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger schema {current} is newer than this code ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    connection.execute(statement)
            connection.execute(_SQL.write_schema_version, (str(SCHEMA_VERSION),))

        await self._db.transaction(work)
        await self._status.migrate()

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""

        def work(connection: sqlite3.Connection) -> LedgerEntry | None:
            row = connection.execute(_SQL.select, (target, entity_key)).fetchone()
            return None if row is None else _from_sql(row)

        return await self._db.read(work)

    async def entries(
        self, target: str, *, prefix: str = "", limit: int = 10_000
    ) -> list[LedgerEntry]:
        """Entries of ``target`` whose key starts with ``prefix``."""

        def work(connection: sqlite3.Connection) -> list[LedgerEntry]:
            params = (target, len(prefix), prefix, limit)
            return [_from_sql(r) for r in connection.execute(_SQL.entries, params).fetchall()]

        return await self._db.read(work)

    async def totals(self) -> LedgerTotals:
        """Counts per target and last outcome."""

        def work(connection: sqlite3.Connection) -> LedgerTotals:
            rows = connection.execute(_SQL.totals, (IN_FLIGHT,)).fetchall()
            by_target: dict[str, dict[str, int]] = {}
            for target, outcome, count in rows:
                by_target.setdefault(target, {})[outcome] = int(count)
            return LedgerTotals(by_target=by_target)

        return await self._db.read(work)

    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[T]) -> T:
        def work(connection: sqlite3.Connection) -> T:
            row = connection.execute(_SQL.select, (target, entity_key)).fetchone()
            before = None if row is None else _from_sql(row)
            result, after = mutation(before)
            if after is not None:
                values = entry_to_row(after)
                if before is None:
                    connection.execute(_SQL.insert, [_to_sql(c, values[c]) for c in COLUMNS])
                else:
                    connection.execute(
                        _SQL.update,
                        [_to_sql(c, values[c]) for c in VALUE_COLUMNS] + [target, entity_key],
                    )
            return result

        return await self._db.transaction(work)


class SqliteCatalog(SqlCatalogReads):
    """A :class:`~cayg_publish.domain.Catalog` in the ledger's SQLite database."""

    _sql = _CATALOG_SQL

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"SqliteCatalog(path={self._db.path!r})"

    async def remember(self, change: Change) -> None:
        """Store what ``change`` says, unless a newer snapshot is already stored."""
        async with self._db.session() as tx:
            await ProjectionSql(SQLITE).write_catalog(tx, change)

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[CatalogRow]:
        def work(connection: sqlite3.Connection) -> list[CatalogRow]:
            return [_catalog_from_sql(r) for r in connection.execute(sql, params).fetchall()]

        return await self._db.read_now(work)
