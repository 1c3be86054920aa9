"""The projector against fake targets and the in-memory ledger: documents are rendered from
current state and delivered once per content; failures are scheduled, refusals kept."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cayg_publish.adapters.ledger import InMemoryLedger
from cayg_publish.domain.catalog import Applied, Outcome, Rendering, TargetLimits
from cayg_publish.domain.projection import DocumentKind, DocumentRef, DocumentRow, DocumentState
from cayg_publish.domain.retry import (
    RetryPolicy,
    TransportError,
    permanent_failure,
    status_failure,
    transport_failure,
)
from cayg_publish.projector import Projector, Throttle
from unit.publish.publish_factories import TENANT, FakeTarget, change, definition, keys_of

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8, max_in_process_wait=30)
REF = DocumentRef(TENANT, DocumentKind.CREDENTIAL, "MC-SQL")
KINDS = frozenset({DocumentKind.CREDENTIAL})


class Sleeps:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def projector(
    ledger: InMemoryLedger, *targets: FakeTarget, sleeps: Sleeps | None = None
) -> Projector:
    return Projector(ledger, list(targets), policy=POLICY, sleep=sleeps or Sleeps())


async def dirty(ledger: InMemoryLedger, *targets: FakeTarget, seq: int = 1) -> None:
    """Record a definition change, which dirties REF at every target."""
    await ledger.record_change(
        change(definition(name=f"SQL {seq}"), seq=seq), {t.name: t.kinds for t in targets}
    )


async def row(ledger: InMemoryLedger, target: str = "fake") -> DocumentRow:
    [found] = await ledger.documents(target=target)
    return found


async def test_delivers_then_skips_unchanged_content_and_redelivers_changes() -> None:
    ledger, target = InMemoryLedger(), FakeTarget(kinds=KINDS)
    target.set(REF, 1, "first")
    await dirty(ledger, target, seq=1)
    await projector(ledger, target).drain()
    assert len(target.calls) == 1
    assert (await row(ledger)).state is DocumentState.CLEAN

    await dirty(ledger, target, seq=2)  # dirty again, same content: no call
    await projector(ledger, target).drain()
    assert len(target.calls) == 1
    entry = await ledger.get("fake", REF.key)
    assert entry is not None
    assert entry.last_outcome is Outcome.UNCHANGED

    target.set(REF, 3, "second")
    await dirty(ledger, target, seq=3)
    await projector(ledger, target).drain()
    assert len(target.calls) == 2
    assert target.calls[-1][0].body["content"] == "second"


async def test_an_older_rendering_is_never_sent_over_a_newer_one() -> None:
    ledger, target = InMemoryLedger(), FakeTarget(kinds=KINDS)
    target.set(REF, 5, "newer")
    await dirty(ledger, target)
    await projector(ledger, target).drain()

    target.set(REF, 4, "older")  # a renderer that went back in time
    await dirty(ledger, target, seq=2)
    await projector(ledger, target).drain()

    assert [c[0].body["content"] for c in target.calls] == ["newer"]
    entry = await ledger.get("fake", REF.key)
    assert entry is not None
    assert entry.last_outcome is Outcome.STALE


async def test_many_changes_to_one_document_become_one_delivery() -> None:
    ledger, target = InMemoryLedger(), FakeTarget(kinds=KINDS)
    target.set(REF, 10, "current")
    for seq in range(1, 11):
        await dirty(ledger, target, seq=seq)

    await projector(ledger, target).drain()

    assert len(target.calls) == 1


async def test_retries_in_process_with_one_key_honouring_retry_after() -> None:
    ledger, sleeps = InMemoryLedger(), Sleeps()
    target = FakeTarget(
        kinds=KINDS,
        script=[status_failure(429, "slow down", retry_after=7.0), Applied()],
    )
    target.set(REF, 1, "x")
    await dirty(ledger, target)

    await projector(ledger, target, sleeps=sleeps).drain()

    assert len(set(keys_of(target.calls))) == 1
    assert len(target.calls) == 2
    assert sleeps.delays[0] >= 7.0
    assert (await row(ledger)).state is DocumentState.CLEAN


async def test_exhausted_retries_leave_the_document_failing_with_a_next_attempt() -> None:
    ledger = InMemoryLedger()
    target = FakeTarget(
        kinds=KINDS, script=[transport_failure(TransportError.TIMEOUT, "t")] * POLICY.max_attempts
    )
    target.set(REF, 1, "x")
    await dirty(ledger, target)

    await projector(ledger, target).drain()

    failing = await row(ledger)
    assert failing.state is DocumentState.FAILING
    assert failing.attempts == 1
    assert failing.last_error is not None
    assert failing.last_error.startswith("timeout")
    assert failing.next_attempt_ms > failing.updated_ms
    entry = await ledger.get("fake", REF.key)
    assert entry is not None
    assert entry.last_outcome is Outcome.FAILED_RETRYABLE
    assert entry.attempts == POLICY.max_attempts


async def test_a_long_retry_after_is_not_slept_through() -> None:
    ledger, sleeps = InMemoryLedger(), Sleeps()
    target = FakeTarget(kinds=KINDS, script=[status_failure(503, "later", retry_after=3600.0)])
    target.set(REF, 1, "x")
    await dirty(ledger, target)

    await projector(ledger, target, sleeps=sleeps).drain()

    failing = await row(ledger)
    assert sleeps.delays == []
    assert failing.state is DocumentState.FAILING
    assert failing.next_attempt_ms - failing.updated_ms >= 3_500_000


async def test_a_refusal_is_kept_with_the_targets_answer_until_the_data_changes() -> None:
    ledger = InMemoryLedger()
    target = FakeTarget(
        kinds=KINDS,
        script=[permanent_failure("validation", "refused", messages=("Description too short",))],
    )
    target.set(REF, 1, "x")
    await dirty(ledger, target)
    await projector(ledger, target).drain()

    rejected = await row(ledger)
    assert rejected.state is DocumentState.REJECTED
    assert rejected.last_error is not None
    assert "Description too short" in rejected.last_error
    assert len(target.calls) == 1

    await projector(ledger, target).drain()  # not retried on a timer
    assert len(target.calls) == 1

    target.set(REF, 2, "fixed")
    await dirty(ledger, target, seq=2)
    await projector(ledger, target).drain()
    assert (await row(ledger)).state is DocumentState.CLEAN


async def test_unrenderable_data_is_rejected_without_a_call() -> None:
    ledger = InMemoryLedger()
    target = FakeTarget(kinds=KINDS, render_error=ValueError("no webpage"))
    await dirty(ledger, target)

    await projector(ledger, target).drain()

    rejected = await row(ledger)
    assert rejected.state is DocumentState.REJECTED
    assert rejected.last_error is not None
    assert "no webpage" in rejected.last_error
    assert target.calls == []


async def test_missing_inputs_make_a_document_wait_visibly() -> None:
    ledger = InMemoryLedger()
    target = FakeTarget(kinds=KINDS)
    target.waiting[REF.key] = ("learner-unknown", "person:7")
    await dirty(ledger, target)

    await projector(ledger, target).drain()

    waiting = await row(ledger)
    assert waiting.state is DocumentState.WAITING
    assert waiting.waiting_for == "learner-unknown: person:7"
    assert ("fake", TENANT, "waiting", "learner-unknown", 1) in await ledger.document_counts()
    assert target.calls == []


async def test_a_document_with_nothing_to_send_is_clean() -> None:
    ledger, target = InMemoryLedger(), FakeTarget(kinds=KINDS)
    await dirty(ledger, target)  # no content set: renders to nothing

    await projector(ledger, target).drain()

    assert (await row(ledger)).state is DocumentState.CLEAN
    assert target.calls == []


async def test_one_failing_target_does_not_stop_another() -> None:
    ledger = InMemoryLedger()
    broken = FakeTarget(name="broken", kinds=KINDS, script=[permanent_failure("x", "no")])
    healthy = FakeTarget(name="healthy", kinds=KINDS)
    for target in (broken, healthy):
        target.set(REF, 1, "x")
    await dirty(ledger, broken, healthy)

    await projector(ledger, broken, healthy).drain()

    assert (await row(ledger, "broken")).state is DocumentState.REJECTED
    assert (await row(ledger, "healthy")).state is DocumentState.CLEAN


async def test_a_slow_target_does_not_hold_up_a_fast_one() -> None:
    release, fast_done = asyncio.Event(), asyncio.Event()
    slow, fast = FakeTarget(name="slow", kinds=KINDS), FakeTarget(name="fast", kinds=KINDS)
    for target in (slow, fast):
        target.set(REF, 1, "x")

    async def slow_apply(rendering: Rendering, key: str) -> Applied:
        await release.wait()
        return Applied()

    original = fast.apply

    async def fast_apply(rendering: Rendering, key: str) -> Applied:
        result = await original(rendering, key)
        fast_done.set()
        return result

    slow.apply = slow_apply  # type: ignore[method-assign, assignment]
    fast.apply = fast_apply  # type: ignore[method-assign, assignment]
    ledger = InMemoryLedger()
    await dirty(ledger, slow, fast)

    draining = asyncio.ensure_future(projector(ledger, slow, fast).drain())
    await fast_done.wait()  # the fast target finished while the slow one still waits
    assert not draining.done()
    release.set()
    await draining
    assert (await row(ledger, "slow")).state is DocumentState.CLEAN


async def test_a_delivery_longer_than_the_lease_renews_it_and_is_sent_once() -> None:
    slow = FakeTarget(name="slow", kinds=KINDS)
    slow.set(REF, 1, "x")
    original = slow.apply

    async def slow_apply(rendering: Rendering, key: str) -> Applied:
        await asyncio.sleep(0.5)  # five leases long
        return await original(rendering, key)

    slow.apply = slow_apply  # type: ignore[method-assign, assignment]
    ledger = InMemoryLedger()
    await dirty(ledger, slow)
    first = Projector(ledger, [slow], policy=POLICY, lease_ttl_s=0.1)
    second = Projector(ledger, [slow], policy=POLICY, lease_ttl_s=0.1)

    delivering = asyncio.ensure_future(first.drain())
    for _ in range(8):  # another instance keeps looking while the first one sends
        await asyncio.sleep(0.06)
        assert await second.run_once() == 0
    await delivering
    assert len(slow.calls) == 1
    assert (await row(ledger, "slow")).state is DocumentState.CLEAN


async def test_a_delivery_whose_lease_was_taken_over_stops_and_leaves_it_to_the_owner() -> None:
    stalled = FakeTarget(name="stalled", kinds=KINDS)
    stalled.set(REF, 1, "x")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stalled_apply(rendering: Rendering, key: str) -> Applied:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Applied()

    stalled.apply = stalled_apply  # type: ignore[method-assign, assignment]
    ledger = InMemoryLedger()
    await dirty(ledger, stalled)
    first = Projector(ledger, [stalled], policy=POLICY, lease_ttl_s=0.3)
    delivering = asyncio.ensure_future(first.drain())
    await started.wait()
    current = await row(ledger, "stalled")
    # Another instance took the document over, as if this one had stalled past its lease.
    ledger._documents[(current.target, current.ref.key)] = replace(
        current, lease_token="someone-else", lease_expires_ms=current.updated_ms + 3_600_000
    )
    await asyncio.wait_for(cancelled.wait(), 5)
    await delivering
    assert (await row(ledger, "stalled")).lease_token == "someone-else"


async def test_parts_stop_at_the_first_failure_and_resume_where_they_stopped() -> None:
    now = [datetime(2026, 2, 1, 12, 0, tzinfo=UTC)]
    ledger = InMemoryLedger(clock=lambda: now[0])
    down = transport_failure(TransportError.CONNECT, "down")
    target = FakeTarget(
        kinds=KINDS, parts=("tv-1", "tv-2"), script=[Applied(), *[down] * POLICY.max_attempts]
    )
    target.set(REF, 1, "x")
    await dirty(ledger, target)
    await projector(ledger, target).drain()

    assert (await row(ledger)).state is DocumentState.FAILING
    assert [c[0].action for c in target.calls] == ["things/upsert"] + ["parts/upsert"] * 3

    # When the retry is due, what was delivered is skipped and the rest is sent.
    target.calls.clear()
    now[0] += timedelta(hours=1)
    await projector(ledger, target).drain()
    assert [c[0].body["part"] for c in target.calls] == ["tv-1", "tv-2"]
    assert (await row(ledger)).state is DocumentState.CLEAN


async def test_duplicate_target_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Projector(InMemoryLedger(), [FakeTarget(), FakeTarget()])


async def test_throttle_limits_concurrency() -> None:
    throttle = Throttle(TargetLimits(max_concurrency=2, rate_per_second=None))
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def work() -> None:
        nonlocal running, peak
        async with throttle.slot():
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

    tasks = [asyncio.ensure_future(work()) for _ in range(5)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert running == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2


async def test_throttle_rate_is_a_token_bucket() -> None:
    clock = [0.0]
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        clock[0] += delay

    throttle = Throttle(
        TargetLimits(max_concurrency=10, rate_per_second=2.0, burst=3),
        monotonic=lambda: clock[0],
        sleep=fake_sleep,
    )

    for _ in range(5):
        async with throttle.slot():
            pass

    # Three at once (burst), then one every half second.
    assert waits == [pytest.approx(0.5), pytest.approx(0.5)]
