"""The projector: delivers dirty documents, rendered from the catalog as it is now.

It leases due documents from the ledger (several instances may share one database: leases
are short, so a crashed instance's documents are picked up within seconds), renders each
with its target, and delivers every request the rendering yields: ledger decision (same
content → no call, older version → no call), the call itself — throttled per target, with
an ``Idempotency-Key`` and a few quick in-process retries that honour ``Retry-After`` —
and the ledger record. Then it settles the lease: delivered, waiting for an input,
failing (next attempt scheduled in the ledger, at most :attr:`RetrySchedule.max_interval`
apart, forever), or rejected (kept with the target's message until the data changes).

Nothing on the Kafka consume path calls a target; nothing here reads Kafka.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from cayg_publish.adapters.ledger.port import Ledger
from cayg_publish.domain.catalog import (
    DecisionKind,
    Outcome,
    Rendering,
    Target,
    TargetFailure,
    TargetLimits,
)
from cayg_publish.domain.idempotency import idempotency_key
from cayg_publish.domain.projection import (
    DeliveryResult,
    DocumentKind,
    Lease,
    RetrySchedule,
    Settlement,
    Waiting,
)
from cayg_publish.domain.retry import (
    Failure,
    FailureKind,
    RetryPolicy,
    in_process_delay,
    retry_after_seconds,
)
from cayg_shared.logging import get_logger

__all__ = ["Projector", "ProjectorOutcome", "Throttle", "ThrottleBook"]

log = get_logger("cayg.publish.projector")

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


class ProjectorOutcome:
    """Names of the per-request outcomes the projector reports (metrics labels)."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    NOT_NEEDED = "not-needed"
    #: One failed call that is tried again at once, in process.
    RETRIED = "retried"
    WAITING = "waiting"
    FAILING = "failing"
    REJECTED = "rejected"


#: Reports one outcome for one target (e.g. a Prometheus counter's ``inc``).
OutcomeHook = Callable[[str, str], None]
#: Told how long each request to a target took: ``(target, "ok" | "failed", seconds)``.
RequestHook = Callable[[str, str, float], None]


def _no_hook(target: str, outcome: str) -> None:
    del target, outcome


@dataclass(frozen=True, slots=True)
class _PartResult:
    outcome: str
    failure: Failure | None = None


