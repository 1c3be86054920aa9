"""Deterministic fault injection for the stand-ins.

A :class:`FaultPlan` says what can go wrong; a :class:`FaultInjector` decides, request by
request, what does. Decisions come from one ``random.Random(seed)`` with exactly one draw
per request the plan covers, so the same seed and the same sequence of requests give the
same sequence of faults. A ``script`` of forced outcomes, consumed before any draw, lets a
test say "the next two calls fail with 503, then one times out after writing".

Faults never apply to the admin endpoints (``/_admin``), and only to paths that start with
``path_prefix`` when one is set.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ADMIN_PREFIX",
    "ErrorRenderer",
    "FaultDecision",
    "FaultInjector",
    "FaultMiddleware",
    "FaultPlan",
]

ADMIN_PREFIX = "/_admin"

ErrorRenderer = Callable[[int, str], Response]
"""Builds an error response in the stand-in's own dialect from an HTTP status and text."""

FaultKind = Literal["pass", "error", "rate_limit", "timeout_after_write", "outage"]
_SCRIPT_WORDS = ("pass", "429", "timeout_after_write")


@dataclass(frozen=True)
class FaultPlan:
    """What may go wrong.

    Attributes:
        seed: seeds the random decisions (same seed + same request order = same faults).
        error_rates: HTTP status -> probability of answering it (400-599, not 429).
        latency_ms: delay added before every covered request.
        rate_limit_rate: probability of a 429 carrying ``Retry-After: retry_after_s``.
        retry_after_s: seconds announced in ``Retry-After`` on 429 (and used for outages).
        timeout_after_write_rate: probability that the request is fully applied, then the
            response is held back for ``timeout_after_write_delay_s`` (or until the client
            gives up and disconnects, whichever comes first).
        timeout_after_write_delay_s: how long the response is held back.
        outage_s: every covered request answers 503 for this many seconds from the moment
            the plan is installed.
        path_prefix: only requests whose path starts with this are covered ("" = all).
        script: forced outcomes for the next covered requests, consumed in order before
            any random draw: an HTTP status such as ``"503"``, ``"429"``,
            ``"timeout_after_write"`` or ``"pass"``.
    """

    seed: int = 0
    error_rates: Mapping[int, float] = field(default_factory=dict)
    latency_ms: int = 0
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    timeout_after_write_rate: float = 0.0
    timeout_after_write_delay_s: float = 30.0
    outage_s: float = 0.0
    path_prefix: str = ""
    script: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject plans that cannot be honoured."""
        for status, rate in self.error_rates.items():
            if not 400 <= status <= 599 or status == 429:
                raise ValueError(f"error_rates: {status} is not a 4xx/5xx status other than 429")
            _check_rate(f"error_rates[{status}]", rate)
        _check_rate("rate_limit_rate", self.rate_limit_rate)
        _check_rate("timeout_after_write_rate", self.timeout_after_write_rate)
        total = sum(self.error_rates.values()) + self.rate_limit_rate
        if total + self.timeout_after_write_rate > 1.0 + 1e-9:
            raise ValueError("the fault probabilities add up to more than 1")
        if self.latency_ms < 0 or self.retry_after_s < 0 or self.outage_s < 0:
            raise ValueError("latency_ms, retry_after_s and outage_s must not be negative")
        if self.timeout_after_write_delay_s <= 0:
            raise ValueError("timeout_after_write_delay_s must be positive")
        for word in self.script:
            if word not in _SCRIPT_WORDS and not _is_error_status(word):
                raise ValueError(f"script: unknown outcome {word!r}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from the admin endpoint's JSON (unknown keys are an error)."""
        known = {
            "seed",
            "error_rates",
            "latency_ms",
            "rate_limit_rate",
            "retry_after_s",
            "timeout_after_write_rate",
            "timeout_after_write_delay_s",
            "outage_s",
            "path_prefix",
            "script",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        try:
            rates_raw = data.get("error_rates", {})
            if not isinstance(rates_raw, Mapping):
                raise ValueError("error_rates must be an object of status -> probability")
            script_raw = data.get("script", [])
            if not isinstance(script_raw, list):
                raise ValueError("script must be a list")
            return cls(
                seed=int(data.get("seed", 0)),
                error_rates={int(k): float(v) for k, v in rates_raw.items()},
                latency_ms=int(data.get("latency_ms", 0)),
                rate_limit_rate=float(data.get("rate_limit_rate", 0.0)),
                retry_after_s=int(data.get("retry_after_s", 1)),
                timeout_after_write_rate=float(data.get("timeout_after_write_rate", 0.0)),
                timeout_after_write_delay_s=float(data.get("timeout_after_write_delay_s", 30.0)),
                outage_s=float(data.get("outage_s", 0.0)),
                path_prefix=str(data.get("path_prefix", "")),
                script=tuple(str(word) for word in script_raw),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        """The plan as the admin endpoint shows it."""
        return {
            "seed": self.seed,
            "error_rates": {str(k): v for k, v in sorted(self.error_rates.items())},
            "latency_ms": self.latency_ms,
            "rate_limit_rate": self.rate_limit_rate,
            "retry_after_s": self.retry_after_s,
            "timeout_after_write_rate": self.timeout_after_write_rate,
            "timeout_after_write_delay_s": self.timeout_after_write_delay_s,
            "outage_s": self.outage_s,
            "path_prefix": self.path_prefix,
            "script": list(self.script),
        }

    @property
    def is_empty(self) -> bool:
        """True when the plan injects nothing at all."""
        return (
            not self.error_rates
            and self.latency_ms == 0
            and self.rate_limit_rate == 0
            and self.timeout_after_write_rate == 0
            and self.outage_s == 0
            and not self.script
        )


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")


def _is_error_status(word: str) -> bool:
    return word.isdigit() and 400 <= int(word) <= 599


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request."""

    kind: FaultKind
    status: int = 0
    retry_after_s: int | None = None
    latency_s: float = 0.0
    delay_s: float = 0.0


class FaultInjector:
    """Holds the current plan and its random state; decides per request."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        """Install ``plan`` (or no faults)."""
        self._plan = FaultPlan()
        self._rng = random.Random(0)  # noqa: S311 - reproducible test faults, not crypto
        self._script: deque[str] = deque()
        self._outage_until = 0.0
        self._decisions = 0
        self.injected: Counter[str] = Counter()
        self.configure(plan or FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        """The installed plan."""
        return self._plan

    def configure(self, plan: FaultPlan) -> None:
        """Install a plan; the random sequence restarts from its seed."""
        self._plan = plan
        self._rng = random.Random(plan.seed)  # noqa: S311 - reproducible test faults
        self._script = deque(plan.script)
        self._outage_until = time.monotonic() + plan.outage_s if plan.outage_s else 0.0
        self._decisions = 0
        self.injected = Counter()

    def clear(self) -> None:
        """Remove every fault."""
        self.configure(FaultPlan())

    def covers(self, path: str) -> bool:
        """Whether the plan applies to a request path."""
        if path.startswith(ADMIN_PREFIX):
            return False
        return path.startswith(self._plan.path_prefix)

    def decide(self, path: str) -> FaultDecision:
        """Decide the fate of one request to ``path``."""
        plan = self._plan
        if plan.is_empty or not self.covers(path):
            return FaultDecision("pass")
        latency = plan.latency_ms / 1000.0
        self._decisions += 1
        now = time.monotonic()
        if self._outage_until > now:
            remaining = max(1, int(self._outage_until - now + 0.999))
            return self._count(FaultDecision("outage", 503, remaining, latency))
        if self._script:
            return self._count(self._scripted(self._script.popleft(), latency))
        draw = self._rng.random()
        cumulative = 0.0
        for status in sorted(plan.error_rates):
            cumulative += plan.error_rates[status]
            if draw < cumulative:
                return self._count(FaultDecision("error", status, None, latency))
        cumulative += plan.rate_limit_rate
        if draw < cumulative:
            return self._count(FaultDecision("rate_limit", 429, plan.retry_after_s, latency))
        cumulative += plan.timeout_after_write_rate
        if draw < cumulative:
            return self._count(
                FaultDecision(
                    "timeout_after_write", 0, None, latency, plan.timeout_after_write_delay_s
                )
            )
        return FaultDecision("pass", latency_s=latency)

    def _scripted(self, word: str, latency: float) -> FaultDecision:
        plan = self._plan
        if word == "pass":
            return FaultDecision("pass", latency_s=latency)
        if word == "429":
            return FaultDecision("rate_limit", 429, plan.retry_after_s, latency)
        if word == "timeout_after_write":
            return FaultDecision(
                "timeout_after_write", 0, None, latency, plan.timeout_after_write_delay_s
            )
        return FaultDecision("error", int(word), None, latency)

    def _count(self, decision: FaultDecision) -> FaultDecision:
        label = decision.kind if decision.kind != "error" else str(decision.status)
        if decision.kind != "pass":
            self.injected[label] += 1
        return decision

    def snapshot(self) -> dict[str, Any]:
        """Current plan, what has been injected since it was installed, and outage state."""
        remaining = max(0.0, self._outage_until - time.monotonic())
        return {
            "plan": self._plan.to_json(),
            "decisions": self._decisions,
            "injected": dict(sorted(self.injected.items())),
            "script_remaining": list(self._script),
            "outage_remaining_s": round(remaining, 3),
        }


class FaultMiddleware:
    """ASGI middleware that applies :class:`FaultInjector` decisions."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, render_error: ErrorRenderer) -> None:
        """Wrap ``app``; errors are rendered in the stand-in's dialect by ``render_error``."""
        self.app = app
        self.injector = injector
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decide, then fail, delay, stall or pass the request through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = self.injector.decide(scope["path"])
        scope.setdefault("state", {})["fault"] = decision.kind
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.kind in ("error", "rate_limit", "outage"):
            message = {
                "error": f"injected fault: HTTP {decision.status}",
                "rate_limit": "injected fault: too many requests",
                "outage": "injected fault: service unavailable (outage window)",
            }[decision.kind]
            response = self.render_error(decision.status, message)
            if decision.retry_after_s is not None:
                response.headers["Retry-After"] = str(decision.retry_after_s)
            await response(scope, receive, send)
            return
        if decision.kind == "timeout_after_write":
            await self._apply_then_stall(scope, receive, send, decision.delay_s)
            return
        await self.app(scope, receive, send)

    async def _apply_then_stall(
        self, scope: Scope, receive: Receive, send: Send, delay_s: float
    ) -> None:
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        # The request is applied in full (the write is durable) before the stall begins.
        await self.app(scope, receive, hold)
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            done, _ = await asyncio.wait({disconnected}, timeout=delay_s)
        finally:
            disconnected.cancel()
        if disconnected in done:
            return  # the client gave up: the response is dropped
        for message in held:
            await send(message)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
