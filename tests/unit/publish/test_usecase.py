"""The delivery use-case against fake targets and the in-memory ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cayg_publish.domain import (
    Applied,
    DeliveryReport,
    DeliveryStatus,
    Outcome,
    Rendering,
    TargetLimits,
)
from cayg_publish.ledger import InMemoryLedger
from cayg_publish.retry import (
    RetryPolicy,
    TransportError,
    permanent_failure,
    status_failure,
    transport_failure,
)
from cayg_publish.usecase import Throttle, ThrottleBook, deliver
from cayg_shared.schema import Change
from unit.publish.publish_factories import FakeTarget, change, definition, keys_of

pytestmark = pytest.mark.unit

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8, max_in_process_wait=30)


class Sleeps:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def run(
    targets: list[FakeTarget],
    ledger: InMemoryLedger,
    *changes_: Change,
    sleeps: Sleeps | None = None,
) -> list[DeliveryReport]:
    reports = []
    for item in changes_:
        reports.append(
            await deliver(
                item,
                targets,
                ledger,
                throttles=ThrottleBook(),
                policy=POLICY,
                clock=lambda: NOW,
                sleep=sleeps or Sleeps(),
                random=lambda: 1.0,
            )
        )
    return reports


async def test_applies_then_skips_unchanged_and_stale() -> None:
    target, ledger = FakeTarget(), InMemoryLedger()
    first = change(definition(), seq=2)
    same = change(definition(), seq=3)
    older = change(definition(name="Microcredential in SQL"), seq=1)

    reports = await run([target], ledger, first, same, older)

    statuses = [r.for_target("fake").status for r in reports]
    assert statuses == [DeliveryStatus.APPLIED, DeliveryStatus.UNCHANGED, DeliveryStatus.STALE]
    assert len(target.calls) == 1
    entry = await ledger.get("fake", str(first.entity_key))
    assert entry is not None
    assert entry.applied_version == same.source_version
    assert entry.remote_url == "https://fake/x"


async def test_every_call_carries_the_same_key_for_the_same_delivery() -> None:
    target = FakeTarget(script=[status_failure(503, "busy"), status_failure(502, "bad gateway")])
    sleeps = Sleeps()

    [report] = await run([target], InMemoryLedger(), change(definition()), sleeps=sleeps)

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.APPLIED
    assert outcome.attempts == 3
    keys = keys_of(target.calls)
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert outcome.idempotency_key == keys[0]
    assert sleeps.delays == [0.5, 1.0]


async def test_retry_after_is_honoured_in_process() -> None:
    target = FakeTarget(script=[status_failure(429, "slow down", retry_after=7.0)])
    sleeps = Sleeps()

    [report] = await run([target], InMemoryLedger(), change(definition()), sleeps=sleeps)

    assert report.for_target("fake").status is DeliveryStatus.APPLIED
    assert sleeps.delays == [7.0]


async def test_exhausted_retries_report_retry_later_and_record_the_failure() -> None:
    target = FakeTarget(script=[transport_failure(TransportError.TIMEOUT, "no answer")] * 3)
    ledger = InMemoryLedger()
    item = change(definition())

    [report] = await run([target], ledger, item)

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.RETRY_LATER
    assert outcome.reason == "timeout"
    assert outcome.not_before == NOW
    assert outcome.attempts == 3
    entry = await ledger.get("fake", str(item.entity_key))
    assert entry is not None
    assert entry.last_outcome is Outcome.FAILED_RETRYABLE
    assert entry.attempts == 3
    assert entry.claim_version is None
    assert report.needs_retry == (outcome,)


async def test_long_retry_after_is_handed_to_the_retry_topics() -> None:
    target = FakeTarget(script=[status_failure(503, "maintenance", retry_after=900.0)])
    sleeps = Sleeps()

    [report] = await run([target], InMemoryLedger(), change(definition()), sleeps=sleeps)

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.RETRY_LATER
    assert outcome.not_before == NOW + timedelta(seconds=900)
    assert sleeps.delays == []
    assert len(target.calls) == 1


async def test_permanent_failure_is_reported_with_the_targets_answer() -> None:
    failure = permanent_failure(
        "validation",
        "refused",
        status=200,
        messages=("Description must be at least 15 characters",),
        response={"status": 200, "body": {"Successful": False}},
    )
    target = FakeTarget(script=[failure])
    ledger = InMemoryLedger()
    item = change(definition())

    [report] = await run([target], ledger, item)

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.PERMANENT
    assert outcome.reason == "validation"
    assert outcome.response == {
        "status": 200,
        "body": {"Successful": False},
        "messages": ["Description must be at least 15 characters"],
    }
    assert len(target.calls) == 1
    entry = await ledger.get("fake", str(item.entity_key))
    assert entry is not None
    assert entry.last_outcome is Outcome.FAILED_PERMANENT


async def test_targets_that_do_not_take_a_change_are_not_applicable() -> None:
    target = FakeTarget(applies_to=lambda c: False)

    [report] = await run([target], InMemoryLedger(), change(definition()))

    assert report.for_target("fake").status is DeliveryStatus.NOT_APPLICABLE
    assert report.ok


async def test_unrenderable_change_is_permanent_without_a_call() -> None:
    target = FakeTarget(render_error=ValueError("no webpage"))

    [report] = await run([target], InMemoryLedger(), change(definition()))

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.PERMANENT
    assert outcome.reason == "render"
    assert "no webpage" in (outcome.detail or "")
    assert target.calls == []


async def test_a_busy_entity_is_retried_later_not_sent() -> None:
    ledger = InMemoryLedger(clock=lambda: NOW)
    target = FakeTarget()
    older, newer = change(definition(), seq=1), change(definition(name="SQL Databases II"), seq=2)
    [rendering] = await target.render(older)
    await ledger.decide("fake", str(older.entity_key), older.source_version, rendering.content_hash)

    [report] = await run([target], ledger, newer)

    outcome = report.for_target("fake")
    assert outcome.status is DeliveryStatus.RETRY_LATER
    assert outcome.reason == "busy"
    assert outcome.not_before is not None
    assert target.calls == []


async def test_one_failing_target_does_not_stop_another() -> None:
    good = FakeTarget(name="good")
    bad = FakeTarget(name="bad", script=[permanent_failure("http-400", "bad")])

    [report] = await run([good, bad], InMemoryLedger(), change(definition()))

    assert report.for_target("good").status is DeliveryStatus.APPLIED
    assert report.for_target("bad").status is DeliveryStatus.PERMANENT
    assert not report.ok


async def test_a_slow_target_does_not_hold_up_a_fast_one() -> None:
    release = asyncio.Event()
    fast_done = asyncio.Event()

    async def slow_apply(rendering: Rendering, key: str) -> Applied:
        await release.wait()
        return Applied()

    slow = FakeTarget(name="slow")
    slow.apply = slow_apply  # type: ignore[method-assign, assignment]
    fast = FakeTarget(name="fast")
    original = fast.apply

    async def fast_apply(rendering: Rendering, key: str) -> Applied:
        result = await original(rendering, key)
        fast_done.set()
        return result

    fast.apply = fast_apply  # type: ignore[method-assign, assignment]

    delivery = asyncio.ensure_future(run([slow, fast], InMemoryLedger(), change(definition())))
    await fast_done.wait()  # the fast target finished while the slow one still waits
    assert not delivery.done()
    release.set()
    [report] = await delivery
    assert report.ok


async def test_duplicate_target_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        await run([FakeTarget(), FakeTarget()], InMemoryLedger(), change(definition()))


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


async def test_parts_are_delivered_in_order_and_kept_apart_in_the_ledger() -> None:
    target = FakeTarget(parts=("tv-1", "tv-2"), script=[Applied(), status_failure(503, "x")])
    ledger = InMemoryLedger()
    item = change(definition())
    policy_one_attempt = RetryPolicy(max_attempts=1)

    first = await deliver(
        item, [target], ledger, throttles=ThrottleBook(), policy=policy_one_attempt
    )
    second = await deliver(
        item, [target], ledger, throttles=ThrottleBook(), policy=policy_one_attempt
    )
    third = await deliver(item, [target], ledger, throttles=ThrottleBook())

    assert first.for_target("fake").status is DeliveryStatus.RETRY_LATER
    assert second.for_target("fake").status is DeliveryStatus.APPLIED
    assert third.for_target("fake").status is DeliveryStatus.UNCHANGED
    # main, tv-1 (failed), then tv-1 again and tv-2; the main part was not resent.
    assert [r.part for r, _ in target.calls] == [None, "tv-1", "tv-1", "tv-2"]
    for part in ("", "|tv-1", "|tv-2"):
        entry = await ledger.get("fake", f"{item.entity_key}{part}")
        assert entry is not None
        assert entry.applied_version == item.source_version
        assert entry.last_outcome is Outcome.UNCHANGED  # the third delivery skipped them all
