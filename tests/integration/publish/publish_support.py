"""Helpers of publish's integration tests: a settable clock, real HTTP servers on 127.0.0.1.

Import as ``integration.publish.publish_support`` (``tests/`` is on the path).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from cayg_publish.adapters.ledger import Ledger
from cayg_publish.domain.catalog import LedgerEntry, Target
from cayg_publish.domain.projection import DocumentRef, DocumentRow, DocumentState, RetrySchedule
from cayg_publish.domain.retry import RetryPolicy
from cayg_publish.projector import Projector
from cayg_shared.schema import Change


class Clock:
    """A clock that moves only when told (claim expiry, token expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.now += delta


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test HTTP server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class Recorded:
    """One request the idempotent test registry received."""

    method: str
    path: str
    idempotency_key: str | None
    body: Any


@dataclass
class IdempotentRegistry:
    """A tiny Registry Assistant look-alike that honours ``Idempotency-Key``.

    A request whose key it has seen gets the stored answer and changes nothing (the
    behaviour a deduplicating target offers). ``hold_after_apply`` makes the next request
    be applied and then left unanswered until the client gives up (a timeout after the
    write); ``script`` forces statuses for the next requests.
    """

    script: list[int] = field(default_factory=list)
    hold_after_apply: int = 0
    requests: list[Recorded] = field(default_factory=list)
    #: CTID -> the request body last applied.
    resources: dict[str, Any] = field(default_factory=dict)
    applied_keys: dict[str, Any] = field(default_factory=dict)
    applies: int = 0
    #: Most requests handled at the same time.
    peak_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)

    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, bool]:
        """(status, JSON answer, hold) for one request."""
        body = json.loads(raw or b"{}")
        key = headers.get("Idempotency-Key")
        with self._lock:
            self.requests.append(Recorded(method, path, key, body))
            if self.script:
                status = self.script.pop(0)
                return status, {"Message": f"scripted {status}"}, False
            if key is not None and key in self.applied_keys:
                return 200, self.applied_keys[key], False
            ctid = str((body.get("Credential") or {}).get("CTID"))
            changed = self.resources.get(ctid) != body
            self.resources[ctid] = body
            self.applies += 1
            answer = {"Successful": True, "WasChanged": changed, "Messages": [], "CTID": ctid}
            if key is not None:
                self.applied_keys[key] = answer
            hold = self.hold_after_apply > 0
            if hold:
                self.hold_after_apply -= 1
            return 200, answer, hold

    def enter(self) -> None:
        """A request arrived."""
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def leave(self) -> None:
        """A request was answered."""
        with self._lock:
            self._in_flight -= 1

    def release(self) -> None:
        """Let held responses go (the client has long given up on them)."""
        self._released.set()

    def wait_released(self) -> None:
        """Block a held response until :meth:`release` (at most a minute)."""
        self._released.wait(60)


@contextmanager
def serve_registry(registry: IdempotentRegistry) -> Iterator[str]:
    """Serve ``registry`` with ``http.server`` on a free 127.0.0.1 port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            registry.enter()
            try:
                self._answer()
            finally:
                registry.leave()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer, hold = registry.handle(
                self.command, self.path, self.headers, self.rfile.read(length)
            )
            if hold:
                registry.wait_released()
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up waiting: that is the point of a hold

        do_POST = _respond
        do_DELETE = _respond

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="registry-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        registry.release()
        server.shutdown()
        server.server_close()
        thread.join(15)


class SleepRecorder:
    """An ``asyncio.sleep`` stand-in for ``deliver`` that records what it was asked to wait
    (the test checks the request honoured ``Retry-After``) and then really sleeps."""

    def __init__(self, sleep: Callable[[float], Any]) -> None:
        self.delays: list[float] = []
        self._sleep = sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._sleep(delay)


#: Failing documents are due again almost at once in these tests.
QUICK_RETRIES = RetrySchedule(
    first_interval=timedelta(milliseconds=20), max_interval=timedelta(milliseconds=20)
)


@dataclass
class Delivered:
    """What recording one change and draining the projector left behind."""

    #: The (target, document) pairs the change marked dirty (empty: it changed nothing).
    marked: list[tuple[str, DocumentRef]]
    #: Those documents afterwards.
    documents: list[DocumentRow]
    #: The ledger's entry of the change's entity at the target.
    entry: LedgerEntry | None

    @property
    def state(self) -> DocumentState:
        """The state of the single document marked."""
        [row] = self.documents
        return row.state


async def deliver_change(
    item: Change,
    target: Target,
    ledger: Ledger,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Delivered:
    """Record ``item`` for ``target`` and deliver every document it dirtied."""
    marked = await ledger.record_change(item, {target.name: target.document_kinds})
    await Projector(ledger, [target], policy=policy, schedule=QUICK_RETRIES, sleep=sleep).drain()
    keys = {ref.key for _, ref in marked}
    documents = [d for d in await ledger.documents(target=target.name) if d.ref.key in keys]
    entry = await ledger.get(target.name, str(item.entity_key))
    return Delivered(marked, documents, entry)
