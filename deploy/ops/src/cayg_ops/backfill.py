"""``cayg backfill``: historic definitions and awards from a CSV or JSONL file, fed through
the same path as live SIS events — onboarding an institution, retro-awarding past learning.

Every row becomes one backfill record (:class:`cayg_shared.schema.BackfillRecord`) on the
tenant's ``sis.events.<tenant>`` topic, exactly as ingest admits them:

* the file is never held in memory: it is read one row at a time, three times — its
  SHA-256 (the file's identity and default batch id), the checks, the send;
* every row is checked first — event type, the data of that type (the same models
  normalize maps), the tenant, ``recordedAt``, duplicate record ids (digests in a scratch
  SQLite file, not a set in memory), and the size against the tenant's message limit —
  and nothing is sent while a row is wrong (unless ``--skip-invalid``); ``--dry-run``
  stops after the checks;
* ids are deterministic: the batch id defaults to a hash of the file's bytes and a row's
  record id to its line, and ingest derives the event id from batch + record, so
  re-running the same file sends the same event ids and downstream drops the repeats;
* records are produced with acks=all and idempotence, in chunks, each chunk confirmed
  before the next is read; after each, a checkpoint (:mod:`cayg_ops.checkpoint`) records
  the byte offset and line reached, so ``--resume`` goes on after the last confirmed
  chunk. Re-sending the chunk that was in flight is harmless, by the point above.

File formats are documented in ``deploy/ops/README.md``. Nothing here prints a learner
identifier: problems name lines and fields, never values.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import json
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol, TextIO

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from cayg_ops import checkpoint as checkpoint_store
from cayg_ops.checkpoint import (
    Checkpoint,
    CheckpointError,
    FileIdentity,
    RunSettings,
    default_path,
)
from cayg_ops.kafka_view import Cluster, client_options
from cayg_shared import headers as h
from cayg_shared.envelope import InputFormat
from cayg_shared.headers import child_traceparent, new_traceparent
from cayg_shared.ids import event_id
from cayg_shared.schema import (
    BACKFILL_MARKER,
    BACKFILL_VERSION,
    EVENT_DATA_MODELS,
    REVEAL_LEARNER_IDENTIFIERS,
    BackfillRecord,
    CaygEventType,
    CtdlCredentialType,
    DefinitionUpsertedData,
    OrganizationUpsertedData,
)
from cayg_shared.tenants import MAX_MESSAGE_BYTES_CEILING, TenantProfile, UnknownTypePolicy

FileFormat = Literal["csv", "jsonl"]

#: Ingest's default message limit; a tenant's ``max_message_bytes`` replaces it.
SERVICE_MAX_MESSAGE_BYTES: Final = 1_048_576
#: Columns (CSV) or keys (JSONL) about the record itself; every other CSV column is data.
RECORD_FIELDS: Final = ("type", "recordId", "recordedAt", "tenant")
_JSONL_KEYS: Final = frozenset({*RECORD_FIELDS, "data"})
#: What an operator may pass as ``--batch-id`` (it also goes into the correlation id).
_BATCH_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
#: ``award.issued`` for ``org.caygsync.award.issued.v1``, and so on.
SHORT_TYPES: Final = {
    t.value.removeprefix("org.caygsync.").removesuffix(".v1"): t for t in CaygEventType
}
#: The data member naming the entity: the record's Kafka key, so that the rows of one
#: entity stay in one partition, in file order.
_SUBJECT_FIELD: Final = {
    CaygEventType.DEFINITION_UPSERTED: "sourceId",
    CaygEventType.DEFINITION_DELETED: "sourceId",
    CaygEventType.AWARD_ISSUED: "awardId",
    CaygEventType.AWARD_REVOKED: "awardId",
    CaygEventType.ORGANIZATION_UPSERTED: "sourceId",
}
#: CSV data columns holding lists, written as ``a;b;c``: credentials by ``sourceId``,
#: organizations by ``sourceId``, or plain terms.
_CREDENTIAL_LISTS: Final = frozenset(
    {"hasPart", "isPartOf", "isPreparationFor", "isAdvancedStandingFor"}
)
_ORGANIZATION_LISTS: Final = frozenset(
    {"offeredBy", "partnerOrganizations", "approvedBy", "accreditedBy"}
)
_TERM_LISTS: Final = frozenset({"approaches", "roles"})
_LIST_SEPARATOR: Final = ";"


class BackfillError(Exception):
    """The file cannot be backfilled at all (as opposed to a problem with some rows)."""


@dataclass(frozen=True)
class Problem:
    """Why one row cannot be sent. Names the line and field, never the value."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class _RowProblem(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Row:
    """One row as read: record fields, and ``data`` (already nested for CSV)."""

    line: int
    fields: dict[str, Any]
    from_csv: bool


@dataclass(frozen=True)
class PreparedRecord:
    """A row turned into the bytes ingest will read, and the event id it will get."""

    line: int
    record_id: str
    type: CaygEventType
    key: bytes
    value: bytes
    event_id: uuid.UUID
    approach: str | None


