"""The measurements: each stage alone on a preloaded topic, end to end at offered rates,
backfill, scale-out and a profile.

Every stage runs on its own topic prefix (``bench-<run>-<stage>.``), so stages never read
each other's records and a run never reads an earlier run's. Throughput of a service is
records moved from the moment it is ready until its consumer group's committed offsets reach
the end of its input (everything it read is then settled, outputs included).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from cayg_bench import export, kafka, raw, sampled
from cayg_bench.procs import (
    TENANTS_FILE,
    Proc,
    cpu_seconds,
    free_port,
    proc_status,
    service,
    start_all,
    stop_all,
    tree_cpu_seconds,
)
from cayg_bench.records import TENANTS, SisRecord, backfill_rows, mean_size
from cayg_ops.demo import Ports, publish_config, standin_components, tenant_secrets
from cayg_publish.domain.render.openbadges import credential_id
from cayg_shared.headers import CORRELATION_ID
from cayg_shared.schema.change import EntityKey
from cayg_shared.schema.vocab import EntityType
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics

#: Publish runs as the demo runs it: two lanes, so the registry never holds up the CLR host.
PUBLISH_LANES: Final = {"registry": "*-registry", "clr": "*-clr"}
_DOCUMENTS: Final = re.compile(r"^cayg_publish_documents\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
_STATE: Final = re.compile(r'state="([^"]*)"')


@dataclass
class Context:
    """What every stage needs: the broker, a work directory, this run's id and limits."""

    bootstrap: str
    work: Path
    run_id: str
    drain_timeout_s: float
    #: The broker's process when this machine runs it (``kafka.sh``), else None: its CPU
    #: time per record is reported beside each stage's.
    broker_pid: int | None = None

    def broker_cpu_s(self) -> float | None:
        """CPU time the broker has used so far (None when its process is not known)."""
        return None if self.broker_pid is None else cpu_seconds(self.broker_pid)

    def topics(self, stage: str) -> Topics:
        """The topic namespace of one stage of this run."""
        return Topics(f"bench-{self.run_id}-{stage}.")

    def logs(self, stage: str) -> Path:
        """Where a stage's processes log."""
        path = self.work / "logs" / stage
        path.mkdir(parents=True, exist_ok=True)
        return path


def _all_topics(topics: Topics) -> list[str]:
    return [topics.sis(t) for t in TENANTS] + [
        topics.ingested,
        topics.normalized,
        topics.ingest_dlq,
        topics.normalize_dlq,
        topics.publish_dlq,
    ]


async def preload(ctx: Context, topics: Topics, records: Sequence[SisRecord]) -> None:
    """Create the stage's topics (3 partitions each) and write ``records`` to its SIS topics."""
    await kafka.create_topics(ctx.bootstrap, _all_topics(topics))
    await kafka.produce_all(ctx.bootstrap, [r.to(topics) for r in records])


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --------------------------------------------------------------------------- raw limit


def raw_limit(ctx: Context, records: Sequence[SisRecord]) -> dict[str, Any]:
    """Batched and per-record aiokafka passthrough over the same records."""
    topics = ctx.topics("raw")
    asyncio.run(preload(ctx, topics, records))
    out: dict[str, Any] = {}
    # One untimed batched pass first: a broker started moments ago is still compiling its
    # hot paths (JIT), and the limit would come out low, flattering every ratio to it.
    warmup = _passthrough(ctx, topics, "warmup", batched=True)
    out["warmup_records_per_s"] = warmup["records_per_s"]
    for variant, batched in (("batched", True), ("per_record", False)):
        out[variant] = _passthrough(ctx, topics, variant, batched=batched)
    return out


def _passthrough(ctx: Context, topics: Topics, variant: str, *, batched: bool) -> dict[str, Any]:
    """One passthrough of everything on the stage's SIS topics, with the broker's CPU."""
    broker_before = ctx.broker_cpu_s()
    out = asyncio.run(
        raw.passthrough(
            ctx.bootstrap,
            [topics.sis(t) for t in TENANTS],
            f"{topics.prefix}raw.{variant}",
            f"{topics.prefix}raw-{variant}",
            batched=batched,
            timeout_s=ctx.drain_timeout_s,
        )
    )
    out["broker_cpu_us_per_record"] = _per_record(broker_before, ctx.broker_cpu_s(), out["records"])
    return out


def paired_rounds(ctx: Context, records: Sequence[SisRecord], rounds: int) -> dict[str, Any]:
    """``rounds`` more pairs of the batched raw limit and ingest and normalize alone, one
    right after the other on fresh topics: on a shared machine one pair can differ from the
    next by a fifth, so the ratio of each pair, and their median, say more than one pair."""
    out: list[dict[str, Any]] = []
    for index in range(rounds):
        stage = f"round{index + 2}"
        topics = ctx.topics(stage)
        asyncio.run(preload(ctx, topics, records))
        limit = _passthrough(ctx, topics, "batched", batched=True)
        alone = services_alone(ctx, records, stage=stage, preloaded=True)
        out.append({"round": index + 2, "raw_batched": limit, **alone})
    return {"rounds": out}


def _per_record(before: float | None, after: float | None, records: int) -> float | None:
    """CPU microseconds per record between two readings of one process (None: unknown)."""
    if before is None or after is None or not records:
        return None
    return round((after - before) / records * 1e6, 1)


