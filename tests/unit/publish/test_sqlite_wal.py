"""Opening a new SQLite ledger while another connection holds the file switches to WAL
once the file is free, instead of failing with "database is locked"."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cayg_publish.adapters.ledger.sqlite import _enter_wal

pytestmark = pytest.mark.unit


def _held(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_the_switch_to_wal_waits_for_a_connection_holding_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    holder = _held(path)
    # No busy handler of its own: a plain PRAGMA fails at once while the file is held.
    opening = sqlite3.connect(path, timeout=0.0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        opening.execute("PRAGMA journal_mode=WAL")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()

    _enter_wal(opening, busy_timeout_s=10.0)

    release.join()
    assert opening.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    opening.close()
    holder.close()


def test_the_switch_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    holder = _held(path)
    opening = sqlite3.connect(path, timeout=0.0, isolation_level=None)

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enter_wal(opening, busy_timeout_s=0.05)

    opening.close()
    holder.close()
