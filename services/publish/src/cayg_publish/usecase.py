"""Deliver one change to every target of its tenant.

For each target, concurrently: render → ledger decision → call (throttled, with in-process
retries and backoff) → ledger record. The result is a :class:`DeliveryReport` the Kafka
handler routes: done, retry topic (with a not-before time), or DLQ.

A slow or failing target never holds up the others: each target runs in its own task, and
concurrency and rate limits are per target (:class:`Throttle`). Ledger errors are the one
thing that is raised rather than reported: without a durable record the handler must not
acknowledge the message.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cayg_publish.domain import (
    Applied,
    DecisionKind,
    DeliveryReport,
    DeliveryStatus,
    LedgerEntry,
    Outcome,
    Rendering,
    Target,
    TargetFailure,
    TargetLimits,
    TargetOutcome,
    Version,
)
from cayg_publish.idempotency import idempotency_key
from cayg_publish.ledger.port import Ledger
from cayg_publish.retry import (
    Failure,
    FailureKind,
    RetryPolicy,
    earliest_retry,
    in_process_delay,
)
from cayg_shared.schema import Change

__all__ = [
    "DeliveryReport",
    "DeliveryStatus",
    "TargetOutcome",
    "Throttle",
    "ThrottleBook",
    "deliver",
]

#: Exceptions a renderer raises for a change it cannot render (bad or inconsistent data).
_RENDER_ERRORS = (ValueError, TypeError, LookupError)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Throttle:
    """Concurrency limit (semaphore) and rate limit (token bucket) of one target.

    Waiting for a rate token happens before taking a concurrency slot, so a caller waiting
    for the rate never occupies a slot another caller could use.
    """

    def __init__(
        self,
        limits: TargetLimits,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrency)
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = float(limits.burst)
        self._refilled_at = monotonic()
        # Serializes token takers: first come, first served.
        self._bucket_lock = asyncio.Lock()

    async def _take_token(self) -> None:
        rate = self.limits.rate_per_second
        if rate is None:
            return
        async with self._bucket_lock:
            while True:
                now = self._monotonic()
                elapsed = max(0.0, now - self._refilled_at)
                self._tokens = min(float(self.limits.burst), self._tokens + elapsed * rate)
                self._refilled_at = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / rate)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a call slot: a rate token, then one of ``max_concurrency`` slots."""
        await self._take_token()
        async with self._slots:
            yield


class ThrottleBook:
    """One :class:`Throttle` per target name, made on first use from the target's limits.

    Create one per process and pass it to every :func:`deliver` call: limits only hold
    across deliveries that share the book.
    """

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._throttles: dict[str, Throttle] = {}
        self._monotonic = monotonic
        self._sleep = sleep

    def for_target(self, target: Target) -> Throttle:
        """The throttle of ``target``."""
        throttle = self._throttles.get(target.name)
        if throttle is None:
            throttle = Throttle(target.limits, monotonic=self._monotonic, sleep=self._sleep)
            self._throttles[target.name] = throttle
        return throttle


