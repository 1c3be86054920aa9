"""The batch loop ingest and normalize consume with: read many, send all, acknowledge once.

**Why aiokafka directly, not FastStream's batch subscribers.** FastStream stays for the
HTTP side (``/healthz``, ``/readyz``, ``/metrics``) and the process lifecycle, but the
consume → produce loop is written here on aiokafka's ``getmany`` because FastStream is in
the way of each guarantee this loop keeps:

* its parser decodes every header as UTF-8 *before* any handler runs, so a record with a
  non-UTF-8 header failed outside the handler and was committed without output or log
  (issue 10, "records vanish"); here the raw bytes reach the service's decision;
* its batch acknowledgement commits the consumer's whole position, while a partly failed
  batch must commit each partition only up to its first unfinished record and rewind there;
* its per-message publish runs the middleware chain per output; here every output goes
  straight to one idempotent producer without awaiting each, and the acknowledgements are
  awaited once per batch;

**The loop** (:class:`BatchLoop` runs it, :class:`BatchRunner` is one batch):

1. ``getmany`` up to ``max_records`` records;
2. decide each record with the service's pure per-record logic (admit / map), turning any
   exception into a dead letter with a reason (``unencodable-text`` for text JSON cannot
   encode, e.g. a lone surrogate; ``too-large-to-forward``; else ``internal-error``), so
   no record is ever retried forever;
   with a :class:`DecisionPool` (:mod:`cayg_shared.decide_pool`) the decisions run in
   worker processes and come back as plain data, every later step staying here;
3. send every output of every record in consumption order (idempotent producer, acks=all:
   per-partition order holds) without awaiting each, then await all acknowledgements once.
   Outputs go into one Kafka record batch per partition (:class:`ProducerSink`), not through
   aiokafka's per-record ``send``. Steps 2 and 3 go ``SEND_EVERY`` records at a time with a
   yield to the event loop in between, and a batch big enough goes to the broker between two
   chunks, so the broker already stores the first outputs while later records are decided
   (the broker's round trips overlap the service's own work instead of adding to it);
4. commit once: per partition, up to the last record all of whose outputs are acknowledged;
5. if any output failed (broker or producer trouble), rewind each affected partition to its
   first unfinished record, pause ``redelivery_backoff_s`` and read again.

Per-key order: outputs leave in consumption order on one idempotent producer, so they land
in order. Only when the broker fails an earlier output while acknowledging a later one of
the same key can a consumer downstream see the later one first and then both again after
the rewind (B, A, B); publish orders by source version, never by arrival, so this costs a
redundant apply, not a stale one.

**Transactions: not adopted.** A transactional producer with ``send_offsets_to_transaction``
would remove the duplicates a crash leaves, but aiokafka sends offsets without the consumer
group's generation (no KIP-447 fencing), so a zombie after a rebalance can still commit;
and every downstream consumer (publish, the operator tools) would have to read
``read_committed``, which is outside these two services. The bound instead: a batch is
committed before the next one is read, so after a crash (SIGKILL) a service re-sends at most
the outputs of the one batch in flight — ``batch_max_records`` records — each with the same
deterministic event id, so downstream recognises the copies. (A failed commit widens that
to the batches until the next commit succeeds; it is logged.) A rebalance can also re-send
the batch in flight on a revoked partition. A graceful stop (SIGTERM) finishes and commits
the batch in flight and re-sends nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.prometheus.container import MetricsContainer
from opentelemetry.trace import SpanKind
from opentelemetry.trace import TracerProvider as AnyTracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from pydantic_core import PydanticSerializationError

from cayg_shared.envelope import DeadLetter, SourceCoordinates, Stage
from cayg_shared.headers import CONTENT_TYPE, DLQ_REASON
from cayg_shared.logging import get_logger
from cayg_shared.service import (
    MAX_PARKED_VALUE_BYTES,
    InboundRecord,
    kafka_options,
    tracer_provider,
)
from cayg_shared.settings import ServiceSettings

log = get_logger("cayg.batching")

#: How long one ``getmany`` waits for records before the loop looks at its stop flag.
POLL_TIMEOUT_MS: Final = 250
#: Records decided (and their outputs handed to the producer) between two yields to the
#: event loop within a batch; see :meth:`BatchRunner._decide_and_send`.
SEND_EVERY: Final = 50
#: The fewest records of a batch handed to a :class:`DecisionPool`; smaller batches are
#: decided in the service process. A light stream comes in small batches, where latency
#: is what counts and the hand-over to a worker only adds to it (end to end at 50 records/s
#: with every batch handed over, p99 to ``cayg.normalized.v1`` went from 31 to 56 ms); a
#: backlog comes in full batches, whose chunks the workers decide side by side.
POOL_MIN_RECORDS: Final = 2 * SEND_EVERY
#: Reasons of records that failed *themselves* (not the broker): dead-lettered, never retried.
UNENCODABLE_TEXT: Final = "unencodable-text"
TOO_LARGE_TO_FORWARD: Final = "too-large-to-forward"
INTERNAL_ERROR: Final = "internal-error"
#: What the producer or broker answers for an output or record batch over a size limit
#: (the request size, a topic's ``max.message.bytes``).
SIZE_REFUSALS: Final = (MessageSizeTooLargeError, RecordListTooLargeError)

Partition = tuple[str, int]


@dataclass(frozen=True)
class Outbound:
    """One record to produce: topic, key, value and headers (already encoded)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(
        cls, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, str]
    ) -> Outbound:
        """An outbound record with text headers encoded as UTF-8."""
        return cls(topic, key, value, tuple((k, v.encode()) for k, v in headers.items()))


