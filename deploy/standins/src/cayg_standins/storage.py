"""A small SQLite file wrapper shared by both stand-ins.

Each thread has its own connection, opened on first use and kept (opening one per
operation cost a fifth of the CLR host's time under load): the app is built on one thread
and served on another (uvicorn in a test thread), and a CLI ``reset`` may run beside a live
server. Writers take ``BEGIN IMMEDIATE`` so a read-compare-write (e.g. "is this content
new?") is atomic even across processes.
"""

from __future__ import annotations

import sqlite3
import threading
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
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=True
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, for reads (autocommit)."""
        yield self._connect()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside ``BEGIN IMMEDIATE``; committed on success, rolled
        back on error."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def clear(self) -> None:
        """Delete every row of every table of this store."""
        with self.write() as conn:
            for table in self._tables:
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
