"""Per-record decisions in worker processes, for a batch loop that needs more than a core.

Ingest's admission and normalize's mapping are pure CPU work on one record at a time
(JSON, schema validation, ids); under the GIL one process does them on one core, and the
loop's own Kafka work (fetching, producing, acknowledging) waits for them. A
:class:`DecidePool` runs the decisions in worker processes instead: the loop hands each
chunk of a batch to the pool at once, then sends each chunk's outputs, in consumption
order, as its decisions come back (batches of fewer than
:data:`~cayg_shared.batching.POOL_MIN_RECORDS` records — a light stream — are decided in
the service process, where they wait for no hand-over). The loop's guarantees do not
change — what is sent, committed, rewound and dead-lettered is decided by
:class:`cayg_shared.batching.BatchRunner` exactly as without a pool.

Consumer processes (:mod:`cayg_shared.consumers`, ``CONSUMERS``) are the other way to use
more than a core: each consumes its own partitions, and no record is handed over. Workers
serve a service that has fewer input partitions than cores.

Only plain data crosses: the consumed records (:class:`InboundRecord`) one way, an
:class:`Outcome` or a :class:`Failure` per record the other, each as a tuple of its fields
(see ``_records_to_wire``). Each worker builds its own handler once, when it starts, from a
module-level factory and its (picklable) arguments, e.g. normalize's topics and tenant
registry.

**Why not** :class:`concurrent.futures.ProcessPoolExecutor`. It carries every task through
two extra threads of the service process (a queue feeder that pickles and writes, a manager
that reads results and wakes the event loop from outside), and those threads take the GIL
from the loop that fetches and produces. Here each worker has one socket to the service
process: a chunk is one pickled frame written by the event loop without waiting, its
decisions one frame back, read by the event loop itself; no thread of the service process
takes part. Measured with two workers on the benchmark's records (``bench/run.sh --only
raw,alone``, two runs each, alternating), the whole service's CPU per record went from
186 and 214 to 163 and 169 µs in normalize, and from 133 and 138 to 117 and 125 µs in
ingest.

When a worker fails (killed, or decisions that cannot be pickled) the chunks it was
deciding fail; the runner then decides the rest of the batch in its own process and calls
:meth:`DecidePool.renew`: a record that kills a worker is then handled as it would be
without a pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any, Final

from cayg_shared.batching import (
    Failure,
    Note,
    Outbound,
    Outcome,
    RecordHandler,
    retrieve_exception,
    tune_garbage_collector,
)
from cayg_shared.logging import get_logger
from cayg_shared.service import InboundRecord

log = get_logger("cayg.decide_pool")

#: How often a worker checks that the service process that started it is still there.
PARENT_CHECK_S: Final = 1.0
#: How long :meth:`DecidePool.stop` waits for a worker to end before killing it.
STOP_TIMEOUT_S: Final = 10.0

#: A frame on a worker's socket: its length (8 bytes, big-endian), then a pickle.
_LENGTH: Final = struct.Struct("!Q")
_PICKLE: Final = pickle.HIGHEST_PROTOCOL

#: What a worker's frames say: it started (its pid), it could not (why), a chunk's
#: decisions, or a chunk it could not send back (why).
_READY: Final = "ready"
_FAILED: Final = "failed"
_DECIDED: Final = "decided"

Decisions = list[Outcome | Failure]

# What crosses a worker's socket is tuples of plain values, not the dataclasses: pickle
# names, looks up, instantiates and fills a class for every dataclass instance, which
# made up most of the hand-over's cost in the service process.
# A failure crosses as ``(None, reason, detail, error)``; an outcome's first item is its
# (possibly empty) list of outputs.
_Headers = tuple[tuple[str, bytes], ...]
_RecordWire = tuple[str, int, int, int | None, bytes | None, bytes | None, _Headers]


def _records_to_wire(records: Sequence[InboundRecord]) -> list[_RecordWire]:
    return [
        (r.topic, r.partition, r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in records
    ]


def _records_from_wire(wire: list[_RecordWire]) -> list[InboundRecord]:
    return [InboundRecord(*fields) for fields in wire]


def _decisions_to_wire(decisions: Decisions) -> list[tuple[Any, ...]]:
    wire: list[tuple[Any, ...]] = []
    for result in decisions:
        if isinstance(result, Failure):
            wire.append((None, result.reason, result.detail, result.error))
            continue
        note = result.note
        wire.append(
            (
                [(o.topic, o.key, o.value, o.headers) for o in result.outputs],
                result.label,
                result.tenant,
                result.counts,
                None if note is None else (note.event, note.fields),
            )
        )
    return wire


def _decisions_from_wire(wire: list[tuple[Any, ...]]) -> Decisions:
    decisions: Decisions = []
    for fields in wire:
        if fields[0] is None:
            decisions.append(Failure(*fields[1:]))
            continue
        outputs, label, tenant, counts, note = fields
        decisions.append(
            Outcome(
                [Outbound(*output) for output in outputs],
                label,
                tenant,
                counts,
                None if note is None else Note(*note),
            )
        )
    return decisions


def decide_chunk(handler: RecordHandler, records: Sequence[InboundRecord]) -> Decisions:
    """Each record's outcome, or the failure its decision raised (never raises itself)."""
    results: Decisions = []
    for record in records:
        try:
            results.append(handler.decide(record))
        except Exception as error:  # noqa: BLE001 - reported back as that record's failure
            results.append(Failure.of(error))
    return results


