"""HTTP plumbing shared by the target clients: clients with explicit timeouts, and the
translation of httpx errors and error responses into classified failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import httpx

from cayg_publish.config import HttpTimeouts
from cayg_publish.domain.retry import (
    Failure,
    TransportError,
    parse_retry_after,
    status_failure,
    transport_failure,
)

#: Longest response body excerpt kept in a failure (DLQ records stay small).
BODY_EXCERPT: Final = 2000
USER_AGENT: Final = "cayg-publish/0.1 (+https://cayg-sync.org)"


def new_client(
    base_url: str,
    timeouts: HttpTimeouts,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 16,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for one target: every timeout explicit, no redirects.

    Redirects are not followed: a registry or CLR host that redirects a POST is
    misconfigured, and following it could resend credentials elsewhere.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
        ),
        limits=httpx.Limits(max_connections=max_connections),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport,
    )


def failure_from_exception(exc: httpx.HTTPError) -> Failure:
    """Classify an httpx error that produced no response (always retryable)."""
    if isinstance(exc, httpx.TimeoutException):
        # The request may have reached the target and been applied; the retry carries the
        # same Idempotency-Key and the same stable id, so applying it again is harmless.
        return transport_failure(TransportError.TIMEOUT, f"{type(exc).__name__}: no answer in time")
    if isinstance(exc, httpx.ConnectError):
        return transport_failure(TransportError.CONNECT, f"cannot connect: {exc}")
    return transport_failure(TransportError.PROTOCOL, f"{type(exc).__name__}: {exc}")


def body_excerpt(response: httpx.Response) -> Any:
    """The response body as JSON if it is JSON, else a text excerpt."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:BODY_EXCERPT]


def response_record(response: httpx.Response) -> dict[str, Any]:
    """A small, secret-free record of a response for DLQ entries and logs."""
    body = body_excerpt(response)
    if not isinstance(body, str):
        text = json.dumps(body, ensure_ascii=False)
        body = body if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT]
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "body": body,
    }


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """The response's ``Retry-After`` in seconds, if it sent a valid one."""
    return parse_retry_after(response.headers.get("retry-after"), now)


def error_response_failure(
    response: httpx.Response,
    now: datetime,
    *,
    messages_of: Callable[[Any], tuple[str, ...]],
    what: str,
) -> Failure:
    """Classify a non-2xx response, keeping the target's own messages."""
    body = body_excerpt(response)
    messages = messages_of(body)
    detail = f"{what} answered {response.status_code}"
    if messages:
        detail += ": " + "; ".join(messages)[:500]
    return status_failure(
        response.status_code,
        detail,
        retry_after=retry_after(response, now),
        messages=messages,
        response=response_record(response),
    )
