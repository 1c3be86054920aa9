"""``cayg demo``: the whole pipeline on one machine, on embedded defaults.

``up`` starts a local Kafka broker (Maven Central jars), the Credential Registry and CLR
host stand-ins, and the three services; feeds the sample SIS stream; waits until the
pipeline is idle; prints what the registry and the CLR host now hold, what sits in the
DLQs, and where logs, metrics and dashboards are. Everything keeps running until ``down``.

Secrets (API keys, OAuth client secrets, the identity salt, issuers' signing keys) are
generated into the demo directory with mode 0600 and referenced by file, as a production
deployment would mount them.

Issuers are ``did:web:<institution's domain>`` (``northfield.example``…). What each
institution would host on its domain — its DID document and OB issuer Profile, written by
``cayg issuer export`` — is served by a static web stand-in on loopback, and the CLR host
stand-in resolves issuers there; credentials carry Bitstring Status List entries whose
lists publish serves (``/status-lists/<id>``; the public URL
``https://<domain>/credentials/status/<id>`` maps to it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cayg_ops import kafka_view
from cayg_ops.feed import FeedMessage, catalog_revision, sample_feed
from cayg_ops.issuer import export_issuers
from cayg_ops.stack import Component, Stack, StackError
from cayg_publish.config import PublishTargetsConfig
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from cayg_signing import SigningKey

REPO_ROOT: Final = Path(__file__).resolve().parents[4]
KAFKA_SH: Final = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
TENANTS_FILE: Final = REPO_ROOT / "deploy" / "config" / "tenants.json"
KAFKA_PORT: Final = 19092
REGISTRY_PORT: Final = 18001
CLR_PORT: Final = 18002
WEB_PORT: Final = 18003
SERVICE_PORTS: Final = {"ingest": 8081, "normalize": 8082, "publish": 8083, "publish-clr": 8084}
CONSOLE_PORT: Final = 8090
CONSOLE_URL: Final = f"http://127.0.0.1:{CONSOLE_PORT}"
#: Publish runs as two lanes, so a slow or broken registry never holds up the CLR host.
PUBLISH_LANES: Final = {"publish": ("registry", "*-registry"), "publish-clr": ("clr", "*-clr")}
BOOTSTRAP: Final = f"127.0.0.1:{KAFKA_PORT}"


@dataclass(frozen=True)
class Ports:
    """Where the stand-ins listen (the demo's fixed ports by default; tests pick free ones)."""

    registry: int = REGISTRY_PORT
    clr: int = CLR_PORT
    #: The static web stand-in holding the institutions' domains.
    web: int = WEB_PORT

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    @property
    def clr_url(self) -> str:
        return f"http://127.0.0.1:{self.clr}"


DEMO_TENANTS: Final = ("northfield-cc", "lakeshore-univ", "harbor-tech")


def demo_dir() -> Path:
    """Where the demo keeps state, logs and generated secrets."""
    return Path(os.environ.get("CAYG_DEMO_DIR", REPO_ROOT / ".cayg" / "demo")).resolve()


def conformance_dir() -> Path:
    """The reference conformance data the stand-ins and signing read."""
    configured = os.environ.get("CAYG_CONFORMANCE_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "conformance"


def _say(text: str) -> None:
    print(f"[demo] {text}", file=sys.stderr, flush=True)


def _secret_file(path: Path, value: str) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    return path


@dataclass(frozen=True)
class TenantSecrets:
    """One tenant's generated credentials for the stand-ins."""

    tenant: str
    org_ctid: str
    api_key_file: Path
    client_id: str
    client_secret_file: Path
    signing_key_file: Path
    issuer_did: str
    #: The institution's web domain: its issuer is ``did:web:<domain>``.
    domain: str

    def rewrites(self, web_url: str) -> dict[str, str]:
        """How a local verifier fetches ``https://<domain>/…``: from the web stand-in."""
        return {f"https://{self.domain}/": f"{web_url}/{self.domain}/"}


def institution_domain(webpage: str | None, tenant: str) -> str:
    """``https://www.northfield.example/`` -> ``northfield.example`` (``<tenant>.example``
    without a webpage)."""
    host = (httpx.URL(webpage).host if webpage else "") or f"{tenant}.example"
    return host.removeprefix("www.")


def tenant_secrets(base: Path, registry: TenantRegistry) -> list[TenantSecrets]:
    """Generate (once) and return every tenant's stand-in credentials and signing key,
    and the stand-ins' admin token."""
    _secret_file(base / "secrets" / "admin-token", secrets.token_urlsafe(24))
    out: list[TenantSecrets] = []
    for profile in registry.profiles():
        tenant = profile.tenant_id
        domain = institution_domain(profile.webpage, tenant)
        key_file = base / "secrets" / f"{tenant}-issuer-did-web-key.json"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            SigningKey.generate(f"did:web:{domain}#key-1").write(key_file)
        out.append(
            TenantSecrets(
                tenant=tenant,
                org_ctid=profile.org_ctid,
                api_key_file=_secret_file(
                    base / "secrets" / f"{tenant}-ce-api-key", str(uuid.uuid4())
                ),
                client_id=f"cayg-{tenant}",
                client_secret_file=_secret_file(
                    base / "secrets" / f"{tenant}-clr-secret", secrets.token_urlsafe(24)
                ),
                signing_key_file=key_file,
                issuer_did=f"did:web:{domain}",
                domain=domain,
            )
        )
    return out


def publish_config(
    base: Path,
    tenants: Sequence[TenantSecrets],
    registry: TenantRegistry,
    ports: Ports = Ports(),
    *,
    ledger: dict[str, Any] | None = None,
) -> Path:
    """Write publish's targets file (each tenant publishes to both stand-ins) and, under
    ``<base>/web``, the issuer documents every institution would host on its domain."""
    salt = _secret_file(base / "secrets" / "identity-salt", secrets.token_hex(32))
    config: dict[str, Any] = {
        "ledger": ledger or {"kind": "sqlite", "path": str(base / "publish-ledger.sqlite3")},
        "tenants": {},
    }
    for t in tenants:
        profile = registry.get(t.tenant)
        name = profile.display_name if profile else t.tenant
        config["tenants"][t.tenant] = {
            "targets": [
                {
                    "kind": "credential-engine",
                    "name": f"{t.tenant}-registry",
                    "base_url": f"{ports.registry_url}/assistant/",
                    "api_key": {"file": str(t.api_key_file)},
                    "publish_for_organization": t.org_ctid,
                },
                {
                    "kind": "clr",
                    "name": f"{t.tenant}-clr",
                    "base_url": f"{ports.clr_url}/ims/clr/v2p0",
                    "client_id": t.client_id,
                    "client_secret": {"file": str(t.client_secret_file)},
                    "identity_salt": {"file": str(salt)},
                    "signing_key_file": str(t.signing_key_file),
                    "contexts_dir": str(conformance_dir() / "1edtech" / "contexts"),
                    "issuer": {
                        "id": t.issuer_did,
                        "name": name,
                        "url": profile.webpage if profile and profile.webpage else None,
                    },
                    "achievement_id_base": f"{ports.registry_url}/resources/",
                    "status_lists": {
                        "base_url": f"https://{t.domain}/credentials/status/",
                        "min_interval_s": 1.0,
                        "refresh_s": 300.0,
                    },
                    # The demo's stand-ins listen on loopback; a real deployment never does.
                    "allow_loopback_urls": True,
                },
            ]
        }
    path = base / "publish.json"
    path.write_text(json.dumps(config, indent=2))
    loaded = PublishTargetsConfig.load(path)
    for t in tenants:
        export_issuers(loaded, t.tenant, base / "web")
    return path


def _service_env(component: str, publish_config_file: Path) -> dict[str, str]:
    service = component.split("-", 1)[0]
    prefix = f"CAYG_{service.upper()}_"
    env = {
        f"{prefix}KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
        f"{prefix}KAFKA__METADATA_MAX_AGE_MS": "5000",
        f"{prefix}TENANTS_FILE": str(TENANTS_FILE),
        f"{prefix}HTTP_PORT": str(SERVICE_PORTS[component]),
    }
    if service == "publish":
        lane, targets = PUBLISH_LANES[component]
        env[f"{prefix}TARGETS_FILE"] = str(publish_config_file)
        # Failing deliveries are retried on a short schedule, so the demo recovers quickly.
        env[f"{prefix}RETRY_FIRST_S"] = "2"
        env[f"{prefix}RETRY_MAX_S"] = "10"
        env[f"{prefix}LANE"] = lane
        env[f"{prefix}LANE_TARGETS"] = json.dumps([targets])
    return env


def standin_components(
    base: Path, tenants: Sequence[TenantSecrets], ports: Ports = Ports()
) -> list[Component]:
    """The registry and CLR host stand-ins, configured with every tenant's credentials."""
    python = sys.executable
    admin = str(base / "secrets" / "admin-token")
    common = ["--admin-token-file", admin, "--conformance-dir", str(conformance_dir())]
    api_keys = ";".join(f"{t.api_key_file.read_text()}={t.org_ctid}" for t in tenants)
    clients = ";".join(f"{t.client_id}:{t.client_secret_file.read_text()}" for t in tenants)
    rewrites = [
        f"--rewrite={prefix}={url}"
        for t in tenants
        for prefix, url in t.rewrites(ports.web_url).items()
    ]
    first = tenants[0].domain if tenants else "none"
    return [
        Component(
            "web",
            [
                python,
                "-m",
                "cayg_standins",
                "static",
                "--port",
                str(ports.web),
                "--root",
                str(base / "web"),
            ],
            f"{ports.web_url}/{first}/.well-known/did.json",
        ),
        Component(
            "registry",
            [
                python,
                "-m",
                "cayg_standins",
                "registry",
                "--port",
                str(ports.registry),
                "--data-dir",
                str(base / "registry"),
                "--public-base-url",
                ports.registry_url,
                *common,
            ],
            f"{ports.registry_url}/resources/none",
            env={"CAYG_STANDINS_API_KEYS": api_keys},
        ),
        Component(
            "clr",
            [
                python,
                "-m",
                "cayg_standins",
                "clr",
                "--port",
                str(ports.clr),
                "--data-dir",
                str(base / "clr"),
                *rewrites,
                *common,
            ],
            f"{ports.clr_url}/ims/clr/v2p0/discovery",
            env={"CAYG_STANDINS_CLIENTS": clients},
        ),
    ]


def console_component(base: Path, publish_config_file: Path) -> Component:
    """The operator console on :data:`CONSOLE_PORT`; replay with the user ``operator`` and
    the generated password in ``secrets/console-password``."""
    password = _secret_file(base / "secrets" / "console-password", secrets.token_urlsafe(12))
    return Component(
        "console",
        [sys.executable, "-m", "cayg_ops.console"],
        f"{CONSOLE_URL}/healthz",
        env={
            "CAYG_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
            "CAYG_CONSOLE_HTTP_PORT": str(CONSOLE_PORT),
            "CAYG_CONSOLE_SERVICES": json.dumps(
                [f"http://127.0.0.1:{port}" for port in SERVICE_PORTS.values()]
            ),
            "CAYG_CONSOLE_TARGETS_FILE": str(publish_config_file),
            "CAYG_CONSOLE_USERNAME": "operator",
            "CAYG_CONSOLE_PASSWORD_FILE": str(password),
        },
    )


def _components(
    base: Path, tenants: Sequence[TenantSecrets], publish_config_file: Path
) -> list[Component]:
    components = standin_components(base, tenants)
    for component in SERVICE_PORTS:
        components.append(
            Component(
                component,
                [sys.executable, "-m", f"cayg_{component.split('-', 1)[0]}"],
                f"http://127.0.0.1:{SERVICE_PORTS[component]}/readyz",
                env=_service_env(component, publish_config_file),
            )
        )
    components.append(console_component(base, publish_config_file))
    return components


def _start_kafka(base: Path) -> None:
    result = subprocess.run(
        ["bash", str(KAFKA_SH), "start", "--port", str(KAFKA_PORT), "--dir", str(base / "kafka")],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"Kafka did not start: {result.stderr.strip()}")


def group_topics(
    topics: Topics, group_prefix: str = "", tenants: Sequence[str] = ()
) -> dict[str, list[str]]:
    """What each service's consumer group reads (ingest's SIS topics are found by pattern:
    name the tenants to count partitions ingest has not committed on yet)."""
    return {
        f"{group_prefix}cayg-ingest": [topics.sis(t) for t in tenants],
        f"{group_prefix}cayg-normalize": [topics.ingested],
        f"{group_prefix}cayg-publish": [topics.normalized],
    }


async def _create_topics(topics: Topics, tenants: Sequence[str]) -> None:
    """Create every topic up front (3 partitions), as an operator would in production."""
    names = [topics.sis(t) for t in tenants] + [
        topics.ingested,
        topics.normalized,
        topics.ingest_dlq,
        topics.normalize_dlq,
        topics.publish_dlq,
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(n, num_partitions=3, replication_factor=1) for n in names if n not in existing
        ]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


async def _feed(messages: Sequence[FeedMessage], topics: Topics) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(
                topics.sis(message.tenant),
                message.value,
                key=message.key,
                headers=[(k, v.encode()) for k, v in message.headers.items()],
            )
    finally:
        await producer.stop()


async def _wait_idle(
    timeout_s: float, settle_s: float = 6.0, watch: RecoveryWatch | None = None
) -> bool:
    """True once every service group has no lag for ``settle_s`` seconds in a row."""
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    last_report = 0.0
    while time.monotonic() < deadline:
        if watch is not None:
            watch.sample()
        lags = await kafka_view.consumer_lag(
            BOOTSTRAP, topics=group_topics(Topics(), tenants=DEMO_TENANTS)
        )
        behind = sum(lag.lag for lag in lags)
        owed = {lane: _owed(counts) for lane, counts in publish_documents().items()}
        now = time.monotonic()
        if now - last_report > 5:
            detail = ", ".join(f"{lag.group.removeprefix('cayg-')} {lag.lag}" for lag in lags)
            pending = ", ".join(f"{lane} {n}" for lane, n in owed.items())
            _say(
                f"waiting for the pipeline: messages behind — {detail}; "
                f"documents to deliver — {pending}"
            )
            last_report = now
        if behind == 0 and all(lag.partitions for lag in lags) and not any(owed.values()):
            idle_since = idle_since or now
            if now - idle_since >= settle_s:
                return True
        else:
            idle_since = None
        await asyncio.sleep(1)
    return False


_OUTCOMES_LINE: Final = re.compile(r"^cayg_publish_outcomes_total\{([^}]*)\}\s+([0-9.eE+-]+)$")


def _lane_metrics(component: str) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{SERVICE_PORTS[component]}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None


def _series(text: str, pattern: re.Pattern[str], label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = pattern.match(line)
        if match is not None:
            key = dict(_LABEL.findall(match.group(1))).get(label, "")
            found[key] = found.get(key, 0.0) + float(match.group(2))
    return found


@dataclass
class RecoveryWatch:
    """What one publish lane went through while the demo waited: requests retried within a
    delivery, deliveries that failed and were rescheduled in the ledger, the most documents
    failing at once, and how long from the first failed request until the lane had nothing
    left to deliver."""

    component: str = "publish"
    first_outcomes: dict[str, float] | None = None
    last_outcomes: dict[str, float] | None = None
    peak_failing: int = 0
    trouble_at: float | None = None
    recovered_at: float | None = None

    def sample(self) -> None:
        """Read the lane's metrics once (outcome counters, documents by state)."""
        text = _lane_metrics(self.component)
        if text is None:
            return
        now = time.monotonic()
        outcomes = _series(text, _OUTCOMES_LINE, "outcome")
        if self.first_outcomes is None:
            self.first_outcomes = outcomes
        self.last_outcomes = outcomes
        states = _series(text, _DOCUMENTS_LINE, "state")
        failing = int(states.get("failing", 0))
        owed = failing + int(states.get("dirty", 0))
        self.peak_failing = max(self.peak_failing, failing)
        troubled = failing or self.delta("retried") or self.delta("failing")
        if troubled and self.trouble_at is None:
            self.trouble_at = now
        if self.trouble_at is not None and owed == 0:
            self.recovered_at = self.recovered_at or now
        else:
            self.recovered_at = None

    def delta(self, outcome: str) -> int:
        """How many ``outcome``s the lane counted since the watch started."""
        before = (self.first_outcomes or {}).get(outcome, 0.0)
        return int((self.last_outcomes or {}).get(outcome, 0.0) - before)

    def report(self) -> list[str]:
        """Lines for the summary."""
        lines = [
            f"Registry lane during this feed ({self.component}): "
            f"{self.delta('applied')} request(s) applied; {self.delta('retried')} failed "
            f"request(s) retried within their delivery; {self.delta('failing')} delivery(ies) "
            f"failed and were rescheduled in the ledger; at most {self.peak_failing} "
            "document(s) failing at once"
        ]
        if self.trouble_at is None:
            lines.append("  no request failed (no fault was active, or it had ended)")
        elif self.recovered_at is None:
            lines.append("  not recovered yet: documents still to deliver (see cayg status)")
        else:
            took = self.recovered_at - self.trouble_at
            lines.append(
                f"  recovered: nothing left to deliver {took:.0f} s after the first failed "
                "request (measured every few seconds)"
            )
        return lines


_DOCUMENTS_LINE: Final = re.compile(r"^cayg_publish_documents\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def publish_documents() -> dict[str, dict[str, int]]:
    """Documents per publish lane and state, from each lane's ``/metrics`` (the gauge is
    refreshed from the ledger every few seconds); a lane that does not answer is left out."""
    found: dict[str, dict[str, int]] = {}
    for component, port in SERVICE_PORTS.items():
        if not component.startswith("publish"):
            continue
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        counts = found.setdefault(component, {})
        for line in text.splitlines():
            match = _DOCUMENTS_LINE.match(line)
            if match is None:
                continue
            labels = dict(_LABEL.findall(match.group(1)))
            state = labels.get("state", "")
            counts[state] = counts.get(state, 0) + int(float(match.group(2)))
    return found


def _owed(counts: dict[str, int]) -> int:
    """Documents a lane still has to deliver (dirty, or failing and due again later)."""
    return counts.get("dirty", 0) + counts.get("failing", 0)


def _admin_get(url: str, base: Path) -> Any:
    token = (base / "secrets" / "admin-token").read_text().strip()
    response = httpx.get(url, headers={"X-Admin-Token": token}, timeout=10)
    response.raise_for_status()
    return response.json()


def _summary(base: Path, tenants: Sequence[TenantSecrets], topics: Topics) -> str:
    lines = ["", "=== cayg-sync demo: what happened ==="]
    lines.append(f"Credential Registry stand-in (http://127.0.0.1:{REGISTRY_PORT}):")
    for t in tenants:
        listing = httpx.get(
            f"http://127.0.0.1:{REGISTRY_PORT}/organizations/{t.org_ctid}/credentials", timeout=10
        )
        items = listing.json() if listing.status_code == 200 else []
        entries = items.get("credentials", items) if isinstance(items, dict) else items
        lines.append(f"  {t.tenant}: {len(entries)} credential(s) published")
        for entry in entries[:8]:
            if isinstance(entry, dict):
                label = entry.get("name") or entry.get("Name") or entry.get("ctid") or entry
                kind = entry.get("type") or entry.get("@type") or ""
                lines.append(f"    - {kind} {label}")
    lines.append(f"CLR host stand-in (http://127.0.0.1:{CLR_PORT}):")
    try:
        stats = _admin_get(f"http://127.0.0.1:{CLR_PORT}/_admin/stats", base)
    except httpx.HTTPError as error:
        lines.append(f"  (stats unavailable: {error})")
        stats = {}
    issuers = {t.issuer_did: t.tenant for t in tenants}
    per_tenant: dict[str, dict[str, int]] = {}
    for row in stats.get("upserts", []):
        tenant = issuers.get(str(row.get("issuer_id")), str(row.get("issuer_id")))
        counts = per_tenant.setdefault(tenant, {"records": 0})
        counts["records"] += 1
        for field in ("created", "replaced", "unchanged", "stale_ignored", "rejected"):
            counts[field] = counts.get(field, 0) + int(row.get(field, 0))
    for tenant, counts in sorted(per_tenant.items()):
        lines.append(
            f"  {tenant}: {counts['records']} learner record(s) (signed ClrCredentials); "
            f"upserts: {counts['created']} created, {counts['replaced']} replaced, "
            f"{counts['unchanged']} unchanged, {counts['stale_ignored']} stale ignored, "
            f"{counts['rejected']} rejected"
        )
    lines.append("Publish documents (from the ledger, per lane):")
    for lane, counts in sorted(publish_documents().items()):
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n)
        lines.append(f"  {lane}: {shown or 'none'}")
    lines.append("Dead-letter queues:")
    for stage, topic in (
        ("ingest", topics.ingest_dlq),
        ("normalize", topics.normalize_dlq),
        ("publish", topics.publish_dlq),
    ):
        parked = asyncio.run(kafka_view.read_parked(BOOTSTRAP, topic, limit=200))
        lines.append(f"  {stage}: {len(parked)}")
        for item in parked[:10]:
            if item.letter:
                lines.append(f"    - {item.letter.reason}: {item.letter.detail[:110]}")
    lines += [
        "Where to look:",
        f"  logs (JSON lines):  {base / 'logs'}/<component>.log",
        "  metrics:            "
        + ", ".join(f"http://127.0.0.1:{port}/metrics" for port in SERVICE_PORTS.values()),
        "  health:             http://127.0.0.1:8083/readyz (likewise 8081, 8082, 8084)",
        "  dashboards/alerts:  deploy/grafana/dashboards/cayg-pipeline.json, "
        "deploy/prometheus/ (prometheus --config.file=deploy/prometheus/prometheus.yml)",
        f"  operator console:   {CONSOLE_URL}  (replay: user operator, password in "
        f"{base / 'secrets' / 'console-password'})",
        "  operator CLI:       uv run cayg status | uv run cayg dlq list",
        "  break the registry: bash deploy/demo.sh fault --outage 30 && bash deploy/demo.sh feed",
        "  stop everything:    bash deploy/demo.sh stop",
    ]
    return "\n".join(lines)


def up(*, learners_per_tenant: int = 40, idle_timeout_s: float = 240.0) -> int:
    """Start everything, feed the sample stream, wait, summarise."""
    base = demo_dir()
    base.mkdir(parents=True, exist_ok=True)
    if not (conformance_dir() / "1edtech").is_dir():
        _say(f"conformance data not found at {conformance_dir()} (set CAYG_CONFORMANCE_DIR)")
        return 2
    registry = TenantRegistry.load(TENANTS_FILE)
    tenants = tenant_secrets(base, registry)
    publish_config_file = publish_config(base, tenants, registry)
    stack = Stack(base)
    _say(f"starting Kafka on {BOOTSTRAP} (state in {base / 'kafka'})")
    _start_kafka(base)
    asyncio.run(_create_topics(Topics(), [t.tenant for t in tenants]))
    for component in _components(base, tenants, publish_config_file):
        started = stack.start(component)
        _say(f"{component.name}: {'started' if started else 'already running'}")
    messages = sample_feed(learners_per_tenant=learners_per_tenant)
    _say(f"feeding {len(messages)} SIS events from {len(tenants)} institutions")
    asyncio.run(_feed(messages, Topics()))
    idle = asyncio.run(_wait_idle(idle_timeout_s))
    if not idle:
        _say("the pipeline is still busy (retries may be pending); summary so far:")
    print(_summary(base, tenants, Topics()))
    return 0 if idle else 1


def next_revision(base: Path) -> int:
    """The next catalog revision of this demo (1, 2, …), remembered in the demo directory."""
    path = base / "catalog-revision"
    try:
        last = int(path.read_text().strip())
    except (OSError, ValueError):
        last = 0
    path.write_text(str(last + 1))
    return last + 1


def feed_more(*, learners_per_tenant: int) -> int:
    """Feed the sample again into a running demo, wait, summarise.

    Learners beyond the first run's are new (new awards and CLRs); the rest are replays the
    ledger skips. Each feed also sends the next catalog revision — one credential per
    institution with a new description — so the registry lane has new documents to
    deliver (and the learner records naming them are re-issued): after ``fault`` it must
    ride out the outage, and the summary says how.
    """
    base = demo_dir()
    registry = TenantRegistry.load(TENANTS_FILE)
    tenants = tenant_secrets(base, registry)
    revision = next_revision(base)
    messages = [
        *sample_feed(learners_per_tenant=learners_per_tenant),
        *catalog_revision(revision),
    ]
    watch = RecoveryWatch()
    watch.sample()
    _say(
        f"feeding {len(messages)} SIS events (catalog revision {revision}: one credential "
        "per institution revised)"
    )
    asyncio.run(_feed(messages, Topics()))
    idle = asyncio.run(_wait_idle(600.0, watch=watch))
    watch.sample()
    print(_summary(base, tenants, Topics()))
    print("\n".join(watch.report()))
    return 0 if idle else 1


def down() -> int:
    """Stop the services, the stand-ins and Kafka."""
    base = demo_dir()
    stack = Stack(base)
    for name in (
        "console",
        "publish",
        "publish-clr",
        "normalize",
        "ingest",
        "clr",
        "registry",
        "web",
    ):
        if stack.stop(name):
            _say(f"{name}: stopped")
    subprocess.run(["bash", str(KAFKA_SH), "stop", "--dir", str(base / "kafka")], check=False)
    _say("kafka: stopped")
    return 0


def fault(*, target: str, outage_s: float | None, error_rate: float | None) -> int:
    """Break a stand-in on purpose (an outage window or an error rate) to watch recovery."""
    base = demo_dir()
    port = REGISTRY_PORT if target == "registry" else CLR_PORT
    plan: dict[str, Any] = {"seed": 7}
    if outage_s:
        plan["outage_s"] = outage_s
    if error_rate:
        plan["error_rates"] = {"503": error_rate}
    token = (base / "secrets" / "admin-token").read_text().strip()
    response = httpx.post(
        f"http://127.0.0.1:{port}/_admin/faults",
        json=plan,
        headers={"X-Admin-Token": token},
        timeout=10,
    )
    print(response.text)
    return 0 if response.status_code < 300 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cayg_ops.demo up|down|fault`` (also ``cayg demo …``)."""
    import argparse  # noqa: PLC0415 - only the entry point needs it

    parser = argparse.ArgumentParser(prog="cayg demo", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("up", help="start everything, feed the sample, summarise")
    start.add_argument("--learners", type=int, default=40, help="learners per institution")
    start.add_argument("--idle-timeout", type=float, default=240.0)
    sub.add_parser("down", help="stop everything the demo started")
    more = sub.add_parser(
        "feed", help="feed the sample again (with more learners: new awards to publish)"
    )
    more.add_argument("--learners", type=int, default=60, help="learners per institution")
    breaker = sub.add_parser("fault", help="break a stand-in on purpose")
    breaker.add_argument("--target", choices=("registry", "clr"), default="registry")
    breaker.add_argument("--outage", type=float, help="seconds of full outage from now")
    breaker.add_argument("--error-rate", type=float, help="share of requests answered 503")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            return up(learners_per_tenant=args.learners, idle_timeout_s=args.idle_timeout)
        if args.action == "down":
            return down()
        if args.action == "feed":
            return feed_more(learners_per_tenant=args.learners)
        return fault(target=args.target, outage_s=args.outage, error_rate=args.error_rate)
    except StackError as error:
        _say(str(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
