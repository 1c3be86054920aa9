"""The whole pipeline, for real: a Kafka broker, the registry and CLR host stand-ins as
HTTP servers, and ingest, normalize and publish as OS processes.

The registry is broken on purpose (a full outage) while the sample feed flows. cayg-sync
must keep the registry's documents failing — retried on the ledger's schedule — without
holding up the CLR host, and once the registry is back every credential definition must be
applied there exactly once.
Feeding the same stream again after a publish restart must change nothing anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cayg_ops import kafka_view
from cayg_ops.demo import (
    TENANTS_FILE,
    Ports,
    TenantSecrets,
    group_topics,
    publish_config,
    standin_components,
    tenant_secrets,
)
from cayg_ops.feed import sample_feed
from cayg_ops.stack import Stack
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.kafka import free_port
from support.processes import ServiceProcess

pytestmark = pytest.mark.e2e

LEARNERS = 4
BAD_MESSAGES = 5  # sample_feed's deliberately broken messages
TENANT_IDS = ("northfield-cc", "lakeshore-univ", "harbor-tech")


class Pipeline:
    """Everything one e2e test runs, with helpers to look at it."""

    def __init__(self, base: Path, bootstrap: str, prefix: str, *, lanes: bool = False) -> None:
        self.base = base
        self.bootstrap = bootstrap
        self.topics = Topics(prefix)
        self.registry = TenantRegistry.load(TENANTS_FILE)
        self.tenants: list[TenantSecrets] = tenant_secrets(base, self.registry)
        self.ports = Ports(registry=free_port(), clr=free_port())
        config = publish_config(base, self.tenants, self.registry, self.ports)
        self.stack = Stack(base)
        for component in standin_components(base, self.tenants, self.ports):
            self.stack.start(component)
        # Without lanes one publish instance serves every target; with lanes, one serves
        # the registries and one the CLR hosts, each in its own consumer group.
        lane_map = {"publish": ("registry", "*-registry"), "publish-clr": ("clr", "*-clr")}
        names = ["ingest", "normalize", *(lane_map if lanes else ["publish"])]
        self.groups: dict[str, str] = {}
        self.services: dict[str, ServiceProcess] = {}
        for name in names:
            service = name.split("-", 1)[0]
            p = f"CAYG_{service.upper()}_"
            group = f"{prefix}cayg-{service}"
            env = {
                f"{p}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                f"{p}KAFKA__METADATA_MAX_AGE_MS": "1000",
                f"{p}TOPIC_PREFIX": prefix,
                f"{p}GROUP_ID": group,
                f"{p}TENANTS_FILE": str(TENANTS_FILE),
                f"{p}REDELIVERY_BACKOFF_S": "0.2",
            }
            if service == "publish":
                env |= {
                    f"{p}TARGETS_FILE": str(config),
                    f"{p}RETRY_FIRST_S": "1",
                    f"{p}RETRY_MAX_S": "4",
                    f"{p}IN_PROCESS_ATTEMPTS": "2",
                    f"{p}POLL_S": "0.2",
                }
                if lanes:
                    lane, pattern = lane_map[name]
                    env |= {f"{p}LANE": lane, f"{p}LANE_TARGETS": f'["{pattern}"]'}
                    group = f"{group}.{lane}"
            self.groups[name] = group
            self.services[name] = ServiceProcess(service, env=env, log_dir=base, name=name)

    def admin(self, method: str, url: str, **kwargs: Any) -> Any:
        token = (self.base / "secrets" / "admin-token").read_text().strip()
        response = httpx.request(
            method, url, headers={"X-Admin-Token": token}, timeout=10, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def registry_requests(self) -> dict[str, Any]:
        body = self.admin("GET", f"{self.ports.registry_url}/_admin/stats")
        requests: dict[str, Any] = body["requests"]
        return requests

    def clr_upserts(self) -> list[dict[str, Any]]:
        body = self.admin("GET", f"{self.ports.clr_url}/_admin/stats")
        upserts: list[dict[str, Any]] = body["upserts"]
        return upserts

    async def feed(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,
        )
        await producer.start()
        try:
            for message in sample_feed(learners_per_tenant=LEARNERS):
                await producer.send_and_wait(
                    self.topics.sis(message.tenant),
                    message.value,
                    key=message.key,
                    headers=[(k, v.encode()) for k, v in message.headers.items()],
                )
        finally:
            await producer.stop()

    async def wait_idle(self, timeout_s: float = 150.0, settle_s: float = 4.0) -> None:
        deadline = time.monotonic() + timeout_s
        idle_since: float | None = None
        while time.monotonic() < deadline:
            lags = await kafka_view.consumer_lag(
                self.bootstrap,
                list(self.groups.values()),
                topics=group_topics(
                    self.topics, group_prefix=self.topics.prefix, tenants=TENANT_IDS
                ),
            )
            owed = sum(self.documents_owed(name) for name in self.services if "publish" in name)
            if (
                all(lag.partitions for lag in lags)
                and sum(lag.lag for lag in lags) == 0
                and owed == 0
            ):
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= settle_s:
                    return
            else:
                idle_since = None
            await asyncio.sleep(0.5)
        lags = await kafka_view.consumer_lag(self.bootstrap, list(self.groups.values()))
        raise AssertionError(f"pipeline not idle in {timeout_s} s: {lags}")

    async def lag_of(self, name: str) -> int:
        lags = await kafka_view.consumer_lag(
            self.bootstrap,
            [self.groups[name]],
            topics=group_topics(self.topics, group_prefix=self.topics.prefix, tenants=TENANT_IDS),
        )
        return sum(lag.lag for lag in lags) if all(lag.partitions for lag in lags) else -1

    def documents_owed(self, name: str) -> int:
        """Documents publish instance ``name`` still has to deliver (dirty or failing)."""
        return int(
            self.metric("cayg_publish_documents", service=name, state="dirty")
            + self.metric("cayg_publish_documents", service=name, state="failing")
        )

    def metric(self, name: str, *, service: str = "publish", **labels: str) -> float:
        text = httpx.get(f"{self.services[service].url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self) -> None:
        for service in self.services.values():
            service.kill()
        for name in ("registry", "clr"):
            self.stack.stop(name)


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


async def test_registry_outage_is_ridden_out_and_replays_change_nothing(
    pipeline: Pipeline,
) -> None:
    # Start everything, break the registry for a while, and feed the stream.
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)
    pipeline.admin(
        "POST", f"{pipeline.ports.registry_url}/_admin/faults", json={"seed": 3, "outage_s": 10}
    )
    await pipeline.feed()
    await pipeline.wait_idle()

    # Every definition reached the registry exactly once, after the outage.
    requests = pipeline.registry_requests()
    definitions = {ctid: entry for ctid, entry in requests.items() if "credential/publish" in entry}
    assert len(definitions) == 11  # 3 Northfield + 4 Lakeshore + 4 Harbor Tech
    assert all(e["credential/publish"].get("applied") == 1 for e in definitions.values())
    retried = pipeline.metric("cayg_publish_outcomes_total", outcome="retried")
    failing = pipeline.metric("cayg_publish_outcomes_total", outcome="failing")
    assert retried + failing > 0, "the outage should have made deliveries fail and retry"

    # The CLR host was not held up by the broken registry, and nothing was rejected.
    upserts = pipeline.clr_upserts()
    # One record per learner with an award (plus the retro-award learner), withdrawn ones
    # too; the one Lakeshore award rescinded in the feed may be revoked before its first
    # delivery (it waits for its learner), and then no record is ever made for it.
    assert 3 * LEARNERS <= len(upserts) <= 3 * LEARNERS + 1
    assert all(row["rejected"] == 0 for row in upserts)

    # Only the deliberately broken input is parked; nothing failed in publish.
    assert pipeline.documents_owed("publish") == 0
    ingest_dlq = await kafka_view.read_parked(pipeline.bootstrap, pipeline.topics.ingest_dlq)
    publish_dlq = await kafka_view.read_parked(pipeline.bootstrap, pipeline.topics.publish_dlq)
    assert len(ingest_dlq) == BAD_MESSAGES
    assert publish_dlq == []

    # Restart publish and feed the very same stream again: nothing changes anywhere.
    assert pipeline.services["publish"].stop() == 0
    await asyncio.to_thread(pipeline.services["publish"].start)
    await pipeline.feed()
    await pipeline.wait_idle()

    again = pipeline.registry_requests()
    assert {
        c: e["credential/publish"].get("applied") for c, e in again.items() if c in definitions
    } == {c: 1 for c in definitions}
    totals_before = {(r["issuer_id"], r["credential_id"]): r["total"] for r in upserts}
    totals_after = {
        (r["issuer_id"], r["credential_id"]): r["total"] for r in pipeline.clr_upserts()
    }
    assert totals_after == totals_before, "a replayed stream must not touch the CLR host"


@pytest.fixture
def laned_pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix, lanes=True)
    try:
        yield running
    finally:
        running.close()


async def test_a_slow_registry_does_not_hold_up_the_clr_lane(laned_pipeline: Pipeline) -> None:
    pipeline = laned_pipeline
    # Every registry request takes 3 s: the registry lane crawls through its 11 definitions.
    pipeline.admin(
        "POST", f"{pipeline.ports.registry_url}/_admin/faults", json={"latency_ms": 3000}
    )
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)
    await pipeline.feed()

    # Wait until everything is normalized and the CLR lane has delivered every learner's
    # record; the registry lane must still be working through its documents then.
    clr_done = False
    for _ in range(300):  # bounded: at most about 150 s
        upstream = [await pipeline.lag_of(name) for name in ("ingest", "normalize")]
        clr_lag = await pipeline.lag_of("publish-clr")
        clr_owed = pipeline.documents_owed("publish-clr")
        if (
            upstream == [0, 0]
            and clr_lag == 0
            and clr_owed == 0
            and len(pipeline.clr_upserts()) >= 3 * LEARNERS
        ):
            clr_done = True
            break
        await asyncio.sleep(0.5)
    registry_owed = pipeline.documents_owed("publish")
    assert clr_done, "the CLR lane did not deliver every learner's record"
    assert registry_owed > 0, "the registry lane should still be working through its documents"

    # And the slow lane finishes too, every definition applied once.
    pipeline.admin("DELETE", f"{pipeline.ports.registry_url}/_admin/faults")
    await pipeline.wait_idle()
    requests = pipeline.registry_requests()
    applied = [
        e["credential/publish"].get("applied")
        for e in requests.values()
        if "credential/publish" in e
    ]
    assert applied == [1] * 11
