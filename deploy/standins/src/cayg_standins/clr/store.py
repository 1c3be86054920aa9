"""The CLR host stand-in's SQLite state: tokens, credentials, profiles, upsert counts.

Credentials are kept per API (``clr`` or ``ob``) and per OAuth client, the principal a
client-credentials token stands for; within that, one credential is ``issuer.id`` + ``id``.
Tokens are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cayg_standins.storage import SqliteFile

__all__ = [
    "DB_FILE",
    "ClrStore",
    "IssuedToken",
    "StoredCredential",
    "TokenGrant",
    "UpsertOutcome",
]

DB_FILE = "clr.sqlite3"
Api = Literal["clr", "ob"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS credentials (
    api TEXT NOT NULL,
    client_id TEXT NOT NULL,
    issuer_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_from_ts REAL NOT NULL,
    body_json TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (api, client_id, issuer_id, credential_id)
);
-- The next seq (MAX) and the latest write per API are index lookups, not a scan of every
-- stored credential per upsert (that made a 100,000-award backfill slow down as it went).
CREATE INDEX IF NOT EXISTS credentials_seq ON credentials (seq);
CREATE INDEX IF NOT EXISTS credentials_updated ON credentials (api, updated_at);
CREATE TABLE IF NOT EXISTS profiles (
    api TEXT NOT NULL,
    client_id TEXT NOT NULL,
    body_json TEXT NOT NULL,
    PRIMARY KEY (api, client_id)
);
CREATE TABLE IF NOT EXISTS upsert_counts (
    api TEXT NOT NULL,
    issuer_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (api, issuer_id, credential_id, outcome)
);
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class TokenGrant:
    """What a valid token allows."""

    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued access/refresh pair (the only time the secrets exist in clear)."""

    access_token: str
    refresh_token: str
    scopes: frozenset[str]
    expires_in: int


@dataclass(frozen=True)
class StoredCredential:
    """One stored credential."""

    issuer_id: str
    credential_id: str
    valid_from: str
    body: dict[str, Any]


@dataclass(frozen=True)
class UpsertOutcome:
    """What an upsert did; ``stored`` is what the host now holds."""

    result: Literal["created", "replaced", "unchanged", "stale_ignored"]
    stored: StoredCredential