# --------------------------------------------------------------------------- services alone


def _drain(
    ctx: Context, procs: Sequence[Proc], group: str, inputs: Sequence[str]
) -> dict[str, Any]:
    """Start ``procs`` (one service, one or more instances) on preloaded ``inputs`` and time
    them until ``group`` has committed everything (commits watched from launch)."""
    ends = asyncio.run(kafka.end_offsets(ctx.bootstrap, inputs))
    # With children: a service's decision workers are part of it (CPU and memory).
    sampler = _Sampler(procs, children=True)

    cpu_at_ready: dict[str, float] = {}
    cpu_at_done: dict[str, float] = {}
    broker_cpu: dict[str, float | None] = {}

    async def run() -> kafka.Progress:
        for proc in procs:
            proc.launch()
        watching = asyncio.create_task(
            kafka.watch_commits(
                ctx.bootstrap,
                group,
                ends,
                timeout_s=ctx.drain_timeout_s,
                members=sum(proc.members for proc in procs),
            )
        )
        for proc in procs:
            await asyncio.to_thread(proc.wait_ready)
            cpu_at_ready[proc.name] = tree_cpu_seconds(proc.pid)
        broker_cpu["ready"] = ctx.broker_cpu_s()
        sampler.start()
        progress = await watching
        broker_cpu["done"] = ctx.broker_cpu_s()
        cpu_at_done.update({proc.name: tree_cpu_seconds(proc.pid) for proc in procs})
        return progress

    try:
        progress = asyncio.run(run())
    finally:
        if sampler.started:
            sampler.stop()
        stop_all(procs)
    launched = min(p.launched_at for p in procs)
    rate, seconds = progress.rate(launched)
    return {
        "instances": len(procs),
        "records": progress.total - progress.behind,
        "records_offered": progress.total,
        "drained": progress.behind == 0,
        "seconds": round(seconds, 3),
        "records_per_s": round(rate, 1),
        "launch_to_done_s": round(progress.done_at - launched, 2),
        "startup_s": round(max(p.ready_at for p in procs) - launched, 2),
        "peak_rss_mib": {p.name: round(p.peak_rss_kib / 1024, 1) for p in procs},
        "peak_pss_with_children_mib": {p.name: round(p.tree_peak_pss_kib / 1024, 1) for p in procs},
        "cpu_us_per_record": _cpu_per_record(cpu_at_ready, cpu_at_done, progress.total),
        "broker_cpu_us_per_record": _per_record(
            broker_cpu.get("ready"), broker_cpu.get("done"), progress.total
        ),
    }


def _cpu_per_record(
    before: dict[str, float], after: dict[str, float], records: int
) -> float | None:
    """CPU microseconds the service's processes used per record, from ready to drained: a
    figure other work on a shared machine disturbs less than records/s (though not nothing)."""
    if not records or not after:
        return None
    used = sum(after[name] - before.get(name, 0.0) for name in after)
    return round(used / records * 1e6, 1)


