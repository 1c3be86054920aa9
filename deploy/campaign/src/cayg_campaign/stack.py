"""The stack a campaign runs: a local broker, the stand-ins (registry, CLR host, the
institutions' web domains) behind recording proxies, ingest, normalize, publish (one
instance on SQLite or two on one PostgreSQL ledger) and the operator console, all on
loopback, each process logging to a file under the campaign directory."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from cayg_campaign.processes import LocalBroker, ServiceProcess, free_port
from cayg_campaign.stream import REGISTERED_PARTNER, TENANTS
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
from cayg_ops.stack import Component, Stack
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics

Mode = Literal["sqlite", "postgres"]
#: How long publish waits for a target's answer: a timeout after the write comes quickly.
READ_TIMEOUT_S: Final = 4.0
#: How long publish's documents gauge may lag the ledger (publish refreshes it every 5 s).
SETTLE_S: Final = 6.0
CONSOLE_USER: Final = "operator"


@dataclass(frozen=True)
class Proxy:
    """A recording proxy in front of one stand-in."""

    name: str
    port: int
    upstream: str
    record: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def component(self, seen: Path) -> Component:
        argv = [
            sys.executable, "-m", "cayg_campaign.proxy", "--port", str(self.port),
            "--upstream", self.upstream, "--record", str(self.record),
            "--seen-credentials", str(seen),
        ]  # fmt: skip
        # Any path answers (it is forwarded): the stand-in's health endpoint.
        return Component(f"proxy-{self.name}", argv, f"{self.url}/healthz")


class CampaignStack:
    """Everything one campaign runs, with ways to look at it."""

    def __init__(
        self, base: Path, broker: LocalBroker, mode: Mode, postgres_dsn: str | None
    ) -> None:
        self.base = base
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.mode = mode
        self.topics = Topics("")
        self.registry = TenantRegistry.load(TENANTS_FILE)
        self.tenants: list[TenantSecrets] = tenant_secrets(base, self.registry)
        self.ports = Ports(registry=free_port(), clr=free_port(), web=free_port())
        self.seen_credentials = base / "secrets" / "seen-authorization"
        publishers = ["publish"] if mode == "sqlite" else ["publish-0", "publish-1"]
        # Each publish instance talks to the stand-ins through proxies of its own (so every
        # recorded write names its sender); everything else, the checks too, to the
        # stand-ins directly. The instances' configurations differ only in those addresses.
        self.proxies: dict[str, dict[str, Proxy]] = {"registry": {}, "clr": {}}
        self.configs: dict[str, Path] = {}
        for publisher in publishers:
            for target, url in (("registry", self.ports.registry_url), ("clr", self.ports.clr_url)):
                self.proxies[target][publisher] = Proxy(
                    f"{target}-{publisher}",
                    free_port(),
                    url,
                    base / f"writes-{target}-{publisher}.jsonl",
                )
            via = Ports(
                registry=self.proxies["registry"][publisher].port,
                clr=self.proxies["clr"][publisher].port,
                web=self.ports.web,
            )
            self.configs[publisher] = self._publish_config(via, postgres_dsn, publisher)
        self.config = self.configs[publishers[0]]
        self.stack = Stack(base)
        self.console_port = free_port()
        self.console_password = base / "secrets" / "console-password"
        self.console_password.write_text(secrets.token_urlsafe(16))
        self.services: dict[str, ServiceProcess] = {}
        self.groups: dict[str, str] = {}
        for name in ["ingest", "normalize", *publishers]:
            service = name.split("-", 1)[0]
            p = f"CAYG_{service.upper()}_"
            group = f"cayg-{service}"
            env = {
                f"{p}KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                f"{p}KAFKA__METADATA_MAX_AGE_MS": "1000",
                f"{p}GROUP_ID": group,
                f"{p}TENANTS_FILE": str(TENANTS_FILE),
                f"{p}REDELIVERY_BACKOFF_S": "0.2",
                # A process started while the broker is away ends (exit 1) instead of
                # running without consuming; the campaign's supervisor starts it again.
                f"{p}STARTUP_TIMEOUT_S": "20",
            }
            if service == "publish":
                env |= {
                    f"{p}TARGETS_FILE": str(self.configs[name]),
                    f"{p}RETRY_FIRST_S": "1",
                    f"{p}RETRY_MAX_S": "4",
                    f"{p}IN_PROCESS_ATTEMPTS": "2",
                    f"{p}POLL_S": "0.2",
                    # A delivery must end within 0.8 x the lease (publish's projector cancels
                    # it then): two attempts of READ_TIMEOUT_S and the backoff between must
                    # fit, or a write that landed is cancelled and sent again (RELIABILITY.md).
                    f"{p}LEASE_TTL_S": "15",
                }
            self.groups[name] = group
            self.services[name] = ServiceProcess(service, env=env, log_dir=base / "logs", name=name)

    def _publish_config(self, via: Ports, postgres_dsn: str | None, publisher: str) -> Path:
        ledger: dict[str, Any] | None = None
        if postgres_dsn is not None:
            dsn_file = self.base / "secrets" / "ledger-dsn"
            dsn_file.write_text(postgres_dsn)
            ledger = {"kind": "postgres", "dsn": {"file": str(dsn_file)}}
        path = publish_config(self.base, self.tenants, self.registry, via, ledger=ledger)
        document = json.loads(path.read_text())
        for tenant in document["tenants"].values():
            for target in tenant["targets"]:
                target["timeouts"] = {"read": READ_TIMEOUT_S}
                if target["kind"] == "clr":
                    # An id, not an address: the same as without the proxy.
                    target["achievement_id_base"] = f"{self.ports.registry_url}/resources/"
        mine = path.with_name(f"{publisher}.json")
        mine.write_text(json.dumps(document, indent=2))
        if mine != path:  # one publisher named "publish" keeps publish_config's own file
            path.unlink()
        return mine

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        for standin in standin_components(self.base, self.tenants, self.ports):
            if standin.name == "registry":
                # The stream names one partner by a CTID another account registered.
                extra = {"CAYG_STANDINS_REGISTERED_CTIDS": REGISTERED_PARTNER}
                self.stack.start(
                    Component(
                        standin.name, standin.argv, standin.ready_url, env={**standin.env, **extra}
                    )
                )
            else:
                self.stack.start(standin)
        for proxy in self.all_proxies():
            self.stack.start(proxy.component(self.seen_credentials))
        # All at once (they wait for each other only through Kafka), then until each is ready.
        for service in self.services.values():
            service.launch()
        for service in self.services.values():
            service.wait_ready(timeout_s=120)
        self.stack.start(self.console_component())

    def console_component(self) -> Component:
        return Component(
            "console",
            [sys.executable, "-m", "cayg_ops.console"],
            f"{self.console_url}/healthz",
            env={
                "CAYG_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "CAYG_CONSOLE_HTTP_PORT": str(self.console_port),
                "CAYG_CONSOLE_SERVICES": json.dumps([s.url for s in self.services.values()]),
                "CAYG_CONSOLE_TARGETS_FILE": str(self.config),
                "CAYG_CONSOLE_USERNAME": CONSOLE_USER,
                "CAYG_CONSOLE_PASSWORD_FILE": str(self.console_password),
            },
        )

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def close(self) -> None:
        for service in self.services.values():
            service.kill()
        for name in ("console", *(f"proxy-{p.name}" for p in self.all_proxies())):
            self.stack.stop(name)
        for name in ("registry", "clr", "web"):
            self.stack.stop(name)

    def all_proxies(self) -> list[Proxy]:
        return [proxy for by_sender in self.proxies.values() for proxy in by_sender.values()]

    def log_files(self) -> list[Path]:
        """Every process's log: services, stand-ins, proxies, console."""
        return sorted((self.base / "logs").glob("*.log"))

    # -- looking at it --------------------------------------------------------------------

    def admin(self, method: str, url: str, **kwargs: Any) -> Any:
        token = (self.base / "secrets" / "admin-token").read_text().strip()
        response = httpx.request(
            method, url, headers={"X-Admin-Token": token}, timeout=10, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def standin_url(self, target: str) -> str:
        return self.ports.registry_url if target == "registry" else self.ports.clr_url

    def publishers(self) -> list[str]:
        return [name for name in self.services if name.startswith("publish")]

    async def lags(self) -> list[kafka_view.GroupLag]:
        return await kafka_view.consumer_lag(
            self.bootstrap,
            sorted(set(self.groups.values())),
            topics=group_topics(self.topics, tenants=TENANTS),
        )

    def metric(self, service: str, name: str, **labels: str) -> float | None:
        """A metric's sum over matching series (None when the service does not answer)."""
        try:
            text = httpx.get(f"{self.services[service].url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def documents_owed(self) -> int | None:
        """Documents publish still has to deliver (dirty or failing), from any live
        instance (they share one ledger); None when no instance answers."""
        for name in self.publishers():
            dirty = self.metric(name, "cayg_publish_documents", state="dirty")
            failing = self.metric(name, "cayg_publish_documents", state="failing")
            if dirty is not None and failing is not None:
                return int(dirty + failing)
        return None

    async def wait_idle(self, timeout_s: float) -> float:
        """Wait until every group has lag 0 and publish owes nothing, for ``SETTLE_S`` in a
        row; return when it first became (and stayed) idle (``time.monotonic()``)."""
        deadline = time.monotonic() + timeout_s
        idle_since: float | None = None
        lags: list[kafka_view.GroupLag] = []
        owed: int | None = None
        while time.monotonic() < deadline:
            try:
                lags = await self.lags()
            except Exception:  # noqa: BLE001 - a broker coming back answers later
                lags = []
            owed = await asyncio.to_thread(self.documents_owed)
            idle = bool(lags) and all(g.partitions for g in lags)
            idle = idle and sum(g.lag for g in lags) == 0 and owed == 0
            if idle:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= SETTLE_S:
                    return idle_since
            else:
                idle_since = None
            await asyncio.sleep(0.5)
        raise TimeoutError(f"not idle in {timeout_s:.0f} s: lags {lags}, publish owes {owed}")
