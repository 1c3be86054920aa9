"""The ledger's table layout and statements, shared by the SQL adapters.

Versions are stored as three columns (stream, sequence, time) and compared only in Python
(:func:`cayg_publish.domain.compare_versions`), so SQL never needs to know the ordering.
"""

# Statements are assembled from the module's own constant identifiers, never from input.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cayg_publish.domain import LedgerEntry, Outcome, Version

TABLE: Final = "cayg_publish_ledger"
META_TABLE: Final = "cayg_publish_ledger_meta"
SCHEMA_VERSION: Final = 1

#: Column order of every SELECT and INSERT.
COLUMNS: Final = (
    "target",
    "entity_key",
    "applied_stream",
    "applied_seq",
    "applied_time",
    "applied_hash",
    "remote_id",
    "remote_url",
    "last_stream",
    "last_seq",
    "last_time",
    "last_hash",
    "last_outcome",
    "attempts",
    "last_error",
    "claim_stream",
    "claim_seq",
    "claim_time",
    "claim_hash",
    "claim_expires_at",
    "updated_at",
)
KEY_COLUMNS: Final = ("target", "entity_key")
VALUE_COLUMNS: Final = tuple(c for c in COLUMNS if c not in KEY_COLUMNS)
TIME_COLUMNS: Final = frozenset(
    {"applied_time", "last_time", "claim_time", "claim_expires_at", "updated_at"}
)


def _split(version: Version | None) -> tuple[str | None, int | None, datetime | None]:
    if version is None:
        return (None, None, None)
    return (version.stream, version.sequence, version.time)


def _join(stream: str | None, sequence: int | None, time: datetime | None) -> Version | None:
    if stream is None or time is None:
        return None
    return Version(stream=stream, sequence=None if sequence is None else int(sequence), time=time)


def entry_to_row(entry: LedgerEntry) -> dict[str, Any]:
    """Column values of ``entry`` (datetimes stay datetimes; the adapter converts)."""
    applied_stream, applied_seq, applied_time = _split(entry.applied_version)
    last_stream, last_seq, last_time = _split(entry.last_version)
    claim_stream, claim_seq, claim_time = _split(entry.claim_version)
    return {
        "target": entry.target,
        "entity_key": entry.entity_key,
        "applied_stream": applied_stream,
        "applied_seq": applied_seq,
        "applied_time": applied_time,
        "applied_hash": entry.applied_hash,
        "remote_id": entry.remote_id,
        "remote_url": entry.remote_url,
        "last_stream": last_stream,
        "last_seq": last_seq,
        "last_time": last_time,
        "last_hash": entry.last_hash,
        "last_outcome": None if entry.last_outcome is None else str(entry.last_outcome),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "claim_stream": claim_stream,
        "claim_seq": claim_seq,
        "claim_time": claim_time,
        "claim_hash": entry.claim_hash,
        "claim_expires_at": entry.claim_expires_at,
        "updated_at": entry.updated_at,
    }


def entry_from_row(row: Sequence[Any] | Mapping[str, Any]) -> LedgerEntry:
    """The entry of a row selected with :data:`COLUMNS` (datetimes already converted)."""
    values = row if isinstance(row, Mapping) else dict(zip(COLUMNS, row, strict=True))
    updated_at: datetime = values["updated_at"]
    outcome = values["last_outcome"]
    return LedgerEntry(
        target=values["target"],
        entity_key=values["entity_key"],
        applied_version=_join(
            values["applied_stream"], values["applied_seq"], values["applied_time"]
        ),
        applied_hash=values["applied_hash"],
        remote_id=values["remote_id"],
        remote_url=values["remote_url"],
        last_version=_join(values["last_stream"], values["last_seq"], values["last_time"]),
        last_hash=values["last_hash"],
        last_outcome=None if outcome is None else Outcome(outcome),
        attempts=int(values["attempts"]),
        last_error=values["last_error"],
        claim_version=_join(values["claim_stream"], values["claim_seq"], values["claim_time"]),
        claim_hash=values["claim_hash"],
        claim_expires_at=values["claim_expires_at"],
        updated_at=updated_at,
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL of the ledger operations, for one driver's placeholder style."""

    select: str
    select_for_update: str
    insert: str
    insert_if_absent: str
    update: str
    totals: str
    read_schema_version: str
    write_schema_version: str


def statements(placeholder: str) -> Statements:
    """The ledger statements with ``placeholder`` (``?`` or ``%s``) as parameter marker."""
    where = f"WHERE target = {placeholder} AND entity_key = {placeholder}"
    select = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} {where}"
    insert = (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join(placeholder for _ in COLUMNS)})"
    )
    return Statements(
        select=select,
        select_for_update=f"{select} FOR UPDATE",
        insert=insert,
        insert_if_absent=f"{insert} ON CONFLICT (target, entity_key) DO NOTHING",
        update=(
            f"UPDATE {TABLE} SET {', '.join(f'{c} = {placeholder}' for c in VALUE_COLUMNS)} {where}"
        ),
        totals=(
            f"SELECT target, COALESCE(last_outcome, {placeholder}), COUNT(*) FROM {TABLE} "
            "GROUP BY 1, 2"
        ),
        read_schema_version=f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'",
        write_schema_version=(
            f"INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', {placeholder}) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ),
    )


def create_meta_table() -> str:
    """DDL of the table holding the schema version."""
    return f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def create_table(*, integer: str, timestamp: str, suffix: str = "") -> tuple[str, ...]:
    """DDL of the ledger table and its index, with the driver's integer/timestamp types."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            target TEXT NOT NULL,
            entity_key TEXT NOT NULL,
            applied_stream TEXT,
            applied_seq {integer},
            applied_time {timestamp},
            applied_hash TEXT,
            remote_id TEXT,
            remote_url TEXT,
            last_stream TEXT,
            last_seq {integer},
            last_time {timestamp},
            last_hash TEXT,
            last_outcome TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            claim_stream TEXT,
            claim_seq {integer},
            claim_time {timestamp},
            claim_hash TEXT,
            claim_expires_at {timestamp},
            updated_at {timestamp} NOT NULL,
            PRIMARY KEY (target, entity_key)
        ){suffix}""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_outcome ON {TABLE} (target, last_outcome)",
    )