@dataclass(frozen=True)
class Plan:
    """The checked file: what would be sent, and what is wrong."""

    tenant: str
    batch_id: str
    rows: int
    records: tuple[PreparedRecord, ...]
    problems: tuple[Problem, ...]
    limit: int

    @property
    def valid(self) -> bool:
        """True when every row can be sent."""
        return not self.problems


# --------------------------------------------------------------------------- reading


def detect_format(path: Path) -> FileFormat:
    """The format a file name implies (``.csv``, ``.jsonl``/``.ndjson``)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise BackfillError(f"cannot tell the format of {path.name}: give --format csv|jsonl")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        result[key] = value
    return result


#: Built once: ``json.loads``/``json.dumps`` with options build a new codec per call, which
#: shows in a profile of a million rows.
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Position:
    """Where a row ends: the byte offset just past it and the number of its last line."""

    offset: int = 0
    line: int = 0


#: The start of a file, before its first line.
START: Final = Position()


#: The longest line a backfill file may have. A row becomes one SIS message, and no tenant
#: may allow a message larger than this; a longer line (a file without line breaks, a
#: binary file) is refused as soon as this much of it is read, never read whole.
MAX_LINE_BYTES: Final = MAX_MESSAGE_BYTES_CEILING


class _Lines:
    """The decoded lines of a binary file from a position on, each with its terminator
    (the ``csv`` module wants them), counting bytes and lines as they are handed out.
    A line longer than ``max_bytes`` ends the file with a :class:`BackfillError`.

    After ``csv.reader`` yields a row it has taken exactly that row's lines, so
    :attr:`position` is where the row ends — the offset a resume seeks to.
    """

    def __init__(self, stream: BinaryIO, at: Position, max_bytes: int = MAX_LINE_BYTES) -> None:
        stream.seek(at.offset)
        self._stream = stream
        self._max_bytes = max_bytes
        self.offset = at.offset
        self.line = at.line

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        start = self.offset
        raw = self._stream.readline(self._max_bytes + 1)
        if not raw:
            raise StopIteration
        if len(raw) > self._max_bytes:
            raise BackfillError(
                f"line {self.line + 1} is longer than {self._max_bytes:,} bytes (the largest "
                "message a tenant may allow): a backfill file holds one row per line"
            )
        self.offset += len(raw)
        self.line += 1
        if start == 0 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BackfillError(f"the file is not UTF-8 (byte {start + error.start})") from None

    @property
    def position(self) -> Position:
        """Just past the last line handed out."""
        return Position(self.offset, self.line)


def read_rows(
    stream: BinaryIO, fmt: FileFormat, at: Position = START
) -> Iterator[tuple[Row | Problem, Position]]:
    """Every row of a backfill file from ``at`` on, one at a time, with where it ends.

    Blank rows are passed over. Raises :class:`BackfillError` when the file as a whole is
    not a backfill file (not UTF-8, a JSONL line that is not an object, a bad CSV header).
    """
    if fmt == "jsonl":
        yield from _jsonl_rows(stream, at)
    else:
        yield from _csv_rows(stream, at)


def _jsonl_rows(stream: BinaryIO, at: Position) -> Iterator[tuple[Row | Problem, Position]]:
    lines = _Lines(stream, at)
    for raw in lines:
        item = _jsonl_row(raw, lines.line)
        if item is not None:
            yield item, lines.position


def _jsonl_row(raw: str, line: int) -> Row | Problem | None:
    """One JSONL line: a row, a problem, or None when blank.

    A line that is JSON but not an object means this is not a backfill file (a JSON
    array, a list of ids…): the whole file is refused.
    """
    if not raw.strip():
        return None
    try:
        value = _DECODER.decode(raw)
    except ValueError as error:
        reason = str(error) if "appears twice" in str(error) else "not valid JSON"
        return Problem(line, reason)
    if not isinstance(value, dict):
        raise BackfillError(
            f"line {line} is a JSON {type(value).__name__}, not an object: a backfill "
            "file holds one JSON object per line"
        )
    unknown = sorted(set(value) - _JSONL_KEYS)
    if unknown:
        return Problem(line, f"unknown keys {unknown} (allowed: {sorted(_JSONL_KEYS)})")
    return Row(line, value, from_csv=False)


def _csv_header(stream: BinaryIO) -> tuple[list[str], Position]:
    lines = _Lines(stream, START)
    header = next(csv.reader(lines), None)
    if not header:
        raise BackfillError("the CSV file is empty (a header row is required)")
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or "" in names:
        raise BackfillError(f"the CSV header has empty or repeated columns {repeated}")
    if "type" not in names:
        raise BackfillError("the CSV header has no 'type' column")
    return names, lines.position


def _csv_rows(stream: BinaryIO, at: Position) -> Iterator[tuple[Row | Problem, Position]]:
    """Rows of a CSV file with a header; data columns are dotted paths (``learner.email``).

    The header is read from the top even when resuming in the middle of the file.
    """
    names, after_header = _csv_header(stream)
    lines = _Lines(stream, at if at.offset > after_header.offset else after_header)
    for cells in csv.reader(lines):
        item = _csv_row(names, cells, lines.line)
        if item is not None:
            yield item, lines.position


def _csv_row(names: list[str], cells: list[str], line: int) -> Row | Problem | None:
    if len(cells) > len(names):
        return Problem(line, "more cells than header columns")
    present = {k: v.strip() for k, v in zip(names, cells, strict=False) if v.strip()}
    if not present:
        return None
    fields: dict[str, Any] = {k: present[k] for k in RECORD_FIELDS if k in present}
    try:
        fields["data"] = _csv_data({k: v for k, v in present.items() if k not in RECORD_FIELDS})
    except _RowProblem as problem:
        return Problem(line, problem.reason)
    return Row(line, fields, from_csv=True)


def _csv_data(cells: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column in sorted(cells):
        path = column.split(".")
        if any(not part for part in path):
            raise _RowProblem(f"column {column!r} is not a dotted path")
        _put(data, path, _cell(path[-1], cells[column], column), column)
    return data


def _cell(name: str, text: str, column: str) -> Any:
    if text[0] in "[{":
        try:
            return _DECODER.decode(text)
        except ValueError:
            raise _RowProblem(f"column {column!r} starts like JSON but is not JSON") from None
    if name in _CREDENTIAL_LISTS or name in _ORGANIZATION_LISTS:
        return [{"sourceId": item} for item in _split(text)]
    if name in _TERM_LISTS:
        return _split(text)
    return text


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(_LIST_SEPARATOR) if item.strip()]


def _put(data: dict[str, Any], path: list[str], value: Any, column: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise _RowProblem(f"column {column!r} conflicts with column {part!r}")
        node = child
    if path[-1] in node:
        raise _RowProblem(f"column {column!r} conflicts with another column")
    node[path[-1]] = value


# --------------------------------------------------------------------------- checking


def default_batch_id(content: bytes) -> str:
    """``bf-`` + the start of the file's SHA-256: the same bytes, the same batch."""
    return batch_id_of(hashlib.sha256(content).hexdigest())


