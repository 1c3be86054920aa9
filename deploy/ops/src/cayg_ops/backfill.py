"""``cayg backfill``: historic definitions and awards from a CSV or JSONL file, fed through
the same path as live SIS events — onboarding an institution, retro-awarding past learning.

Every row becomes one backfill record (:class:`cayg_shared.schema.BackfillRecord`) on the
tenant's ``sis.events.<tenant>`` topic, exactly as ingest admits them:

* the whole file is read and every row checked first — event type, the data of that type
  (the same models normalize maps), the tenant, ``recordedAt``, duplicate record ids, and
  the size against the tenant's message limit — and nothing is sent while a row is wrong
  (unless ``--skip-invalid``); ``--dry-run`` stops after the checks;
* ids are deterministic: the batch id defaults to a hash of the file's bytes and a row's
  record id to its line, and ingest derives the event id from batch + record, so
  re-running the same file sends the same event ids and downstream drops the repeats;
* records are produced with acks=all and idempotence, in batches, each batch confirmed
  before the progress bar (stderr) moves on.

File formats are documented in ``deploy/ops/README.md``. Nothing here prints a learner
identifier: problems name lines and fields, never values.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

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
from cayg_shared.tenants import TenantProfile, UnknownTypePolicy

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


def read_jsonl(text: str) -> tuple[list[Row], list[Problem]]:
    """Rows of a JSONL file: one object per line, blank lines ignored.

    A line that is JSON but not an object means this is not a backfill file (a JSON
    array, a list of ids…): the whole file is refused.
    """
    rows: list[Row] = []
    problems: list[Problem] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except ValueError as error:
            reason = str(error) if "appears twice" in str(error) else "not valid JSON"
            problems.append(Problem(line, reason))
            continue
        if not isinstance(value, dict):
            raise BackfillError(
                f"line {line} is a JSON {type(value).__name__}, not an object: a backfill "
                "file holds one JSON object per line"
            )
        unknown = sorted(set(value) - _JSONL_KEYS)
        if unknown:
            problems.append(
                Problem(line, f"unknown keys {unknown} (allowed: {sorted(_JSONL_KEYS)})")
            )
            continue
        rows.append(Row(line, value, from_csv=False))
    return rows, problems


def read_csv(text: str) -> tuple[list[Row], list[Problem]]:
    """Rows of a CSV file with a header; data columns are dotted paths (``learner.email``)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra")
    header = reader.fieldnames
    if not header:
        raise BackfillError("the CSV file is empty (a header row is required)")
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or "" in names:
        raise BackfillError(f"the CSV header has empty or repeated columns {repeated}")
    if "type" not in names:
        raise BackfillError("the CSV header has no 'type' column")
    reader.fieldnames = names
    rows: list[Row] = []
    problems: list[Problem] = []
    for cells in reader:
        line = reader.line_num
        if cells.get("\x00extra"):
            problems.append(Problem(line, "more cells than header columns"))
            continue
        present = {k: v.strip() for k, v in cells.items() if isinstance(v, str) and v.strip()}
        if not present:
            continue
        fields: dict[str, Any] = {k: present[k] for k in RECORD_FIELDS if k in present}
        try:
            fields["data"] = _csv_data({k: v for k, v in present.items() if k not in RECORD_FIELDS})
        except _RowProblem as problem:
            problems.append(Problem(line, problem.reason))
            continue
        rows.append(Row(line, fields, from_csv=True))
    return rows, problems


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
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
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
    return "bf-" + hashlib.sha256(content).hexdigest()[:20]


