"""The batch runner with its decisions in real worker processes: the same sends, commits and
dead letters as deciding in the service process, a dead worker costing nothing, and no
worker outliving a killed service."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cayg_shared.batching import (
    POOL_MIN_RECORDS,
    BatchRunner,
    DecisionPool,
    Failure,
    Outbound,
    Outcome,
)
from cayg_shared.decide_pool import DecidePool
from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.service import InboundRecord
from support import deciders
from support.deciders import DLQ, OUT

pytestmark = pytest.mark.component

TESTS = Path(__file__).resolve().parents[1]


class Sink:
    """Acknowledges every send; records commits."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.rewound: dict[tuple[str, int], int] = {}

    async def send(self, out: Outbound) -> asyncio.Future[Any]:
        self.sent.append((out.topic, out.value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self, *, final: bool) -> None:
        return None  # every send is acknowledged (or refused) at once

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.committed.update(offsets)

    def rewind(self, partition: tuple[str, int], offset: int) -> None:
        self.rewound[partition] = offset


def batch(values: dict[int, bytes], size: int = 180) -> list[InboundRecord]:
    """``size`` records over three partitions, in consumption order; ``values`` replaces
    the value at those positions."""
    return [
        InboundRecord("in", i % 3, i // 3, 0, b"k%d" % i, values.get(i, b"v%d" % i), ())
        for i in range(size)
    ]


def runner(pool: DecisionPool | None, settled: deciders.Settled) -> BatchRunner:
    return BatchRunner(
        deciders.echo(),
        service="test",
        stage=Stage.INGEST,
        dlq_topic=DLQ,
        backoff_s=0,
        tallies={"settled": settled.tally},
        pool=pool,
    )


@asynccontextmanager
async def running(pool: DecidePool) -> AsyncIterator[DecidePool]:
    """``pool`` started for the block and stopped after it, whatever happens."""
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


def _letters(sink: Sink) -> list[tuple[str, int]]:
    letters = [DeadLetter.model_validate_json(value) for topic, value in sink.sent if topic == DLQ]
    return [(letter.reason, letter.source.offset) for letter in letters]


async def test_a_pool_decides_exactly_as_the_service_process_does() -> None:
    records = batch({7: b"boom", 50: b"twice", 51: b"boom", 120: b"twice"})
    here, there = Sink(), Sink()
    counted_here, counted_there = deciders.Settled(), deciders.Settled()
    pool = DecidePool(deciders.echo, (), workers=2)
    async with running(pool):
        workers = pool.pids()
        report = await runner(pool, counted_there).run(records, there, there)
    await runner(None, counted_here).run(records, here, here)

    assert len(workers) == 2
    assert report.error is None
    assert report.settled == len(records)
    assert [v for t, v in there.sent if t == OUT] == [v for t, v in here.sent if t == OUT]
    assert _letters(there) == _letters(here) == [("internal-error", 2), ("internal-error", 17)]
    assert there.committed == here.committed == {("in", p): 60 for p in range(3)}
    assert counted_there.records() == counted_here.records()
    assert len(counted_there.records()) == len(records) - 2, "letters count as rejected"
    assert all(_gone(pid) for pid in workers), "stop ends the workers"


async def test_a_worker_that_dies_leaves_the_rest_of_the_batch_to_the_service() -> None:
    records = batch({75: b"die"})
    sink, counted = Sink(), deciders.Settled()
    pool = DecidePool(deciders.echo, (), workers=1)
    async with running(pool):
        first = pool.pids()
        with capture_logs() as logs:
            report = await runner(pool, counted).run(records, sink, sink)
        # The next batch goes to a new worker.
        again = await runner(pool, counted).run(batch({}, 120), Sink(), Sink())
        second = pool.pids()

    assert report.error is None
    assert report.settled == len(records)
    assert [v for _, v in sink.sent] == [r.value for r in records], "every record, in order"
    assert sink.committed == {("in", p): 60 for p in range(3)}
    assert pool.renewals == 1
    assert any(e["event"].startswith("decision workers failed") for e in logs)
    assert again.error is None
    assert again.settled == 120
    assert second
    assert set(second).isdisjoint(first)


async def test_decisions_that_cannot_cross_back_fail_their_chunk_not_the_batch() -> None:
    records = batch({130: b"unpicklable"})
    sink, counted = Sink(), deciders.Settled()
    pool = DecidePool(deciders.echo, (), workers=2)
    async with running(pool):
        with capture_logs() as logs:
            report = await runner(pool, counted).run(records, sink, sink)

    assert report.error is None
    assert report.settled == len(records)
    assert [v for _, v in sink.sent] == [r.value for r in records], "every record, in order"
    assert counted.records() == sorted((r.partition, r.offset) for r in records)
    assert pool.renewals == 1
    failed = [e for e in logs if e["event"].startswith("decision workers failed")]
    assert failed
    assert "cannot cross back" in failed[0]["detail"]


async def test_a_renewed_worker_that_cannot_start_fails_its_chunk(tmp_path: Path) -> None:
    pool = DecidePool(deciders.echo_once, (str(tmp_path / "built"),), workers=1)
    async with running(pool):
        first = await pool.decide(batch({}, 5))
        pool.renew()
        with pytest.raises(BrokenProcessPool, match="could not start"):
            await pool.decide(batch({}, 5))

    assert len(first) == 5


async def test_chunks_are_shared_between_the_workers() -> None:
    pool = DecidePool(deciders.stamping, (), workers=2)
    async with running(pool):
        chunks = [batch({}, 10) for _ in range(6)]
        results = await asyncio.gather(*(pool.decide(chunk) for chunk in chunks))
        workers = pool.pids()

    deciders_seen = set()
    for chunk, decided in zip(chunks, results, strict=True):
        assert len(decided) == len(chunk)
        labels = {d.label for d in decided if isinstance(d, Outcome)}
        assert len(labels) == 1, "a chunk is decided by one worker"
        deciders_seen |= labels
    assert deciders_seen == {str(pid) for pid in workers}


class Untouched:
    """A pool that must not be used."""

    def decide(self, records: Sequence[InboundRecord]) -> asyncio.Future[list[Outcome | Failure]]:
        raise AssertionError("a small batch was handed over")

    def renew(self) -> None:
        raise AssertionError("renewed")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_a_small_batch_is_decided_in_the_service_process() -> None:
    sink, counted = Sink(), deciders.Settled()
    records = batch({3: b"boom"}, POOL_MIN_RECORDS - 1)
    report = await runner(Untouched(), counted).run(records, sink, sink)

    assert report.error is None
    assert report.settled == len(records)
    assert _letters(sink) == [("internal-error", 1)]


async def test_a_worker_that_cannot_build_its_handler_fails_the_start() -> None:
    pool = DecidePool(_refusing, (), workers=1)
    with pytest.raises(BrokenProcessPool):
        await pool.start()
    await pool.stop()


def _refusing() -> deciders.Echo:
    raise RuntimeError("no tenants file")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_workers_end_when_their_service_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            from cayg_shared.decide_pool import DecidePool
            from support import deciders

            async def main():
                pool = DecidePool(deciders.echo, (), workers=2)
                await pool.start()
                print("workers", *pool.pids(), flush=True)
                await asyncio.sleep(600)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    service = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert service.stdout is not None
        line = ""
        while not line.startswith("workers "):
            line = service.stdout.readline()
            assert line, "the service ended before its workers started"
        workers = [int(pid) for pid in line.split()[1:]]
        assert len(workers) == 2
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(pid) for pid in workers):
            time.sleep(0.2)
        assert all(_gone(pid) for pid in workers), "a worker outlived its service"
    finally:
        service.kill()
