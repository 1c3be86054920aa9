"""The batch runner's settling rules with its own ports faked: what is committed, what is
rewound, what becomes a dead letter, for batches spanning several partitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from structlog.testing import capture_logs

from cayg_shared.batching import BatchRunner, Outbound, Outcome, Partition
from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.service import InboundRecord
from support import deciders

pytestmark = pytest.mark.component

DLQ = deciders.DLQ
OUT = deciders.OUT


def record(partition: int, offset: int, value: bytes = b"ok") -> InboundRecord:
    return InboundRecord("in", partition, offset, 0, b"key", value, ())


class Echo(deciders.Echo):
    """The support handler, with what it settled at hand."""

    def __init__(self) -> None:
        self.counted = deciders.Settled()

    @property
    def settled(self) -> list[tuple[int, int]]:
        return self.counted.records()

    def poison(self, rec: InboundRecord, reason: str, detail: str) -> Outcome:
        if rec.value == b"boom" and reason == "never":
            raise AssertionError
        return super().poison(rec, reason, detail)


class Broker:
    """Acknowledges every send unless told to fail a value, at once or at acknowledgement."""

    def __init__(self) -> None:
        self.sent: list[Outbound] = []
        self.fail_ack: dict[bytes, BaseException] = {}
        self.fail_send: dict[bytes, BaseException] = {}
        self.committed: dict[Partition, int] = {}
        self.rewound: dict[Partition, int] = {}

    async def send(self, out: Outbound) -> asyncio.Future[Any]:
        if out.value in self.fail_send:
            raise self.fail_send[out.value]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        error = self.fail_ack.get(out.value)
        if error is not None:
            future.set_exception(error)
        else:
            self.sent.append(out)
            future.set_result(None)
        return future

    async def flush(self, *, final: bool) -> None:
        return None  # every send is acknowledged (or refused) at once

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.committed.update(offsets)

    def rewind(self, partition: Partition, offset: int) -> None:
        self.rewound[partition] = offset


def runner(handler: Echo) -> BatchRunner:
    return BatchRunner(
        handler,
        service="test",
        stage=Stage.INGEST,
        dlq_topic=DLQ,
        backoff_s=0,
        tallies={"settled": handler.counted.tally},
    )


async def test_a_clean_batch_commits_each_partition_once_past_its_last_record() -> None:
    handler, broker = Echo(), Broker()
    batch = [record(0, 10), record(1, 3, b"twice"), record(0, 11), record(1, 4)]
    with capture_logs() as logs:
        report = await runner(handler).run(batch, broker, broker)

    assert broker.committed == {("in", 0): 12, ("in", 1): 5}
    assert broker.rewound == {}
    assert len(broker.sent) == 5
    assert report.settled == 4
    assert sorted(handler.settled) == [(0, 10), (0, 11), (1, 3), (1, 4)]
    [summary] = [entry for entry in logs if entry["event"] == "batch settled"]
    assert (summary["records"], summary["outcomes"], summary["tenants"]) == (4, {"ok": 4}, {"t": 4})


async def test_a_broker_failure_commits_the_finished_prefix_and_rewinds_the_rest() -> None:
    handler, broker = Echo(), Broker()
    broker.fail_ack[b"stuck"] = KafkaTimeoutError()
    batch = [record(0, 10), record(0, 11, b"stuck"), record(0, 12), record(1, 3)]
    report = await runner(handler).run(batch, broker, broker)

    assert broker.committed == {("in", 0): 11, ("in", 1): 4}
    assert broker.rewound == {("in", 0): 11}, "read again from the first unfinished record"
    assert isinstance(report.error, KafkaTimeoutError)
    assert report.unfinished == 2
    assert sorted(handler.settled) == [(0, 10), (1, 3)], "nothing counted that will be re-read"


async def test_a_producer_that_refuses_at_once_leaves_later_records_unsent() -> None:
    handler, broker = Echo(), Broker()
    broker.fail_send[b"down"] = ConnectionError("no broker")
    batch = [record(0, 1), record(1, 7, b"down"), record(0, 2)]
    report = await runner(handler).run(batch, broker, broker)

    assert broker.committed == {("in", 0): 2}
    assert broker.rewound == {("in", 1): 7, ("in", 0): 2}
    assert isinstance(report.error, ConnectionError)


async def test_a_record_that_raises_is_dead_lettered_and_its_partition_moves_on() -> None:
    handler, broker = Echo(), Broker()
    batch = [record(0, 1), record(0, 2, b"boom"), record(0, 3)]
    report = await runner(handler).run(batch, broker, broker)

    assert report.error is None
    assert broker.committed == {("in", 0): 4}
    [letter] = [DeadLetter.model_validate_json(o.value) for o in broker.sent if o.topic == DLQ]
    assert (letter.reason, letter.detail) == ("internal-error", "RuntimeError: a bug")
    assert [o.value for o in broker.sent if o.topic == OUT] == [b"ok", b"ok"]


async def test_a_record_the_broker_refuses_for_its_size_is_dead_lettered() -> None:
    handler, broker = Echo(), Broker()
    broker.fail_ack[b"huge"] = MessageSizeTooLargeError()
    batch = [record(0, 5, b"huge"), record(0, 6)]
    report = await runner(handler).run(batch, broker, broker)

    assert report.error is None
    assert broker.committed == {("in", 0): 7}
    [letter] = [DeadLetter.model_validate_json(o.value) for o in broker.sent if o.topic == DLQ]
    assert letter.reason == "too-large-to-forward"
    assert letter.source.offset == 5


async def test_when_the_service_cannot_even_build_its_letter_a_plain_one_is_sent() -> None:
    class Broken(Echo):
        def poison(self, rec: InboundRecord, reason: str, detail: str) -> Outcome:
            raise ValueError("no letter \ud800 today")

    broker = Broker()
    await runner(Broken()).run([record(2, 9, b"boom")], broker, broker)

    [letter] = [DeadLetter.model_validate_json(o.value) for o in broker.sent]
    assert letter.reason == "internal-error"
    assert "RuntimeError: a bug" in letter.detail
    assert "ValueError: no letter \\ud800 today" in letter.detail, "made encodable, not lost"
    assert broker.committed == {("in", 2): 10}


async def test_a_size_refused_record_whose_letter_cannot_be_sent_is_read_again() -> None:
    class Flaky(Broker):
        async def send(self, out: Outbound) -> asyncio.Future[Any]:
            if out.topic == DLQ:
                raise ConnectionError("broker gone")
            return await super().send(out)

    handler, broker = Echo(), Flaky()
    broker.fail_ack[b"huge"] = MessageSizeTooLargeError()
    batch = [record(0, 5), record(0, 6, b"huge"), record(1, 2, b"huge")]
    report = await runner(handler).run(batch, broker, broker)

    assert broker.committed == {("in", 0): 6}, "committed up to the records, not past them"
    assert broker.rewound == {("in", 0): 6, ("in", 1): 2}
    assert isinstance(report.error, ConnectionError)


class TopicLimit(Broker):
    """Writes what was sent as one record batch at each flush, and refuses (for its size) a
    batch of more than ``limit`` bytes of values to :data:`OUT`, as a broker does over a
    topic's ``max.message.bytes`` (the dead-letter topic takes any batch)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.batch: list[tuple[Outbound, asyncio.Future[Any]]] = []
        self.batches: list[list[bytes]] = []

    async def send(self, out: Outbound) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batch.append((out, future))
        return future

    async def flush(self, *, final: bool) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        self.batches.append([out.value for out, _ in batch])
        refused = sum(len(out.value) for out, _ in batch if out.topic == OUT) > self.limit
        for out, future in batch:
            if refused:
                future.set_exception(MessageSizeTooLargeError("over max.message.bytes"))
            else:
                self.sent.append(out)
                future.set_result(None)


