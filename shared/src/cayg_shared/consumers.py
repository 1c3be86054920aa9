"""More consumers of one service, in child processes: a batch loop that needs more than a core.

Ingest's and normalize's work per record is CPU work under the GIL, so one process moves
what one core can. With ``CONSUMERS`` set to more than one, the service process starts that
many minus one *consumer processes*: each runs the service's whole batch loop (its own
consumer in the service's group, its own idempotent producer), so Kafka gives each its
share of the partitions and each process fetches, decides, sends and commits its records
by itself. Nothing about a record crosses between processes; the guarantees are those of
any member of a consumer group (at-least-once, order per key within a partition, a
rebalance re-reads what was not committed).

Compared with the decision workers of :mod:`cayg_shared.decide_pool`, which take records
from one consumer, decide them and hand the outputs back, no record is handed over: on the
benchmark's two cores that hand-over cost about 30 µs of CPU per ingest record (119 against
86 µs in one process). A consumer only takes whole partitions, though: a topic with fewer
partitions than consumers leaves some idle, and one with a single partition is better
served by decision workers.

**Operators** see one service. The service process serves ``/healthz``, ``/readyz`` and
``/metrics``:

* ready only while every consumer process runs (and its own loop does);
* ``/metrics`` adds each consumer process's series to the service process's own (its
  counters, histograms and gauges summed, ``*_created`` the earliest), from snapshots each
  process sends every :data:`SNAPSHOT_EVERY_S` seconds and when it stops;
* a consumer process that ends while the service runs stops the whole service (its
  supervisor restarts it), as a failure of the service's own loop does. SIGTERM to the
  service ends every consumer process gracefully: each finishes its batch and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, Final, Protocol

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cayg_shared.batching import retrieve_exception
from cayg_shared.decide_pool import (
    follow_parent,
    frame_header,
    join_or_kill,
    read_frame,
    spawn_connected,
)
from cayg_shared.logging import configure_logging, get_logger
from cayg_shared.settings import ServiceSettings

log = get_logger("cayg.consumers")

#: How often a consumer process sends its metrics to the service process.
SNAPSHOT_EVERY_S: Final = 1.0
#: Seconds a consumer process may take to stop beyond the batch loop's graceful timeout.
STOP_MARGIN_S: Final = 5.0

_READY: Final = "ready"
_FAILED: Final = "failed"
_METRICS: Final = "metrics"

#: One family of a snapshot: name, type, help, unit, samples (name, labels, value).
Family = tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]


class Loop(Protocol):
    """What a consumer process runs: a batch loop (:class:`cayg_shared.batching.BatchLoop`)."""

    async def start(self) -> None: ...

    async def ready(self) -> bool: ...

    async def stop(self) -> None: ...


#: Builds a consumer process's loop from the pool's arguments and the process's registry.
LoopFactory = Callable[..., Loop]


def snapshot(registry: CollectorRegistry) -> list[Family]:
    """Every series of ``registry`` as plain data."""
    return [
        (
            family.name,
            family.type,
            family.documentation,
            family.unit,
            [(s.name, dict(s.labels), float(s.value)) for s in family.samples],
        )
        for family in registry.collect()
    ]


def merge(own: Sequence[Metric], others: Sequence[Sequence[Family]]) -> list[Metric]:
    """``own`` families with the same-named families of ``others`` added: values of one
    series (name and labels) summed, ``*_created`` the earliest; families only ``others``
    have come after ``own``'s."""
    combined: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

    def add(name: str, kind: str, text: str, unit: str, samples: Any) -> None:
        if name not in combined:
            combined[name] = Metric(name, text, kind, unit)
            values[name] = {}
        series = values[name]
        for sample_name, labels, value in samples:
            key = (sample_name, tuple(sorted(labels.items())))
            if key not in series:
                series[key] = value
            elif sample_name.endswith("_created"):
                series[key] = min(series[key], value)
            else:
                series[key] += value

    for family in own:
        add(
            family.name,
            family.type,
            family.documentation,
            family.unit,
            [(s.name, s.labels, s.value) for s in family.samples],
        )
    for families in others:
        for name, kind, text, unit, samples in families:
            add(name, kind, text, unit, samples)
    for name, metric in combined.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return list(combined.values())


# ---------------------------------------------------------------------- consumer process


