"""HTTP plumbing shared by both stand-ins: body limits, access logs, admin endpoints."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cayg_standins.faults import ADMIN_PREFIX, ErrorRenderer, FaultInjector, FaultPlan

__all__ = [
    "ACCESS_LOGGER",
    "AccessLogMiddleware",
    "AdminGuard",
    "BodyLimitMiddleware",
    "JsonLogFormatter",
    "configure_logging",
    "fault_admin_routes",
    "json_response",
    "log_context",
]

ACCESS_LOGGER = "cayg_standins.access"
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that keeps non-ASCII text readable."""
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def log_context(request: Request, **fields: Any) -> None:
    """Attach fields (never secrets) to this request's access-log line."""
    extra: dict[str, Any] = request.scope.setdefault("state", {}).setdefault("log", {})
    extra.update(fields)


class BodyLimitMiddleware:
    """Reads the whole request body up to a limit; larger bodies get 413.

    The body is buffered, then replayed to the app; later ``receive`` calls go to the server
    so the app (and the fault middleware) can still notice a client disconnect.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, render_error: ErrorRenderer) -> None:
        """Wrap ``app``; 413 bodies are rendered by ``render_error``."""
        self.app = app
        self.max_bytes = max_bytes
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer, check, replay."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = self.render_error(
            413, f"request body larger than {self.max_bytes} bytes is not accepted"
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self.render_error(400, "bad Content-Length")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AccessLogMiddleware:
    """One JSON log line per request: method, path (no query), status, duration, fault."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        """Wrap ``app``; ``service`` names the stand-in in every line."""
        self.app = app
        self.service = service
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and log it once it is answered (or abandoned)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            state = scope.get("state", {})
            record: dict[str, Any] = {
                "service": self.service,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            fault = state.get("fault")
            if fault and fault != "pass":
                record["fault"] = fault
            record.update(state.get("log", {}))
            self.logger.info("request", extra={"fields": record})


class JsonLogFormatter(logging.Formatter):
    """Formats records as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Timestamp, level, logger, event and any structured ``fields``."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of each record (it may be swapped)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        """The current standard output."""
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignored: the handler always follows ``sys.stdout``."""


def configure_logging(level: int = logging.INFO) -> None:
    """Send the stand-ins' logs to stdout as JSON lines (called by the CLI, not on import)."""
    handler = _StdoutHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("cayg_standins")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class AdminGuard:
    """Checks the admin token on ``/_admin`` requests (header ``X-Admin-Token``)."""

    def __init__(self, token: str | None, render_error: ErrorRenderer) -> None:
        """No token configured = the admin API is closed (403)."""
        self._token = token
        self._render_error = render_error

    def check(self, request: Request) -> Response | None:
        """``None`` when allowed, else the 401/403 response to send."""
        if not self._token:
            return self._render_error(403, "the admin API is disabled: no admin token configured")
        given = request.headers.get("x-admin-token", "")
        if not given:
            return self._render_error(401, "missing X-Admin-Token header")
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            return self._render_error(403, "wrong admin token")
        return None

    def guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler so it runs only for a valid admin token."""

        async def wrapper(request: Request) -> Response:
            refusal = self.check(request)
            if refusal is not None:
                return refusal
            return await handler(request)

        return wrapper


def fault_admin_routes(
    injector: FaultInjector, guard: AdminGuard, render_error: ErrorRenderer
) -> list[BaseRoute]:
    """``GET/POST/DELETE /_admin/faults``: show, install (replace) and clear the fault plan."""

    async def show(_request: Request) -> Response:
        return json_response(injector.snapshot())

    async def install(request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the fault plan must be a JSON object")
            plan = FaultPlan.from_json(data)
        except ValueError as exc:
            return render_error(400, f"invalid fault plan: {exc}")
        injector.configure(plan)
        return json_response(injector.snapshot())

    async def clear(_request: Request) -> Response:
        injector.clear()
        return json_response(injector.snapshot())

    path = f"{ADMIN_PREFIX}/faults"
    return [
        Route(path, guard.guarded(show), methods=["GET"]),
        Route(path, guard.guarded(install), methods=["POST"]),
        Route(path, guard.guarded(clear), methods=["DELETE"]),
    ]
