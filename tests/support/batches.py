"""Ingest and normalize on an in-memory bus: their real batch runners, no network.

Component tests attach a service's :class:`~cayg_shared.batching.BatchRunner` to a
:class:`MemoryBus`, publish records to it, and read back exactly what went out: key, value
and headers, in publication order. Like FastStream's ``TestKafkaBroker`` (which the batch
loop no longer runs on), a publish delivers at once: each record is one batch for every
runner that reads its topic, and their outputs are delivered in turn. Commits and rewinds
the runners ask for are recorded, so tests can check what would be read again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from cayg_shared.batching import BatchReport, BatchRunner, Outbound, Partition
from cayg_shared.service import InboundRecord
from cayg_shared.topics import Topics


@dataclass(frozen=True)
class Sent:
    """One record written to the bus (headers as text; non-UTF-8 bytes escaped)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]


@dataclass
class _Reader:
    runner: BatchRunner
    topics: frozenset[str]
    pattern: re.Pattern[str] | None

    def reads(self, topic: str) -> bool:
        return topic in self.topics or bool(self.pattern and self.pattern.fullmatch(topic))


@dataclass
class MemoryBus:
    """Topics as lists, one partition each; readers run inline on every publish."""

    _records: dict[str, list[Sent]] = field(default_factory=dict)
    _readers: list[_Reader] = field(default_factory=list)
    _refusals: dict[str, Exception] = field(default_factory=dict)
    committed: dict[Partition, int] = field(default_factory=dict)
    rewound: dict[Partition, int] = field(default_factory=dict)
    reports: list[BatchReport] = field(default_factory=list)

    def attach(
        self, runner: BatchRunner, *, topics: tuple[str, ...] = (), pattern: str | None = None
    ) -> None:
        """Let ``runner`` read ``topics`` (or every topic matching ``pattern``)."""
        self._readers.append(
            _Reader(runner, frozenset(topics), re.compile(pattern) if pattern else None)
        )

    async def publish(
        self,
        value: bytes,
        *,
        topic: str,
        key: bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> None:
        """Write a record and run every reader it reaches, downstream ones included.

        Raises the error of a batch that could not settle (its outputs were refused), as a
        failed handler did under ``TestKafkaBroker``.
        """
        raw = tuple(
            (name, text.encode() if isinstance(text, str) else text)
            for name, text in (headers or {}).items()
        )
        queue = [self._append(topic, key, value, raw)]
        while queue:
            record = queue.pop(0)
            for reader in self._readers:
                if not reader.reads(record.topic):
                    continue
                sink = _Sink(self, queue)
                report = await reader.runner.run([record], sink, _Offsets(self))
                self.reports.append(report)
                if report.error is not None:
                    raise report.error

    def _append(
        self, topic: str, key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]
    ) -> InboundRecord:
        log = self._records.setdefault(topic, [])
        text = {name: raw.decode("utf-8", "backslashreplace") for name, raw in headers}
        log.append(Sent(topic, key, value, text))
        return InboundRecord(topic, 0, len(log) - 1, 0, key, value, headers)

    def on(self, topic: str) -> list[Sent]:
        """Records written to ``topic`` so far."""
        return list(self._records.get(topic, []))

    def refuse(self, topic: str, error: Exception) -> None:
        """Make writes to ``topic`` fail with ``error`` (the acknowledgement fails, as when
        the broker refuses the write)."""
        self._refusals[topic] = error

    def clear(self) -> None:
        """Forget what was written (between steps of one test); offsets keep counting."""
        for records in self._records.values():
            records.clear()


class _Sink:
    def __init__(self, bus: MemoryBus, queue: list[InboundRecord]) -> None:
        self.bus = bus
        self.queue = queue

    async def send(self, record: Outbound) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refusal = self.bus._refusals.get(record.topic)
        if refusal is not None:
            future.set_exception(refusal)
            return future
        written = self.bus._append(record.topic, record.key, record.value, record.headers)
        self.queue.append(written)
        future.set_result(written.offset)
        return future

    async def flush(self, *, final: bool) -> None:
        return None  # every write is acknowledged (or refused) at once


class _Offsets:
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.bus.committed.update(offsets)

    def rewind(self, partition: Partition, offset: int) -> None:
        self.bus.rewound[partition] = offset


@dataclass
class Harness:
    """A service's real batch runner on an in-memory bus, with what it wrote and the
    Prometheus registry its metrics went to."""

    broker: MemoryBus
    topics: Topics
    outbox: MemoryBus
    metrics: CollectorRegistry

    def count(self, name: str, **labels: str) -> float:
        """A counter's value (0 when the labelled series was never touched)."""
        return self.metrics.get_sample_value(f"{name}_total", labels) or 0.0


def events(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """Captured log entries without the runner's one line per batch."""
    return [entry for entry in logs if entry.get("event") != "batch settled"]