def _last_landed(sent: list[Outbound]) -> list[bytes]:
    """What was written, each value where it landed last (duplicates are recognised)."""
    values = [out.value for out in sent if out.topic == OUT]
    return [v for i, v in enumerate(values) if v not in values[i + 1 :]]


async def test_a_batch_over_its_topics_size_is_sent_again_one_record_per_batch() -> None:
    handler, broker = Echo(), TopicLimit(limit=250)
    sizes = [50, 50, 50, 100, 100, 100, 50, 50, 50]  # chunks of 3: 150, 300 (refused), 150
    values = [b"%02d" % n + b"." * (size - 2) for n, size in enumerate(sizes)]
    batch = [record(n % 2, 10 + n, value) for n, value in enumerate(values)]
    report = await BatchRunner(
        handler, service="test", stage=Stage.INGEST, dlq_topic=DLQ, backoff_s=0, send_every=3
    ).run(batch, broker, broker)

    assert report.error is None
    assert broker.batches[:3] == [values[0:3], values[3:6], values[6:9]]
    assert broker.batches[3:] == [[v] for v in values[3:]], "from the refused on, one by one"
    assert [o for o in broker.sent if o.topic == DLQ] == [], "nothing dead-lettered"
    assert _last_landed(broker.sent) == values, "the last copy of each in consumption order"
    assert broker.committed == {("in", 0): 19, ("in", 1): 18}


async def test_a_record_over_its_topics_size_even_alone_is_dead_lettered() -> None:
    handler, broker = Echo(), TopicLimit(limit=250)
    values = [b"a" * 100, b"b" * 300, b"c" * 100]
    batch = [record(0, 1 + n, value) for n, value in enumerate(values)]
    report = await runner(handler).run(batch, broker, broker)

    assert report.error is None
    assert _last_landed(broker.sent) == [values[0], values[2]]
    [letter] = [DeadLetter.model_validate_json(o.value) for o in broker.sent if o.topic == DLQ]
    assert (letter.reason, letter.source.offset) == ("too-large-to-forward", 2)
    assert broker.committed == {("in", 0): 4}