# ---------------------------------------------------------------------- worker process


def _serve(
    sock: socket.socket, factory: Callable[..., RecordHandler], args: tuple[Any, ...]
) -> None:
    """A worker's life: build the handler, then decide each chunk that arrives, in order,
    until the service process closes its end."""
    # Ctrl-C reaches the whole process group; the service ends its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    follow_parent(parent.pid if parent is not None and parent.pid else os.getppid())
    try:
        handler = factory(*args)
    except BaseException as error:  # noqa: BLE001 - reported to the service, which fails its start
        send_frame(sock, pickle.dumps((_FAILED, f"{type(error).__name__}: {error}")))
        return
    tune_garbage_collector()
    send_frame(sock, pickle.dumps((_READY, os.getpid())))
    while (frame := _receive(sock)) is not None:
        records = _records_from_wire(pickle.loads(frame))  # noqa: S301 - from our parent
        results = decide_chunk(handler, records)
        try:
            reply = pickle.dumps((_DECIDED, _decisions_to_wire(results)), protocol=_PICKLE)
        except Exception as error:  # noqa: BLE001 - the chunk fails, the worker goes on
            reply = pickle.dumps(
                (_FAILED, f"decisions cannot cross back: {type(error).__name__}: {error}")
            )
        try:
            send_frame(sock, reply)
        except OSError:
            return  # the service closed its end (stopped or renewed its workers)


def follow_parent(parent: int) -> None:
    """Exit once ``parent`` is gone: a service killed outright (SIGKILL, OOM) never ends its
    workers, and one busy deciding would not notice its socket closing until done."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="cayg-decide-parent-watch", daemon=True).start()


def frame_header(size: int) -> bytes:
    """What goes before a frame's ``size`` bytes of payload: their count."""
    return _LENGTH.pack(size)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Write one frame (its length, then ``payload``) on a blocking socket."""
    sock.sendall(frame_header(len(payload)))
    sock.sendall(payload)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The payload of the next frame on ``reader`` (``IncompleteReadError`` at its end)."""
    header = await reader.readexactly(_LENGTH.size)
    return await reader.readexactly(_LENGTH.unpack(header)[0])


def _receive(sock: socket.socket) -> bytes | None:
    """The next frame, or None once the other end is closed."""
    header = _receive_exactly(sock, _LENGTH.size)
    if header is None:
        return None
    return _receive_exactly(sock, _LENGTH.unpack(header)[0])


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buffer)


# ---------------------------------------------------------------------- service process


class _Worker:
    """One worker process as the service process sees it: its socket, the chunks it was
    given and not yet answered (in order), and the task that reads its answers."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.waiting: deque[asyncio.Future[Decisions]] = deque()
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Only ``start`` awaits it; a renewed worker that cannot start fails its first chunk.
        self.ready.add_done_callback(retrieve_exception)
        self.alive = True
        #: Frames handed over before the connection was made.
        self._outbox: list[bytes] = []
        self._writer: asyncio.StreamWriter | None = None
        self.task = asyncio.create_task(self._read(), name=f"cayg-decide-worker-{process.pid}")

    def submit(self, frame: bytes, future: asyncio.Future[Decisions]) -> None:
        self.waiting.append(future)
        header = frame_header(len(frame))
        if self._writer is None:
            self._outbox += (header, frame)
        else:
            self._writer.writelines((header, frame))

    async def _read(self) -> None:
        reason = "the decision worker exited"
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=self.sock)
            writer.writelines(self._outbox)
            self._outbox.clear()
            self._writer = writer
            tag, value = await _next_reply(reader)
            if tag != _READY:
                reason = f"a decision worker could not start: {value}"
                return
            self.ready.set_result(value)
            while True:
                tag, value = await _next_reply(reader)
                future = self.waiting.popleft()
                if future.done():
                    continue
                if tag == _DECIDED:
                    try:
                        future.set_result(_decisions_from_wire(value))
                    except Exception as error:  # noqa: BLE001 - this chunk fails, not the worker
                        future.set_exception(
                            BrokenProcessPool(f"decisions cannot be read: {error!r}")
                        )
                else:
                    future.set_exception(BrokenProcessPool(value))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, IndexError) as error:
            reason = f"{reason} ({type(error).__name__})"
        finally:
            self.fail(reason)
            if writer is not None:
                writer.close()

    def fail(self, reason: str) -> None:
        """No more answers from this worker: what it still owes fails."""
        self.alive = False
        problem = BrokenProcessPool(reason)
        if not self.ready.done():
            self.ready.set_exception(problem)
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(problem)

    def close(self) -> None:
        """Close the service's end: the worker ends once it has read everything sent."""
        if self._writer is not None:
            self._writer.close()
        else:
            self.sock.close()