class _Sampler:
    """Reads every process's memory high-water mark once a second while a stage runs (the
    last reading before a process stops is taken by ``Proc.stop`` itself), and keeps each
    reading of the resident set: (monotonic time, KiB) per process. With ``children``,
    the readings and :attr:`Proc.tree_peak_rss_kib` count each process's children too
    (publish's signing workers; a scan of ``/proc`` per process and second)."""

    def __init__(self, procs: Sequence[Proc], *, children: bool = False) -> None:
        self.procs = list(procs)
        self.children = children
        self.rss: dict[str, list[tuple[float, int]]] = {p.name: [] for p in self.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = False

    def start(self) -> None:
        self._thread.start()
        self.started = True

    def stop(self) -> None:
        """Stop sampling (nothing to do when it never started: a process failed to start,
        and that error, not this one, is what the section reports)."""
        self._stop.set()
        if self.started:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for proc in self.procs:
                proc.sample(children=self.children)
                rss = proc.tree_rss_kib if self.children else proc.rss_kib
                self.rss[proc.name].append((time.monotonic(), rss))

    def rss_timeline(self, since: float, points: int = 12) -> list[dict[str, float]]:
        """About ``points`` readings spread over the run: seconds after ``since`` and each
        process's resident set then (MiB)."""
        length = max((len(v) for v in self.rss.values()), default=0)
        if not length:
            return []
        step = max(1, -(-length // points))
        picks = sorted({*range(0, length, step), length - 1})
        out: list[dict[str, float]] = []
        for i in picks:
            row: dict[str, float] = {}
            for name, readings in self.rss.items():
                if i < len(readings):
                    row.setdefault("s", round(readings[i][0] - since, 1))
                    row[name] = round(readings[i][1] / 1024, 1)
            out.append(row)
        return out


def services_alone(
    ctx: Context,
    records: Sequence[SisRecord],
    *,
    instances: int = 1,
    stage: str = "alone",
    preloaded: bool = False,
    consumers: int | None = None,
) -> dict[str, Any]:
    """Ingest on preloaded SIS topics, then normalize on what ingest wrote: each alone.
    (``preloaded``: the stage's SIS topics already hold ``records``; ``consumers``: each
    instance's ``CONSUMERS``, if not the harness's.)"""
    extra = {"CONSUMERS": str(consumers)} if consumers is not None else None
    topics = ctx.topics(stage)
    if not preloaded:
        asyncio.run(preload(ctx, topics, records))
    logs = ctx.logs(stage)
    ingest = [
        service(
            "ingest",
            bootstrap=ctx.bootstrap,
            prefix=topics.prefix,
            log_dir=logs,
            name=f"ingest-{i}",
            extra=extra,
        )
        for i in range(instances)
    ]
    result = {
        "ingest": _drain(
            ctx, ingest, f"{topics.prefix}cayg-ingest", [topics.sis(t) for t in TENANTS]
        )
    }
    normalize = [
        service(
            "normalize",
            bootstrap=ctx.bootstrap,
            prefix=topics.prefix,
            log_dir=logs,
            name=f"normalize-{i}",
            extra=extra,
        )
        for i in range(instances)
    ]
    result["normalize"] = _drain(
        ctx, normalize, f"{topics.prefix}cayg-normalize", [topics.ingested]
    )
    return result


# --------------------------------------------------------------------------- publish


@dataclass
class PublishStack:
    """The two stand-ins and publish's lanes on one topic prefix."""

    standins: list[Proc]
    lanes: list[Proc]
    clr_db: Path


def publish_stack(ctx: Context, topics: Topics, stage: str) -> PublishStack:
    """Stand-ins and publish lanes configured as the demo configures them (fresh state)."""
    base = ctx.work / stage
    base.mkdir(parents=True, exist_ok=True)
    registry = TenantRegistry.load(TENANTS_FILE)
    tenants = tenant_secrets(base, registry)
    ports = Ports(registry=free_port(), clr=free_port(), web=free_port())
    targets = publish_config(base, tenants, registry, ports)
    logs = ctx.logs(stage)
    standins = [
        Proc(c.name, c.argv, env=c.env, log_dir=logs, ready_url=c.ready_url)
        for c in standin_components(base, tenants, ports)
    ]
    lanes = [
        service(
            "publish",
            bootstrap=ctx.bootstrap,
            prefix=topics.prefix,
            log_dir=logs,
            name=f"publish-{lane}",
            extra={
                "TARGETS_FILE": str(targets),
                "LANE": lane,
                "LANE_TARGETS": json.dumps([pattern]),
                "RETRY_FIRST_S": "2",
                "RETRY_MAX_S": "10",
            },
        )
        for lane, pattern in PUBLISH_LANES.items()
    ]
    return PublishStack(standins, lanes, base / "clr" / "clr.sqlite3")


def _owed(lane: Proc) -> int:
    """Documents a lane still has to deliver (dirty or failing), from its ``/metrics``."""
    url = lane.ready_url.replace("/readyz", "/metrics")
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return -1
    owed = 0
    for labels, value in _DOCUMENTS.findall(text):
        state = _STATE.search(labels)
        if state and state.group(1) in ("dirty", "failing"):
            owed += int(float(value))
    return owed


def clr_writes(db: Path) -> list[tuple[float, float, list[str]]]:
    """Every record the CLR stand-in holds: (first written, last written, the award
    credential ids inside it), times as Unix seconds."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT created_at, updated_at, body_json FROM credentials WHERE api = 'clr'"
        ).fetchall()
    finally:
        conn.close()
    return [
        (
            datetime.fromisoformat(created).timestamp(),
            datetime.fromisoformat(updated).timestamp(),
            _award_ids(json.loads(body)),
        )
        for created, updated, body in rows
    ]


def clr_records(db: Path) -> dict[str, tuple[float, float, list[str]]]:
    """The CLR stand-in's records by id: (first written, last written, award credential
    ids inside it), times as Unix seconds."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT credential_id, created_at, updated_at, body_json FROM credentials"
            " WHERE api = 'clr'"
        ).fetchall()
    finally:
        conn.close()
    return {
        record: (
            datetime.fromisoformat(created).timestamp(),
            datetime.fromisoformat(updated).timestamp(),
            _award_ids(json.loads(body)),
        )
        for record, created, updated, body in rows
    }


def clr_upserts(db: Path) -> dict[str, int]:
    """Write requests the CLR stand-in answered, by outcome (created, replaced, unchanged,
    stale_ignored, rejected)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT outcome, SUM(n) FROM upsert_counts WHERE api = 'clr' GROUP BY outcome"
        ).fetchall()
    finally:
        conn.close()
    return {str(outcome): int(n) for outcome, n in rows}


def clr_state(db: Path) -> tuple[int, str]:
    """(records, the latest write) of the CLR stand-in: cheap to read while it is written
    (:func:`clr_writes` parses every record)."""
    if not db.exists():
        return 0, ""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count, latest = conn.execute(
            "SELECT COUNT(*), MAX(updated_at) FROM credentials WHERE api = 'clr'"
        ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0, ""
    finally:
        conn.close()
    return int(count), str(latest or "")


class _AwardArrivals:
    """Watches the CLR stand-in's records while the stream is offered and notes when each
    award credential first appears in its learner's record — a learner's first award and
    every later one alike (the record's own first write, ``created_at``, covers only the
    first). Every :data:`AWARD_POLL_S` it reads the records written since its last look,
    with the time of their write (``updated_at``); an award that came with a write it did
    not see by itself (two writes of one record between looks) is given the later write's
    time, so a figure is never earlier than the truth."""

    def __init__(self, db: Path) -> None:
        self.db = db
        #: Award credential id → Unix time of the first write of a record holding it.
        self.first_seen: dict[str, float] = {}
        self._since = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Take a last look and stop (nothing to do if it never started)."""
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        self._look()

    def _run(self) -> None:
        while not self._stop.wait(AWARD_POLL_S):
            self._look()

    def _look(self) -> None:
        if not self.db.exists():
            return
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT updated_at, body_json FROM credentials"
                " WHERE api = 'clr' AND updated_at >= ? ORDER BY updated_at",
                (self._since,),
            ).fetchall()
        except sqlite3.OperationalError:  # not created yet, or busy: next look
            return
        finally:
            conn.close()
        for updated, body in rows:
            at = datetime.fromisoformat(updated).timestamp()
            for award in _award_ids(json.loads(body)):
                self.first_seen.setdefault(award, at)
            self._since = max(self._since, str(updated))