class ClrStore:
    """SQLite-backed state of the CLR host."""

    def __init__(self, data_dir: Path) -> None:
        """Open (or create) ``<data_dir>/clr.sqlite3``."""
        self.db = SqliteFile(
            data_dir / DB_FILE,
            _SCHEMA,
            ("tokens", "credentials", "profiles", "upsert_counts"),
        )

    def reset(self) -> None:
        """Forget everything, tokens included."""
        self.db.clear()

    # -- tokens ---------------------------------------------------------------------------

    def issue(
        self, client_id: str, scopes: frozenset[str], now: float, ttl_s: int, refresh_ttl_s: int
    ) -> IssuedToken:
        """Issue an access token and a refresh token for ``client_id``."""
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        scope = " ".join(sorted(scopes))
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO tokens (token_hash, kind, client_id, scope, expires_at)"
                " VALUES (?, 'access', ?, ?, ?)",
                (_hash(access), client_id, scope, now + ttl_s),
            )
            conn.execute(
                "INSERT INTO tokens (token_hash, kind, client_id, scope, expires_at)"
                " VALUES (?, 'refresh', ?, ?, ?)",
                (_hash(refresh), client_id, scope, now + refresh_ttl_s),
            )
        return IssuedToken(access, refresh, scopes, ttl_s)

    def lookup(
        self, token: str, kind: Literal["access", "refresh"], now: float
    ) -> TokenGrant | None:
        """The grant of a live (known, unexpired, unrevoked) token of ``kind``."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM tokens WHERE token_hash = ? AND kind = ?", (_hash(token), kind)
            ).fetchone()
        if row is None or row["revoked"] or row["expires_at"] <= now:
            return None
        return TokenGrant(row["client_id"], frozenset(row["scope"].split()), row["expires_at"])

    def revoke(self, token: str) -> None:
        """Revoke a token (refresh tokens are single-use: rotation)."""
        with self.db.write() as conn:
            conn.execute("UPDATE tokens SET revoked = 1 WHERE token_hash = ?", (_hash(token),))

    # -- credentials ----------------------------------------------------------------------

    def upsert(
        self,
        api: Api,
        *,
        client_id: str,
        issuer_id: str,
        credential_id: str,
        valid_from: str,
        valid_from_ts: float,
        body: dict[str, Any],
    ) -> UpsertOutcome:
        """Create or replace; a credential with an older ``validFrom`` is not applied."""
        text = json.dumps(body, ensure_ascii=False)
        key = (api, client_id, issuer_id, credential_id)
        now = _now()
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT * FROM credentials WHERE api = ? AND client_id = ? AND issuer_id = ?"
                " AND credential_id = ?",
                key,
            ).fetchone()
            if row is None:
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM credentials").fetchone()
                conn.execute(
                    "INSERT INTO credentials (api, client_id, issuer_id, credential_id,"
                    " valid_from, valid_from_ts, body_json, seq, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, valid_from, valid_from_ts, text, seq[0], now, now),
                )
                result: Literal["created", "replaced", "unchanged", "stale_ignored"] = "created"
                stored = StoredCredential(issuer_id, credential_id, valid_from, body)
            elif row["valid_from_ts"] > valid_from_ts:
                result = "stale_ignored"
                stored = StoredCredential(
                    issuer_id, credential_id, row["valid_from"], json.loads(row["body_json"])
                )
            elif json.loads(row["body_json"]) == body:
                result = "unchanged"
                stored = StoredCredential(issuer_id, credential_id, valid_from, body)
            else:
                conn.execute(
                    "UPDATE credentials SET valid_from = ?, valid_from_ts = ?, body_json = ?,"
                    " updated_at = ? WHERE api = ? AND client_id = ? AND issuer_id = ?"
                    " AND credential_id = ?",
                    (valid_from, valid_from_ts, text, now, *key),
                )
                result = "replaced"
                stored = StoredCredential(issuer_id, credential_id, valid_from, body)
            self._count(conn, api, issuer_id, credential_id, result)
        return UpsertOutcome(result, stored)

    def count_rejected(self, api: Api, issuer_id: str, credential_id: str) -> None:
        """Count a rejected upsert of a credential."""
        with self.db.write() as conn:
            self._count(conn, api, issuer_id, credential_id, "rejected")

    @staticmethod
    def _count(conn: Any, api: str, issuer_id: str, credential_id: str, outcome: str) -> None:
        conn.execute(
            "INSERT INTO upsert_counts (api, issuer_id, credential_id, outcome, n)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (api, issuer_id, credential_id, outcome)"
            " DO UPDATE SET n = n + 1",
            (api, issuer_id, credential_id, outcome),
        )

    def page(
        self, api: Api, client_id: str, since_ts: float | None, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total, one page of credentials) in the order they were first stored."""
        where = "api = ? AND client_id = ?"
        params: list[Any] = [api, client_id]
        if since_ts is not None:
            where += " AND valid_from_ts > ?"
            params.append(since_ts)
        with self.db.read() as conn:
            total = conn.execute(
                f"SELECT COUNT(*) FROM credentials WHERE {where}",  # noqa: S608 - fixed text
                params,
            ).fetchone()[0]
            rows = conn.execute(
                f"SELECT body_json FROM credentials WHERE {where}"  # noqa: S608 - fixed text
                " ORDER BY seq LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return int(total), [json.loads(row["body_json"]) for row in rows]

    def upsert_counts(self, credential_id: str | None = None) -> list[dict[str, Any]]:
        """Per credential: how many upserts created, replaced, were unchanged, stale, rejected."""
        query = "SELECT api, issuer_id, credential_id, outcome, n FROM upsert_counts"
        params: tuple[str, ...] = ()
        if credential_id is not None:
            query += " WHERE credential_id = ?"
            params = (credential_id,)
        with self.db.read() as conn:
            rows = conn.execute(query + " ORDER BY api, issuer_id, credential_id", params)
            grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
            for row in rows.fetchall():
                key = (row["api"], row["issuer_id"], row["credential_id"])
                entry = grouped.setdefault(
                    key,
                    {
                        "api": key[0],
                        "issuer_id": key[1],
                        "credential_id": key[2],
                        "created": 0,
                        "replaced": 0,
                        "unchanged": 0,
                        "stale_ignored": 0,
                        "rejected": 0,
                        "total": 0,
                    },
                )
                entry[row["outcome"]] = row["n"]
                entry["total"] += row["n"]
        return list(grouped.values())

    # -- profiles -------------------------------------------------------------------------

    def get_profile(self, api: Api, client_id: str) -> dict[str, Any] | None:
        """The profile stored for a client, if any."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT body_json FROM profiles WHERE api = ? AND client_id = ?", (api, client_id)
            ).fetchone()
        return json.loads(row["body_json"]) if row else None

    def put_profile(self, api: Api, client_id: str, profile: dict[str, Any]) -> None:
        """Store (replace) a client's profile."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO profiles (api, client_id, body_json) VALUES (?, ?, ?)"
                " ON CONFLICT (api, client_id) DO UPDATE SET body_json = excluded.body_json",
                (api, client_id, json.dumps(profile, ensure_ascii=False)),
            )
