"""What the console shows, gathered from where it lives: each service's own HTTP port
(health, readiness, what runs), Kafka (lag from committed offsets, the dead-letter topics)
and publish's ledger (documents per tenant and target, what each target last answered).

Every figure comes from the same functions the ``cayg`` CLI uses (:mod:`cayg_ops.kafka_view`,
:mod:`cayg_ops.ledger_view`), so the console, the CLI and the services' ``cayg_consumer_lag``
agree. A source that does not answer is shown as such; it never takes the page down.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from cayg_ops import dlq, kafka_view, ledger_view
from cayg_ops.console.settings import ConsoleSettings
from cayg_publish.domain.projection import DocumentState
from cayg_shared.settings import ConnectionSettings
from cayg_shared.topics import Topics

STAGES: Final = ("ingest", "normalize", "publish")
#: Most letters read from one dead-letter topic for one page.
DLQ_PAGE_LIMIT: Final = 500
_BUILD_INFO: Final = re.compile(r"^cayg_build_info\{([^}]*)\}\s+1(?:\.0)?$", re.MULTILINE)
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def dlq_topic(topics: Topics, stage: str) -> str:
    """The dead-letter topic of ``stage``."""
    return {
        "ingest": topics.ingest_dlq,
        "normalize": topics.normalize_dlq,
        "publish": topics.publish_dlq,
    }[stage]


@dataclass(frozen=True)
class ServiceHealth:
    """One service process as its own HTTP port describes it."""

    url: str
    alive: bool
    service: str | None = None
    lane: str | None = None
    group: str | None = None
    ready: bool | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    version: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """``publish (registry lane)``, ``ingest``, or the URL of a service that is down."""
        if self.service is None:
            return self.url
        return f"{self.service} ({self.lane} lane)" if self.lane else self.service


async def probe(client: httpx.AsyncClient, url: str) -> ServiceHealth:
    """``/healthz``, ``/readyz`` and the build info of one service."""
    base = url.rstrip("/")
    try:
        health = await client.get(f"{base}/healthz")
        health.raise_for_status()
        identity: dict[str, Any] = health.json()
    except (httpx.HTTPError, ValueError) as error:
        return ServiceHealth(url, alive=False, error=f"{type(error).__name__}: {error}"[:200])
    try:
        ready = await client.get(f"{base}/readyz")
        body: dict[str, Any] = ready.json()
        checks = {str(k): bool(v) for k, v in dict(body.get("checks", {})).items()}
        is_ready: bool | None = ready.status_code == 200
    except (httpx.HTTPError, ValueError):
        checks, is_ready = {}, None
    version = None
    try:
        metrics = (await client.get(f"{base}/metrics")).text
        match = _BUILD_INFO.search(metrics)
        if match is not None:
            version = dict(_LABEL.findall(match.group(1))).get("version")
    except httpx.HTTPError:
        pass
    return ServiceHealth(
        url,
        alive=True,
        service=identity.get("service"),
        lane=identity.get("lane"),
        group=identity.get("group"),
        ready=is_ready,
        checks=checks,
        version=version,
    )


@dataclass(frozen=True)
class Overview:
    """The first page: services, lag, dead letters, documents."""

    services: list[ServiceHealth]
    lags: list[kafka_view.GroupLag]
    dlq_depth: dict[str, int]
    documents: list[tuple[str, str, str, str, int]]
    problems: list[str]
    at: datetime


class Sources:
    """The console's view of Kafka, the services and the ledger."""

    def __init__(self, settings: ConsoleSettings, connection: ConnectionSettings) -> None:
        self.settings = settings
        self.connection = connection
        self.topics = Topics(connection.topic_prefix)
        self._targets: ledger_view.TargetsView | None = None

    @property
    def cluster(self) -> kafka_view.Cluster:
        """The cluster, with TLS and SASL as configured."""
        return self.connection.kafka

    def targets(self) -> ledger_view.TargetsView:
        """Publish's targets file (read once), for the ledger."""
        if self.settings.targets_file is None:
            raise ledger_view.LedgerViewError(
                "no publish targets file: set CAYG_CONSOLE_TARGETS_FILE or "
                "CAYG_PUBLISH_TARGETS_FILE"
            )
        if self._targets is None:
            self._targets = ledger_view.TargetsView.load(self.settings.targets_file)
        return self._targets

    def tenants(self) -> list[str]:
        """Tenants with publish targets (empty without a targets file)."""
        try:
            return sorted(self.targets().config.tenants)
        except ledger_view.LedgerViewError:
            return []

    async def overview(self) -> Overview:
        """Everything the first page shows, gathered at once."""
        problems: list[str] = []
        async with httpx.AsyncClient(timeout=self.settings.probe_timeout_s) as client:
            services = list(
                await asyncio.gather(*(probe(client, u) for u in self.settings.services))
            )
        # The groups the running services name (their GROUP_ID, a publish lane's own group);
        # with none answering, the cayg groups found on the cluster.
        groups = sorted({s.group for s in services if s.group})
        lags, depth, documents = await asyncio.gather(
            self._lags(groups, problems), self._depths(problems), self._documents(problems)
        )
        return Overview(services, lags, depth, documents, problems, datetime.now(UTC))

    async def _lags(self, groups: list[str], problems: list[str]) -> list[kafka_view.GroupLag]:
        try:
            return await kafka_view.consumer_lag(self.cluster, groups or None)
        except Exception as error:  # noqa: BLE001 - shown on the page, not raised
            problems.append(f"consumer lag unavailable: {type(error).__name__}: {error}"[:300])
            return []

    async def _depths(self, problems: list[str]) -> dict[str, int]:
        depth: dict[str, int] = {}
        for stage in STAGES:
            try:
                depth[stage] = await kafka_view.topic_depth(
                    self.cluster, dlq_topic(self.topics, stage)
                )
            except Exception as error:  # noqa: BLE001
                problems.append(f"{stage} DLQ unavailable: {type(error).__name__}"[:300])
        return depth

    async def _documents(self, problems: list[str]) -> list[tuple[str, str, str, str, int]]:
        if self.settings.targets_file is None:
            return []
        try:
            return await ledger_view.document_counts(self.targets())
        except Exception as error:  # noqa: BLE001
            problems.append(f"ledger unavailable: {type(error).__name__}: {error}"[:300])
            return []

    async def letters(
        self,
        *,
        stage: str | None = None,
        tenant: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
    ) -> list[tuple[str, kafka_view.ParkedMessage]]:
        """Dead letters of every stage (or one), newest first, filtered."""
        found: list[tuple[str, kafka_view.ParkedMessage]] = []
        for name in [stage] if stage else STAGES:
            parked = await kafka_view.read_parked(
                self.cluster, dlq_topic(self.topics, name), limit=DLQ_PAGE_LIMIT
            )
            for item in parked:
                letter = item.letter
                if tenant and (letter is None or letter.tenant != tenant):
                    continue
                if reason and (letter is None or letter.reason != reason):
                    continue
                if since and (letter is None or letter.failed_at < since):
                    continue
                found.append((name, item))
        found.sort(key=lambda pair: _failed_at(pair[1]), reverse=True)
        return found

    async def letter(
        self, stage: str, partition: int, offset: int
    ) -> kafka_view.ParkedMessage | None:
        """One dead letter by its coordinates on ``stage``'s DLQ."""
        if stage not in STAGES:
            return None
        parked = await kafka_view.read_parked(
            self.cluster, dlq_topic(self.topics, stage), limit=DLQ_PAGE_LIMIT * 20
        )
        return next((p for p in parked if (p.partition, p.offset) == (partition, offset)), None)

    async def replay(
        self, stage: str, item: kafka_view.ParkedMessage, *, by: str
    ) -> list[kafka_view.Replayed]:
        """Send one letter's original record back to where it came from, recorded on the
        actions topic as ``cayg dlq replay`` records it (so the CLI and this page agree that
        it was replayed, and by whom)."""
        outcomes = await dlq.replay(
            self.cluster, self.topics, [dlq.Letter(stage, item)], wait_s=0, by=f"console:{by}"
        )
        return [outcome.copy for outcome in outcomes]

    async def published(
        self,
        *,
        tenant: str,
        target: str | None = None,
        ctid: str | None = None,
        learner: str | None = None,
        states: Sequence[DocumentState] | None = None,
    ) -> list[ledger_view.Published]:
        """A tenant's documents with each target's last answer (see ``cayg published``)."""
        return await ledger_view.published(
            self.targets(),
            tenant=tenant,
            target=target,
            ctid=ctid,
            learner=learner,
            states=states,
        )


def _failed_at(item: kafka_view.ParkedMessage) -> datetime:
    if item.letter is not None:
        return item.letter.failed_at
    return datetime.min.replace(tzinfo=UTC)


def lag_of(lags: Sequence[kafka_view.GroupLag], group: str | None) -> kafka_view.GroupLag | None:
    """The lag of ``group`` among ``lags``."""
    return next((lag for lag in lags if lag.group == group), None)
