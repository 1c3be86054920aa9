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

from pydantic import TypeAdapter

from cayg_publish.domain.catalog import CatalogRow, CatalogStatus, LedgerEntry, Outcome, Version
from cayg_shared.schema import REVEAL_LEARNER_IDENTIFIERS, CredentialAward, Entity, EntityType

TABLE: Final = "cayg_publish_ledger"
META_TABLE: Final = "cayg_publish_ledger_meta"
SCHEMA_VERSION: Final = 3

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
    entries: str
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
        # Prefix match without LIKE (keys may hold % or _): the first len(prefix) chars.
        entries=(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE target = {placeholder} "
            f"AND substr(entity_key, 1, {placeholder}) = {placeholder} "
            f"ORDER BY entity_key LIMIT {placeholder}"
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


# -- the catalog -----------------------------------------------------------------------

CATALOG_TABLE: Final = "cayg_publish_catalog"
CATALOG_COLUMNS: Final = (
    "tenant",
    "entity_type",
    "source_id",
    "part",
    "entity_ctid",
    "learner_key",
    "version_stream",
    "version_seq",
    "version_time",
    "status",
    "body",
    "definition_ctid",
    "definition_source",
)
CATALOG_KEY: Final = ("tenant", "entity_type", "source_id", "part")
CATALOG_VALUES: Final = tuple(c for c in CATALOG_COLUMNS if c not in CATALOG_KEY)

_ENTITY: Final[TypeAdapter[Entity]] = TypeAdapter(Entity)


def catalog_row_to_sql(row: CatalogRow) -> dict[str, Any]:
    """Column values of a catalog row; the entity as JSON with learner identifiers kept
    (they are needed to hash them for CLR hosts; the database is as protected as Kafka)."""
    award = row.entity if isinstance(row.entity, CredentialAward) else None
    body = (
        None
        if row.entity is None
        else row.entity.model_dump_json(context={REVEAL_LEARNER_IDENTIFIERS: True})
    )
    return {
        "tenant": row.tenant,
        "entity_type": row.entity_type.value,
        "source_id": row.source_id,
        "part": row.part,
        "entity_ctid": row.ctid,
        "learner_key": row.learner_key,
        "version_stream": row.version.stream,
        "version_seq": row.version.sequence,
        "version_time": row.version.time,
        "status": row.status.value,
        "body": body,
        # Awards: the definition they name, so a changed definition finds its holders.
        "definition_ctid": award.definition.ctid if award is not None else None,
        "definition_source": award.definition.source_id if award is not None else None,
    }


#: Reference data every rendering reads again (a learner's record reads each of its
#: definitions, and programs for stacking): decoded once per stored text. Entities are
#: frozen, so one decoded value can serve every row holding the same text.
_SHARED_ENTITY_TYPES: Final = frozenset(
    {EntityType.CREDENTIAL_DEFINITION, EntityType.PROGRAM, EntityType.ORGANIZATION}
)
_DECODED_MAX: Final = 4096
_decoded: dict[str, Entity] = {}


def _entity_of(entity_type: EntityType, body: str) -> Entity:
    if entity_type not in _SHARED_ENTITY_TYPES:
        return _ENTITY.validate_json(body)
    found = _decoded.get(body)
    if found is None:
        found = _ENTITY.validate_json(body)
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        _decoded[body] = found
    return found


def catalog_row_from_sql(values: Mapping[str, Any]) -> CatalogRow:
    """The catalog row of selected values (datetimes already converted)."""
    body = values["body"]
    entity_type = EntityType(values["entity_type"])
    return CatalogRow(
        tenant=values["tenant"],
        entity_type=entity_type,
        source_id=values["source_id"],
        part=values["part"],
        version=Version(
            stream=values["version_stream"],
            sequence=None if values["version_seq"] is None else int(values["version_seq"]),
            time=values["version_time"],
        ),
        status=CatalogStatus(values["status"]),
        entity=None if body is None else _entity_of(entity_type, body),
        ctid=values["entity_ctid"],
        learner_key=values["learner_key"],
    )


@dataclass(frozen=True, slots=True)
class CatalogStatements:
    """The SQL of the catalog operations, for one driver's placeholder style."""

    select_one: str
    select_record: str
    insert: str
    update: str
    definition_by_ctid: str
    awards_of: str
    award_history_of: str
    programs: str


def catalog_statements(placeholder: str, *, for_update: bool) -> CatalogStatements:
    """The catalog statements; ``for_update`` adds row locks to the writers' reads."""
    p = placeholder
    lock = " FOR UPDATE" if for_update else ""
    columns = ", ".join(CATALOG_COLUMNS)
    return CatalogStatements(
        select_one=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = {p} "
            f"AND source_id = {p} AND part = {p}"
        ),
        select_record=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = {p} "
            f"AND source_id = {p} ORDER BY part{lock}"
        ),
        insert=(
            f"INSERT INTO {CATALOG_TABLE} ({columns}) "
            f"VALUES ({', '.join(p for _ in CATALOG_COLUMNS)}) "
            f"ON CONFLICT ({', '.join(CATALOG_KEY)}) DO NOTHING"
        ),
        update=(
            f"UPDATE {CATALOG_TABLE} SET {', '.join(f'{c} = {p}' for c in CATALOG_VALUES)} "
            f"WHERE tenant = {p} AND entity_type = {p} AND source_id = {p} AND part = {p}"
        ),
        definition_by_ctid=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = "
            f"'credential-definition' AND entity_ctid = {p} ORDER BY version_time DESC LIMIT 1"
        ),
        awards_of=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = "
            f"'credential-award' AND learner_key = {p} AND status = 'current' "
            "ORDER BY source_id, part"
        ),
        programs=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = "
            "'program' AND status = 'current' ORDER BY source_id"
        ),
        award_history_of=(
            f"SELECT {columns} FROM {CATALOG_TABLE} WHERE tenant = {p} AND entity_type = "
            f"'credential-award' AND learner_key = {p}"
        ),
    )


def create_catalog_table(*, integer: str, timestamp: str) -> tuple[str, ...]:
    """DDL of the catalog table and its lookup indexes."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {CATALOG_TABLE} (
            tenant TEXT NOT NULL,
            entity_type TEXT NOT NULL,
            source_id TEXT NOT NULL,
            part TEXT NOT NULL,
            entity_ctid TEXT,
            learner_key TEXT,
            version_stream TEXT NOT NULL,
            version_seq {integer},
            version_time {timestamp} NOT NULL,
            status TEXT NOT NULL,
            body TEXT,
            PRIMARY KEY (tenant, entity_type, source_id, part)
        )""",
        f"CREATE INDEX IF NOT EXISTS {CATALOG_TABLE}_ctid ON {CATALOG_TABLE} "
        "(tenant, entity_type, entity_ctid)",
        f"CREATE INDEX IF NOT EXISTS {CATALOG_TABLE}_learner ON {CATALOG_TABLE} "
        "(tenant, learner_key)",
    )