def batch_id_of(sha256: str) -> str:
    """The default batch id of a file whose SHA-256 (hex) is ``sha256``."""
    return "bf-" + sha256[:20]


def checked_batch_id(batch_id: str) -> str:
    """``batch_id`` if an operator may use it (it also goes into the correlation id)."""
    if not _BATCH_ID.match(batch_id):
        raise BackfillError(
            "a batch id is 1-100 letters, digits, '.', '_', ':' or '-', starting alphanumeric"
        )
    return batch_id


class RecordIds(Protocol):
    """The record ids met so far in a file, to refuse a second row with the same one."""

    def claim(self, record_id: str, line: int) -> int:
        """The line that first used ``record_id``: ``line`` itself when it is new."""
        ...


class MemoryRecordIds:
    """Record ids in a dict: for files already in memory (tests, :func:`plan_backfill`)."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def claim(self, record_id: str, line: int) -> int:
        """See :meth:`RecordIds.claim`."""
        return self._first.setdefault(record_id, line)


class DiskRecordIds:
    """Record ids as 16-byte BLAKE2b digests in a SQLite table on disk.

    A Python set of a million 16-byte digests takes about 96 MiB, most of the CLI's
    memory budget; SQLite keeps them on disk behind a bounded page cache. A 128-bit digest
    makes a false "repeats" practically impossible. Use as a context manager.
    """

    def __init__(self, directory: Path, *, cache_kib: int = 8192) -> None:
        self._db = sqlite3.connect(directory / "record-ids.sqlite", isolation_level=None)
        self._db.execute(f"PRAGMA cache_size = -{cache_kib}")
        # A scratch file, deleted afterwards: nothing to journal, nothing to sync.
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._db.execute("BEGIN")
        self._pending = 0

    def claim(self, record_id: str, line: int) -> int:
        """See :meth:`RecordIds.claim`."""
        digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=16).digest()
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO seen (digest, line) VALUES (?, ?)", (digest, line)
        ).rowcount
        self._pending += 1
        if self._pending >= 50_000:
            # One transaction per many rows: per-row commits would make this the slow part.
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0
        if inserted:
            return line
        (first,) = self._db.execute("SELECT line FROM seen WHERE digest = ?", (digest,)).fetchone()
        return int(first)

    def close(self) -> None:
        """Drop the connection (the caller removes the directory)."""
        self._db.close()

    def __enter__(self) -> DiskRecordIds:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class KnownDuplicates:
    """The send pass's view of record ids: the check pass already found the repeats, so
    only their lines are kept, not every id."""

    def __init__(self, lines: Iterable[int]) -> None:
        self._lines = frozenset(lines)

    def claim(self, record_id: str, line: int) -> int:  # noqa: ARG002 - the protocol's
        """``line``, or 0 for a line the check pass found repeating an earlier id."""
        return 0 if line in self._lines else line


@dataclass(frozen=True)
class Checked:
    """One row after the checks: the record to send or why not, and where the row ends."""

    outcome: PreparedRecord | Problem
    end: Position


@dataclass(frozen=True)
class RecordRules:
    """What turns rows into records for one run: the tenant, the batch, the limits."""

    profile: TenantProfile
    batch_id: str
    recorded_at: str | None
    limit: int


def rules_for(
    profile: TenantProfile,
    *,
    batch_id: str,
    recorded_at: str | None = None,
    max_message_bytes: int = SERVICE_MAX_MESSAGE_BYTES,
) -> RecordRules:
    """The rules of a run; raises :class:`BackfillError` when the tenant takes no
    backfill or the batch id is not allowed."""
    if not profile.backfill_enabled:
        raise BackfillError(f"backfill is not enabled for {profile.tenant_id}")
    return RecordRules(
        profile=profile,
        batch_id=checked_batch_id(batch_id),
        recorded_at=recorded_at,
        limit=profile.max_message_bytes or max_message_bytes,
    )


def check_rows(
    stream: BinaryIO,
    fmt: FileFormat,
    rules: RecordRules,
    ids: RecordIds,
    at: Position = START,
) -> Iterator[Checked]:
    """Every row from ``at`` on, read, checked and — when valid — prepared, one at a time."""
    for item, end in read_rows(stream, fmt, at):
        if isinstance(item, Problem):
            yield Checked(item, end)
            continue
        try:
            record = _prepare(item, rules.profile, rules.batch_id, rules.recorded_at, rules.limit)
        except _RowProblem as problem:
            yield Checked(Problem(item.line, problem.reason), end)
            continue
        earlier = ids.claim(record.record_id, item.line)
        if earlier != item.line:
            yield Checked(Problem(item.line, f"recordId repeats the one of line {earlier}"), end)
            continue
        yield Checked(record, end)


def plan_backfill(
    content: bytes,
    *,
    fmt: FileFormat,
    profile: TenantProfile,
    batch_id: str | None = None,
    recorded_at: str | None = None,
    max_message_bytes: int = SERVICE_MAX_MESSAGE_BYTES,
) -> Plan:
    """Read and check every row of a file already in memory; nothing is sent.

    The same checks as the CLI's streaming pass, kept whole — for tests and small files.
    Raises :class:`BackfillError` when the file as a whole is unusable (not UTF-8, rows
    that are not objects, no header, backfill disabled for the tenant).
    """
    rules = rules_for(
        profile,
        batch_id=batch_id or default_batch_id(content),
        recorded_at=recorded_at,
        max_message_bytes=max_message_bytes,
    )
    records: list[PreparedRecord] = []
    problems: list[Problem] = []
    for checked in check_rows(io.BytesIO(content), fmt, rules, MemoryRecordIds()):
        if isinstance(checked.outcome, Problem):
            problems.append(checked.outcome)
        else:
            records.append(checked.outcome)
    return Plan(
        tenant=profile.tenant_id,
        batch_id=rules.batch_id,
        rows=len(records) + len(problems),
        records=tuple(records),
        problems=tuple(sorted(problems, key=lambda p: p.line)),
        limit=rules.limit,
    )


def _text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _RowProblem(f"{name} must be a non-empty string")
    return value.strip()


def event_type_of(text: str) -> CaygEventType:
    """``award.issued`` or ``org.caygsync.award.issued.v1`` as an event type."""
    wanted = text.strip()
    if wanted in SHORT_TYPES:
        return SHORT_TYPES[wanted]
    try:
        return CaygEventType(wanted)
    except ValueError:
        raise _RowProblem(
            f"type {wanted[:60]!r} is not one of {', '.join(sorted(SHORT_TYPES))}"
        ) from None


def _first_error(error: ValidationError, prefix: str) -> str:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    path = prefix + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    )
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{path}: {first['msg']}{more}"


def _prepare(
    row: Row, profile: TenantProfile, batch: str, recorded_at: str | None, limit: int
) -> PreparedRecord:
    fields = row.fields
    type_text = _text(fields, "type")
    if type_text is None:
        raise _RowProblem("type is required")
    kind = event_type_of(type_text)
    record_id = _text(fields, "recordId") or f"line:{row.line}"
    recorded = _text(fields, "recordedAt") or recorded_at
    if recorded is None:
        raise _RowProblem("recordedAt is required (or give --recorded-at for the whole file)")
    exported_for = _text(fields, "tenant")
    if exported_for is not None and exported_for != profile.tenant_id:
        raise _RowProblem(f"the row was exported for another tenant, not {profile.tenant_id}")
    raw = fields.get("data")
    if not isinstance(raw, dict):
        raise _RowProblem("data must be an object")
    try:
        parsed = EVENT_DATA_MODELS[kind].model_validate(raw)
    except ValidationError as error:
        raise _RowProblem(_first_error(error, "data")) from None
    _check_against_tenant(parsed, profile)
    # CSV cells are text: send the data as the schema types it. JSONL data goes as given.
    data: dict[str, Any] = (
        parsed.model_dump(
            mode="json",
            by_alias=True,
            exclude_unset=True,
            context={REVEAL_LEARNER_IDENTIFIERS: True},
        )
        if row.from_csv
        else raw
    )
    document = {
        BACKFILL_MARKER: BACKFILL_VERSION,
        "batchId": batch,
        "recordId": record_id,
        "type": kind.value,
        "recordedAt": recorded,
        "tenant": profile.tenant_id,
        "data": data,
    }
    try:
        BackfillRecord.model_validate(document)
    except ValidationError as error:
        raise _RowProblem(_first_error(error, "")[1:]) from None
    message_id = f"{batch}/{record_id}"
    if len(message_id) > 256:
        raise _RowProblem("batch id and recordId together exceed 255 characters")
    value = _ENCODER.encode(document).encode("utf-8")
    if len(value) > limit:
        raise _RowProblem(
            f"the record is {len(value)} bytes, over {profile.tenant_id}'s limit of {limit}"
        )
    subject = data.get(_SUBJECT_FIELD[kind])
    key = subject if isinstance(subject, str) and subject.strip() else record_id
    approach = data.get("approach")
    return PreparedRecord(
        line=row.line,
        record_id=record_id,
        type=kind,
        key=key.strip().encode("utf-8"),
        value=value,
        event_id=event_id(profile.tenant_id, InputFormat.BACKFILL_RECORD.value, message_id),
        approach=approach if isinstance(approach, str) else None,
    )


def _check_against_tenant(data: Any, profile: TenantProfile) -> None:
    """What normalize would refuse for this tenant and can be told without mapping."""
    if isinstance(data, DefinitionUpsertedData):
        if data.credential_type is not None:
            try:
                CtdlCredentialType.parse(data.credential_type)
            except ValueError:
                if profile.mapping.unknown_credential_type is UnknownTypePolicy.REJECT:
                    raise _RowProblem(
                        "data.credentialType is not a concrete CTDL credential class "
                        "(generic Credential and Degree are refused by the registry)"
                    ) from None
        if data.ctid is not None:
            ctid, _ = profile.definition_ctid(_canonical_id(data.source_id), data.code)
            if data.ctid != ctid:
                raise _RowProblem(
                    "data.ctid differs from the CTID the tenant imported or derives for "
                    "this sourceId (import it in the tenant's definition_ctids)"
                )
    elif isinstance(data, OrganizationUpsertedData) and data.ctid is not None:
        ctid, _ = profile.organization_ctid_for(_canonical_id(data.source_id))
        if data.ctid != ctid:
            raise _RowProblem(
                "data.ctid differs from the CTID the tenant imported or derives for this "
                "sourceId (import it in the tenant's organization_ctids)"
            )


def _canonical_id(value: str) -> str:
    # As normalize keys SIS ids: GUIDs lower-case and hyphenated, anything else stripped.
    text = value.strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


# --------------------------------------------------------------------------- sending


class ProgressBar:
    """A plain-text progress bar with rate and ETA.

    On a terminal it redraws one line; elsewhere (a log file, CI) it writes a line at most
    every ``every_s`` seconds, and always the last one.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO,
        width: int = 30,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        interactive: bool | None = None,
        start: int = 0,
        label: str = "backfill",
        unit: str = "rows",
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        #: Rows done before this process began (a resumed run); they do not count in rows/s.
        self.start = start
        self.done = start
        self.stream = stream
        self.width = width
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.interactive = stream.isatty() if interactive is None else interactive
        self._last_drawn = float("-inf")

    @staticmethod
    def render(
        done: int,
        total: int,
        elapsed_s: float,
        width: int = 30,
        *,
        start: int = 0,
        unit: str = "rows",
    ) -> str:
        """``[#####-----]  500/1000  50%  250 rows/s  ETA 0:02``; the rate counts the rows
        after ``start`` only."""
        fraction = done / total if total else 1.0
        filled = round(width * fraction)
        rate = (done - start) / elapsed_s if elapsed_s > 0 else 0.0
        if done >= total:
            eta = "done"
        elif rate > 0:
            seconds = round((total - done) / rate)
            eta = f"ETA {seconds // 60}:{seconds % 60:02d}"
        else:
            eta = "ETA --:--"
        return (
            f"[{'#' * filled}{'-' * (width - filled)}]  {done}/{total}  "
            f"{fraction:4.0%}  {rate:,.0f} {unit}/s  {eta}"
        )

    def advance(self, count: int) -> None:
        """``count`` more rows are durable."""
        self.done += count
        now = self.clock()
        if self.done >= self.total or now - self._last_drawn >= (
            0.1 if self.interactive else self.every_s
        ):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_drawn = now
        line = f"{self.label} " + self.render(
            self.done, self.total, now - self.started, self.width, start=self.start, unit=self.unit
        )
        if self.interactive:
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def headers_for(batch_id: str, traceparent: str) -> dict[str, str]:
    """What travels with every record of a run: JSON, the run's correlation id, a span
    of the run's trace."""
    return {
        h.CONTENT_TYPE: "application/json",
        h.CORRELATION_ID: f"backfill:{batch_id}",
        h.TRACEPARENT: child_traceparent(traceparent),
    }


