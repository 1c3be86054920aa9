"""One campaign, start to end.

1. Start a local broker (and, in ``postgres`` mode, a PostgreSQL cluster for the ledger
   that two publish instances share), the stand-ins behind recording proxies, the three
   services and the console.
2. Phase 1: feed the first half of every seeded stream over half the fault time while the
   schedule kills, restarts and breaks things; then clear the target faults and wait for
   quiescence (the stream's model needs phase 1 delivered before phase 2).
3. Phase 2: feed the second half and, for every format, real messages of one tenant on
   another tenant's topic (a payload claiming another institution), with a second
   schedule including a broker restart.
4. Stop the faults, wait for quiescence (bounded) and check: end state against the model,
   remote writes per resource, every input accounted for, lag, zombies, leaks, the
   console's replay without credentials. Then the fuzz run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shlex
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from cayg_campaign import checks
from cayg_campaign.chaos import Chaos, ChaosLog, schedule
from cayg_campaign.fuzz import FuzzReport, run_fuzz
from cayg_campaign.processes import LocalBroker, throwaway_postgres
from cayg_campaign.stack import CampaignStack, Mode
from cayg_campaign.stream import HARBOR, SIZES, TENANTS, Expected, MessyStream, messy_stream
from cayg_campaign.targets import parked_reasons
from cayg_ops.feed import FeedMessage, mixed_feed


@dataclass(frozen=True)
class Options:
    seed: int
    minutes: float
    mode: Mode = "sqlite"
    short: bool = False
    fuzz_cases: int = 100_000
    workdir: Path | None = None
    #: The exact command, for the report.
    command: str = ""


@dataclass
class Result:
    """Everything a campaign measured."""

    options: Options
    events: int = 0
    hostile_sent: int = 0
    ctid_claims_sent: int = 0
    ctid_claims_refused: int = 0
    chaos: ChaosLog = field(default_factory=ChaosLog)
    end: checks.EndState = field(default_factory=checks.EndState)
    writes: checks.Writes = field(default_factory=checks.Writes)
    conservation: checks.Conservation = field(default_factory=checks.Conservation)
    lag: int = -1
    zombies: list[str] = field(default_factory=list)
    leaks: checks.Leaks = field(default_factory=checks.Leaks)
    console: list[str] = field(default_factory=list)
    fuzz: FuzzReport = field(default_factory=FuzzReport)
    recover_s: float | None = None
    quiescence_error: str | None = None
    wall_s: float = 0.0
    workdir: Path | None = None

    @property
    def problems(self) -> dict[str, list[str]]:
        """Every check that failed, with its lines (empty when the campaign passed)."""
        found = {
            "lost": self.end.lost,
            "stale overwrites": self.end.stale,
            "unexplained at the targets": self.end.unexplained,
            "dead letters differ from the model": self.end.parked,
            "duplicate effects": self.writes.duplicates,
            "cross-tenant writes": [
                *self.writes.cross_tenant,
                *self.conservation.hostile_admitted,
            ],
            "inputs not accounted for": self.conservation.missing,
            "alive but not consuming": self.zombies,
            "leaks": self.leaks.found,
            "operator actions without authentication": self.console,
            "fuzz": self.fuzz.failures,
            "quiescence": [self.quiescence_error] if self.quiescence_error else [],
            "consumer lag at the end": [f"lag {self.lag}"] if self.lag != 0 else [],
        }
        if self.ctid_claims_sent != self.ctid_claims_refused:
            found["claims on another tenant's CTID not refused"] = [
                f"{self.ctid_claims_refused} of {self.ctid_claims_sent} parked as ctid-conflict"
            ]
        if self.hostile_sent != self.conservation.hostile_refused:
            found["cross-tenant inputs not refused"] = [
                f"{self.hostile_sent - self.conservation.hostile_refused} of "
                f"{self.hostile_sent} not parked as tenant-mismatch"
            ]
        return {what: lines for what, lines in found.items() if lines}


def streams_for(options: Options) -> list[MessyStream]:
    """The seeded streams: two small ones for a short campaign, else one large one per
    three minutes (at least one) and two small ones. Seeds never share ids."""
    if options.short:
        return [messy_stream(options.seed * 100 + n, SIZES["small"]) for n in range(2)]
    large = max(1, round(options.minutes / 3))
    return [
        *(messy_stream(options.seed * 100 + n, SIZES["large"]) for n in range(large)),
        *(messy_stream(options.seed * 100 + 50 + n, SIZES["small"]) for n in range(2)),
    ]


def _valid_by_format(streams: Sequence[MessyStream]) -> dict[tuple[str, str], list[FeedMessage]]:
    """Phase 1's valid messages per tenant and format (content type and CloudEvent type)."""
    by_format: dict[tuple[str, str], list[FeedMessage]] = {}
    for stream in streams:
        for message in stream.phase1:
            if message.label.startswith(("bad", "unmappable", "duplicate")):
                continue
            kind = message.headers.get("content-type", "") + message.headers.get("ce_type", "")
            by_format.setdefault((message.tenant, kind), []).append(message)
    return by_format