@dataclass(frozen=True)
class Note:
    """A per-record DEBUG line (``event`` and its fields), written once the record settles."""

    event: str
    fields: dict[str, Any]

    @classmethod
    def on(cls, event: str, record: InboundRecord, **fields: Any) -> Note:
        """A line about ``record``: its topic, partition and offset, then ``fields``."""
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        return cls(event, where | fields)


#: One count a settled record adds: the name of a :class:`Tally` and its label values.
Count = tuple[str, tuple[str, ...]]


@dataclass
class Outcome:
    """What one consumed record came to.

    ``outputs`` are sent in order. ``counts`` are added to the runner's tallies and ``note``
    is written at DEBUG once all outputs are acknowledged, never for a record that will be
    read again. ``label`` and ``tenant`` feed the one INFO line per batch (``accepted``,
    ``rejected:not-json``…). An outcome is plain data, so a decision made in a worker
    process (:mod:`cayg_shared.decide_pool`) crosses back to the loop as it is.
    """

    outputs: list[Outbound]
    label: str
    tenant: str | None = None
    counts: tuple[Count, ...] = ()
    note: Note | None = None


@dataclass(frozen=True)
class Failure:
    """A record whose decision raised: what :func:`classify` made of the exception."""

    reason: str
    detail: str
    error: str

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        """The failure ``error`` stands for."""
        reason, detail = classify(error)
        return cls(reason, detail, type(error).__name__)


class DecisionPool(Protocol):
    """Decides chunks of records elsewhere (worker processes), in order: a result per record,
    an :class:`Outcome` or the :class:`Failure` its decision raised."""

    def decide(self, records: Sequence[InboundRecord]) -> asyncio.Future[list[Outcome | Failure]]:
        """Start deciding ``records``; the future fails if the pool itself failed."""
        ...

    def renew(self) -> None:
        """Replace workers after the pool failed (their results were lost)."""
        ...

    async def start(self) -> None:
        """Start the workers (before the first batch)."""
        ...

    async def stop(self) -> None:
        """End the workers (after the last batch)."""
        ...


class RecordHandler(Protocol):
    """A service's per-record decision, pure apart from what it returns."""

    def decide(self, record: InboundRecord) -> Outcome:
        """The outputs for ``record``: forwarded output or a dead letter. May raise."""
        ...

    def poison(self, record: InboundRecord, reason: str, detail: str) -> Outcome:
        """A dead letter for a record whose decision or output failed by itself."""
        ...


class Sink(Protocol):
    """Where outputs go: ``send`` hands a record to the producer and returns a future that
    resolves once the broker acknowledged it (raises when the producer refuses at once).
    A sink may hold records until ``flush``: the runner flushes after every chunk it sent
    (``final=False``: the sink may keep filling) and with ``final=True`` before it awaits
    the acknowledgements (everything held must then be on its way)."""

    async def send(self, record: Outbound) -> asyncio.Future[Any]: ...

    async def flush(self, *, final: bool) -> None: ...


class Offsets(Protocol):
    """The consumer side of a batch: commit what is finished, rewind what is not."""

    async def commit(self, offsets: Mapping[Partition, int]) -> None: ...

    def rewind(self, partition: Partition, offset: int) -> None: ...


def classify(error: BaseException) -> tuple[str, str]:
    """The dead-letter reason and detail for a record whose handling raised ``error``."""
    if isinstance(error, PydanticSerializationError):
        return UNENCODABLE_TEXT, f"the output cannot be encoded as JSON: {error}"
    if isinstance(error, UnicodeError):
        return UNENCODABLE_TEXT, f"{type(error).__name__}: {error}"
    if isinstance(error, SIZE_REFUSALS):
        return (
            TOO_LARGE_TO_FORWARD,
            f"an output is over the Kafka cluster's message size limit ({error})",
        )
    return INTERNAL_ERROR, f"{type(error).__name__}: {error}"


