"""Bad input at scale: hypothesis drives generated and mutated SIS records through ingest's
and normalize's real per-record decisions, as their batch loops run them (no broker).

Each case starts from a real message of the seeded stream (Ethos from two publishers,
CloudEvents binary and structured, backfill rows, for every tenant) or from nothing, and
breaks it: hostile values in any field (lone surrogates, NUL, huge numbers and strings,
extreme dates, deep nesting), hostile keys, duplicate keys, invalid UTF-8 in the value,
the key and header values, XML bombs under an XML content type, truncation, another
content type. The properties, for every case:

* the batch runner settles the record: no exception escapes, the record is committed;
* it ends as output or a dead letter: ingest forwards an envelope or parks it with a
  reason; every forwarded envelope goes through normalize, which emits changes (possibly
  none, e.g. an institution record deleted) or parks it with a reason;
* nothing ends on the runner's last-resort path (``internal-error``): that is an exception
  outside the rejection path, a bug;
* every output parses back: envelopes and changes as their models, letters as
  :class:`~cayg_shared.envelope.DeadLetter`, a change re-serialises to the same bytes.

Hangs and memory: :func:`run_fuzz` reports the slowest case and how much the process's
peak resident memory grew during the run.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from cayg_campaign.stream import SIZES, TENANTS, messy_stream
from cayg_ingest.domain import IngestLimits
from cayg_ingest.handlers import IngestRecords
from cayg_normalize.handlers import NormalizeRecords
from cayg_ops.demo import TENANTS_FILE
from cayg_shared.batching import INTERNAL_ERROR, BatchRunner, Outbound, Partition
from cayg_shared.envelope import DeadLetter, IngestEnvelope, Stage
from cayg_shared.logging import configure_logging
from cayg_shared.schema import Change
from cayg_shared.service import InboundRecord
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics

#: Values that break naive code: text JSON cannot carry as UTF-8, control characters,
#: numbers no float holds, dates at and past the edges of what datetime represents.
HOSTILE_TEXT: Final = (
    "\ud800",
    "a\udfffb",
    "\x00",
    "nul\x00inside",
    "\u202e\u2066",
    "\ufeff",
    "\U0001d518\U0001d52b",  # astral-plane letters (4 UTF-8 bytes each)
    "0001-01-01",
    "9999-12-31T23:59:59.999999Z",
    "+275760-09-13T00:00:00Z",
    "-000001-01-01T00:00:00Z",
    "2024-02-30",
    "2024-13-01T25:61:61Z",
    "1970-01-01T00:00:00+25:00",
    "NaN",
    "Infinity",
    "../../etc/passwd",
    "<x/>",
    "ce-00000000-0000-0000-0000-000000000000",
)
HOSTILE_NUMBERS: Final = (10**400, -(10**400), 2**63, -(2**63) - 1, 1e308, 5e-324, 0, -1)
XML_BOMB: Final = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)
CONTENT_TYPES: Final = (
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/xml",
    "text/xml",
    "application/vnd.hedtech.integration.v6+json",
    "text/plain; charset=utf-16",
    "",
)


@dataclass
class FuzzReport:
    """What a fuzz run tried and found."""

    cases: int = 0
    forwarded: int = 0
    changes: int = 0
    letters: Mapping[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    slowest_case_s: float = 0.0
    #: Growth of the process's peak resident memory during the run.
    rss_growth_bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Seed:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def corpus() -> list[_Seed]:
    """Real messages of every format and tenant: the seeded stream's, both phases."""
    topics = Topics("")
    stream = messy_stream(9_001, SIZES["small"])
    return [
        _Seed(
            topics.sis(m.tenant),
            m.key,
            m.value,
            tuple((k, v.encode()) for k, v in m.headers.items()),
        )
        for m in [*stream.phase1, *stream.phase2]
    ]


class _Sink:
    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    async def send(self, record: Outbound) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(record)
        future.set_result(len(self.sent))
        return future

    async def flush(self, *, final: bool) -> None:  # noqa: ARG002 - the Sink protocol's
        return None  # every send is acknowledged at once


class _Offsets:
    def __init__(self) -> None:
        self.committed: dict[Partition, int] = {}
        self.rewound: dict[Partition, int] = {}

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.committed.update(offsets)

    def rewind(self, partition: Partition, offset: int) -> None:
        self.rewound[partition] = offset