async def _next_reply(reader: asyncio.StreamReader) -> tuple[str, Any]:
    payload = await read_frame(reader)
    try:
        tag, value = pickle.loads(payload)  # noqa: S301 - from our own worker
    except Exception as error:  # noqa: BLE001 - this chunk fails, the next may not
        return _FAILED, f"decisions cannot be read: {type(error).__name__}: {error}"
    return str(tag), value


class DecidePool:
    """Worker processes deciding chunks of records (``spawn``ed: the service process runs
    threads and an event loop, which a fork would copy mid-flight).

    ``await start()`` before the first batch (it waits until every worker has built its
    handler, so a service is ready only with its workers), ``await stop()`` at shutdown.
    Chunks go to the worker with the fewest unanswered chunks; each worker answers its
    chunks in the order it was given them.
    """

    def __init__(
        self,
        factory: Callable[..., RecordHandler],
        args: tuple[Any, ...],
        *,
        workers: int,
    ) -> None:
        if workers < 1:
            raise ValueError("a decision pool needs at least one worker")
        self.factory = factory
        self.args = args
        self.workers = workers
        self.renewals = 0
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []

    def _spawn(self) -> _Worker:
        process, ours = spawn_connected(
            self._context, _serve, (self.factory, self.args), name="cayg-decide-worker"
        )
        return _Worker(process, ours)

    async def start(self) -> None:
        """Start every worker and wait until each has built its handler; a worker that
        cannot build one fails the start (:class:`BrokenProcessPool`)."""
        if not self._pool:
            self._pool = [self._spawn() for _ in range(self.workers)]
        await asyncio.gather(*(worker.ready for worker in self._pool))
        log.info("decision workers started", workers=self.workers, pids=self.pids())

    def decide(self, records: Sequence[InboundRecord]) -> asyncio.Future[Decisions]:
        """Start deciding ``records`` in a worker; the future fails if the worker does."""
        future: asyncio.Future[Decisions] = asyncio.get_running_loop().create_future()
        live = [worker for worker in self._pool if worker.alive]
        if not live:
            future.set_exception(BrokenProcessPool("no decision worker is running"))
            return future
        try:
            frame = pickle.dumps(_records_to_wire(records), protocol=_PICKLE)
        except Exception as error:  # noqa: BLE001 - the runner decides these itself
            future.set_exception(error)
            return future
        min(live, key=lambda worker: len(worker.waiting)).submit(frame, future)
        return future

    def renew(self) -> None:
        """Retire the current workers (what they owe fails) and start new ones."""
        old, self._pool = self._pool, []
        self.renewals += 1
        for worker in old:
            worker.fail("the decision workers were renewed")
            worker.close()
            worker.process.terminate()
        self._pool = [self._spawn() for _ in range(self.workers)]

    async def stop(self) -> None:
        """Let the workers finish what they were given, then end them."""
        workers, self._pool = self._pool, []
        for worker in workers:
            worker.close()
        await asyncio.to_thread(join_or_kill, [worker.process for worker in workers])
        for worker in workers:
            worker.task.cancel()
        await asyncio.gather(*(worker.task for worker in workers), return_exceptions=True)

    def pids(self) -> list[int]:
        """The worker processes running now (for tests and operators)."""
        return sorted(
            worker.process.pid
            for worker in self._pool
            if worker.process.pid is not None and worker.process.is_alive()
        )


def spawn_connected(
    context: Any, target: Callable[..., None], args: tuple[Any, ...], *, name: str
) -> tuple[BaseProcess, socket.socket]:
    """A started daemon process running ``target(sock, *args)`` and the service's end of
    ``sock`` (its own end is closed here once the child has it)."""
    ours, theirs = socket.socketpair()
    process: BaseProcess = context.Process(
        target=target, args=(theirs, *args), name=name, daemon=True
    )
    try:
        process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def join_or_kill(processes: Sequence[BaseProcess], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Wait up to ``timeout_s`` in all for ``processes`` to end; kill those still running."""
    deadline = time.monotonic() + timeout_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
