"""The batch runner and its sink against a topic whose ``max.message.bytes`` is below the
producer's record batch size, on a real broker with the services' idempotent producer: the
broker refuses whole batches, yet every output that fits the topic lands (each key's last
copy in order), only the one too large for the topic even alone is dead-lettered, and the
next batch of the loop goes through in smaller batches without a refusal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import pytest
from aiokafka import AIOKafkaProducer

from cayg_shared.batching import (
    MAX_BATCH_BYTES,
    MAX_REQUEST_BYTES,
    BatchRunner,
    Outbound,
    Outcome,
    Partition,
    ProducerSink,
    letter_for,
    replace_producer,
)
from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.service import InboundRecord
from support.topics import create_topics, read_to_end

pytestmark = pytest.mark.integration

TOPIC_MAX_BYTES = 16_384


class _Forward:
    """Forwards each record's value under its key to ``out``."""

    def __init__(self, out: str, dlq: str) -> None:
        self.out = out
        self.dlq = dlq

    def decide(self, record: InboundRecord) -> Outcome:
        return Outcome([Outbound.of(self.out, record.key, record.value or b"", {})], "ok")

    def poison(self, record: InboundRecord, reason: str, detail: str) -> Outcome:
        letter = letter_for(
            record, dlq_topic=self.dlq, stage=Stage.INGEST, reason=reason, detail=detail
        )
        return Outcome([letter], f"rejected:{reason}")


class _Offsets:
    def __init__(self) -> None:
        self.committed: dict[Partition, int] = {}
        self.rewound: dict[Partition, int] = {}

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.committed.update(offsets)

    def rewind(self, partition: Partition, offset: int) -> None:
        self.rewound[partition] = offset


async def _until_settled(
    runner: BatchRunner, sink: ProducerSink, offsets: _Offsets, records: list[InboundRecord]
) -> int:
    """Run ``records`` as the loop would: what a batch leaves unfinished (rewound) is read
    again in the next; how many batches it took."""
    for rounds in range(1, 6):
        offsets.rewound.clear()
        report = await runner.run(records, sink, offsets)
        if not report.rewinds:
            assert report.error is None, report.error
            return rounds
        records = [
            r
            for r in records
            if (r.topic, r.partition) in report.rewinds
            and r.offset >= report.rewinds[(r.topic, r.partition)]
        ]
    raise AssertionError("still unfinished after 5 batches")


def _records(first: int, count: int, *, huge_at: int | None = None) -> list[InboundRecord]:
    records = []
    for n in range(first, first + count):
        size = 20_000 if n == huge_at else 900
        value = b"%06d:" % n + b"v" * size
        key = n % 25  # a key's records on one input partition, as Kafka keeps them
        records.append(InboundRecord("in", key % 3, n, None, b"key-%d" % key, value, ()))
    return records


async def test_batches_over_the_topics_size_land_record_by_record(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    out, dlq = f"{topic_prefix}small", f"{topic_prefix}dlq"
    await create_topics(kafka_bootstrap, [out], configs={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    await create_topics(kafka_bootstrap, [dlq])
    producers: list[AIOKafkaProducer] = []

    def producer() -> AIOKafkaProducer:
        """A producer as the batch loop makes one."""
        made = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
        )
        producers.append(made)
        return made

    async def renew() -> AIOKafkaProducer:
        """The batch loop's renewal: a new producer in place of the last."""
        return await replace_producer(producers[-1], producer())

    runner = BatchRunner(
        _Forward(out, dlq), service="test", stage=Stage.INGEST, dlq_topic=dlq, backoff_s=0
    )
    offsets = _Offsets()
    try:
        first_producer = producer()
        await first_producer.start()
        sink = ProducerSink(first_producer, renew=renew)
        first = _records(0, 300, huge_at=120)
        rounds = await _until_settled(runner, sink, offsets, first)
        assert rounds <= 2, "what the refused batches left unfinished settles when read again"
        middle = len(await read_to_end(kafka_bootstrap, [out]))
        second = _records(300, 300)
        report = await runner.run(second, sink, offsets)
        assert report.error is None, report.error
    finally:
        for made in producers:
            await made.stop()

    assert offsets.committed == {("in", 0): 600, ("in", 1): 598, ("in", 2): 599}
    [letter] = [
        DeadLetter.model_validate_json(m.value or b"")
        for m in await read_to_end(kafka_bootstrap, [dlq])
    ]
    assert (letter.reason, letter.source.offset) == ("too-large-to-forward", 120)

    stored = await read_to_end(kafka_bootstrap, [out])
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for message in stored:
        assert message.key is not None
        assert message.value is not None
        by_key[message.key].append(message.value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for record in first + second:
        if record.offset != 120:
            assert record.key is not None
            assert record.value is not None
            expected[record.key].append(record.value)
    for key, values in expected.items():
        landed = by_key[key]
        last_copies = [v for i, v in enumerate(landed) if v not in landed[i + 1 :]]
        assert [v[:6] for v in last_copies] == [v[:6] for v in values], (
            f"{key!r}: each value, its last copy in order; landed {[v[:6] for v in landed]}"
        )
    # The refusals of the first loop batch taught the sink the topic's size: the second
    # loop batch landed once, without a refusal (nothing of it twice). The producer was
    # replaced after the first refusal, and again after the large record's refusal alone.
    assert len(stored) - middle == 300
    assert len(producers) == 3