def hostile_messages(
    streams: Sequence[MessyStream], rng: random.Random, seed: int
) -> list[FeedMessage]:
    """Payloads claiming another institution than their topic's tenant: real, valid
    messages of one tenant sent on another tenant's topic (a few of every tenant's
    formats), and the operator feed's spoofs of each field that names an institution
    (Ethos publisher and tenant, CloudEvent source, backfill institution, an Ethos body
    of another publisher)."""
    out = [
        FeedMessage(m.tenant, m.key, m.value, m.headers, "hostile")
        for m in mixed_feed(seed=seed, learners_per_tenant=15)
        if m.label.startswith("bad:spoofed")
    ]
    for (tenant, _kind), messages in sorted(_valid_by_format(streams).items()):
        others = [t for t in TENANTS if t != tenant]
        for message in rng.sample(messages, min(3, len(messages))):
            out.append(
                FeedMessage(
                    rng.choice(others), message.key, message.value, message.headers, "hostile"
                )
            )
    return out


def ctid_claims(streams: Sequence[MessyStream], expected: Expected) -> list[FeedMessage]:
    """Harbor Tech's definition events stating another tenant's definition CTID (a new
    event id each): normalize must refuse them (``ctid-conflict``) and nothing may change
    at the registry."""
    foreign = sorted(c for c, d in expected.definitions.items() if d.tenant != HARBOR)
    out: list[FeedMessage] = []
    for stream in streams:
        for message in stream.phase1:
            if message.tenant != HARBOR or message.label != "definition" or len(out) >= 6:
                continue
            binary = "ce_type" in message.headers
            body = json.loads(message.value)
            data = body if binary else body["data"]
            kind = message.headers.get("ce_type") if binary else body.get("type")
            if kind != "org.caygsync.definition.upserted.v1" or not foreign:
                continue
            data["ctid"] = foreign[len(out) % len(foreign)]
            headers = dict(message.headers)
            event_id = f"campaign-ctid-claim-{len(out)}"
            if binary:
                headers["ce_id"] = event_id
            else:
                body["id"] = event_id
            out.append(
                FeedMessage(HARBOR, message.key, json.dumps(body).encode(), headers, "ctid-claim")
            )
    return out


async def _feed_over(
    bootstrap: str, messages: Sequence[FeedMessage], seconds: float, topics: Any
) -> list[tuple[str, int, int]]:
    """Send ``messages`` spread over ``seconds``; retry through a broker restart. Returns
    each record's coordinates."""
    sent: list[tuple[str, int, int]] = []
    producer: AIOKafkaProducer | None = None
    started = time.monotonic()
    for n, message in enumerate(messages):
        due = started + seconds * n / max(1, len(messages))
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for _attempt in range(120):
            try:
                if producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=bootstrap,
                        acks="all",
                        enable_idempotence=True,
                        max_request_size=4 * 1024 * 1024,
                        request_timeout_ms=10_000,
                    )
                    await producer.start()
                meta = await producer.send_and_wait(
                    topics.sis(message.tenant),
                    message.value,
                    key=message.key,
                    headers=[(k, v.encode()) for k, v in message.headers.items()],
                )
                sent.append((meta.topic, meta.partition, meta.offset))
                break
            except Exception:  # noqa: BLE001 - the broker is restarting: try again
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                producer = None
                await asyncio.sleep(1)
        else:
            raise RuntimeError("could not send to the broker for two minutes")
    if producer is not None:
        await producer.stop()
    return sent


@contextlib.contextmanager
def _ledger(mode: Mode) -> Iterator[str | None]:
    if mode == "postgres":
        with throwaway_postgres() as dsn:
            yield dsn
    else:
        yield None


def _say(text: str) -> None:
    print(f"[campaign] {text}", flush=True)