#: How often :class:`_AwardArrivals` looks at the CLR stand-in's records.
AWARD_POLL_S: Final = 0.1


def _award_ids(body: Any) -> list[str]:
    """Ids of the AchievementCredentials nested in a ClrCredential (wherever they sit)."""
    found: list[str] = []
    if isinstance(body, dict):
        for name, value in body.items():
            if name == "verifiableCredential" and isinstance(value, list):
                found += [str(v["id"]) for v in value if isinstance(v, dict) and "id" in v]
            else:
                found += _award_ids(value)
    elif isinstance(body, list):
        for item in body:
            found += _award_ids(item)
    return found


def wait_publish_idle(
    ctx: Context, stack: PublishStack, topics: Topics, settle_s: float = 6.0
) -> dict[str, Any]:
    """Wait until each lane has committed everything and owes nothing, and the CLR host's
    records have stopped changing for ``settle_s`` (longer than the gauge's refresh)."""
    ends = asyncio.run(kafka.end_offsets(ctx.bootstrap, [topics.normalized]))
    deadline = time.monotonic() + ctx.drain_timeout_s
    behind = 0
    for lane in PUBLISH_LANES:
        _, behind_lane = asyncio.run(
            kafka.wait_committed(
                ctx.bootstrap,
                f"{topics.prefix}cayg-publish.{lane}",
                ends,
                timeout_s=max(1.0, deadline - time.monotonic()),
            )
        )
        behind += behind_lane
    last: tuple[int, str] | None = None
    stable_since = time.monotonic()
    owed = -1
    while time.monotonic() < deadline:
        state = clr_state(stack.clr_db)
        owed = sum(max(0, _owed(lane)) for lane in stack.lanes)
        if state != last:
            last, stable_since = state, time.monotonic()
        elif owed == 0 and time.monotonic() - stable_since >= settle_s:
            break
        time.sleep(1.0)
    return {"behind": behind, "owed": owed, "idle": behind == 0 and owed == 0}


def publish_alone(ctx: Context, source_stage: str = "alone") -> dict[str, Any]:
    """Publish (both lanes) with the stand-ins on what normalize wrote in ``source_stage``."""
    topics = ctx.topics(source_stage)
    changes = asyncio.run(_read_changes(ctx.bootstrap, topics.normalized))
    awards = sum(1 for c in changes if c["entity_type"] == EntityType.CREDENTIAL_AWARD.value)
    stack = publish_stack(ctx, topics, "publish")
    start_all(stack.standins)
    sampler = _Sampler(stack.lanes)
    try:
        start_all(stack.lanes)
        sampler.start()
        # Timed from the CLR lane's readiness: it alone writes CLR records, and with a
        # small input it may be done before the registry lane is even ready.
        ready = next(p.ready_at for p in stack.lanes if p.name == "publish-clr")
        ready_wall = time.time() - (time.monotonic() - ready)
        idle = wait_publish_idle(ctx, stack, topics)
        # CPU used (each process with its children: the signing workers), a figure a
        # shared machine disturbs far less than awards/s.
        cpu = {p.name: tree_cpu_seconds(p.pid) for p in [*stack.lanes, *stack.standins]}
    finally:
        sampler.stop()
        stop_all(stack.lanes)
        stop_all(stack.standins)
    writes = clr_writes(stack.clr_db)
    last_write = max((w[1] for w in writes), default=ready_wall)
    delivered = len({a for w in writes for a in w[2]})
    seconds = last_write - ready_wall
    return {
        "changes": len(changes),
        "awards": awards,
        "awards_in_clr_records": delivered,
        "clr_records": len(writes),
        "seconds_to_last_clr_write": round(seconds, 3),
        "awards_per_s": _rate(delivered, seconds),
        "idle": idle,
        "peak_rss_mib": {p.name: round(p.peak_rss_kib / 1024, 1) for p in stack.lanes},
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.items()},
        "cpu_ms_per_award": {
            name: round(1000 * value / max(1, delivered), 2) for name, value in cpu.items()
        },
        "measured": "from the CLR lane ready to the CLR stand-in's last write (its updated_at)",
    }


