"""The registry stand-in's SQLite state: resources, tombstones and request counts."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cayg_standins.registry.ctdl import canonical_json
from cayg_standins.registry.render import Kind
from cayg_standins.storage import SqliteFile

__all__ = ["DeleteOutcome", "PublishOutcome", "RegistryStore", "StoredResource"]

DB_FILE = "registry.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    ctid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner_org TEXT NOT NULL,
    ctdl_type TEXT NOT NULL,
    graph_json TEXT,
    content_hash TEXT,
    envelope_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS resources_owner ON resources (owner_org, kind);
CREATE TABLE IF NOT EXISTS request_counts (
    ctid TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (ctid, action, outcome)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def content_hash(graph: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a graph: equal content, equal hash."""
    return hashlib.sha256(canonical_json(graph).encode()).hexdigest()


@dataclass(frozen=True)
class StoredResource:
    """One row of ``resources``; ``graph`` is ``None`` for a tombstone."""

    ctid: str
    kind: Kind
    owner_org: str
    ctdl_type: str
    graph: dict[str, Any] | None
    envelope_id: str
    version: int
    created_at: str
    updated_at: str
    deleted_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredResource:
        """Decode a row."""
        graph = json.loads(row["graph_json"]) if row["graph_json"] else None
        return cls(
            ctid=row["ctid"],
            kind=row["kind"],
            owner_org=row["owner_org"],
            ctdl_type=row["ctdl_type"],
            graph=graph,
            envelope_id=row["envelope_id"],
            version=row["version"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            deleted_at=row["deleted_at"],
        )

    def main_node(self) -> dict[str, Any] | None:
        """The node of the graph that carries this CTID."""
        if self.graph is None:
            return None
        for node in self.graph.get("@graph", []):
            if isinstance(node, dict) and node.get("ceterms:ctid") == self.ctid:
                return node
        return None


@dataclass(frozen=True)
class PublishOutcome:
    """What a publish did."""

    result: Literal["created", "updated", "unchanged", "not_owner", "other_kind"]
    resource: StoredResource | None

    @property
    def changed(self) -> bool:
        """The stored content changed."""
        return self.result in ("created", "updated")


@dataclass(frozen=True)
class DeleteOutcome:
    """What a delete did."""

    result: Literal["deleted", "not_found", "already_deleted", "not_owner", "other_kind"]
    resource: StoredResource | None


class RegistryStore:
    """Resources by CTID, with their owner, tombstones and per-CTID request counts."""

    def __init__(self, data_dir: Path) -> None:
        """Open (or create) ``<data_dir>/registry.sqlite3``."""
        self.db = SqliteFile(data_dir / DB_FILE, _SCHEMA, ("resources", "request_counts"))

    def reset(self) -> None:
        """Forget everything."""
        self.db.clear()

    def get(self, ctid: str) -> StoredResource | None:
        """The resource (or tombstone) for a CTID."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM resources WHERE ctid = ?", (ctid,)).fetchone()
        return StoredResource.from_row(row) if row else None

    def by_envelope(self, envelope_id: str) -> StoredResource | None:
        """The resource stored in an envelope."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM resources WHERE envelope_id = ?", (envelope_id,)
            ).fetchone()
        return StoredResource.from_row(row) if row else None

    def publish(
        self, ctid: str, kind: Kind, ctdl_type: str, graph: dict[str, Any], org: str
    ) -> PublishOutcome:
        """Insert or update ``ctid`` for ``org``; only its first publisher may change it."""
        digest = content_hash(graph)
        now = _now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM resources WHERE ctid = ?", (ctid,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO resources (ctid, kind, owner_org, ctdl_type, graph_json,"
                    " content_hash, envelope_id, version, created_at, updated_at, deleted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, NULL)",
                    (
                        ctid,
                        kind,
                        org,
                        ctdl_type,
                        json.dumps(graph, ensure_ascii=False),
                        digest,
                        str(uuid.uuid4()),
                        now,
                        now,
                    ),
                )
                result: Literal["created", "updated", "unchanged"] = "created"
            else:
                existing = StoredResource.from_row(row)
                if existing.owner_org != org:
                    return PublishOutcome("not_owner", existing)
                if existing.kind != kind:
                    return PublishOutcome("other_kind", existing)
                if row["content_hash"] == digest and existing.deleted_at is None:
                    return PublishOutcome("unchanged", existing)
                conn.execute(
                    "UPDATE resources SET ctdl_type = ?, graph_json = ?, content_hash = ?,"
                    " version = version + 1, updated_at = ?, deleted_at = NULL WHERE ctid = ?",
                    (ctdl_type, json.dumps(graph, ensure_ascii=False), digest, now, ctid),
                )
                result = "updated"
            stored = conn.execute("SELECT * FROM resources WHERE ctid = ?", (ctid,)).fetchone()
        return PublishOutcome(result, StoredResource.from_row(stored))

    def delete(self, ctid: str, kind: Kind, org: str) -> DeleteOutcome:
        """Delete (tombstone) ``ctid``; only its owner may."""
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM resources WHERE ctid = ?", (ctid,)).fetchone()
            if row is None:
                return DeleteOutcome("not_found", None)
            existing = StoredResource.from_row(row)
            if existing.owner_org != org:
                return DeleteOutcome("not_owner", existing)
            if existing.kind != kind:
                return DeleteOutcome("other_kind", existing)
            if existing.deleted_at is not None:
                return DeleteOutcome("already_deleted", existing)
            now = _now()
            conn.execute(
                "UPDATE resources SET graph_json = NULL, content_hash = NULL,"
                " version = version + 1, updated_at = ?, deleted_at = ? WHERE ctid = ?",
                (now, now, ctid),
            )
            stored = conn.execute("SELECT * FROM resources WHERE ctid = ?", (ctid,)).fetchone()
        return DeleteOutcome("deleted", StoredResource.from_row(stored))

    def list_for_owner(self, org: str, kind: Kind) -> list[StoredResource]:
        """Live resources of one kind owned by ``org``, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM resources WHERE owner_org = ? AND kind = ? AND deleted_at IS NULL"
                " ORDER BY created_at, ctid",
                (org, kind),
            ).fetchall()
        return [StoredResource.from_row(row) for row in rows]

    def owner_known(self, org: str) -> bool:
        """Whether ``org`` has ever published anything here (or is itself published)."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM resources WHERE owner_org = ? OR ctid = ? LIMIT 1", (org, org)
            ).fetchone()
        return row is not None

    def count(self, ctid: str, action: str, outcome: str) -> None:
        """Count one request naming ``ctid``."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO request_counts (ctid, action, outcome, n) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (ctid, action, outcome) DO UPDATE SET n = n + 1",
                (ctid, action, outcome),
            )

    def counts(self, ctid: str | None = None) -> dict[str, dict[str, Any]]:
        """``{ctid: {"total": n, action: {outcome: n}}}``, for one CTID or all."""
        query = "SELECT ctid, action, outcome, n FROM request_counts"
        params: tuple[str, ...] = ()
        if ctid is not None:
            query += " WHERE ctid = ?"
            params = (ctid,)
        with self.db.read() as conn:
            rows = conn.execute(query + " ORDER BY ctid, action, outcome", params).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = out.setdefault(row["ctid"], {"total": 0})
            entry.setdefault(row["action"], {})[row["outcome"]] = row["n"]
            entry["total"] += row["n"]
        return out