class Pipeline:
    """Ingest's and normalize's real batch runners over an in-memory sink."""

    def __init__(self) -> None:
        self.topics = Topics("")
        tenants = TenantRegistry.load(TENANTS_FILE)
        self.ingest = BatchRunner(
            IngestRecords(self.topics, tenants, IngestLimits()),
            service="ingest",
            stage=Stage.INGEST,
            dlq_topic=self.topics.ingest_dlq,
            backoff_s=0.0,
        )
        self.normalize = BatchRunner(
            NormalizeRecords(self.topics, tenants),
            service="normalize",
            stage=Stage.NORMALIZE,
            dlq_topic=self.topics.normalize_dlq,
            backoff_s=0.0,
        )
        self.loop = asyncio.new_event_loop()
        self.offset = 0

    def close(self) -> None:
        self.loop.close()

    def _run(self, runner: BatchRunner, record: InboundRecord) -> list[Outbound]:
        sink, offsets = _Sink(), _Offsets()
        report = self.loop.run_until_complete(runner.run([record], sink, offsets))
        partition = (record.topic, record.partition)
        if report.error is not None or offsets.rewound:
            raise AssertionError(f"{runner.service}: record not settled ({report.error!r})")
        if offsets.committed.get(partition) != record.offset + 1:
            raise AssertionError(f"{runner.service}: record not committed ({offsets.committed})")
        return sink.sent

    def check(self, record: InboundRecord, letters: dict[str, int]) -> tuple[int, int]:
        """Run ``record`` through both stages and check every output; (forwarded, changes)."""
        forwarded = changes = 0
        outputs = self._run(self.ingest, record)
        if len(outputs) != 1:
            raise AssertionError(f"ingest: {len(outputs)} outputs for one record")
        for output in outputs:
            if output.topic == self.topics.ingest_dlq:
                _letter(output, Stage.INGEST, letters)
                continue
            if output.topic != self.topics.ingested:
                raise AssertionError(f"ingest wrote to {output.topic}")
            envelope = IngestEnvelope.model_validate_json(output.value)
            forwarded += 1
            self.offset += 1
            downstream = InboundRecord(
                output.topic, 0, self.offset, 0, output.key, output.value, output.headers
            )
            for change in self._run(self.normalize, downstream):
                if change.topic == self.topics.normalize_dlq:
                    _letter(change, Stage.NORMALIZE, letters)
                    continue
                if change.topic != self.topics.normalized:
                    raise AssertionError(f"normalize wrote to {change.topic}")
                parsed = Change.model_validate_json(change.value)
                if parsed.tenant != envelope.tenant:
                    raise AssertionError(
                        f"a change of {parsed.tenant} from an envelope of {envelope.tenant}"
                    )
                if parsed.to_kafka_value() != change.value:
                    raise AssertionError("a change does not re-serialise to the same bytes")
                changes += 1
        return forwarded, changes


def _letter(output: Outbound, stage: Stage, letters: dict[str, int]) -> None:
    letter = DeadLetter.model_validate_json(output.value)
    if letter.stage != stage:
        raise AssertionError(f"a {letter.stage} letter from {stage}")
    if letter.reason == INTERNAL_ERROR:
        raise AssertionError(f"{stage}: an exception outside the rejection path: {letter.detail}")
    key = f"{stage.value}:{letter.reason}"
    letters[key] = letters.get(key, 0) + 1


# -- strategies -------------------------------------------------------------------------

_hostile_text = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=40),
    st.builds(
        lambda c, n: c * n, st.sampled_from("a\x00\ud800é"), st.sampled_from((1, 1_000, 300_000))
    ),
)
_hostile_leaf = st.one_of(
    _hostile_text,
    st.sampled_from(HOSTILE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({}),
)


def _nested(depth: int, leaf: Any) -> Any:
    value: Any = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"n": value}
    return value


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in document.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(document)]


def _rename(document: Any, path: tuple[Any, ...], new_key: str) -> Any:
    if not path:
        return document
    *parent_path, last = path

    def rename(node: Any) -> Any:
        if isinstance(node, dict) and last in node:
            return {(new_key if k == last else k): v for k, v in node.items()}
        return node

    parent = document
    for step in parent_path:
        parent = parent[step]
    return _replace(document, tuple(parent_path), rename(parent))


def _dumps(document: Any) -> bytes:
    # Lone surrogates are written as JSON escapes (``\ud800``): valid JSON text.
    return json.dumps(document, ensure_ascii=True).encode()


Mutation = Callable[[st.DataObject, _Seed], _Seed]


def _value_mutation(data: st.DataObject, seed: _Seed) -> _Seed:
    """A hostile value, a deep nest or a renamed key somewhere in the JSON."""
    try:
        document = json.loads(seed.value)
    except ValueError:
        return seed
    paths = _paths(document)
    path = data.draw(st.sampled_from(paths))
    how = data.draw(st.sampled_from(("leaf", "nest", "key", "drop")))
    if how == "leaf":
        document = _replace(document, path, data.draw(_hostile_leaf))
    elif how == "nest":
        depth = data.draw(st.sampled_from((20, 31, 33, 200, 5_000)))
        document = _replace(document, path, _nested(depth, "x"))
    elif how == "key":
        document = _rename(document, path, data.draw(_hostile_text))
    elif path:
        document = _replace(document, path, None)
    try:
        value = _dumps(document)
    except (ValueError, RecursionError):
        return seed
    return _Seed(seed.topic, seed.key, value, seed.headers)