def _serve(
    sock: socket.socket, factory: LoopFactory, args: tuple[Any, ...], who: tuple[str, str, int]
) -> None:
    """A consumer process's life: its loop, started, run until the service process closes
    its end of ``sock`` (or SIGTERM reaches it), then stopped. ``who``: the service, its
    log level, and this process's number."""
    service, log_level, index = who
    # Ctrl-C reaches the whole process group; the service process ends its consumers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(service, level=log_level)
    structlog.contextvars.bind_contextvars(consumer=index)
    parent = multiprocessing.parent_process()
    follow_parent(parent.pid if parent is not None and parent.pid else os.getppid())
    asyncio.run(_consume(sock, factory, args))


async def _consume(sock: socket.socket, factory: LoopFactory, args: tuple[Any, ...]) -> None:
    registry = CollectorRegistry()
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def tell(tag: str, value: Any) -> None:
        payload = pickle.dumps((tag, value))
        writer.writelines((frame_header(len(payload)), payload))

    try:
        loop = factory(*args, registry)
        await loop.start()
    except BaseException as error:  # noqa: BLE001 - reported to the service, which fails its start
        tell(_FAILED, f"{type(error).__name__}: {error}")
        await _drained(writer)
        return
    tell(_READY, os.getpid())
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    # The service process sends nothing: the end of its stream is the signal to stop.
    closed = asyncio.create_task(reader.read(), name="cayg-consumer-parent")
    closed.add_done_callback(lambda _: stopping.set())
    try:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), SNAPSHOT_EVERY_S)
            except TimeoutError:
                tell(_METRICS, snapshot(registry))
    finally:
        await loop.stop()
        tell(_METRICS, snapshot(registry))
        await _drained(writer)
        closed.cancel()


async def _drained(writer: asyncio.StreamWriter) -> None:
    """Hand what ``writer`` holds to the service process, then close it."""
    try:
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass  # the service process is gone: nobody reads it any more


# ---------------------------------------------------------------------- service process


class _Consumer:
    def __init__(self, index: int, process: BaseProcess, sock: socket.socket) -> None:
        self.index = index
        self.process = process
        self.sock = sock
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Only ``start`` awaits it, and stops at the first failure of several.
        self.ready.add_done_callback(retrieve_exception)
        self.metrics: list[Family] = []
        self.task: asyncio.Task[None] | None = None

    def running(self) -> bool:
        """Whether its process runs and its answers are still read."""
        return self.task is not None and not self.task.done() and self.process.is_alive()