async def run(options: Options) -> Result:
    """Run the campaign described by ``options``."""
    result = Result(options)
    wall = time.monotonic()
    base = options.workdir or Path(tempfile.mkdtemp(prefix=f"cayg-campaign-{options.seed}-"))
    base.mkdir(parents=True, exist_ok=True)
    result.workdir = base
    rng = random.Random(options.seed)  # noqa: S311 - a reproducible campaign
    streams = streams_for(options)
    expected = Expected()
    for stream in streams:
        expected.merge(stream.expected)
    hostile = hostile_messages(streams, rng, options.seed)
    expected.parked["ingest", "tenant-mismatch"] += len(hostile)
    claims = ctid_claims(streams, expected)
    expected.parked["normalize", "ctid-conflict"] += len(claims)
    phase1 = [m for s in streams for m in s.phase1]
    phase2 = [m for s in streams for m in s.phase2]
    mixed2 = list(phase2)
    for message in [*hostile, *claims]:
        mixed2.insert(rng.randrange(len(mixed2) + 1), message)
    result.events = len(phase1) + len(phase2)
    result.hostile_sent = len(hostile)
    result.ctid_claims_sent = len(claims)
    fault_s = options.minutes * 60
    kills = 10 if options.short else max(12, round(options.minutes * 4))
    _say(f"workdir {base}; {result.events} events, {len(hostile)} hostile, {fault_s:.0f} s")

    with LocalBroker(base) as broker, _ledger(options.mode) as dsn:
        stack = CampaignStack(base, broker, options.mode, dsn)
        try:
            await asyncio.to_thread(stack.start)
            _say(f"stack up ({', '.join(stack.services)}) in {time.monotonic() - wall:.0f} s")
            chaos = Chaos(stack, result.chaos, time.monotonic())
            supervisor = asyncio.create_task(chaos.supervise())
            services = list(stack.services)
            hostile_at: set[tuple[str, int, int]] = set()
            for phase, messages, broker_restart in ((1, phase1, False), (2, mixed2, True)):
                events = schedule(
                    rng,
                    services,
                    fault_s / 2,
                    kills=kills,
                    restarts=1 if options.short else 2,
                    broker_restart=broker_restart,
                )
                _say(f"phase {phase}: {len(messages)} messages, {len(events)} faults")
                sent, _ = await asyncio.gather(
                    _feed_over(broker.bootstrap, messages, fault_s / 2 * 0.8, stack.topics),
                    chaos.run(events),
                )
                if phase == 2:
                    hostile_at = {sent[n] for n, m in enumerate(messages) if m.label == "hostile"}
                await chaos.clear_targets()
                result.chaos.last_fault_at = max(result.chaos.last_fault_at, time.monotonic())
                try:
                    idle = await stack.wait_idle(timeout_s=240 if options.short else 600)
                    if phase == 2:
                        result.recover_s = max(0.0, idle - result.chaos.last_fault_at)
                except TimeoutError as error:
                    result.quiescence_error = f"phase {phase}: {error}"
                    _say(result.quiescence_error)
                    break
                _say(f"phase {phase} idle")
            chaos.stop_supervising()
            await supervisor
            (base / "timeline.txt").write_text("\n".join(result.chaos.timeline) + "\n")
            await _check(stack, expected, streams, hostile_at, result)
        finally:
            await asyncio.to_thread(stack.close)
    _say(f"fuzz: {options.fuzz_cases} cases")
    result.fuzz = await asyncio.to_thread(run_fuzz, options.fuzz_cases, options.seed, quiet=False)
    result.wall_s = time.monotonic() - wall
    return result


async def _check(
    stack: CampaignStack,
    expected: Expected,
    streams: Sequence[MessyStream],
    hostile: set[tuple[str, int, int]],
    result: Result,
) -> None:
    parked = await parked_reasons(stack.bootstrap, stack.topics)
    result.ctid_claims_refused = parked.get("normalize", []).count("ctid-conflict")
    result.end = await asyncio.to_thread(checks.end_state, stack, expected, parked)
    result.writes = checks.writes(stack, expected, result.chaos.killed_at)
    result.conservation = await checks.conservation(stack, TENANTS, hostile)
    lags = await stack.lags()
    result.lag = sum(g.lag for g in lags) if all(g.partitions for g in lags) else -1
    result.console = await checks.console_refuses_anonymous_replay(stack)
    # Last: the probes add records (exact re-sends, one per tenant and format).
    probes = [m for group in _valid_by_format(streams).values() for m in group[:4]]

    async def send(messages: Sequence[FeedMessage]) -> None:
        await _feed_over(stack.bootstrap, messages, 0, stack.topics)

    result.zombies = await checks.zombies(stack, probes, send, idle_timeout_s=120)
    identifiers = checks.learner_identifiers(m for s in streams for m in [*s.phase1, *s.phase2])
    result.leaks = checks.leaks(stack.log_files(), checks.campaign_secrets(stack), identifiers)


def command_line(argv: Sequence[str]) -> str:
    return "uv run cayg-campaign " + shlex.join(argv)


def counts(values: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "none"