async def _read_changes(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The entity keys of every change on ``topic``."""
    ends = await kafka.end_offsets(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        live = [tp for tp, end in ends.items() if end > 0]
        consumer.assign(live)
        await consumer.seek_to_beginning(*live)
        remaining = set(live)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, got in batch.items():
                out += [json.loads(r.value)["entity_key"] for r in got if r.value]
                if got and got[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


# --------------------------------------------------------------------------- end to end


def _percentiles(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    if len(ordered) == 1:
        cuts = [ordered[0]] * 99
    else:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "count": len(ordered),
        "p50_ms": round(cuts[49] * 1000, 1),
        "p95_ms": round(cuts[94] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


class _Watcher:
    """Reads ``cayg.normalized.v1`` from its end while records are offered and notes when
    each correlation id first arrives, and which award credentials each one caused."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.arrived: dict[str, float] = {}
        self.awards: dict[str, str] = {}
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(self.topic, p) for p in range(kafka.PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:
                await consumer.position(tp)
            self.ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        self._note(r.headers, r.value, now)
        finally:
            await consumer.stop()

    def _note(self, headers: Sequence[tuple[str, bytes]], value: bytes | None, now: float) -> None:
        tag = next((v.decode() for k, v in headers if k == CORRELATION_ID), None)
        if tag is None:
            return
        self.arrived.setdefault(tag, now)
        if value:
            key = json.loads(value)["entity_key"]
            if key["entity_type"] == EntityType.CREDENTIAL_AWARD.value:
                entity = EntityKey.model_validate(key)
                self.awards[credential_id(entity.tenant, str(entity))] = tag

    def stop(self) -> None:
        self._stop.set()


async def _offer(
    bootstrap: str, topics: Topics, records: Sequence[SisRecord], rate: float
) -> dict[str, float]:
    """Send ``records`` at ``rate`` per second; the wall time each was handed to the client."""
    client = kafka.producer(bootstrap, linger_ms=1)
    await client.start()
    sent: dict[str, float] = {}
    pending = []
    try:
        t0 = time.monotonic()
        for n, record in enumerate(records):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            topic, key, value, headers = record.to(topics)
            sent[record.correlation_id] = time.time()
            pending.append(
                await client.send(
                    topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
                )
            )
        await asyncio.gather(*pending)
        achieved = len(records) / (time.monotonic() - t0)
    finally:
        await client.stop()
    sent["__achieved_rate__"] = achieved
    return sent


async def _offer_and_watch(
    ctx: Context, topics: Topics, records: Sequence[SisRecord], rate: float
) -> tuple[dict[str, float], float]:
    sent = await _offer(ctx.bootstrap, topics, records, rate)
    achieved = sent.pop("__achieved_rate__")
    # Everything offered is settled once ingest, then normalize, have committed to the end.
    for group, inputs in (
        (f"{topics.prefix}cayg-ingest", [topics.sis(t) for t in TENANTS]),
        (f"{topics.prefix}cayg-normalize", [topics.ingested]),
    ):
        ends = await kafka.end_offsets(ctx.bootstrap, inputs)
        await kafka.wait_committed(ctx.bootstrap, group, ends, timeout_s=ctx.drain_timeout_s)
    await asyncio.sleep(0.5)
    return sent, achieved


#: Records offered (at the first rate) before the measured rates, and not counted in them:
#: the first documents after a lane starts wait for its signing workers' first work and
#: its first status lists. Their latency is reported on its own, as the cold start.
E2E_WARMUP_RECORDS = 100


async def _watched_offer(
    ctx: Context, topics: Topics, batch: Sequence[SisRecord], rate: float
) -> tuple[dict[str, float], float, dict[str, float], dict[str, str]]:
    """Offer ``batch`` at ``rate`` while watching ``cayg.normalized.v1``: produce times,
    the rate achieved, arrival times and award ids seen (by correlation id)."""
    watcher = _Watcher(ctx.bootstrap, topics.normalized)
    task = asyncio.create_task(watcher.run())
    await watcher.ready.wait()
    try:
        sent, achieved = await _offer_and_watch(ctx, topics, batch, rate)
    finally:
        watcher.stop()
        await task
    return sent, achieved, watcher.arrived, watcher.awards


def _clr_lags(
    writes: Sequence[tuple[float, float, list[str]]],
    awards: Mapping[str, str],
    sent: Mapping[str, float],
    tags: set[str],
) -> list[float]:
    """Per learner record: its first write minus the produce time of the earliest award
    among ``tags`` it holds."""
    lags = []
    for created, _updated, ids in writes:
        produced = [sent[awards[i]] for i in ids if i in awards and awards[i] in tags]
        if produced:
            lags.append(created - min(produced))
    return lags


def _award_lags(
    first_seen: Mapping[str, float],
    awards: Mapping[str, str],
    sent: Mapping[str, float],
    tags: set[str],
) -> dict[str, Any]:
    """Per award of ``tags``: when its learner's CLR first held it, minus its produce time;
    ``missing`` counts awards no record held by the end."""
    lags, missing = [], 0
    for award, tag in awards.items():
        if tag not in tags:
            continue
        if award in first_seen:
            lags.append(first_seen[award] - sent[tag])
        else:
            missing += 1
    return {**_percentiles(lags), "missing": missing}


def end_to_end(
    ctx: Context, records: Sequence[SisRecord], rates: Sequence[int], seconds: float
) -> dict[str, Any]:
    """The whole pipeline at each offered rate for ``seconds``, one rate after another,
    after a warm-up of :data:`E2E_WARMUP_RECORDS` (reported as the cold start)."""
    topics = ctx.topics("e2e")
    asyncio.run(kafka.create_topics(ctx.bootstrap, _all_topics(topics)))
    logs = ctx.logs("e2e")
    stack = publish_stack(ctx, topics, "e2e")
    pipeline = [
        service("ingest", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
        service("normalize", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
    ]
    everything = [*stack.standins, *pipeline, *stack.lanes]
    start_all(stack.standins)
    sampler = _Sampler([*pipeline, *stack.lanes], children=True)
    arrivals = _AwardArrivals(stack.clr_db)
    runs: list[dict[str, Any]] = []
    all_sent: dict[str, float] = {}
    awards: dict[str, str] = {}
    warm_tags: set[str] = set()
    warm_batch = records[: min(E2E_WARMUP_RECORDS, len(records) // 10)]
    try:
        start_all([*pipeline, *stack.lanes])
        sampler.start()
        arrivals.start()
        if warm_batch:
            sent, _, _, seen_awards = asyncio.run(_watched_offer(ctx, topics, warm_batch, rates[0]))
            all_sent.update(sent)
            awards.update(seen_awards)
            warm_tags = set(sent)
            wait_publish_idle(ctx, stack, topics)
        offset = len(warm_batch)
        for rate in rates:
            batch = records[offset : offset + int(rate * seconds)]
            offset += len(batch)
            sent, achieved, arrived, seen_awards = asyncio.run(
                _watched_offer(ctx, topics, batch, rate)
            )
            all_sent.update(sent)
            awards.update(seen_awards)
            latencies = [arrived[t] - sent[t] for t in sent if t in arrived]
            runs.append(
                {
                    "offered_per_s": rate,
                    "achieved_offer_per_s": round(achieved, 1),
                    "records": len(batch),
                    "to_normalized": {
                        **_percentiles(latencies),
                        "missing": len(batch) - len(latencies),
                    },
                    "_tags": set(sent),
                }
            )
        idle = wait_publish_idle(ctx, stack, topics)
    finally:
        sampler.stop()
        arrivals.stop()
        stop_all(everything)
    writes = clr_writes(stack.clr_db)
    for run in runs:
        tags = run.pop("_tags")
        run["to_clr_write"] = _percentiles(_clr_lags(writes, awards, all_sent, tags))
        run["award_to_clr"] = _award_lags(arrivals.first_seen, awards, all_sent, tags)
    return {
        "seconds_per_rate": seconds,
        "warmup": {
            "records": len(warm_batch),
            "offered_per_s": rates[0] if rates else None,
            "to_clr_write": _percentiles(_clr_lags(writes, awards, all_sent, warm_tags)),
            "award_to_clr": _award_lags(arrivals.first_seen, awards, all_sent, warm_tags),
        },
        "runs": runs,
        "publish_idle": idle,
        "peak_rss_mib": {p.name: round(p.peak_rss_kib / 1024, 1) for p in everything},
        "peak_pss_with_children_mib": {
            p.name: round(p.tree_peak_pss_kib / 1024, 1) for p in [*pipeline, *stack.lanes]
        },
        "clr_measured": "per learner record: its first write on the CLR stand-in (created_at) "
        "minus the produce time of the earliest award of this rate it holds",
        "award_measured": "per award: the first write of its learner's record on the CLR "
        f"stand-in that holds it (its updated_at, looked for every {AWARD_POLL_S:g} s) minus "
        "the award's produce time",
    }


# --------------------------------------------------------------------------- backfill


def backfill(ctx: Context, sizes: Sequence[int]) -> dict[str, Any]:
    """``cayg backfill`` of JSONL files of each size, with ingest and normalize running:
    the CLI's wall time and peak RSS, then how long the pipeline takes to drain it."""
    results = []
    for size in sizes:
        topics = ctx.topics(f"backfill{size}")
        asyncio.run(kafka.create_topics(ctx.bootstrap, _all_topics(topics)))
        file = ctx.work / f"backfill-{size}.jsonl"
        with file.open("w") as handle:
            for line in backfill_rows(size):
                handle.write(line + "\n")
        logs = ctx.logs(f"backfill{size}")
        pipeline = [
            service("ingest", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
            service("normalize", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
        ]
        sampler = _Sampler(pipeline, children=True)
        start_all(pipeline)
        sampler.start()
        try:
            cli = _run_cli(ctx, topics, file, size, logs / "cayg-backfill.log")
            ready = time.monotonic()
            drained: dict[str, Any] = {}
            for name, group, inputs in (
                ("ingest", f"{topics.prefix}cayg-ingest", [topics.sis("northfield-cc")]),
                ("normalize", f"{topics.prefix}cayg-normalize", [topics.ingested]),
            ):
                ends = asyncio.run(kafka.end_offsets(ctx.bootstrap, inputs))
                remaining = max(1.0, ctx.drain_timeout_s - (time.monotonic() - ready))
                done_at, behind = asyncio.run(
                    kafka.wait_committed(ctx.bootstrap, group, ends, timeout_s=remaining)
                )
                total = sum(ends.values())
                drained[name] = {
                    "records": total - behind,
                    "drained": behind == 0,
                    "seconds_after_cli": round(done_at - ready, 2),
                }
        finally:
            sampler.stop()
            stop_all(pipeline)
        results.append(
            {
                "rows": size,
                "file_mib": round(file.stat().st_size / 1_048_576, 1),
                "cli": cli,
                "pipeline": drained,
                "peak_rss_mib": {
                    "cayg backfill": cli["peak_rss_mib"],
                    **{p.name: round(p.peak_rss_kib / 1024, 1) for p in pipeline},
                },
                "peak_pss_with_children_mib": {
                    p.name: round(p.tree_peak_pss_kib / 1024, 1) for p in pipeline
                },
            }
        )
        file.unlink()
    return {"runs": results}


def _run_cli(ctx: Context, topics: Topics, file: Path, rows: int, log: Path) -> dict[str, Any]:
    """Run ``cayg backfill`` as its own process; wall time, exit code and peak RSS: its
    VmHWM, sampled every 50 ms while it runs (the high-water mark of its own address
    space). ``wait4``'s ``ru_maxrss`` is not used: on Linux it also counts the forked
    copy of this harness before ``exec``, so it reported the harness's size."""
    argv = [
        sys.executable,
        "-m",
        "cayg_ops",
        "--bootstrap",
        ctx.bootstrap,
        "--topic-prefix",
        topics.prefix,
        "backfill",
        str(file),
        "--tenant",
        "northfield-cc",
        "--tenants",
        str(TENANTS_FILE),
    ]
    started = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    peak = 0
    while True:
        pid, status, usage = _wait4_nohang(process.pid)
        if pid:
            break
        peak = max(peak, proc_status(process.pid).get("VmHWM", 0))
        time.sleep(0.05)
    wall = time.monotonic() - started
    del usage
    process.returncode = _exit_code(status)
    return {
        "exit_code": process.returncode,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "peak_rss_mib": round(peak / 1024, 1),
    }


def _wait4_nohang(pid: int) -> tuple[int, int, Any]:
    return os.wait4(pid, os.WNOHANG)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


# --------------------------------------------------------------------------- projection

_REQUESTS: Final = re.compile(
    r"^cayg_publish_request_duration_seconds_count\{([^}]*)\}\s+(\S+)$", re.MULTILINE
)
_LABEL: Final = re.compile(r'(\w+)="([^"]*)"')


def _requests(lane: Proc) -> dict[str, int]:
    """Requests a lane sent to its targets, by result (``ok``, ``failed``), from its
    ``/metrics`` (``cayg_publish_request_duration_seconds_count``)."""
    url = lane.ready_url.replace("/readyz", "/metrics")
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, int] = {}
    for labels, value in _REQUESTS.findall(text):
        result = dict(_LABEL.findall(labels)).get("result", "?")
        out[result] = out.get(result, 0) + int(float(value))
    return out


def projection(
    ctx: Context, learners: int, *, seed: int = 2025, profile_s: float = 0.0
) -> dict[str, Any]:
    """A backfill export of awards (definitions and persons with them, many persons after
    their awards) drained through ingest, normalize and both publish lanes: from all ready
    until every lane has committed, publish owes nothing and the CLR stand-in holds exactly
    the expected records, checked learner by learner. With ``profile_s``, the CLR lane (with
    its signing workers) and the CLR stand-in are sampled by py-spy for that long once ingest
    and normalize have drained (deliveries under way)."""
    built = time.monotonic()
    made = export.build_export(learners, seed=seed)
    build_s = time.monotonic() - built
    topics = ctx.topics("projection")
    asyncio.run(preload(ctx, topics, made.records))
    logs = ctx.logs("projection")
    stack = publish_stack(ctx, topics, "projection")
    pipeline = [
        service("ingest", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
        service("normalize", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs),
    ]
    working = [*pipeline, *stack.lanes]
    everything = [*stack.standins, *working]
    start_all(stack.standins)
    sampler = _Sampler(everything, children=True)
    cpu_ready: dict[str, float] = {}
    drained: dict[str, Any] = {}
    spies: dict[str, sampled.Spy] = {}
    profiles: dict[str, Any] = {}
    try:
        start_all(working)
        ready = max(p.ready_at for p in working)
        ready_wall = time.time() - (time.monotonic() - ready)
        cpu_ready = {p.name: tree_cpu_seconds(p.pid) for p in everything}
        sampler.start()
        deadline = ready + ctx.drain_timeout_s
        for name, group, inputs in (
            ("ingest", f"{topics.prefix}cayg-ingest", [topics.sis(t) for t in TENANTS]),
            ("normalize", f"{topics.prefix}cayg-normalize", [topics.ingested]),
        ):
            ends = asyncio.run(kafka.end_offsets(ctx.bootstrap, inputs))
            done_at, behind = asyncio.run(
                kafka.wait_committed(
                    ctx.bootstrap,
                    group,
                    ends,
                    timeout_s=max(1.0, deadline - time.monotonic()),
                )
            )
            drained[name] = {
                "records": sum(ends.values()) - behind,
                "drained": behind == 0,
                "seconds_after_ready": round(done_at - ready, 2),
            }
        if profile_s > 0:
            by_name = {p.name: p for p in everything}
            spies = {
                name: sampled.Spy(by_name[name].pid, profile_s, ctx.work / f"spy-{name}.txt")
                for name in ("publish-clr", "clr")
                if name in by_name
            }
            for spy in spies.values():
                spy.start()
        remaining = replace(ctx, drain_timeout_s=max(1.0, deadline - time.monotonic()))
        idle = wait_publish_idle(remaining, stack, topics)
        profiles = {name: spy.finish(timeout_s=profile_s + 30) for name, spy in spies.items()}
        drained["publish"] = {**idle, "seconds_after_ready": round(time.monotonic() - ready, 2)}
        requests = {lane.name: _requests(lane) for lane in stack.lanes}
        cpu = {p.name: tree_cpu_seconds(p.pid) - cpu_ready.get(p.name, 0.0) for p in everything}
    finally:
        if sampler.started:
            sampler.stop()
        stop_all(working)
        stop_all(stack.standins)
    records = clr_records(stack.clr_db)
    comparison = export.compare(made.learners, {k: v[2] for k, v in records.items()})
    delivered = len({a for _c, _u, ids in records.values() for a in ids})
    last_write = max((updated for _c, updated, _ids in records.values()), default=ready_wall)
    seconds = last_write - ready_wall
    launched = min(p.launched_at for p in working)
    upserts = clr_upserts(stack.clr_db)
    writes = sum(upserts.values())
    return {
        "learners": len(made.learners),
        "awards": made.awards,
        "definitions": made.definitions,
        "persons_after_awards": made.persons_last,
        "sis_records": len(made.records),
        "sis_mean_bytes": round(mean_size(made.records), 1),
        "export_build_s": round(build_s, 2),
        "drain_timeout_s": ctx.drain_timeout_s,
        "clr_records": len(records),
        "awards_in_clr_records": delivered,
        "seconds_to_last_clr_write": round(seconds, 3),
        "launch_to_last_clr_write_s": round(seconds + (ready - launched), 3),
        "awards_per_s": _rate(delivered, seconds),
        "sis_records_per_s": _rate(len(made.records), seconds),
        "drained": drained,
        "end_state": {
            **comparison.as_dict(),
            "comparison_catches_errors": export.comparison_catches_errors(made.learners),
        },
        "clr_write_requests": {
            "standin_upserts": upserts,
            "total": writes,
            "per_learner": round(writes / max(1, len(made.learners)), 3),
            "publish_requests": requests,
        },
        "peak_rss_mib": {p.name: round(p.peak_rss_kib / 1024, 1) for p in everything},
        "peak_rss_with_children_mib": {
            p.name: round(p.tree_peak_rss_kib / 1024, 1) for p in everything
        },
        "peak_pss_with_children_mib": {
            p.name: round(p.tree_peak_pss_kib / 1024, 1) for p in everything
        },
        "rss_timeline_mib": sampler.rss_timeline(ready),
        "profile": profiles,
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.items()},
        "cpu_ms_per_award": {
            name: round(1000 * value / max(1, delivered), 2) for name, value in cpu.items()
        },
        "measured": "from ingest, normalize and both publish lanes ready (the export already "
        "on the SIS topics) to the CLR stand-in's last write (its updated_at); CPU from "
        "ready to drained, each process with its children",
    }


# --------------------------------------------------------------------------- profile


def profile(ctx: Context, records: Sequence[SisRecord], which: str) -> dict[str, Any]:
    """``which`` (ingest or normalize) under pyinstrument on a preloaded topic; top frames."""
    topics = ctx.topics(f"profile-{which}")
    asyncio.run(preload(ctx, topics, records))
    logs = ctx.logs(f"profile-{which}")
    if which == "normalize":
        # normalize needs ingest's output first (not profiled).
        feeder = service("ingest", bootstrap=ctx.bootstrap, prefix=topics.prefix, log_dir=logs)
        _drain(ctx, [feeder], f"{topics.prefix}cayg-ingest", [topics.sis(t) for t in TENANTS])
        inputs = [topics.ingested]
    else:
        inputs = [topics.sis(t) for t in TENANTS]
    report = ctx.work / f"profile-{which}.json"
    proc = service(
        which,
        bootstrap=ctx.bootstrap,
        prefix=topics.prefix,
        log_dir=logs,
        name=f"{which}-profiled",
        python_args=["-m", "cayg_bench.profiled", f"cayg_{which}", str(report)],
    )
    proc.env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + (
        ":" + proc.env["PYTHONPATH"] if proc.env.get("PYTHONPATH") else ""
    )
    # One consumer deciding in its own process: the profile shows all the per-record work
    # (with workers it would show the loop waiting for them; with consumer processes it
    # would miss theirs).
    proc.env[f"CAYG_{which.upper()}_DECIDE_WORKERS"] = "0"
    proc.env[f"CAYG_{which.upper()}_CONSUMERS"] = "1"
    proc.members = 1
    measured = _drain(ctx, [proc], f"{topics.prefix}cayg-{which}", inputs)
    for _ in range(50):
        if report.exists():
            break
        time.sleep(0.2)
    summary = json.loads(report.read_text()) if report.exists() else {"error": "no profile written"}
    return {"service": which, "run": measured, **summary}
