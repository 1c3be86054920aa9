"""``cayg backfill`` chunks are bounded in bytes as well as in records: a chunk is held
until the broker acknowledged it, and big records must not make it big."""

from __future__ import annotations

import uuid

import pytest

from cayg_ops import backfill
from cayg_ops.backfill import Checked, Position, PreparedRecord, Problem, chunked
from cayg_shared.schema import CaygEventType

pytestmark = pytest.mark.unit


def _record(line: int, size: int) -> Checked:
    record = PreparedRecord(
        line=line,
        record_id=f"r{line}",
        type=CaygEventType.AWARD_ISSUED,
        key=b"k",
        value=b"x" * size,
        event_id=uuid.uuid4(),
        approach=None,
    )
    return Checked(record, Position(line * 100, line))


def test_a_chunk_ends_when_its_values_reach_the_byte_budget() -> None:
    items = [_record(line, 40) for line in range(1, 8)]

    chunks = list(chunked(items, 500, skip_invalid=False, max_bytes=100))

    assert [[r.line for r in c.records] for c in chunks] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [c.end for c in chunks] == [Position(300, 3), Position(600, 6), Position(700, 7)]


def test_a_record_over_the_budget_goes_alone() -> None:
    items = [_record(1, 10), _record(2, 500), _record(3, 10)]

    chunks = list(chunked(items, 500, skip_invalid=False, max_bytes=100))

    assert [[r.line for r in c.records] for c in chunks] == [[1, 2], [3]]


def test_skipped_rows_count_no_bytes() -> None:
    items = [
        _record(1, 60),
        Checked(Problem(2, "wrong"), Position(200, 2)),
        _record(3, 30),
        _record(4, 30),
    ]

    chunks = list(chunked(items, 500, skip_invalid=True, max_bytes=100))

    assert [([r.line for r in c.records], c.skipped) for c in chunks] == [([1, 3, 4], 1)]


def test_the_default_budget_leaves_small_records_to_the_batch_size() -> None:
    # 500 of the benchmark's ~400-byte records are far under the budget.
    items = [_record(line, 400) for line in range(1, 1001)]

    chunks = list(chunked(items, 500, skip_invalid=False))

    assert [len(c.records) for c in chunks] == [500, 500]
    assert backfill.CHUNK_BYTES > 500 * 400


def test_records_at_the_tenant_limit_make_chunks_of_a_few() -> None:
    megabyte = 1_048_576
    items = [_record(line, megabyte) for line in range(1, 21)]

    chunks = list(chunked(items, 500, skip_invalid=False))

    assert [len(c.records) for c in chunks] == [8, 8, 4]
    assert all(sum(len(r.value) for r in c.records) <= backfill.CHUNK_BYTES for c in chunks)
