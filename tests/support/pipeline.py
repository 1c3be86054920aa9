"""The whole pipeline as a test runs it: a real broker, the registry and CLR host
stand-ins as HTTP servers, ingest, normalize and publish (one or more instances, SQLite or
PostgreSQL ledger) as OS processes, and ways to look at all of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

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
from cayg_ops.feed import FeedMessage, sample_feed
from cayg_ops.stack import Stack
from cayg_publish.adapters.clr import ClrClient
from cayg_publish.app import DOCUMENT_COUNTS_EVERY_S
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from cayg_signing import ContextLoader, CredentialVerifier, fetch_json
from support.kafka import free_port
from support.processes import ServiceProcess

CLR_READ_SCOPE = "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.readonly"

LEARNERS = 4
BAD_MESSAGES = 5  # sample_feed's deliberately broken messages
TENANT_IDS = ("northfield-cc", "lakeshore-univ", "harbor-tech")


class Pipeline:
    """Everything one e2e test runs, with helpers to look at it."""

    def __init__(
        self,
        base: Path,
        bootstrap: str,
        prefix: str,
        *,
        lanes: bool = False,
        publish_instances: int = 1,
        postgres_dsn: str | None = None,
        lease_ttl_s: float = 6.0,
        registry_concurrency: int | None = None,
    ) -> None:
        self.base = base
        self.bootstrap = bootstrap
        self.topics = Topics(prefix)
        self.registry = TenantRegistry.load(TENANTS_FILE)
        self.tenants: list[TenantSecrets] = tenant_secrets(base, self.registry)
        self.ports = Ports(registry=free_port(), clr=free_port(), web=free_port())
        config = publish_config(base, self.tenants, self.registry, self.ports)
        if postgres_dsn is not None:
            # Several publish instances share one PostgreSQL ledger.
            document = json.loads(config.read_text())
            (base / "secrets" / "ledger-dsn").write_text(postgres_dsn)
            document["ledger"] = {
                "kind": "postgres",
                "dsn": {"file": str(base / "secrets" / "ledger-dsn")},
            }
            config.write_text(json.dumps(document, indent=2))
        if registry_concurrency is not None:
            # Calls each registry target takes at once (its default is 8).
            document = json.loads(config.read_text())
            for tenant in document["tenants"].values():
                for target in tenant["targets"]:
                    if target["kind"] == "credential-engine":
                        target["limits"] = {"max_concurrency": registry_concurrency}
            config.write_text(json.dumps(document, indent=2))
        self.config = config
        self.stack = Stack(base)
        for component in standin_components(base, self.tenants, self.ports):
            self.stack.start(component)
        # Without lanes one publish instance serves every target; with lanes, one serves
        # the registries and one the CLR hosts, each in its own consumer group.
        lane_map = {"publish": ("registry", "*-registry"), "publish-clr": ("clr", "*-clr")}
        publishers = [f"publish-{n}" if n else "publish" for n in range(publish_instances)]
        names = ["ingest", "normalize", *(lane_map if lanes else publishers)]
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
                    # A killed instance's documents are taken over quickly in tests.
                    f"{p}LEASE_TTL_S": str(lease_ttl_s),
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

    def registry_resource(self, ctid: str) -> Any:
        """The registry stand-in's resource for ``ctid`` (None when it holds none)."""
        response = httpx.get(f"{self.ports.registry_url}/resources/{ctid}", timeout=10)
        return None if response.status_code == 404 else response.json()

    def clr_upserts(self) -> list[dict[str, Any]]:
        body = self.admin("GET", f"{self.ports.clr_url}/_admin/stats")
        upserts: list[dict[str, Any]] = body["upserts"]
        return upserts

    async def feed(self, messages: Iterable[FeedMessage] | None = None) -> None:
        """Send ``messages`` (default: the sample feed) to their tenants' SIS topics."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,
        )
        await producer.start()
        try:
            chosen = sample_feed(learners_per_tenant=LEARNERS) if messages is None else messages
            for message in chosen:
                await producer.send_and_wait(
                    self.topics.sis(message.tenant),
                    message.value,
                    key=message.key,
                    headers=[(k, v.encode()) for k, v in message.headers.items()],
                )
        finally:
            await producer.stop()

    async def wait_idle(
        self, timeout_s: float = 150.0, settle_s: float = DOCUMENT_COUNTS_EVERY_S + 2
    ) -> None:
        """Until every group has read everything and publish owes nothing, for ``settle_s``:
        longer than publish takes to refresh its documents gauge from the ledger, or a
        change recorded just before a stale refresh would look delivered."""
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
            owed = sum(self.documents_owed(name) for name in self.live_publishers())
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
        owed_by = {name: self.documents_owed(name) for name in self.live_publishers()}
        raise AssertionError(f"pipeline not idle in {timeout_s} s: {lags}; owed {owed_by}")

    async def lag_of(self, name: str) -> int:
        lags = await kafka_view.consumer_lag(
            self.bootstrap,
            [self.groups[name]],
            topics=group_topics(self.topics, group_prefix=self.topics.prefix, tenants=TENANT_IDS),
        )
        return sum(lag.lag for lag in lags) if all(lag.partitions for lag in lags) else -1

    def live_publishers(self) -> list[str]:
        """Publish instances that answer (a killed one does not; the others see the same
        ledger, so their gauges cover its documents too)."""
        live = []
        for name, service in self.services.items():
            if "publish" not in name:
                continue
            try:
                httpx.get(f"{service.url}/healthz", timeout=2)
            except httpx.HTTPError:
                continue
            live.append(name)
        return live

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

    def verifier(self, loader: ContextLoader, publish: str = "publish") -> CredentialVerifier:
        """An independent verifier that knows only the credentials' public URLs: the
        institutions' domains (DID documents) come from the web stand-in, their status
        lists from publish instance ``publish``, all on loopback."""
        rewrite: dict[str, str] = {}
        for tenant in self.tenants:
            status = f"https://{tenant.domain}/credentials/status/"
            rewrite[status] = f"{self.services[publish].url}/status-lists/"
            rewrite |= tenant.rewrites(self.ports.web_url)
        return CredentialVerifier(loader, lambda url: fetch_json(url, rewrite=rewrite))

    async def clr_records(self, tenant: str) -> dict[str, dict[str, Any]]:
        """What the CLR host holds for ``tenant``, read back through its REST API as the
        tenant's OAuth client: credential id → the stored credential."""
        secrets = next(t for t in self.tenants if t.tenant == tenant)
        async with httpx.AsyncClient(base_url=f"{self.ports.clr_url}/ims/clr/v2p0/") as http:
            client = ClrClient(
                http,
                client_id=secrets.client_id,
                client_secret=SecretStr(secrets.client_secret_file.read_text().strip()),
                scopes=(CLR_READ_SCOPE,),
            )
            token = await client.access_token()
            found: dict[str, dict[str, Any]] = {}
            offset = 0
            while True:
                response = await http.get(
                    "credentials",
                    params={"limit": 100, "offset": offset},
                    headers={"Authorization": f"Bearer {token.get_secret_value()}"},
                )
                response.raise_for_status()
                page = response.json()["credential"]
                for item in page:
                    found[item["id"]] = item
                if len(page) < 100:
                    return found
                offset += 100

    def close(self) -> None:
        for service in self.services.values():
            service.kill()
        for name in ("registry", "clr", "web"):
            self.stack.stop(name)