class Projector:
    """Delivers the dirty documents of ``targets`` until stopped.

    ``max_in_flight`` documents are delivered at once (each target's own throttle still
    holds its concurrency and rate); ``lease_ttl_s`` bounds how long a crashed instance's
    documents stay leased — a running delivery renews its lease every third of it, so a
    slow target never hands a document to a second instance while the first still sends
    it; ``delivery_timeout_s`` bounds one delivery (all its requests and in-process
    retries) against a hang; ``poll_s`` how soon documents dirtied by another instance, or
    due for a retry, are noticed (:meth:`wake` makes this instance look at once).
    """

    def __init__(
        self,
        ledger: Ledger,
        targets: Sequence[Target],
        *,
        policy: RetryPolicy | None = None,
        schedule: RetrySchedule | None = None,
        throttles: ThrottleBook | None = None,
        max_in_flight: int = 64,
        lease_ttl_s: float = 30.0,
        delivery_timeout_s: float = 300.0,
        poll_s: float = 0.5,
        on_outcome: OutcomeHook = _no_hook,
        on_request: RequestHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        self.ledger = ledger
        self._targets = {t.name: t for t in targets}
        self._policy = policy or RetryPolicy()
        self._schedule = schedule or RetrySchedule()
        self._throttles = throttles or ThrottleBook()
        self._max_in_flight = max_in_flight
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self._delivery_timeout_s = delivery_timeout_s
        self._poll_s = poll_s
        self._on_outcome = on_outcome
        self._on_request = on_request
        self._sleep = sleep
        self._random = random
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._stopping = False

    @property
    def target_names(self) -> tuple[str, ...]:
        """The targets this projector delivers to."""
        return tuple(self._targets)

    def kinds_by_target(self, names: Sequence[str]) -> dict[str, frozenset[DocumentKind]]:
        """The document kinds each of ``names`` (that this projector serves) holds."""
        return {n: self._targets[n].document_kinds for n in names if n in self._targets}

    def wake(self) -> None:
        """Look for due documents now (a change was just recorded)."""
        self._wake.set()

    async def run(self) -> None:
        """Lease and deliver until cancelled; in-flight deliveries finish first on
        :meth:`stop`."""
        while not self._stopping:
            # Cleared before looking, so a wake-up during the lease query is not lost.
            self._wake.clear()
            try:
                leased = await self.run_once()
            except Exception as error:  # noqa: BLE001 - the ledger may be briefly away
                log.warning("projector: leasing failed", error=f"{type(error).__name__}: {error}")
                leased = 0
            if leased == 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def stop(self) -> None:
        """Take no more leases and wait for the deliveries in flight."""
        self._stopping = True
        self._wake.set()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def run_once(self) -> int:
        """Lease what free slots allow and start delivering it; the number leased."""
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0 or not self._targets:
            await asyncio.sleep(0.01)
            return 0
        leases = await self.ledger.lease_documents(
            list(self._targets), limit=free, ttl_ms=self._lease_ttl_ms
        )
        for lease in leases:
            task = asyncio.create_task(self._deliver_and_settle(lease))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(leases)

    async def drain(self, *, timeout_s: float = 60.0) -> None:
        """Deliver until nothing is due or in flight (tests and one-shot tools)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leased = await self.run_once()
            if self._in_flight:
                await asyncio.gather(*list(self._in_flight), return_exceptions=True)
            elif leased == 0:
                return
        raise TimeoutError("documents still due after the drain timeout")

    # -- one document ---------------------------------------------------------------------

    async def _renew(self, lease: Lease) -> None:
        """Keep ``lease`` held; returns only once it is lost."""
        every = self._lease_ttl_ms / 1000 / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.ledger.renew_lease(lease, self._lease_ttl_ms):
                    return
            except Exception as error:  # noqa: BLE001 - tried again; the lease may still hold
                log.warning(
                    "projector: renewing a lease failed",
                    target=lease.target,
                    error=f"{type(error).__name__}: {error}",
                )

    async def _deliver_and_settle(self, lease: Lease) -> None:
        delivery = asyncio.create_task(self.deliver(lease))
        renewal = asyncio.create_task(self._renew(lease))
        try:
            done, _ = await asyncio.wait(
                {delivery, renewal},
                timeout=self._delivery_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            renewal.cancel()
            if not delivery.done():
                delivery.cancel()
            await asyncio.gather(delivery, renewal, return_exceptions=True)
        if delivery not in done and renewal in done:
            # Another instance owns the document now (this one stalled past its lease): it
            # was told to stop sending, and the new owner settles the document.
            log.warning("projector: lease lost during delivery", target=lease.target)
            return
        if delivery not in done:
            result = DeliveryResult(
                Settlement.FAILING,
                f"timeout: the delivery took longer than {self._delivery_timeout_s:g} s",
            )
        elif (error := delivery.exception()) is not None:
            log.error(
                "projector: delivery failed",
                target=lease.target,
                error=f"{type(error).__name__}: {error}",
                exc_info=error,
            )
            result = DeliveryResult(
                Settlement.FAILING, f"internal-error: {type(error).__name__}: {error}"[:1000]
            )
        else:
            result = delivery.result()
        for attempt in range(5):
            try:
                await self.ledger.settle_document(lease, result, self._schedule)
                return
            except Exception as error:  # noqa: BLE001 - the lease lapses if this never works
                log.warning(
                    "projector: settling failed",
                    target=lease.target,
                    attempt=attempt + 1,
                    error=f"{type(error).__name__}: {error}",
                )
                await self._sleep(0.2 * (attempt + 1))

    async def deliver(self, lease: Lease) -> DeliveryResult:
        """Render the leased document and deliver each of its requests."""
        target = self._targets[lease.target]
        try:
            renderings = await target.render_document(lease.ref)
        except Waiting as waiting:
            self._on_outcome(target.name, ProjectorOutcome.WAITING)
            log.debug("projector: waiting", target=target.name, missing=waiting.reason)
            return DeliveryResult(Settlement.WAITING, waiting.missing)
        except TargetFailure as exc:
            return self._failed(target.name, exc.failure)
        except _RENDER_ERRORS as exc:
            detail = f"render: cannot render for {target.name}: {type(exc).__name__}: {exc}"
            self._on_outcome(target.name, ProjectorOutcome.REJECTED)
            return DeliveryResult(Settlement.REJECTED, detail[:1000])
        for rendering in renderings:
            part = await self._deliver_part(target, rendering)
            self._on_outcome(target.name, part.outcome)
            if part.failure is not None:
                # Later requests may depend on this one (a transfer value names its
                # credential); the document comes back whole, done parts are unchanged then.
                return self._failed(target.name, part.failure, count=False)
        return DeliveryResult(Settlement.DELIVERED)

    def _failed(self, target: str, failure: Failure, *, count: bool = True) -> DeliveryResult:
        detail = f"{failure.reason}: {failure.detail}"
        if failure.messages:
            detail += " — " + "; ".join(failure.messages)
        if not failure.retryable:
            if count:
                self._on_outcome(target, ProjectorOutcome.REJECTED)
            return DeliveryResult(Settlement.REJECTED, detail[:2000])
        if count:
            self._on_outcome(target, ProjectorOutcome.FAILING)
        wait = retry_after_seconds(self._policy, failure)
        retry_at = int((time.time() + wait) * 1000) if wait > 0 else None
        return DeliveryResult(Settlement.FAILING, detail[:2000], retry_after_ms=retry_at)

    def _request_took(self, target: str, result: str, started: float) -> None:
        if self._on_request is not None:
            self._on_request(target, result, time.monotonic() - started)

    async def _deliver_part(self, target: Target, rendering: Rendering) -> _PartResult:
        ledger_key = rendering.subject
        version = rendering.subject_version
        if ledger_key is None or version is None:
            raise ValueError("a document rendering names its ledger subject and version")
        if rendering.replaces_only:
            entry = await self.ledger.get(target.name, ledger_key)
            if entry is None or entry.applied_version is None:
                # Withdrawing what was never delivered: nothing to tell the target.
                return _PartResult(ProjectorOutcome.NOT_NEEDED)
        key = idempotency_key(target.name, ledger_key, version, rendering.content_hash)
        decision = await self.ledger.decide(
            target.name, ledger_key, version, rendering.content_hash
        )
        if decision.kind is DecisionKind.SKIP_UNCHANGED:
            return _PartResult(ProjectorOutcome.UNCHANGED)
        if decision.kind is DecisionKind.SKIP_STALE:
            return _PartResult(ProjectorOutcome.STALE)
        if decision.kind is DecisionKind.BUSY:
            failure = Failure(
                kind=FailureKind.RETRYABLE,
                reason="busy",
                detail="another version of this document is being delivered to this target",
            )
            return _PartResult(ProjectorOutcome.FAILING, failure)
        throttle = self._throttles.for_target(target)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with throttle.slot():
                    started = time.monotonic()
                    try:
                        applied = await target.apply(rendering, key)
                    except TargetFailure:
                        self._request_took(target.name, "failed", started)
                        raise
                    self._request_took(target.name, "ok", started)
            except TargetFailure as exc:
                failure = exc.failure
            else:
                await self.ledger.record_success(
                    target.name,
                    ledger_key,
                    version,
                    rendering.content_hash,
                    remote_id=applied.remote_id or rendering.remote_id,
                    remote_url=applied.remote_url,
                )
                return _PartResult(ProjectorOutcome.APPLIED)
            delay = in_process_delay(self._policy, attempt, failure, self._random)
            if delay is None:
                outcome = (
                    Outcome.FAILED_RETRYABLE if failure.retryable else Outcome.FAILED_PERMANENT
                )
                await self.ledger.record_failure(
                    target.name,
                    ledger_key,
                    version,
                    rendering.content_hash,
                    outcome=outcome,
                    error=f"{failure.reason}: {failure.detail}",
                    attempts=attempt,
                )
                return _PartResult(
                    ProjectorOutcome.FAILING if failure.retryable else ProjectorOutcome.REJECTED,
                    failure,
                )
            self._on_outcome(target.name, ProjectorOutcome.RETRIED)
            # Sleep outside the throttle: a backing-off delivery holds no slot.
            await self._sleep(delay)
