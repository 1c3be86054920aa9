"""A messy, multi-tenant SIS stream through the whole pipeline ends exactly where the SIS
says it should: every registry resource and every learner's CLR, entity by entity.

The stream and its expected end state come from :mod:`support.messy` (seeded): Ethos from
two publishers, CloudEvents in both modes and backfill rows; forward references,
revisions, revocations after delivery, deletes, duplicates, stale versions and bad
messages, in two phases with the pipeline idle in between. Seeds never share ids, so all
of them run through one pipeline.

CI runs three small seeds. The long mode takes more and larger seeds, e.g.::

    CAYG_MESSY_SEEDS=20 CAYG_MESSY_SIZE=large \\
        uv run pytest tests/e2e/test_messy_stream.py -q
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.messy import SIZES, Expected, MessyStream, messy_stream
from support.pipeline import Pipeline
from support.targets import (
    Targets,
    definition_mismatches,
    parked_mismatches,
    parked_reasons,
    record_mismatches,
)

pytestmark = pytest.mark.e2e

SEEDS = range(1, 1 + int(os.environ.get("CAYG_MESSY_SEEDS", "3")))
SIZE = SIZES[os.environ.get("CAYG_MESSY_SIZE", "small")]
#: Large runs take longer to drain; the timeout only bounds a hung pipeline.
IDLE_TIMEOUT_S = 150.0 * max(1, len(SEEDS) // 3) * (4 if SIZE is SIZES["large"] else 1)


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


async def _start(pipeline: Pipeline) -> None:
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)


async def _end_state_problems(pipeline: Pipeline, expected: Expected) -> list[str]:
    targets = Targets(pipeline.ports, pipeline.tenants)
    parked = await parked_reasons(pipeline.bootstrap, pipeline.topics)
    return [
        *definition_mismatches(expected, targets),
        *record_mismatches(expected, targets),
        *parked_mismatches(expected, parked),
    ]


def _report(streams: list[MessyStream], problems: list[str]) -> str:
    seeds = ", ".join(str(s.seed) for s in streams)
    sent = sum(len(s.phase1) + len(s.phase2) for s in streams)
    return f"{len(problems)} mismatch(es) after seeds {seeds} ({sent} messages):\n" + "\n".join(
        problems
    )


async def test_messy_streams_end_in_the_expected_state(pipeline: Pipeline) -> None:
    streams = [messy_stream(seed, SIZE) for seed in SEEDS]
    expected = Expected()
    for stream in streams:
        expected.merge(stream.expected)
    await _start(pipeline)

    await pipeline.feed(m for s in streams for m in s.phase1)
    await pipeline.wait_idle(timeout_s=IDLE_TIMEOUT_S)
    await pipeline.feed(m for s in streams for m in s.phase2)
    await pipeline.wait_idle(timeout_s=IDLE_TIMEOUT_S)

    problems = await _end_state_problems(pipeline, expected)
    assert not problems, _report(streams, problems)


async def test_messy_stream_ends_the_same_when_publish_is_killed(pipeline: Pipeline) -> None:
    stream = messy_stream(101, SIZE)
    publish = pipeline.services["publish"]
    await _start(pipeline)

    await pipeline.feed(stream.phase1)
    await pipeline.wait_idle(timeout_s=IDLE_TIMEOUT_S)
    # A crash between the phases, and another one while phase 2 is being worked through.
    publish.kill()
    await asyncio.to_thread(publish.start)
    half = len(stream.phase2) // 2
    await pipeline.feed(stream.phase2[:half])
    publish.kill()
    await pipeline.feed(stream.phase2[half:])
    await asyncio.to_thread(publish.start)
    await pipeline.wait_idle(timeout_s=IDLE_TIMEOUT_S)

    assert publish.starts == 3
    problems = await _end_state_problems(pipeline, stream.expected)
    assert not problems, _report([stream], problems)
