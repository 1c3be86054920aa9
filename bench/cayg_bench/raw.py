"""The raw limit: how fast plain aiokafka moves the same records on the same broker.

Two consume→produce passthroughs, at-least-once like the services (nothing committed
before its output is acknowledged), copying key, value and headers unchanged:

* **batched** — ``getmany`` (up to :data:`BATCH` records) → send every record without
  awaiting → await all acks → one commit per batch;
* **per record** — await each send, commit each record (what a handler that awaits its
  publish and lets the framework commit per message costs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from cayg_bench.kafka import Progress, create_topics, end_offsets, producer

#: Records per ``getmany``: the services' own batch size, so both are timed alike.
BATCH = 500


async def passthrough(
    bootstrap: str,
    sources: Sequence[str],
    target: str,
    group: str,
    *,
    batched: bool,
    timeout_s: float,
) -> dict[str, Any]:
    """Move everything now on ``sources`` to ``target``; records/s from the first commit to
    the last (as for the services: start-up and group join excluded)."""
    ends = await end_offsets(bootstrap, sources)
    total = sum(ends.values())
    await create_topics(bootstrap, [target])
    consumer = AIOKafkaConsumer(
        *sources,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    out = producer(bootstrap, linger_ms=5 if batched else 0)
    await out.start()
    await consumer.start()
    started = time.monotonic()
    cpu_started = time.process_time()
    moved = 0
    first: tuple[float, int] | None = None
    position: dict[TopicPartition, int] = {}
    try:
        while any(position.get(tp, 0) < end for tp, end in ends.items()):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"raw passthrough moved {moved} of {total} in {timeout_s} s")
            batch = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if batched:
                pending = [
                    await out.send(target, r.value, key=r.key, headers=list(r.headers))
                    for records in batch.values()
                    for r in records
                ]
                await asyncio.gather(*pending)
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
                if offsets:
                    await consumer.commit(offsets)
                moved += len(pending)
                if first is None and pending:
                    first = (time.monotonic(), moved)
                position.update(offsets)
            else:
                for tp, records in batch.items():
                    for r in records:
                        await out.send_and_wait(target, r.value, key=r.key, headers=list(r.headers))
                        await consumer.commit({tp: r.offset + 1})
                        position[tp] = r.offset + 1
                        moved += 1
                        if first is None:
                            first = (time.monotonic(), moved)
        done = time.monotonic()
        cpu_used = time.process_time() - cpu_started
    finally:
        await consumer.stop()
        await out.stop()
    progress = Progress(
        total, total - moved, first[0] if first else None, first[1] if first else 0, done
    )
    rate, seconds = progress.rate(started)
    return {
        "records": moved,
        "seconds": round(seconds, 3),
        "records_per_s": round(rate, 1),
        "connect_to_done_s": round(done - started, 3),
        "cpu_us_per_record": round(cpu_used / max(1, moved) * 1e6, 1),
    }
