"""Failure classification, Retry-After, backoff and tier routing: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cayg_publish.domain.retry import (
    Failure,
    FailureKind,
    RetryPolicy,
    TransportError,
    backoff_delay,
    classify_status,
    in_process_delay,
    parse_retry_after,
    permanent_failure,
    retry_after_seconds,
    status_failure,
    transport_failure,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_passing_conditions_are_retryable(status: int) -> None:
    assert classify_status(status) is FailureKind.RETRYABLE


@pytest.mark.parametrize("status", [300, 304, 400, 401, 403, 404, 409, 410, 413, 415, 422])
def test_other_statuses_are_permanent(status: int) -> None:
    assert classify_status(status) is FailureKind.PERMANENT


def test_status_failure_carries_its_code_and_retry_after() -> None:
    failure = status_failure(503, "unavailable", retry_after=7.0, messages=("busy",))

    assert failure.retryable
    assert failure.reason == "http-503"
    assert failure.status == 503
    assert failure.retry_after == 7.0
    assert failure.messages == ("busy",)


@pytest.mark.parametrize("error", list(TransportError))
def test_transport_failures_are_retryable(error: TransportError) -> None:
    failure = transport_failure(error, "no answer")

    assert failure.kind is FailureKind.RETRYABLE
    assert failure.reason == error.value
    assert failure.status is None


def test_permanent_failure_is_not_retryable() -> None:
    failure = permanent_failure("validation", "Description too short", status=200)

    assert not failure.retryable
    assert failure.status == 200


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  30 ", 30.0),
        ("Sun, 01 Mar 2026 12:00:45 GMT", 45.0),
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # RFC 850 form
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime form
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: now
    ],
)
def test_retry_after_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"])
def test_unparsable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)

    ceilings = [backoff_delay(policy, attempt, lambda: 1.0) for attempt in range(1, 8)]
    floors = [backoff_delay(policy, attempt, lambda: 0.0) for attempt in range(1, 8)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert floors == [0.0] * 7
    assert backoff_delay(policy, 3, lambda: 0.25) == 0.5


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert backoff_delay(RetryPolicy(), 10_000, lambda: 1.0) == RetryPolicy().max_delay


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(RetryPolicy(), 0, lambda: 0.5)


def test_in_process_retry_waits_at_least_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8.0, max_in_process_wait=30)
    failure = status_failure(429, "slow down", retry_after=5.0)

    assert in_process_delay(policy, 1, failure, lambda: 1.0) == 5.0
    assert in_process_delay(policy, 1, status_failure(503, "x"), lambda: 1.0) == 0.5


def test_in_process_retry_stops_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    failure = status_failure(503, "x")

    assert in_process_delay(policy, 2, failure, lambda: 0.5) is not None
    assert in_process_delay(policy, 3, failure, lambda: 0.5) is None


def test_long_retry_after_is_not_slept_through_in_process() -> None:
    policy = RetryPolicy(max_in_process_wait=30)
    failure = status_failure(429, "later", retry_after=120.0)

    assert in_process_delay(policy, 1, failure, lambda: 0.5) is None
    # The document is marked failing with that wait as its next attempt instead.
    assert retry_after_seconds(policy, failure) == 120.0


def test_absurd_retry_after_is_clamped() -> None:
    policy = RetryPolicy(max_retry_after=3600)
    failure = status_failure(503, "x", retry_after=10**9)

    assert retry_after_seconds(policy, failure) == 3600


def test_permanent_failures_are_never_retried_in_process() -> None:
    failure = permanent_failure("http-400", "bad")

    assert in_process_delay(RetryPolicy(), 1, failure, lambda: 0.5) is None


def test_failure_equality_ignores_the_response_excerpt() -> None:
    first = Failure(FailureKind.PERMANENT, "x", "y", response={"a": 1})
    second = Failure(FailureKind.PERMANENT, "x", "y", response={"a": 2})

    assert first == second