@dataclass(frozen=True)
class Chunk:
    """Records sent and acknowledged together, and where the rows they came from end."""

    records: tuple[PreparedRecord, ...]
    end: Position
    skipped: int


#: Most bytes of record values in one chunk, whatever ``--batch-size`` says: a chunk stays
#: in memory (and in the producer) until the broker acknowledged all of it, and records
#: may be up to a tenant's message limit each (500 records of 1 MiB would be 500 MiB).
CHUNK_BYTES: Final = 8 * 1_048_576


def chunked(
    checked: Iterable[Checked], size: int, *, skip_invalid: bool, max_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """``size`` records at a time, fewer when their values reach ``max_bytes`` (a chunk has
    at least one record); invalid rows are passed over only with ``skip_invalid``.

    The send pass reads a file the check pass found valid; a problem there without
    ``skip_invalid`` means the file changed in between, and the run stops.
    """
    records: list[PreparedRecord] = []
    held = 0
    skipped = 0
    end: Position | None = None
    for item in checked:
        if isinstance(item.outcome, Problem):
            if not skip_invalid:
                raise BackfillError(
                    f"{item.outcome} — the file changed after it was checked; nothing "
                    "past the last confirmed chunk was sent"
                )
            skipped += 1
        else:
            records.append(item.outcome)
            held += len(item.outcome.value)
        end = item.end
        if len(records) >= size or held >= max_bytes:
            yield Chunk(tuple(records), end, skipped)
            records, held, skipped = [], 0, 0
    if end is not None and (records or skipped):
        yield Chunk(tuple(records), end, skipped)


class Outlet(Protocol):
    """Where chunks go: every record of a chunk is durable when :meth:`deliver` returns."""

    async def deliver(self, records: Sequence[PreparedRecord]) -> None:
        """Send ``records`` and wait for every acknowledgement."""
        ...


class KafkaOutlet:
    """A tenant's SIS topic, with acks=all and an idempotent producer."""

    def __init__(self, *, bootstrap: Cluster, topic: str, batch_id: str, limit: int) -> None:
        self.topic = topic
        self.batch_id = batch_id
        self._trace = new_traceparent()
        self._producer = AIOKafkaProducer(
            **client_options(bootstrap),
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_request_size=max(SERVICE_MAX_MESSAGE_BYTES, limit + 64 * 1024),
            client_id="cayg-backfill",
        )

    async def __aenter__(self) -> KafkaOutlet:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def deliver(self, records: Sequence[PreparedRecord]) -> None:
        """Hand every record to the producer, then await all their acknowledgements."""
        pending = []
        for record in records:
            headers = headers_for(self.batch_id, self._trace)
            pending.append(
                await self._producer.send(
                    self.topic,
                    record.value,
                    key=record.key,
                    headers=[(name, text.encode()) for name, text in headers.items()],
                )
            )
        await asyncio.gather(*pending)


async def send_chunks(
    chunks: Iterable[Chunk],
    outlet: Outlet,
    checkpoint: Checkpoint,
    on_acknowledged: Callable[[Checkpoint, Chunk], None],
) -> Checkpoint:
    """Deliver chunk after chunk; after each acknowledgement the advanced checkpoint goes
    to ``on_acknowledged`` (which saves it) before the next chunk is read."""
    for chunk in chunks:
        if chunk.records:
            await outlet.deliver(chunk.records)
        checkpoint = checkpoint.advanced(
            offset=chunk.end.offset, line=chunk.end.line, records=len(chunk.records)
        )
        on_acknowledged(checkpoint, chunk)
    return checkpoint


# --------------------------------------------------------------------------- command


@dataclass(frozen=True)
class Options:
    """``cayg backfill`` arguments."""

    file: Path
    tenant: str
    fmt: FileFormat | None = None
    dry_run: bool = False
    skip_invalid: bool = False
    batch_id: str | None = None
    recorded_at: str | None = None
    max_message_bytes: int = SERVICE_MAX_MESSAGE_BYTES
    batch_size: int = 500
    resume: bool = False
    checkpoint: Path | None = None


#: From this size on, the check pass shows a bar of its own (KiB read).
CHECK_PROGRESS_BYTES: Final = 1_048_576
#: Problems printed in full; the rest are counted.
SHOWN_PROBLEMS: Final = 200


@dataclass
class Tally:
    """What the check pass found, without keeping the records."""

    rows: int = 0
    valid: int = 0
    retro: int = 0
    problems: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    shown: list[Problem] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)

    def add(self, checked: Checked) -> None:
        """Count one checked row."""
        self.rows += 1
        outcome = checked.outcome
        if isinstance(outcome, Problem):
            self.problems += 1
            if len(self.shown) < SHOWN_PROBLEMS:
                self.shown.append(outcome)
            if outcome.reason.startswith("recordId repeats"):
                self.duplicate_lines.append(outcome.line)
            return
        self.valid += 1
        self.kinds[_SHORT_NAMES[outcome.type]] += 1
        self.retro += outcome.approach == "retro-award"