class ConsumerProcesses:
    """``count`` consumer processes running the loop ``factory(*args, registry)`` builds
    (``spawn``ed: the service process runs threads and an event loop, which a fork would copy
    mid-flight). ``await start()`` waits until each loop has started (a loop that cannot
    start fails it); ``await stop()`` lets each finish its batch and commit."""

    def __init__(
        self,
        factory: LoopFactory,
        args: tuple[Any, ...],
        *,
        count: int,
        service: str,
        log_level: str,
        stop_timeout_s: float,
    ) -> None:
        if count < 1:
            raise ValueError("consumer processes: at least one")
        self.factory = factory
        self.args = args
        self.count = count
        self.service = service
        self.log_level = log_level
        self.stop_timeout_s = stop_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._consumers: list[_Consumer] = []
        self._stopping = False

    async def start(self) -> None:
        """Start every consumer process and wait until each loop runs."""
        for index in range(1, self.count + 1):
            self._consumers.append(self._spawn(index))
        try:
            await asyncio.gather(*(consumer.ready for consumer in self._consumers))
        except BaseException:
            await self.stop()
            raise
        log.info(
            "consumer processes started",
            processes=self.count,
            pids=[c.process.pid for c in self._consumers],
        )

    def _spawn(self, index: int) -> _Consumer:
        process, ours = spawn_connected(
            self._context,
            _serve,
            (self.factory, self.args, (self.service, self.log_level, index)),
            name=f"cayg-{self.service}-consumer-{index}",
        )
        consumer = _Consumer(index, process, ours)
        consumer.task = asyncio.create_task(
            self._read(consumer), name=f"cayg-{self.service}-consumer-{index}"
        )
        return consumer

    async def _read(self, consumer: _Consumer) -> None:
        reason = "it exited"
        try:
            reader, writer = await asyncio.open_unix_connection(sock=consumer.sock)
            try:
                while True:
                    tag, value = pickle.loads(await read_frame(reader))  # noqa: S301 - from our own child
                    if tag == _METRICS:
                        consumer.metrics = value
                    elif tag == _READY:
                        consumer.ready.set_result(value)
                    else:
                        reason = f"its loop could not start: {value}"
                        break
            finally:
                writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as error:
            reason = f"{reason} ({type(error).__name__})"
        if not consumer.ready.done():
            consumer.ready.set_exception(
                RuntimeError(f"consumer process {consumer.index}: {reason}")
            )
        elif not self._stopping:
            log.error("a consumer process ended; stopping the service", consumer=consumer.index)
            # SIGTERM to the service process, which then stops; its supervisor restarts it.
            os.kill(os.getpid(), signal.SIGTERM)

    def running(self) -> bool:
        """Whether every consumer process runs (readiness)."""
        return bool(self._consumers) and all(c.running() for c in self._consumers)

    def snapshots(self) -> list[list[Family]]:
        """The latest metrics of each consumer process."""
        return [c.metrics for c in self._consumers]

    def pids(self) -> list[int]:
        """The consumer processes running now (for tests and operators)."""
        return sorted(
            c.process.pid for c in self._consumers if c.process.pid and c.process.is_alive()
        )

    async def stop(self) -> None:
        """Close each process's socket: each finishes its batch, commits, sends its last
        metrics and ends (killed if it takes longer than the graceful timeout allows)."""
        self._stopping = True
        consumers = self._consumers
        for consumer in consumers:
            _shut(consumer.sock)
        await asyncio.to_thread(
            join_or_kill,
            [c.process for c in consumers],
            self.stop_timeout_s + STOP_MARGIN_S,
        )
        tasks = [c.task for c in consumers if c.task is not None]
        if tasks:
            # Their last metrics are read before the readers go.
            await asyncio.wait(tasks, timeout=1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _shut(sock: socket.socket) -> None:
    """No more from the service process: the consumer process reads the end and stops."""
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_WR)


class MergedMetrics(Collector):
    """The service process's registry with its consumer processes' series added (what
    ``/metrics`` exposes): see :func:`merge`."""

    def __init__(self, registry: CollectorRegistry, consumers: ConsumerProcesses) -> None:
        self.registry = registry
        self.consumers = consumers

    def collect(self) -> Iterator[Metric]:
        yield from merge(list(self.registry.collect()), self.consumers.snapshots())


def exposed_registry(
    registry: CollectorRegistry, consumers: ConsumerProcesses | None
) -> CollectorRegistry:
    """The registry ``/metrics`` serves: ``registry`` itself, or with ``consumers``' series."""
    if consumers is None:
        return registry
    exposed = CollectorRegistry(auto_describe=False)
    exposed.register(MergedMetrics(registry, consumers))
    return exposed


class Consumers:
    """A service's consumers: the loop of the service process and, when configured, its
    consumer processes; started, checked and stopped together."""

    def __init__(self, loop: Loop, processes: ConsumerProcesses | None = None) -> None:
        self.loop = loop
        self.processes = processes

    async def start(self) -> None:
        """Start the service process's loop and every consumer process (all or none)."""
        if self.processes is None:
            await self.loop.start()
            return
        results = await asyncio.gather(
            self.loop.start(), self.processes.start(), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop()
            raise failed[0]

    async def ready(self) -> bool:
        """Readiness: the service process's loop runs, and so does every consumer process."""
        return await self.loop.ready() and (self.processes is None or self.processes.running())

    async def stop(self) -> None:
        """Let every loop finish its batch and commit."""
        if self.processes is None:
            await self.loop.stop()
            return
        await asyncio.gather(self.loop.stop(), self.processes.stop())


def consumers_of(
    loop: Loop,
    factory: LoopFactory,
    args: tuple[Any, ...],
    settings: ServiceSettings,
    *,
    consumers: int,
    service: str,
) -> Consumers:
    """``loop`` and the ``consumers - 1`` consumer processes it needs beside it."""
    extra = consumers - 1
    processes = (
        ConsumerProcesses(
            factory,
            args,
            count=extra,
            service=service,
            log_level=settings.log_level,
            stop_timeout_s=settings.graceful_timeout_s,
        )
        if extra > 0
        else None
    )
    return Consumers(loop, processes)