def _text(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` and made encodable (a lone surrogate becomes ``\\ud800``),
    so the dead letter that reports a record can always itself be written."""
    if value is None:
        return None
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def letter_for(
    record: InboundRecord,
    *,
    dlq_topic: str,
    stage: Stage,
    reason: str,
    detail: str,
    field_path: str | None = None,
    tenant: str | None = None,
    event_id: UUID | None = None,
    now: datetime | None = None,
) -> Outbound:
    """The dead letter for ``record`` as an outbound record under the original key.

    Unlike :func:`cayg_shared.service.dead_letter` it never fails on the record's own text:
    strings taken from the record are made encodable first, and headers that are not UTF-8
    are kept as ``\\x..`` escapes instead of being dropped.
    """
    value = record.value or b""
    kept = value[:MAX_PARKED_VALUE_BYTES]
    headers = {name: raw.decode("utf-8", "backslashreplace")[:8192] for name, raw in record.headers}
    letter = DeadLetter(
        stage=stage,
        reason=_text(reason, 64) or INTERNAL_ERROR,
        detail=_text(detail, 4000) or "",
        field_path=_text(field_path, 512),
        tenant=_text(tenant, 64),
        event_id=event_id,
        source=SourceCoordinates(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
        ),
        failed_at=now or datetime.now(UTC),
        key_b64=DeadLetter.encode(record.key),
        value_b64=DeadLetter.encode(kept) or "",
        value_truncated=len(kept) < len(value),
        original_headers={_text(k, 256) or "": v for k, v in headers.items()},
    )
    return Outbound.of(
        dlq_topic,
        record.key,
        letter.model_dump_json().encode(),
        {DLQ_REASON: letter.reason, CONTENT_TYPE: "application/json"},
    )


class FastStreamMetrics:
    """FastStream's consumer series (``faststream_received_*``), kept for the batch loop.

    The alert rules and dashboards read them (a stage with lag that processes nothing is
    stuck; escaping exceptions alert), so the loop records under the same names and labels
    FastStream's own middleware used: ``app_name``, ``broker="kafka"``, ``handler`` = topic.
    Duration is observed once per topic per batch (read → committed).
    """

    def __init__(self, registry: CollectorRegistry, app_name: str) -> None:
        self.container = MetricsContainer(registry, custom_label_names=())
        self.app_name = app_name

    def batch(
        self,
        per_topic: Mapping[str, int],
        sizes: Mapping[str, list[int]],
        settled: Mapping[str, int],
        duration_s: float,
    ) -> None:
        """Count one batch: records received and settled (acked) or to be re-read (nacked)."""
        c = self.container
        for topic, received in per_topic.items():
            labels = (self.app_name, "kafka", topic)
            c.received_messages_total.labels(*labels).inc(received)
            size = c.received_messages_size_bytes.labels(*labels)
            for n in sizes.get(topic, ()):
                size.observe(n)
            done = settled.get(topic, 0)
            if done:
                c.received_processed_messages_total.labels(*labels, "acked").inc(done)
            if received > done:
                c.received_processed_messages_total.labels(*labels, "nacked").inc(received - done)
            c.received_processed_messages_duration_seconds.labels(*labels).observe(duration_s)

    def exception(self, topics: Sequence[str], error: BaseException) -> None:
        """An output could not be made durable: the batch will be read again."""
        for topic in topics:
            self.container.received_processed_messages_exceptions_total.labels(
                self.app_name, "kafka", topic, type(error).__name__
            ).inc()


class Tally:
    """Counts of one Prometheus counter, per label values, added to it once per batch.

    ``labels(...)`` on a Prometheus counter takes a lock and builds a key; per record that
    was a measurable share of a service's time. Settled records add their outcome's
    ``counts`` to a plain dict here (so only records whose outputs are durable count) and
    :meth:`flush` — which the batch runner calls after every batch — adds each total once.
    """

    def __init__(self, counter: PromCounter) -> None:
        self.counter = counter
        self._counts: Counter[tuple[str, ...]] = Counter()
        self._children: dict[tuple[str, ...], Any] = {}

    def add(self, *labels: str) -> None:
        """Count one under ``labels`` (the counter's label values, in order)."""
        self._counts[labels] += 1

    def flush(self) -> None:
        """Add what was counted since the last flush to the counter."""
        for labels, count in self._counts.items():
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self.counter.labels(*labels)
            child.inc(count)
        self._counts.clear()


@dataclass
class BatchReport:
    """What one batch came to (for tests and the loop)."""

    settled: int = 0
    unfinished: int = 0
    error: BaseException | None = None
    commits: dict[Partition, int] = field(default_factory=dict)
    rewinds: dict[Partition, int] = field(default_factory=dict)


@dataclass
class _Pending:
    record: InboundRecord
    outcome: Outcome
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    sent: bool = False
    failure: BaseException | None = None


class BatchRunner:
    """One batch: decide every record, send every output, await once, commit once."""

    def __init__(
        self,
        handler: RecordHandler,
        *,
        service: str,
        stage: Stage,
        dlq_topic: str,
        backoff_s: float,
        metrics: FastStreamMetrics | None = None,
        tallies: Mapping[str, Tally] | None = None,
        send_every: int = SEND_EVERY,
        pool: DecisionPool | None = None,
        pool_min_records: int = POOL_MIN_RECORDS,
    ) -> None:
        self.handler = handler
        self.service = service
        self.stage = stage
        self.dlq_topic = dlq_topic
        self.backoff_s = backoff_s
        self.metrics = metrics
        self.tallies = dict(tallies or {})
        self.send_every = max(1, send_every)
        #: Where records of batches of at least ``pool_min_records`` are decided when set
        #: (worker processes); else in this process.
        self.pool = pool
        self.pool_min_records = pool_min_records
        self._log = get_logger(f"cayg.{service}")

    async def run(
        self, records: Sequence[InboundRecord], sink: Sink, offsets: Offsets
    ) -> BatchReport:
        """Process ``records`` (in consumption order) and settle them; see the module doc."""
        started = time.perf_counter()
        pending = await self._decide_and_send(records, sink)
        failure = next((item.failure for item in pending if item.failure is not None), None)
        await self._await_all(pending, sink)
        report = await self._settle(pending, offsets, failure)
        for tally in self.tallies.values():
            tally.flush()
        self._account(pending, report, time.perf_counter() - started)
        if report.error is not None:
            self._log.warning(
                "output not durable; message will be redelivered",
                error=type(report.error).__name__,
                detail=str(report.error)[:500],
                backoff_s=self.backoff_s,
                unfinished=report.unfinished,
                rewound={f"{t}/{p}": o for (t, p), o in report.rewinds.items()},
            )
            await asyncio.sleep(self.backoff_s)
        return report

    async def _decide_and_send(
        self, records: Sequence[InboundRecord], sink: Sink
    ) -> list[_Pending]:
        """Decide and send ``send_every`` records at a time, yielding to the event loop in
        between, so the producer ships (and the broker stores) the first outputs while later
        records are still being decided. Outputs still leave in consumption order. After a
        producer failure the remaining records are neither decided nor sent: they stay
        unfinished and are read again.

        With a pool (and at least ``pool_min_records`` records) every chunk is handed to the
        workers at once; this process sends each chunk's outputs, in order, as its decisions
        come back, while the workers decide the next chunks."""
        chunks = [
            records[start : start + self.send_every]
            for start in range(0, len(records), self.send_every)
        ]
        pool = self.pool if len(records) >= self.pool_min_records else None
        decisions = [pool.decide(chunk) for chunk in chunks] if pool is not None else []
        pending: list[_Pending] = []
        failed = pool_failed = False
        for index, chunk in enumerate(chunks):
            if failed:
                # Left undecided: an earlier output of the batch failed.
                pending.extend(_Pending(record, Outcome([], "unfinished")) for record in chunk)
                continue
            outcomes: list[Outcome] | None = None
            if decisions and not pool_failed:
                outcomes = await self._decided_elsewhere(chunk, decisions[index])
                pool_failed = outcomes is None
            if outcomes is None:
                outcomes = [self._decide(record) for record in chunk]
            decided = [
                _Pending(record, outcome) for record, outcome in zip(chunk, outcomes, strict=True)
            ]
            pending.extend(decided)
            failed = await self._send_all(decided, sink) is not None
            await sink.flush(final=False)
            if not decisions and index + 1 < len(chunks):
                # Two turns of the loop: the producer's sender wakes on the first and
                # writes its request on the second. (Awaiting a pool's decision yields.)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        await sink.flush(final=True)
        for decision in decisions:
            # Decisions left unused (after a failure) are not cancelled: a cancelled task of
            # a pool that breaks meanwhile trips its executor. Their errors were reported.
            decision.add_done_callback(retrieve_exception)
        return pending

    # ------------------------------------------------------------------ decisions

    def _decide(self, record: InboundRecord) -> Outcome:
        try:
            return self.handler.decide(record)
        except Exception as error:  # noqa: BLE001 - any failure of one record parks it
            return self._poison(record, Failure.of(error))

    async def _decided_elsewhere(
        self, chunk: Sequence[InboundRecord], decision: asyncio.Future[list[Outcome | Failure]]
    ) -> list[Outcome] | None:
        """The pool's outcomes for ``chunk``, or None if the pool failed (a worker died, or a
        result could not cross back): the rest of the batch is then decided in this
        process, so no record waits on a broken pool and none is retried forever — what
        kills a worker is decided here, exactly as without a pool."""
        try:
            results = await decision
            if len(results) != len(chunk):
                raise RuntimeError(f"{len(results)} decisions for {len(chunk)} records")
        except Exception as error:  # noqa: BLE001 - the pool's fault, not the records'
            assert self.pool is not None
            self._log.warning(
                "decision workers failed; deciding in this process and starting new ones",
                error=type(error).__name__,
                detail=str(error)[:300],
            )
            self.pool.renew()
            return None
        return [
            self._poison(record, result) if isinstance(result, Failure) else result
            for record, result in zip(chunk, results, strict=True)
        ]

    def _poison(self, record: InboundRecord, failure: Failure) -> Outcome:
        self._log.warning(
            "record cannot be processed; dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=failure.reason,
            error=failure.error,
        )
        try:
            return self.handler.poison(record, failure.reason, failure.detail)
        except Exception as second:  # noqa: BLE001 - the last resort must not fail
            letter = letter_for(
                record,
                dlq_topic=self.dlq_topic,
                stage=self.stage,
                reason=INTERNAL_ERROR,
                detail=f"{failure.detail}; then {type(second).__name__}: {second}",
            )
            return Outcome([letter], f"rejected:{INTERNAL_ERROR}")

    # ------------------------------------------------------------------ sending

    async def _send_all(
        self, pending: list[_Pending], sink: Sink, *, alone: bool = False
    ) -> BaseException | None:
        """Hand every output to the producer in order; stop at the first producer failure
        (later records stay unsent and are read again). ``alone``: each output in a record
        batch of its own (handed over before the next is added)."""
        for item in pending:
            try:
                item.futures = []
                for out in item.outcome.outputs:
                    item.futures.append(await sink.send(out))
                    if alone:
                        await sink.flush(final=True)
            except MessageSizeTooLargeError as error:
                # Refused before it left: this record, not the broker, is the problem.
                # (Outputs of it sent before the refusal stay sent; the letter says why.)
                item.outcome = self._poison(item.record, Failure.of(error))
                try:
                    item.futures.extend([await sink.send(o) for o in item.outcome.outputs])
                except Exception as again:  # noqa: BLE001 - then the producer is at fault
                    item.failure = again
                    return again
            except Exception as error:  # noqa: BLE001 - producer trouble: retry later
                item.failure = error
                return error
            item.sent = True
        return None

    async def _await_all(self, pending: list[_Pending], sink: Sink) -> None:
        """Wait for every acknowledgement at once; any failure but a size refusal leaves
        its record unfinished (read again).

        The broker refuses a whole record batch when it is over its topic's
        ``max.message.bytes``, however small each record in it: a topic configured below the
        producer's batch size. As the Java producer splits such a batch, the outputs of
        every record from the first refused one on (in consumption order) are sent again,
        each in a batch of its own: the refused ones land, and those that had landed after
        them land again (same event ids, which consumers recognise), so no later output of
        a key stays ahead of an earlier one. A record refused even alone is too large for
        its topic: it is dead-lettered (``too-large-to-forward``) in one more round."""
        await _acknowledged(pending)
        first = next((i for i, item in enumerate(pending) if _size_refusal(item)), None)
        if first is None:
            return
        again = [item for item in pending[first:] if item.sent and item.failure is None]
        await self._send_again(again, sink, alone=True)
        too_large = [(item, error) for item in again if (error := _size_refusal(item))]
        for item, error in too_large:
            item.outcome = self._poison(item.record, Failure.of(error))
        letters = [item for item, _ in too_large]
        if letters:
            await self._send_again(letters, sink)
            for item in letters:
                item.failure = item.failure or _size_refusal(item)

    async def _send_again(self, items: list[_Pending], sink: Sink, *, alone: bool = False) -> None:
        """Send ``items``' outputs once more and wait for their acknowledgements."""
        for item in items:
            # Unsent until ``_send_all`` says otherwise: a producer failure in this round
            # leaves the rest to be read again, not committed (nor judged on old futures).
            item.sent = False
            item.futures = []
        await self._send_all(items, sink, alone=alone)
        await sink.flush(final=True)
        await _acknowledged(items)

    # ------------------------------------------------------------------ settling

    async def _settle(
        self, pending: list[_Pending], offsets: Offsets, failure: BaseException | None
    ) -> BatchReport:
        report = BatchReport(error=failure)
        by_partition: dict[Partition, list[_Pending]] = {}
        for item in pending:
            by_partition.setdefault((item.record.topic, item.record.partition), []).append(item)
        finished: list[_Pending] = []
        for partition, items in by_partition.items():
            for index, item in enumerate(items):
                if not item.sent or item.failure is not None:
                    report.rewinds[partition] = item.record.offset
                    report.unfinished += len(items) - index
                    report.error = report.error or item.failure
                    break
                finished.append(item)
                report.commits[partition] = item.record.offset + 1
        if report.error is None and report.unfinished:
            report.error = RuntimeError("outputs were not sent")
        if report.commits:
            try:
                await offsets.commit(report.commits)
            except Exception as error:  # noqa: BLE001 - outputs are durable; a later commit covers them
                # (or, after a rebalance, their new owner re-reads them: at-least-once).
                self._log.warning(
                    "offset commit failed; records may be read again",
                    error=type(error).__name__,
                    detail=str(error)[:300],
                )
        for partition, offset in report.rewinds.items():
            try:
                offsets.rewind(partition, offset)
            except Exception as error:  # noqa: BLE001 - revoked meanwhile: its new owner reads it
                self._log.warning(
                    "could not rewind a partition", partition=partition[1], error=str(error)
                )
        report.settled = len(finished)
        for item in finished:
            outcome = item.outcome
            for name, labels in outcome.counts:
                tally = self.tallies.get(name)
                if tally is not None:  # a runner without metrics (tests, fuzzing) counts none
                    tally.add(*labels)
            if outcome.note is not None:
                self._log.debug(outcome.note.event, **outcome.note.fields)
        return report

    def _account(self, pending: list[_Pending], report: BatchReport, duration_s: float) -> None:
        outcomes: Counter[str] = Counter()
        tenants: Counter[str] = Counter()
        per_topic: Counter[str] = Counter()
        sizes: dict[str, list[int]] = {}
        settled: Counter[str] = Counter()
        unfinished = set(report.rewinds)
        for item in pending:
            topic = item.record.topic
            per_topic[topic] += 1
            sizes.setdefault(topic, []).append(len(item.record.value or b""))
            partition = (topic, item.record.partition)
            if partition in unfinished and item.record.offset >= report.rewinds[partition]:
                continue
            settled[topic] += 1
            outcomes[item.outcome.label] += 1
            tenants[item.outcome.tenant or "-"] += 1
        if self.metrics is not None:
            self.metrics.batch(per_topic, sizes, settled, duration_s)
            if report.error is not None:
                self.metrics.exception(sorted(per_topic), report.error)
        if pending:
            self._log.info(
                "batch settled",
                records=len(pending),
                settled=report.settled,
                unfinished=report.unfinished,
                outcomes=dict(outcomes),
                tenants=dict(tenants),
                duration_ms=round(duration_s * 1000, 1),
            )


def retrieve_exception(future: asyncio.Future[Any]) -> None:
    """A done-callback for a future nobody may await: its exception counts as seen, so
    asyncio does not report it as never retrieved (the failure was handled elsewhere)."""
    if not future.cancelled():
        future.exception()


async def _acknowledged(pending: Sequence[_Pending]) -> None:
    """Wait for every future of ``pending``; a failure other than a size refusal becomes
    its record's ``failure`` (the first one it had is kept)."""
    futures = [f for item in pending for f in item.futures]
    if futures:
        await asyncio.gather(*futures, return_exceptions=True)
    for item in pending:
        for future in item.futures:
            if future.cancelled():
                item.failure = item.failure or asyncio.CancelledError()
                continue
            error = future.exception()
            if error is not None and not isinstance(error, SIZE_REFUSALS):
                item.failure = item.failure or error


def _size_refusal(item: _Pending) -> BaseException | None:
    """The broker's refusal, for its size, of a batch holding one of ``item``'s outputs."""
    for future in item.futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if isinstance(error, SIZE_REFUSALS):
                refusal: BaseException = error  # (aiokafka's errors are untyped)
                return refusal
    return None


def record_from(raw: ConsumerRecord[bytes, bytes]) -> InboundRecord:
    """The transport facts of an aiokafka record (headers as raw bytes, undecoded)."""
    return InboundRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        timestamp_ms=raw.timestamp,
        key=raw.key,
        value=raw.value,
        headers=tuple((name, value) for name, value in (raw.headers or ()) if value is not None),
    )


_MURMUR_M: Final = 0x5BD1E995
_MASK32: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a record key, as the Java client's default partitioner
    computes it (``Utils.murmur2``, unsigned): aiokafka's own is a pure-Python loop over
    single bytes; this one lets :mod:`struct` read the 4-byte words."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK32
    tail = length & ~3
    for word in struct.unpack_from(f"<{length >> 2}I", data):
        k = (word * _MURMUR_M) & _MASK32
        k = ((k ^ (k >> 24)) * _MURMUR_M) & _MASK32
        h = ((h * _MURMUR_M) & _MASK32) ^ k
    rest = length & 3
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h = ((h ^ data[tail]) * _MURMUR_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK32
    return h ^ (h >> 15)


class KeyPartitioner:
    """The producer's partitioner: the same partition for a key as Kafka's default (Java and
    aiokafka alike: murmur2 of the key, positive, modulo the partition count), with the
    hashes of recently seen keys remembered — the changes of one entity come in runs.
    Records without a key go to a random available partition, as by default."""

    #: Most key hashes kept (the table is emptied when full).
    MAX_KEYS: Final = 65_536

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - not security
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


#: The most bytes one output may take on the wire (aiokafka's ``max_request_size``
#: default, which the services' producer keeps); a larger one is refused before it leaves.
MAX_REQUEST_BYTES: Final = 1_048_576
#: The most bytes of one Kafka record batch the services build (the producer's
#: ``max_batch_size``).
MAX_BATCH_BYTES: Final = 256 * 1024
#: An open record batch of at least this many bytes is handed to the producer between two
#: chunks of a batch, if the partition's previous one is acknowledged; see
#: :class:`ProducerSink`.
SUBMIT_BYTES: Final = 64 * 1024


class _OpenBatch:
    """A record batch being filled for one partition, and the future its records share."""

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class ProducerSink:
    """Outputs to Kafka as explicit record batches (aiokafka's ``create_batch`` /
    ``send_batch``): the services' :class:`Sink`.

    aiokafka's ``send`` spends a coroutine, a future and the future's result on every record;
    a record appended to a batch costs one C call, and a batch one future. Measured with the
    benchmark harness (``bench/run.sh --only raw,alone``, three runs of each build,
    alternating), the service's CPU per record fell by about 8 µs in ingest and 12 µs in
    normalize: ingest used 110 to 119 µs before and 104 to 110 after, normalize 173 to 180
    before and 162 to 167 after.
    The outputs of every partition go into one open batch, in order, each partition chosen
    as Kafka's default partitioner chooses it (:class:`KeyPartitioner`). Each record's future
    is its batch's: it resolves when the broker acknowledged the whole batch.

    A batch is handed to the producer when it is full, at :meth:`flush` with ``final`` (the
    end of a batch of the loop), or between two chunks once it holds :data:`SUBMIT_BYTES`
    and the partition's previous batch is acknowledged: the producer keeps one request in
    flight per partition (to keep order), and a batch handed over while another waits would
    make the loop wait too. So the broker stores the first outputs while later records are
    decided, and what arrives meanwhile joins the next batch, as aiokafka's own accumulator
    batches while a request is in flight.

    Once a batch could not be handed over (producer closed or failed), every later one of
    the same loop batch fails with the same error instead: a later output of a partition
    never lands while an earlier one was refused.

    When the broker refuses a batch (its topic's ``max.message.bytes`` is below the
    producer's batch size, or any other error that is not retried), two things follow. The
    idempotent producer numbered that batch, so the broker would refuse every later one of
    the partition as out of sequence: ``renew`` gives a new producer before the next record
    (:func:`replace_producer`). And after a size refusal of several records, batches to that
    topic stay under half the refused one's bytes from then on. What to do with the refused
    records is the runner's (see :meth:`BatchRunner._await_all`).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        submit_bytes: int = SUBMIT_BYTES,
        renew: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
    ) -> None:
        self._producer = producer
        self._renew = renew
        #: A batch failed at the broker: the producer's sequence numbers are past it.
        self._stale = False
        self._max_request_bytes = max_request_bytes
        self._submit_bytes = submit_bytes
        self._partitioner = KeyPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[TopicPartition, _OpenBatch] = {}
        self._last: dict[TopicPartition, asyncio.Future[Any]] = {}
        self._refused: BaseException | None = None
        #: Record batch bytes learnt per topic from the broker's size refusals.
        self._limits: dict[str, int] = {}

    async def send(self, record: Outbound) -> asyncio.Future[Any]:
        """Add ``record`` to its partition's open batch; its future resolves once that batch
        is acknowledged. Raises :class:`MessageSizeTooLargeError` for a record over the
        request size (nothing of it is added), and the producer's error once a batch of
        this loop batch could not be handed over."""
        if self._refused is not None:
            raise self._refused
        if self._stale:
            await self._renewed()
        headers = list(record.headers)  # the C record builder takes lists only
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, headers)
        if size > self._max_request_bytes:
            raise MessageSizeTooLargeError(
                f"the record is {size} bytes, over the request size of "
                f"{self._max_request_bytes} bytes"
            )
        partitions = self._partitions.get(record.topic)
        if partitions is None:
            known = await self._producer.partitions_for(record.topic)
            partitions = self._partitions[record.topic] = sorted(known)
        tp = TopicPartition(record.topic, self._partitioner(record.key, partitions, partitions))
        batch = self._open.get(tp)
        limit = self._limits.get(record.topic)
        if batch is not None and limit is not None and batch.builder.size() + size > limit:
            # More than this topic was seen to take: hand the batch over without it.
            del self._open[tp]
            await self._submit(tp, batch)
            if self._refused is not None:
                raise self._refused
            batch = None
        if batch is None:
            batch = self._open[tp] = _OpenBatch(self._producer.create_batch())
        if not self._append(batch, record, headers):
            del self._open[tp]
            await self._submit(tp, batch)
            if self._refused is not None:
                raise self._refused
            batch = self._open[tp] = _OpenBatch(self._producer.create_batch())
            if not self._append(batch, record, headers):  # an empty batch takes any one
                raise MessageSizeTooLargeError("the record does not fit an empty batch")
        return batch.acked

    async def flush(self, *, final: bool) -> None:
        """Hand over the open batches: every one when ``final`` (the loop's batch is all
        sent), else those of at least :data:`SUBMIT_BYTES` whose partition has nothing
        unacknowledged. Never raises: a batch that cannot be handed over fails its future."""
        for tp, batch in list(self._open.items()):
            if final or (
                batch.builder.size() >= self._submit_bytes
                and (tp not in self._last or self._last[tp].done())
            ):
                del self._open[tp]
                await self._submit(tp, batch)
        if final:
            self._refused = None
            self._partitions.clear()  # partitions added to a topic are seen from the next

    @staticmethod
    def _append(batch: _OpenBatch, record: Outbound, headers: list[tuple[str, bytes]]) -> bool:
        """Whether ``record`` went into ``batch`` (no: the batch is full)."""
        added = batch.builder.append(
            timestamp=None, key=record.key, value=record.value, headers=headers
        )
        return added is not None

    async def _submit(self, tp: TopicPartition, batch: _OpenBatch) -> None:
        batch.builder.close()  # complete: no lingering for more records
        if self._refused is None:
            try:
                sent: asyncio.Future[Any] = await self._producer.send_batch(
                    batch.builder, tp.topic, partition=tp.partition
                )
            except Exception as error:  # noqa: BLE001 - reported through the records' future
                self._refused = error
            else:
                self._last[tp] = sent
                size, count = batch.builder.size(), batch.builder.record_count()
                producer = self._producer
                sent.add_done_callback(lambda done: _settle_future(batch.acked, done))
                sent.add_done_callback(
                    lambda done: self._learn(producer, tp.topic, size, count, done)
                )
                return
        batch.acked.set_exception(self._refused)

    def _learn(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        size: int,
        count: int,
        done: asyncio.Future[Any],
    ) -> None:
        """What a batch's answer teaches.

        * Any failure: the (idempotent) producer numbered the batch, the broker did not
          store it, so it refuses every later batch of the partition as out of sequence
          (aiokafka does not reset the numbers as the Java producer does): the producer is
          replaced before the next send (unless it already was).
        * A refusal for its size of a batch of several records (a topic whose
          ``max.message.bytes`` is below the producer's batch size): later batches to that
          topic hold at most half as many bytes (a single record still goes alone).
        """
        if done.cancelled() or done.exception() is None:
            return
        self._stale = self._stale or producer is self._producer
        if count < 2 or not isinstance(done.exception(), SIZE_REFUSALS):
            return
        limit = size // 2
        if limit < self._limits.get(topic, size):
            self._limits[topic] = limit
            log.warning(
                "the broker refused a record batch for its size; sending smaller ones",
                topic=topic,
                batch_bytes=size,
                records=count,
                limit_bytes=limit,
            )

    async def _renewed(self) -> None:
        if self._renew is not None:
            self._producer = await self._renew()  # on failure: tried again at the next send
            self._last.clear()
        self._stale = False


async def replace_producer(old: AIOKafkaProducer, new: AIOKafkaProducer) -> AIOKafkaProducer:
    """Start ``new`` (a new producer id, its sequence numbers from zero), then stop ``old``,
    which delivers or fails what it still holds first: nothing sent through ``new`` can land
    ahead of it. ``new`` once started."""
    try:
        await new.start()
    except BaseException:
        await new.stop()  # (its connections; ``old`` stays the producer)
        raise
    log.warning("producer replaced after the broker refused a record batch")
    try:
        await old.stop()
    except Exception as error:  # noqa: BLE001 - it is done with either way
        log.warning("the replaced producer did not stop cleanly", error=repr(error))
    return new


def _settle_future(target: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    """``target`` ends as ``done`` ended."""
    if target.done():
        return
    if done.cancelled():
        target.cancel()
    elif (error := done.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(done.result())


class _ConsumerOffsets:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        await self._consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})

    def rewind(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*partition), offset)


@dataclass(frozen=True)
class Subscription:
    """What the loop reads: named topics, or every topic matching a pattern."""

    topics: tuple[str, ...] = ()
    pattern: str | None = None


class BatchLoop:
    """The consuming half of a service process, started and stopped with its ASGI app.

    Start fails when the broker cannot be reached (the process exits instead of serving
    health without consuming). SIGTERM: the batch in flight finishes and commits, then the
    consumer leaves its group and the producer flushes. An unexpected failure of the loop
    itself stops the process (SIGTERM to itself) so a supervisor restarts it.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        runner: BatchRunner,
        subscription: Subscription,
        *,
        client_id: str,
        max_records: int,
        tracing: AnyTracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.subscription = subscription
        self.client_id = client_id
        self.max_records = max_records
        # One OpenTelemetry span per batch (the loop is not a FastStream handler, whose
        # telemetry middleware makes one per message); none exported without OTLP_ENDPOINT.
        provider = tracing or tracer_provider(
            settings.otlp_endpoint, client_id.removeprefix("cayg-")
        )
        self._tracer = provider.get_tracer("cayg_shared.batching")
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect producer and consumer, subscribe, and start consuming in the background."""
        tune_garbage_collector()
        if self.runner.pool is not None:
            await self.runner.pool.start()
        options = kafka_options(self.settings.kafka)
        self._producer = self._new_producer()
        self._consumer = AIOKafkaConsumer(
            client_id=self.client_id,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            **self.settings.consumer_options(),
            **options,
        )
        try:
            await self._producer.start()
            try:
                await self._consumer.start()
            except BaseException:
                await self._producer.stop()
                raise
        except BaseException:
            if self.runner.pool is not None:
                await self.runner.pool.stop()
            raise
        if self.subscription.pattern is not None:
            self._consumer.subscribe(pattern=self.subscription.pattern)
        else:
            self._consumer.subscribe(topics=list(self.subscription.topics))
        self._task = asyncio.create_task(self._consume(), name=f"{self.client_id}-batches")

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
            **kafka_options(self.settings.kafka),
        )

    async def _renew_producer(self) -> AIOKafkaProducer:
        """A new producer in place of one whose batch the broker refused (the sink's
        ``renew``; see :meth:`ProducerSink._learn`)."""
        assert self._producer is not None
        self._producer = await replace_producer(self._producer, self._new_producer())
        return self._producer

    async def ready(self) -> bool:
        """Readiness: the loop is running."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in flight (its commit included), then disconnect."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.graceful_timeout_s)
            except TimeoutError:
                log.error("batch still running at the graceful timeout; stopping anyway")
                self._task.cancel()
            except Exception:  # noqa: BLE001, S110 - already logged by the loop
                pass
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self.runner.pool is not None:
            await self.runner.pool.stop()

    async def _consume(self) -> None:
        assert self._consumer is not None
        assert self._producer is not None
        consumer = self._consumer
        sink = ProducerSink(self._producer, renew=self._renew_producer)
        offsets = _ConsumerOffsets(consumer)
        try:
            while not self._stopping.is_set():
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_records
                    )
                except KafkaError as error:
                    log.warning("fetch failed; retrying", error=type(error).__name__)
                    await asyncio.sleep(self.settings.redelivery_backoff_s)
                    continue
                records = [record_from(r) for part in fetched.values() for r in part]
                if not records:
                    continue
                with self._tracer.start_as_current_span(
                    f"{self.client_id} batch",
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.consumer.group.name": self.settings.group_id,
                        "messaging.batch.message_count": len(records),
                        "messaging.destination.name": sorted({r.topic for r in records}),
                    },
                ):
                    await self.runner.run(records, sink, offsets)
        except Exception:
            log.exception("consumer loop failed; stopping the service")
            os.kill(os.getpid(), signal.SIGTERM)
            raise


#: Allocations between two collections of the youngest generation (Python's default: 700).
GC_YOUNG_THRESHOLD: Final = 50_000


def tune_garbage_collector() -> None:
    """Make Python's cyclic garbage collector cheap for a consume loop (once per process).

    Every record allocates thousands of short-lived objects (decoded JSON, pydantic models)
    that reference counting frees at once; with Python's defaults the collector still ran
    every 700 allocations, and the survivors of a batch in flight kept triggering full
    collections over everything the process holds. Measured with ``gc.callbacks`` on the
    benchmark's records in a process with the service's imports: about 95 µs of collection
    per record in normalize and 25 µs in ingest, a third and a fifth of their CPU. So what
    start-up built (modules, schemas, settings, the tenant registry) is frozen out of every
    collection, and the youngest generation is collected every :data:`GC_YOUNG_THRESHOLD`
    allocations (cyclic garbage waiting for it is a few MiB at most); the older
    generations keep their thresholds.
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def is_debug(logger_name: str) -> bool:
    """Whether per-record DEBUG lines of ``logger_name`` would be written. Services check it
    once, not per line: structlog renders a line before the standard library drops it by
    level, so an unguarded DEBUG line costs about as much as a written one."""
    return logging.getLogger(logger_name).isEnabledFor(logging.DEBUG)