_SHORT_NAMES: Final = {kind: name for name, kind in SHORT_TYPES.items()}


def check_file(
    path: Path, fmt: FileFormat, rules: RecordRules, progress: ProgressBar | None = None
) -> Tally:
    """The streaming check pass: every row read, checked and counted, none kept.

    Record ids go to a scratch SQLite file in a temporary directory, removed afterwards.
    ``progress`` counts KiB of the file (the number of rows is not known yet).
    """
    tally = Tally()
    read_kib = 0
    with (
        tempfile.TemporaryDirectory(prefix="cayg-backfill-") as scratch,
        DiskRecordIds(Path(scratch)) as ids,
        path.open("rb") as stream,
    ):
        for checked in check_rows(stream, fmt, rules, ids):
            tally.add(checked)
            if progress is not None and checked.end.offset // 1024 > read_kib:
                progress.advance(checked.end.offset // 1024 - read_kib)
                read_kib = checked.end.offset // 1024
    if progress is not None and progress.done < progress.total:
        progress.advance(progress.total - progress.done)
    return tally


@dataclass(frozen=True)
class _Run:
    """One invocation, as resolved from its options."""

    options: Options
    fmt: FileFormat
    rules: RecordRules
    checkpoint_path: Path
    out: TextIO
    err: TextIO


def _report(tally: Tally, run: _Run) -> None:
    out, err = run.out, run.err
    tenant = run.rules.profile.tenant_id
    print(f"backfill {run.rules.batch_id} of {run.options.file.name} for {tenant}", file=out)
    print(f"  rows: {tally.rows}, valid: {tally.valid}, invalid: {tally.problems}", file=out)
    if tally.kinds:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(tally.kinds.items()))
        print(f"  records: {listed}; retro-awards: {tally.retro}", file=out)
    for problem in tally.shown:
        print(f"  {problem}", file=err)
    if tally.problems > len(tally.shown):
        print(f"  … and {tally.problems - len(tally.shown)} more problems", file=err)