async def deliver(
    change: Change,
    targets: Sequence[Target],
    ledger: Ledger,
    *,
    throttles: ThrottleBook,
    policy: RetryPolicy | None = None,
    clock: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> DeliveryReport:
    """Deliver ``change`` to each of ``targets`` (the tenant's targets) and report per target.

    Outcomes: ``applied``, ``unchanged`` / ``stale`` (no call), ``not-applicable`` (the
    target takes no such change), ``retry-later`` (with ``not_before`` when the target or
    a competing delivery says when), ``permanent`` (reason and the target's response).

    The change is first recorded in the ledger's catalog (reference data for rendering).
    Raises :class:`~cayg_publish.ledger.LedgerError` if the ledger fails (after every
    target's delivery has finished, so nothing is left half-done in the background).
    """
    retry_policy = policy or RetryPolicy()
    entity_key = str(change.entity_key)
    version = change.source_version
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique, got {names}")
    # Renderers read reference data (an award's definition, a learner's other awards, the
    # last state of a deleted definition): record what this change says first.
    await ledger.catalog.remember(change)

    deliveries = [
        _Delivery(
            change=change,
            target=target,
            ledger=ledger,
            entity_key=entity_key,
            version=version,
            throttle=throttles.for_target(target),
            policy=retry_policy,
            clock=clock,
            sleep=sleep,
            random=random,
        )
        for target in targets
    ]
    results = await asyncio.gather(*(d.run() for d in deliveries), return_exceptions=True)
    outcomes: list[TargetOutcome] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        outcomes.append(result)
    return DeliveryReport(entity_key=entity_key, version=version, outcomes=tuple(outcomes))


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One change on its way to one target."""

    change: Change
    target: Target
    ledger: Ledger
    entity_key: str
    version: Version
    throttle: Throttle
    policy: RetryPolicy
    clock: Callable[[], datetime]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]

    @property
    def name(self) -> str:
        return self.target.name

    async def run(self) -> TargetOutcome:
        try:
            renderings = await self.target.render(self.change)
        except TargetFailure as exc:
            return await self._failed(
                self.entity_key, self.version, exc.failure, "", attempts=0, key=None
            )
        except _RENDER_ERRORS as exc:
            failure = Failure(
                kind=FailureKind.PERMANENT,
                reason="render",
                detail=f"cannot render for {self.name}: {type(exc).__name__}: {exc}"[:1000],
            )
            return await self._failed(
                self.entity_key, self.version, failure, "", attempts=0, key=None
            )
        if not renderings:
            return TargetOutcome(target=self.name, status=DeliveryStatus.NOT_APPLICABLE)
        outcomes: list[TargetOutcome] = []
        for rendering in renderings:
            outcome = await self._deliver_part(rendering)
            outcomes.append(outcome)
            if not outcome.done:
                # Later parts may depend on this one (a transfer value names its
                # credential); the whole change comes back through the retry path, and the
                # parts already delivered are skipped as unchanged then.
                break
        return _combine(outcomes)

    async def _deliver_part(self, rendering: Rendering) -> TargetOutcome:
        ledger_key = rendering.ledger_key(self.entity_key)
        version = rendering.subject_version or self.version
        key = idempotency_key(self.name, ledger_key, version, rendering.content_hash)
        decision = await self.ledger.decide(self.name, ledger_key, version, rendering.content_hash)
        if decision.kind is DecisionKind.SKIP_UNCHANGED:
            return self._skipped(DeliveryStatus.UNCHANGED, decision.entry, key)
        if decision.kind is DecisionKind.SKIP_STALE:
            return self._skipped(DeliveryStatus.STALE, decision.entry, key)
        if decision.kind is DecisionKind.BUSY:
            return TargetOutcome(
                target=self.name,
                status=DeliveryStatus.RETRY_LATER,
                reason="busy",
                detail="another version of this entity is being delivered to this target",
                not_before=decision.not_before,
                idempotency_key=key,
            )
        return await self._call(ledger_key, version, rendering, key)

    async def _call(
        self, ledger_key: str, version: Version, rendering: Rendering, key: str
    ) -> TargetOutcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.throttle.slot():
                    applied = await self.target.apply(rendering, key)
            except TargetFailure as exc:
                failure = exc.failure
            else:
                return await self._succeeded(
                    ledger_key, version, rendering, applied, attempts=attempt, key=key
                )
            delay = in_process_delay(self.policy, attempt, failure, self.random)
            if delay is None:
                return await self._failed(
                    ledger_key,
                    version,
                    failure,
                    rendering.content_hash,
                    attempts=attempt,
                    key=key,
                )
            # Sleep outside the throttle: a backing-off delivery holds no slot.
            await self.sleep(delay)

    def _skipped(self, status: DeliveryStatus, entry: LedgerEntry, key: str) -> TargetOutcome:
        return TargetOutcome(
            target=self.name,
            status=status,
            remote_id=entry.remote_id,
            remote_url=entry.remote_url,
            idempotency_key=key,
        )

    async def _succeeded(
        self,
        ledger_key: str,
        version: Version,
        rendering: Rendering,
        applied: Applied,
        *,
        attempts: int,
        key: str,
    ) -> TargetOutcome:
        entry = await self.ledger.record_success(
            self.name,
            ledger_key,
            version,
            rendering.content_hash,
            remote_id=applied.remote_id or rendering.remote_id,
            remote_url=applied.remote_url,
        )
        return TargetOutcome(
            target=self.name,
            status=DeliveryStatus.APPLIED,
            detail="; ".join(applied.messages)[:1000] or None,
            attempts=attempts,
            remote_id=entry.remote_id,
            remote_url=entry.remote_url,
            idempotency_key=key,
        )

    async def _failed(
        self,
        ledger_key: str,
        version: Version,
        failure: Failure,
        content_hash: str,
        *,
        attempts: int,
        key: str | None,
    ) -> TargetOutcome:
        outcome = Outcome.FAILED_RETRYABLE if failure.retryable else Outcome.FAILED_PERMANENT
        await self.ledger.record_failure(
            self.name,
            ledger_key,
            version,
            content_hash,
            outcome=outcome,
            error=f"{failure.reason}: {failure.detail}",
            attempts=max(attempts, 1),
        )
        response = dict(failure.response) if failure.response is not None else None
        if failure.messages:
            response = {**(response or {}), "messages": list(failure.messages)}
        if failure.retryable:
            return TargetOutcome(
                target=self.name,
                status=DeliveryStatus.RETRY_LATER,
                reason=failure.reason,
                detail=failure.detail,
                not_before=earliest_retry(self.policy, failure, self.clock()),
                response=response,
                attempts=attempts,
                idempotency_key=key,
            )
        return TargetOutcome(
            target=self.name,
            status=DeliveryStatus.PERMANENT,
            reason=failure.reason,
            detail=failure.detail,
            response=response,
            attempts=attempts,
            idempotency_key=key,
        )


def _combine(outcomes: Sequence[TargetOutcome]) -> TargetOutcome:
    """One target's outcome from its parts' (the first is the change's own entity)."""
    main = outcomes[0]
    attempts = sum(o.attempts for o in outcomes)
    if len(outcomes) == 1:
        return main
    unfinished = next((o for o in outcomes if not o.done), None)
    if unfinished is not None:
        return replace(unfinished, attempts=attempts)
    statuses = {o.status for o in outcomes}
    if DeliveryStatus.APPLIED in statuses:
        status = DeliveryStatus.APPLIED
    elif statuses == {DeliveryStatus.STALE}:
        status = DeliveryStatus.STALE
    else:
        status = DeliveryStatus.UNCHANGED
    return replace(main, status=status, attempts=attempts)
