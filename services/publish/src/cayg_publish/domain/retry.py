"""Failure classification and retry policy: pure functions, no I/O.

A failed target call is either *retryable* (the same request may well succeed later:
timeouts, connection errors, 408, 425, 429, 5xx) or *permanent* (it will fail the same way
until someone changes the data or the configuration: validation errors, other 4xx).
Retryable failures get a few quick in-process attempts with full-jitter exponential backoff
(never sooner than the target's ``Retry-After``); after those the document is marked
failing and its next attempt is scheduled in the ledger
(:class:`~cayg_publish.domain.projection.RetrySchedule`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final


class FailureKind(StrEnum):
    """Whether trying the same request again can help."""

    RETRYABLE = "retryable"
    PERMANENT = "permanent"


#: 4xx statuses that describe a passing condition rather than a bad request.
RETRYABLE_4XX: Final = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure of one target call."""

    kind: FailureKind
    #: Short machine-readable code: ``http-503``, ``timeout``, ``connect``, ``validation``…
    reason: str
    #: Human-readable explanation; never contains secrets.
    detail: str
    #: The HTTP status, when there was a response.
    status: int | None = None
    #: Seconds the target asked us to wait (``Retry-After``), when it said.
    retry_after: float | None = None
    #: The target's own messages (Registry Assistant ``Messages``, imsx description…).
    messages: tuple[str, ...] = ()
    #: An excerpt of the target's answer, safe to park in a DLQ record.
    response: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def retryable(self) -> bool:
        """True for failures worth retrying."""
        return self.kind is FailureKind.RETRYABLE


def classify_status(status: int) -> FailureKind:
    """Classify an HTTP error status.

    408 Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx are retryable;
    every other status is permanent (including unexpected 1xx/3xx: following them blindly
    would be a configuration problem, not a passing one).
    """
    if status in RETRYABLE_4XX or 500 <= status <= 599:
        return FailureKind.RETRYABLE
    return FailureKind.PERMANENT


def status_failure(
    status: int,
    detail: str,
    *,
    retry_after: float | None = None,
    messages: tuple[str, ...] = (),
    response: Mapping[str, Any] | None = None,
) -> Failure:
    """A :class:`Failure` for an HTTP error response."""
    return Failure(
        kind=classify_status(status),
        reason=f"http-{status}",
        detail=detail,
        status=status,
        retry_after=retry_after,
        messages=messages,
        response=response,
    )


class TransportError(StrEnum):
    """Ways a call can fail without an HTTP response."""

    #: No answer in time. The target may still have applied the request.
    TIMEOUT = "timeout"
    #: Could not connect (refused, DNS, TLS handshake): the request was not sent.
    CONNECT = "connect"
    #: The connection broke mid-exchange, or the answer was not valid HTTP.
    PROTOCOL = "protocol"


def transport_failure(error: TransportError, detail: str) -> Failure:
    """A :class:`Failure` for a call that got no HTTP response: always retryable."""
    return Failure(kind=FailureKind.RETRYABLE, reason=str(error), detail=detail)


def permanent_failure(
    reason: str,
    detail: str,
    *,
    status: int | None = None,
    messages: tuple[str, ...] = (),
    response: Mapping[str, Any] | None = None,
) -> Failure:
    """A :class:`Failure` that no retry will fix."""
    return Failure(
        kind=FailureKind.PERMANENT,
        reason=reason,
        detail=detail,
        status=status,
        messages=messages,
        response=response,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value (RFC 9110 §10.2.3).

    Accepts delay-seconds (``"120"``) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``);
    a date in the past means "now" (0). Anything unparsable is ignored (None) rather than
    trusted. ``now`` must be timezone-aware.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are always GMT; email.utils leaves "-0000" naive.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try within one delivery: in-process attempts and backoff.

    ``max_attempts`` counts every in-process call, the first one included. A wait longer
    than ``max_in_process_wait`` (typically a long ``Retry-After``) is not slept through in
    process: the document is marked failing with that time as its next attempt, so a slow
    target never holds a delivery slot.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_in_process_wait: float = 30.0
    #: A ``Retry-After`` longer than this is clamped (a misbehaving target must not park
    #: a change for a year).
    max_retry_after: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_in_process_wait < 0:
            raise ValueError("delays must not be negative")


def backoff_delay(policy: RetryPolicy, attempt: int, random: Callable[[], float]) -> float:
    """Full-jitter exponential backoff before in-process attempt ``attempt + 1``.

    ``attempt`` is the number of attempts made so far (1 after the first failure). The wait
    is uniform in ``[0, min(max_delay, base_delay * 2**(attempt-1))]`` ("full jitter"), which
    spreads retries of many workers hitting the same failing target.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 62))
    return max(0.0, min(1.0, random())) * ceiling


def retry_after_seconds(policy: RetryPolicy, failure: Failure) -> float:
    """The target's requested wait, clamped to the policy; 0 when it asked for none."""
    if failure.retry_after is None:
        return 0.0
    return min(max(0.0, failure.retry_after), policy.max_retry_after)


def in_process_delay(
    policy: RetryPolicy, attempt: int, failure: Failure, random: Callable[[], float]
) -> float | None:
    """Seconds to wait before retrying in process, or None to stop retrying in process.

    None when the failure is permanent, the attempts are used up, or the wait (jittered
    backoff, but never less than ``Retry-After``) exceeds ``max_in_process_wait``.
    """
    if not failure.retryable or attempt >= policy.max_attempts:
        return None
    delay = max(backoff_delay(policy, attempt, random), retry_after_seconds(policy, failure))
    if delay > policy.max_in_process_wait:
        return None
    return delay
