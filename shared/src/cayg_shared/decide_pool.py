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

Only plain data crosses: the consumed records (:class:`InboundRecord`) one way, an
:class:`Outcome` or a :class:`Failure` per record the other. Each worker builds its own
handler once, in the pool's initializer, from a module-level factory and its (picklable)
arguments, e.g. normalize's topics and tenant registry.

When the pool itself fails (a worker killed, a result that cannot be pickled) the runner
decides the rest of the batch in its own process and calls :meth:`DecidePool.renew`: a
record that kills a worker is then handled as it would be without a pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Final

from cayg_shared.batching import Failure, Outcome, RecordHandler, tune_garbage_collector
from cayg_shared.logging import get_logger
from cayg_shared.service import InboundRecord

log = get_logger("cayg.decide_pool")

#: How often a worker checks that the service process that started it is still there.
PARENT_CHECK_S: Final = 1.0

#: The handler of this worker process (built once, by the pool's initializer).
_handler: RecordHandler | None = None


def _start_worker(factory: Callable[..., RecordHandler], args: tuple[Any, ...]) -> None:
    """Pool initializer: ignore Ctrl-C, follow the parent, build the handler."""
    global _handler  # noqa: PLW0603 - one handler per worker process, by design
    # Ctrl-C reaches the whole process group; the service shuts its pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    _follow(parent.pid if parent is not None and parent.pid else os.getppid())
    _handler = factory(*args)
    tune_garbage_collector()


def _follow(parent: int) -> None:
    """Exit once ``parent`` is gone: a service killed outright (SIGKILL, OOM) never shuts
    its pool down, and its workers, re-parented, would otherwise wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="cayg-decide-parent-watch", daemon=True).start()


def _ready() -> int:
    """A task that proves the initializer ran; the worker's pid."""
    if _handler is None:
        raise RuntimeError("decision worker started without its handler")
    return os.getpid()


def decide_chunk(
    handler: RecordHandler, records: Sequence[InboundRecord]
) -> list[Outcome | Failure]:
    """Each record's outcome, or the failure its decision raised (never raises itself)."""
    results: list[Outcome | Failure] = []
    for record in records:
        try:
            results.append(handler.decide(record))
        except Exception as error:  # noqa: BLE001 - reported back as that record's failure
            results.append(Failure.of(error))
    return results


def _decide_in_worker(records: list[InboundRecord]) -> list[Outcome | Failure]:
    if _handler is None:
        raise RuntimeError("decision worker started without its handler")
    return decide_chunk(_handler, records)


class DecidePool:
    """Worker processes deciding chunks of records (``spawn``ed: the service process runs
    threads and an event loop, which a fork would copy mid-flight).

    ``await start()`` before the first batch (it waits until every worker has built its
    handler, so a service is ready only with its workers), ``await stop()`` at shutdown.
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
        self._executor: ProcessPoolExecutor | None = None

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.factory, self.args),
        )

    async def start(self) -> None:
        """Start every worker and wait until each has built its handler; a worker that
        cannot build one fails the start."""
        if self._executor is None:
            self._executor = self._new_executor()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ready) for _ in range(self.workers))
        )
        # The executor's processes, not the pids that answered: one worker may answer all.
        log.info("decision workers started", workers=self.workers, pids=self.pids())

    def decide(self, records: Sequence[InboundRecord]) -> asyncio.Future[list[Outcome | Failure]]:
        """Start deciding ``records`` in a worker; the future fails if the pool did."""
        if self._executor is None:
            self._executor = self._new_executor()
        try:
            submitted = self._executor.submit(_decide_in_worker, list(records))
        except Exception as error:  # noqa: BLE001 - a broken pool refuses at once
            failed: asyncio.Future[list[Outcome | Failure]] = (
                asyncio.get_running_loop().create_future()
            )
            failed.set_exception(error)
            return failed
        return asyncio.wrap_future(submitted)

    def renew(self) -> None:
        """Retire the current workers and start new ones with the next chunk."""
        old, self._executor = self._executor, self._new_executor()
        self.renewals += 1
        if old is not None:
            # Not ``cancel_futures``: the broken executor fails its queued tasks itself.
            old.shutdown(wait=False)

    async def stop(self) -> None:
        """Let the workers finish what they run, then end them."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes running now (for tests and operators)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(pid for pid, process in processes.items() if process.is_alive())