class _Refused(Exception):
    """The run cannot start; the message is the one line to print, ``status`` the exit."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def run(
    options: Options,
    *,
    profile: TenantProfile,
    bootstrap: Cluster,
    topic: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
    outlet: Outlet | None = None,
) -> int:
    """Check the file, then (unless a dry run) send it, or resume an interrupted run.

    Exit status: 0 done (invalid rows skipped only with ``skip_invalid``), 1 invalid rows
    or a failed send, 2 an unusable file or a checkpoint that cannot be resumed, 130
    interrupted (the checkpoint lets ``--resume`` go on). ``outlet`` replaces Kafka in tests.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    checkpoint_path = options.checkpoint or default_path(options.file, profile.tenant_id)
    try:
        fmt = options.fmt or detect_format(options.file)
        before = options.file.stat()
        # First pass: the file's identity (and the default batch id), one sequential read.
        identity = FileIdentity.of(options.file)
        rules = rules_for(
            profile,
            batch_id=options.batch_id or batch_id_of(identity.sha256),
            recorded_at=options.recorded_at,
            max_message_bytes=options.max_message_bytes,
        )
        settings = RunSettings(
            tenant=profile.tenant_id,
            topic=topic,
            format=fmt,
            batch_id=rules.batch_id,
            recorded_at=options.recorded_at,
            skip_invalid=options.skip_invalid,
            limit=rules.limit,
        )
        resolved = _Run(options, fmt, rules, checkpoint_path, out, err)
        if options.resume and not options.dry_run:
            checkpoint = _resumable(resolved, identity, settings)
        else:
            checkpoint = _checked(resolved, identity, settings)
        if checkpoint is None:
            return 0
        after = options.file.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            # The records would no longer be the ones checked and hashed (the batch id).
            raise _Refused(f"{options.file.name} changed while it was being checked: run again")
        _save(resolved, checkpoint)
    except _Refused as refusal:
        if str(refusal):
            print(f"cayg backfill: {refusal}", file=err)
        return refusal.status
    except OSError as error:
        print(f"cayg backfill: cannot read {options.file}: {error.strerror}", file=err)
        return 2
    except BackfillError as error:
        print(f"cayg backfill: {options.file.name} refused: {error}", file=err)
        return 2
    except CheckpointError as error:
        print(f"cayg backfill: {error}", file=err)
        return 2
    return _send(resolved, checkpoint, bootstrap, outlet)


