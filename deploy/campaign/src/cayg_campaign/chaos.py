"""Faults while the stream flows: a seeded schedule of SIGKILLs across every service and
instance, graceful restarts, a broker restart and target faults (outages, 5xx bursts, 429
storms with Retry-After, timeouts after the target applied the write, slow answers),
and a supervisor that starts again what is not running, as systemd's ``Restart=always``
would."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from cayg_campaign.stack import CampaignStack

#: Target faults: name -> (fault plan for the stand-in's ``/_admin/faults``, seconds).
TARGET_FAULTS: Final[dict[str, tuple[dict[str, Any], float]]] = {
    "outage": ({"outage_s": 5.0}, 5.0),
    "5xx-burst": ({"error_rates": {"503": 0.5, "500": 0.2}}, 5.0),
    "429-storm": ({"rate_limit_rate": 0.6, "retry_after_s": 1}, 5.0),
    "timeout-after-write": ({"timeout_after_write_rate": 0.3}, 6.0),
    "slow": ({"latency_ms": 1500}, 6.0),
}
#: How long the supervisor leaves a process that is down before starting it again.
RESTART_AFTER_S: Final = 1.0


@dataclass
class Event:
    """One fault at ``at`` seconds into its phase."""

    at: float
    kind: str
    subject: str


@dataclass
class ChaosLog:
    """What was injected and what the processes did."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    target_faults: Counter[str] = field(default_factory=Counter)
    #: Processes that ended by themselves (not killed or stopped by the campaign), with
    #: their exit status: a fail-fast start while the broker was away, or a crash.
    exits: list[str] = field(default_factory=list)
    supervisor_starts: int = 0
    #: Wall-clock time (``time.time()``) of every SIGKILL, per process.
    killed_at: dict[str, list[float]] = field(default_factory=dict)
    last_fault_at: float = 0.0
    timeline: list[str] = field(default_factory=list)

    def note(self, started: float, text: str) -> None:
        self.timeline.append(f"{time.monotonic() - started:7.1f} s  {text}")


def schedule(
    rng: random.Random,
    services: list[str],
    seconds: float,
    *,
    kills: int,
    restarts: int,
    broker_restart: bool,
) -> list[Event]:
    """The faults of one phase: ``kills`` SIGKILLs covering every service before any is
    killed twice, ``restarts`` graceful restarts, optionally a broker restart, and every
    target fault once on each target, at seeded moments within the first 85 %."""
    events: list[Event] = []
    window = seconds * 0.85
    victims: list[str] = []
    while len(victims) < kills:
        victims.extend(rng.sample(services, len(services)))
    events.extend(Event(rng.uniform(1, window), "kill", v) for v in victims[:kills])
    events.extend(
        Event(rng.uniform(1, window), "restart", rng.choice(services)) for _ in range(restarts)
    )
    if broker_restart:
        events.append(Event(rng.uniform(window * 0.3, window * 0.6), "broker-restart", "kafka"))
    for target in ("registry", "clr"):
        kinds = list(TARGET_FAULTS)
        rng.shuffle(kinds)
        slot = window / len(kinds)
        for n, kind in enumerate(kinds):
            events.append(Event(n * slot + rng.uniform(0, slot * 0.3), kind, target))
    return sorted(events, key=lambda e: e.at)


class Chaos:
    """Runs schedules against a stack and keeps it supervised."""

    def __init__(self, stack: CampaignStack, log: ChaosLog, started: float) -> None:
        self.stack = stack
        self.log = log
        self.started = started
        #: Processes the campaign took down on purpose (not to be counted as exits).
        self._intended: set[str] = set()
        self._broker_down = False
        self._supervising = True

    async def run(self, events: list[Event]) -> None:
        """Inject ``events`` (``at`` relative to now)."""
        phase_start = time.monotonic()
        for event in events:
            delay = phase_start + event.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._inject(event)
            self.log.last_fault_at = time.monotonic()

    async def _inject(self, event: Event) -> None:
        if event.kind == "kill":
            service = self.stack.services[event.subject]
            # Down from an earlier fault: the supervisor starts it again within seconds.
            for _ in range(60):
                if service.alive():
                    break
                await asyncio.sleep(0.5)
            else:
                self.log.note(self.started, f"{event.subject} not running: kill skipped")
                return
            self._intended.add(event.subject)
            service.kill()
            self.log.killed_at.setdefault(event.subject, []).append(time.time())
            self.log.kills[event.subject] += 1
            self.log.note(self.started, f"SIGKILL {event.subject}")
        elif event.kind == "restart":
            service = self.stack.services[event.subject]
            if not service.alive():
                return
            self._intended.add(event.subject)
            await asyncio.to_thread(service.stop)
            self.log.restarts[event.subject] += 1
            self.log.note(self.started, f"graceful restart of {event.subject}")
        elif event.kind == "broker-restart":
            self._broker_down = True
            self.log.note(self.started, "broker stopped")
            await asyncio.to_thread(self.stack.broker.stop)
            await asyncio.sleep(5)
            await asyncio.to_thread(self.stack.broker.start)
            self._broker_down = False
            self.log.broker_restarts += 1
            self.log.note(self.started, "broker started again")
        else:
            plan, seconds = TARGET_FAULTS[event.kind]
            url = self.stack.standin_url(event.subject)
            seed = random.Random(event.at).randrange(1 << 30)  # noqa: S311 - fault draws
            await asyncio.to_thread(
                self.stack.admin, "POST", f"{url}/_admin/faults", json={**plan, "seed": seed}
            )
            self.log.target_faults[f"{event.subject}:{event.kind}"] += 1
            self.log.note(self.started, f"{event.kind} at the {event.subject} for {seconds} s")
            asyncio.get_running_loop().call_later(
                seconds, lambda: asyncio.ensure_future(self._clear(url))
            )

    async def _clear(self, url: str) -> None:
        await asyncio.to_thread(self.stack.admin, "DELETE", f"{url}/_admin/faults")

    async def clear_targets(self) -> None:
        for target in ("registry", "clr"):
            await self._clear(self.stack.standin_url(target))

    async def supervise(self) -> None:
        """Start again every service that is down (after ``RESTART_AFTER_S``); note the ones
        that ended by themselves. It starts them while the broker is away too: a service
        must then end (fail-fast) rather than run without consuming."""
        while self._supervising:
            for name, service in self.stack.services.items():
                if service.alive():
                    continue
                if name not in self._intended:
                    status = service.exit_status()
                    self.log.exits.append(f"{name} exited with status {status}")
                    self.log.note(self.started, f"{name} exited by itself ({status})")
                await asyncio.sleep(RESTART_AFTER_S)
                self._intended.discard(name)
                service.launch()
                self.log.supervisor_starts += 1
            await asyncio.sleep(0.5)

    def stop_supervising(self) -> None:
        self._supervising = False