def _raw_mutation(data: st.DataObject, seed: _Seed) -> _Seed:
    """Bytes-level damage: invalid UTF-8, a duplicate key, truncation, raw NUL."""
    value = seed.value
    how = data.draw(st.sampled_from(("utf8", "duplicate", "truncate", "nul", "bytes")))
    at = data.draw(st.integers(0, max(0, len(value) - 1)))
    if how == "utf8":
        value = (
            value[:at]
            + data.draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80")))
            + value[at:]
        )
    elif how == "duplicate" and value.startswith(b"{"):
        value = b'{"id": "dup", ' + value[1:]
    elif how == "truncate":
        value = value[:at]
    elif how == "nul":
        value = value[:at] + b"\x00" + value[at:]
    else:
        value = data.draw(st.binary(max_size=256))
    return _Seed(seed.topic, seed.key, value, seed.headers)


def _header_mutation(data: st.DataObject, seed: _Seed) -> _Seed:
    """Headers: invalid UTF-8, NUL, another content type, dropped, many, huge."""
    headers = list(seed.headers)
    how = data.draw(st.sampled_from(("bad-utf8", "content-type", "drop", "many", "huge")))
    if how == "bad-utf8" and headers:
        index = data.draw(st.integers(0, len(headers) - 1))
        name, raw = headers[index]
        headers[index] = (name, raw + data.draw(st.sampled_from((b"\xff", b"\x00", b"\xc0\xaf"))))
    elif how == "content-type":
        headers = [
            (k, v) for k, v in headers if k.lower() not in ("content-type", "ce_datacontenttype")
        ]
        headers.append(("content-type", data.draw(st.sampled_from(CONTENT_TYPES)).encode()))
    elif how == "drop" and headers:
        headers.pop(data.draw(st.integers(0, len(headers) - 1)))
    elif how == "many":
        headers.extend((f"x-{n}", b"v") for n in range(data.draw(st.integers(60, 80))))
    else:
        headers.append(("x-huge", b"h" * data.draw(st.integers(8_000, 20_000))))
    return _Seed(seed.topic, seed.key, seed.value, tuple(headers))


def _other_mutation(data: st.DataObject, seed: _Seed) -> _Seed:
    """The record as a whole: an XML bomb, another tenant's topic, a hostile key."""
    how = data.draw(st.sampled_from(("xml-bomb", "other-tenant", "key", "empty")))
    if how == "xml-bomb":
        return _Seed(seed.topic, seed.key, XML_BOMB, (("content-type", b"application/xml"),))
    if how == "other-tenant":
        tenant = data.draw(st.sampled_from(TENANTS))
        return _Seed(Topics("").sis(tenant), seed.key, seed.value, seed.headers)
    if how == "key":
        key = data.draw(st.one_of(st.none(), st.binary(max_size=2048)))
        return _Seed(seed.topic, key, seed.value, seed.headers)
    return _Seed(seed.topic, seed.key, b"", seed.headers)


MUTATIONS: Final[tuple[Mutation, ...]] = (
    _value_mutation,
    _value_mutation,
    _raw_mutation,
    _header_mutation,
    _other_mutation,
)


def _peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_fuzz(cases: int, seed: int = 0, *, quiet: bool = True) -> FuzzReport:
    """Run ``cases`` generated records through ingest and normalize; the report holds the
    first property that failed (hypothesis shrinks it) and the figures. ``quiet`` sets
    logging to warnings only (a process-wide setting; tests leave theirs alone)."""
    seeds = corpus()
    pipeline = Pipeline()
    report = FuzzReport()
    letters: dict[str, int] = {}
    # One line per batch at INFO would be most of the time spent: warnings only.
    if quiet:
        configure_logging("fuzz", level="WARNING")
    started = time.perf_counter()
    peak_before = _peak_rss()

    @hypothesis_seed(seed)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def one(data: st.DataObject) -> None:
        record = data.draw(st.sampled_from(seeds))
        for _ in range(data.draw(st.integers(1, 3))):
            record = data.draw(st.sampled_from(MUTATIONS))(data, record)
        pipeline.offset += 1
        inbound = InboundRecord(
            record.topic, 0, pipeline.offset, 0, record.key, record.value, record.headers
        )
        case_started = time.perf_counter()
        forwarded, changes = pipeline.check(inbound, letters)
        report.slowest_case_s = max(report.slowest_case_s, time.perf_counter() - case_started)
        report.cases += 1
        report.forwarded += forwarded
        report.changes += changes

    try:
        one()
    except AssertionError as failure:
        report.failures.append(str(failure).splitlines()[0][:500])
    finally:
        report.rss_growth_bytes = max(0, _peak_rss() - peak_before)
        pipeline.close()
    report.letters = dict(sorted(letters.items()))
    report.seconds = time.perf_counter() - started
    return report