def plan_backfill(
    content: bytes,
    *,
    fmt: FileFormat,
    profile: TenantProfile,
    batch_id: str | None = None,
    recorded_at: str | None = None,
    max_message_bytes: int = SERVICE_MAX_MESSAGE_BYTES,
) -> Plan:
    """Read and check every row of a file for ``profile``'s tenant; nothing is sent.

    Raises :class:`BackfillError` when the file as a whole is unusable (not UTF-8, rows
    that are not objects, no header, backfill disabled for the tenant).
    """
    if not profile.backfill_enabled:
        raise BackfillError(f"backfill is not enabled for {profile.tenant_id}")
    batch = batch_id or default_batch_id(content)
    if not _BATCH_ID.match(batch):
        raise BackfillError(
            "a batch id is 1-100 letters, digits, '.', '_', ':' or '-', starting alphanumeric"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BackfillError(f"the file is not UTF-8 (byte {error.start})") from None
    rows, problems = read_csv(text) if fmt == "csv" else read_jsonl(text)
    read = len(rows) + len(problems)
    limit = profile.max_message_bytes or max_message_bytes
    records: list[PreparedRecord] = []
    first_line: dict[str, int] = {}
    for row in rows:
        try:
            record = _prepare(row, profile, batch, recorded_at, limit)
        except _RowProblem as problem:
            problems.append(Problem(row.line, problem.reason))
            continue
        earlier = first_line.setdefault(record.record_id, row.line)
        if earlier != row.line:
            problems.append(Problem(row.line, f"recordId repeats the one of line {earlier}"))
            continue
        records.append(record)
    return Plan(
        tenant=profile.tenant_id,
        batch_id=batch,
        rows=read,
        records=tuple(records),
        problems=tuple(sorted(problems, key=lambda p: p.line)),
        limit=limit,
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
    value = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
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
    ) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.width = width
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.interactive = stream.isatty() if interactive is None else interactive
        self._last_drawn = float("-inf")

    @staticmethod
    def render(done: int, total: int, elapsed_s: float, width: int = 30) -> str:
        """``[#####-----]  500/1000  50%  250 rows/s  ETA 0:02``."""
        fraction = done / total if total else 1.0
        filled = round(width * fraction)
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        if done >= total:
            eta = "done"
        elif rate > 0:
            seconds = round((total - done) / rate)
            eta = f"ETA {seconds // 60}:{seconds % 60:02d}"
        else:
            eta = "ETA --:--"
        return (
            f"[{'#' * filled}{'-' * (width - filled)}]  {done}/{total}  "
            f"{fraction:4.0%}  {rate:,.0f} rows/s  {eta}"
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
        line = "backfill " + self.render(self.done, self.total, now - self.started, self.width)
        if self.interactive:
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def headers_for(plan: Plan, traceparent: str) -> dict[str, str]:
    """What travels with every record of a run: JSON, the run's correlation id, a span
    of the run's trace."""
    return {
        h.CONTENT_TYPE: "application/json",
        h.CORRELATION_ID: f"backfill:{plan.batch_id}",
        h.TRACEPARENT: child_traceparent(traceparent),
    }


async def send(
    plan: Plan,
    *,
    bootstrap: str,
    topic: str,
    batch_size: int = 500,
    progress: ProgressBar | None = None,
) -> int:
    """Produce the plan's records to ``topic`` (acks=all, idempotent), one batch at a
    time, each confirmed before the next starts; the number confirmed. A failure raises
    after the confirmed ones: re-running the file is safe (same event ids)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=max(SERVICE_MAX_MESSAGE_BYTES, plan.limit + 64 * 1024),
        client_id="cayg-backfill",
    )
    await producer.start()
    trace = new_traceparent()
    confirmed = 0
    try:
        for start in range(0, len(plan.records), batch_size):
            chunk = plan.records[start : start + batch_size]
            pending = []
            for record in chunk:
                headers = headers_for(plan, trace)
                pending.append(
                    await producer.send(
                        topic,
                        record.value,
                        key=record.key,
                        headers=[(name, text.encode()) for name, text in headers.items()],
                    )
                )
            await asyncio.gather(*pending)
            confirmed += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    finally:
        await producer.stop()
    return confirmed


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


def _report(plan: Plan, file: Path, out: TextIO, err: TextIO) -> None:
    short = {kind: name for name, kind in SHORT_TYPES.items()}
    kinds = Counter(short[r.type] for r in plan.records)
    retro = sum(1 for r in plan.records if r.approach == "retro-award")
    print(f"backfill {plan.batch_id} of {file.name} for {plan.tenant}", file=out)
    print(
        f"  rows: {plan.rows}, valid: {len(plan.records)}, invalid: {len(plan.problems)}",
        file=out,
    )
    if kinds:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(kinds.items()))
        print(f"  records: {listed}; retro-awards: {retro}", file=out)
    for problem in plan.problems[:200]:
        print(f"  {problem}", file=err)
    if len(plan.problems) > 200:
        print(f"  … and {len(plan.problems) - 200} more problems", file=err)


def run(
    options: Options,
    *,
    profile: TenantProfile,
    bootstrap: str,
    topic: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Check the file, then (unless a dry run) send it. Exit status: 0 done (invalid rows
    skipped only with ``skip_invalid``), 1 invalid rows or a failed send, 2 an unusable
    file."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        content = options.file.read_bytes()
        fmt = options.fmt or detect_format(options.file)
        plan = plan_backfill(
            content,
            fmt=fmt,
            profile=profile,
            batch_id=options.batch_id,
            recorded_at=options.recorded_at,
            max_message_bytes=options.max_message_bytes,
        )
    except OSError as error:
        print(f"cayg backfill: cannot read {options.file}: {error.strerror}", file=err)
        return 2
    except BackfillError as error:
        print(f"cayg backfill: {options.file.name} refused: {error}", file=err)
        return 2
    _report(plan, options.file, out, err)
    if plan.problems and not options.skip_invalid:
        print(
            "  nothing sent: fix the rows above, or add --skip-invalid to send the valid ones",
            file=out,
        )
        return 1
    if options.dry_run:
        print(f"  dry run: nothing sent (would send {len(plan.records)} to {topic})", file=out)
        return 0
    if not plan.records:
        print("  nothing to send", file=out)
        return 0
    progress = ProgressBar(len(plan.records), stream=err)
    started = time.monotonic()
    try:
        sent = asyncio.run(
            send(
                plan,
                bootstrap=bootstrap,
                topic=topic,
                batch_size=options.batch_size,
                progress=progress,
            )
        )
    except Exception as error:  # noqa: BLE001 - any Kafka failure ends the run with advice
        print(
            f"cayg backfill: sending failed after {progress.done} confirmed records: "
            f"{type(error).__name__}: {str(error)[:300]}\n"
            "  re-running the same file is safe: it sends the same event ids",
            file=err,
        )
        return 1
    seconds = max(time.monotonic() - started, 1e-9)
    print(
        f"  sent {sent} records to {topic} in {seconds:.1f} s ({sent / seconds:,.0f} rows/s); "
        "re-running this file sends the same event ids",
        file=out,
    )
    return 0