def _save(run: _Run, checkpoint: Checkpoint) -> None:
    try:
        checkpoint_store.save(run.checkpoint_path, checkpoint)
    except OSError as error:
        raise _Refused(
            f"cannot write the checkpoint {run.checkpoint_path}: {error.strerror} "
            "(give --checkpoint PATH somewhere writable)"
        ) from None


def _checked(run: _Run, identity: FileIdentity, settings: RunSettings) -> Checkpoint | None:
    """The check pass and its report; the fresh checkpoint to send from, or None when
    there is nothing to send (raises :class:`_Refused` with status 1 on invalid rows)."""
    options, out = run.options, run.out
    # A small file is checked before anyone would wait for it: no bar, as before.
    checking = (
        ProgressBar(identity.size // 1024, stream=run.err, label="checking", unit="KiB")
        if identity.size >= CHECK_PROGRESS_BYTES
        else None
    )
    tally = check_file(options.file, run.fmt, run.rules, checking)
    _report(tally, run)
    if tally.problems and not options.skip_invalid:
        print(
            "  nothing sent: fix the rows above, or add --skip-invalid to send the valid ones",
            file=out,
        )
        raise _Refused("", status=1)  # the report above says it all
    if options.dry_run:
        print(f"  dry run: nothing sent (would send {tally.valid} to {settings.topic})", file=out)
        return None
    if not tally.valid:
        print("  nothing to send", file=out)
        return None
    _note_unfinished(run)
    return Checkpoint(
        file=identity,
        settings=settings,
        records=tally.valid,
        duplicate_lines=tuple(tally.duplicate_lines),
    )


def _note_unfinished(run: _Run) -> None:
    """Say so when a fresh run replaces the checkpoint of one that did not finish."""
    try:
        earlier = checkpoint_store.load(run.checkpoint_path)
    except CheckpointError:
        earlier = None
    if earlier is not None and not earlier.complete:
        print(
            f"  starting from the top: the unfinished run in {run.checkpoint_path} (after "
            f"line {earlier.line}) is replaced; --resume would have gone on from there",
            file=run.out,
        )


def _resumable(run: _Run, identity: FileIdentity, settings: RunSettings) -> Checkpoint | None:
    """The saved checkpoint, if it continues a run of this very file with these settings."""
    path, out = run.checkpoint_path, run.out
    saved = checkpoint_store.load(path)
    if saved is None:
        raise _Refused(f"no checkpoint at {path} to resume: run without --resume")
    refusal = saved.refusal(identity, settings)
    if refusal is not None:
        raise _Refused(f"cannot resume: {refusal}")
    if saved.complete:
        print(
            f"backfill {settings.batch_id}: all {saved.sent} records were already sent "
            f"(checkpoint {path})",
            file=out,
        )
        return None
    print(
        f"backfill {settings.batch_id} of {Path(identity.path).name} for {settings.tenant}: "
        f"resuming after line {saved.line} ({saved.sent} of {saved.records} records sent "
        "and acknowledged)",
        file=out,
    )
    return saved


def _send(run: _Run, checkpoint: Checkpoint, bootstrap: Cluster, outlet: Outlet | None) -> int:
    """The send pass, from the checkpoint's position; the checkpoint saved per chunk."""
    options, rules, checkpoint_path = run.options, run.rules, run.checkpoint_path
    out, err = run.out, run.err
    progress = ProgressBar(checkpoint.records, stream=err, start=checkpoint.sent)
    state = [checkpoint]

    def acknowledged(advanced: Checkpoint, chunk: Chunk) -> None:
        checkpoint_store.save(checkpoint_path, advanced)
        state[0] = advanced
        progress.advance(len(chunk.records))

    async def deliver_all() -> Checkpoint:
        with options.file.open("rb") as stream:
            rows = check_rows(
                stream,
                run.fmt,
                rules,
                KnownDuplicates(checkpoint.duplicate_lines),
                Position(checkpoint.offset, checkpoint.line),
            )
            chunks = chunked(rows, options.batch_size, skip_invalid=options.skip_invalid)
            if outlet is not None:
                return await send_chunks(chunks, outlet, checkpoint, acknowledged)
            async with KafkaOutlet(
                bootstrap=bootstrap,
                topic=checkpoint.settings.topic,
                batch_id=rules.batch_id,
                limit=rules.limit,
            ) as kafka:
                return await send_chunks(chunks, kafka, checkpoint, acknowledged)

    started = time.monotonic()
    resume_hint = f"  `--resume` goes on after line {{line}} (checkpoint {checkpoint_path})"
    try:
        finished = asyncio.run(deliver_all())
    except KeyboardInterrupt:
        print(
            f"\ncayg backfill: interrupted after {state[0].sent} confirmed records\n"
            + resume_hint.format(line=state[0].line),
            file=err,
        )
        return 130
    except Exception as error:  # noqa: BLE001 - any Kafka failure ends the run with advice
        print(
            f"cayg backfill: sending failed after {state[0].sent} confirmed records: "
            f"{type(error).__name__}: {str(error)[:300]}\n"
            + resume_hint.format(line=state[0].line)
            + "\n  re-sending is safe either way: the same rows get the same event ids",
            file=err,
        )
        return 1
    checkpoint_store.save(checkpoint_path, finished.model_copy(update={"complete": True}))
    sent = finished.sent - checkpoint.sent
    seconds = max(time.monotonic() - started, 1e-9)
    total = f" ({finished.sent} in all)" if checkpoint.sent else ""
    print(
        f"  sent {sent} records to {finished.settings.topic} in {seconds:.1f} s "
        f"({sent / seconds:,.0f} rows/s){total}; re-running this file sends the same event ids",
        file=out,
    )
    return 0
