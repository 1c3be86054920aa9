"""A small SQLite file wrapper shared by both stand-ins.

Every operation opens its own connection: the app is built on one thread and served on
another (uvicorn in a test thread), and a CLI ``reset`` may run beside a live server.
Writers take ``BEGIN IMMEDIATE`` so a read-compare-write (e.g. "is this content new?")
is atomic even across processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SqliteFile"]


class SqliteFile:
    """One SQLite database file with a fixed schema, created on first use."""

    def __init__(self, path: Path, schema: str, tables: tuple[str, ...]) -> None:
        """Create the parent directory and the schema (idempotent)."""
        self.path = path
        self._tables = tables
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (autocommit)."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE``; committed on success, rolled back on error."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def clear(self) -> None:
        """Delete every row of every table of this store."""
        with self.write() as conn:
            for table in self._tables:
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
