"""Delivering definitions to the Registry Assistant stand-in over real HTTP.

Every scenario ends with the registry holding exactly the latest version, once: the
resource read back carries the newest name and the organization lists it a single time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cayg_publish.adapters.factory import create_target
from cayg_publish.adapters.ledger import Ledger, LedgerError, SqliteLedger
from cayg_publish.config import CredentialEngineTargetConfig, HttpTimeouts, SecretRef
from cayg_publish.domain.catalog import Outcome, Target
from cayg_publish.domain.projection import DocumentState
from cayg_publish.domain.retry import RetryPolicy
from cayg_shared.schema import Change, EntityType, Operation
from cayg_standins import FaultPlan, RegistryConfig, create_registry_app
from integration.publish.publish_support import (
    Delivered,
    SleepRecorder,
    deliver_change,
    serve_asgi,
)
from unit.publish.publish_factories import ORG_CTID, TENANT, change, definition

pytestmark = pytest.mark.integration

API_KEY = "7c3a1f0e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
ADMIN = "admin-token"
TARGET = "registry"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_in_process_wait=10)
OTHER_ORG = "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"


@dataclass
class Registry:
    """A running registry stand-in."""

    base: str

    def resource(self, ctid: str) -> dict[str, Any] | None:
        response = httpx.get(f"{self.base}/resources/{ctid}", timeout=10)
        return None if response.status_code == 404 else response.json()

    def listed(self) -> list[Any]:
        response = httpx.get(f"{self.base}/organizations/{ORG_CTID}/credentials", timeout=10)
        if response.status_code == 404:  # the organization has published nothing yet
            return []
        credentials: list[Any] = response.json()["credentials"]
        return credentials

    def counts(self, ctid: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.base}/_admin/stats/{ctid}", headers={"X-Admin-Token": ADMIN}, timeout=10
        )
        counts: dict[str, Any] = response.json()
        return counts


@pytest.fixture
def start_registry(tmp_path: Path, conformance_dir: Path) -> Iterator[Any]:
    """Start a registry stand-in with a given fault plan (one per test)."""
    started: list[Any] = []

    def start(faults: FaultPlan | None = None) -> Registry:
        app = create_registry_app(
            RegistryConfig(
                data_dir=tmp_path / f"registry-{len(started)}",
                api_keys={API_KEY: frozenset({ORG_CTID})},
                conformance_dir=conformance_dir,
                admin_token=ADMIN,
                faults=faults or FaultPlan(),
            )
        )
        server = serve_asgi(app)
        base = server.__enter__()
        started.append(server)
        return Registry(base)

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.migrate()
    yield ledger
    await ledger.close()


def registry_target(
    registry: Registry, ledger: Ledger, *, org: str = ORG_CTID, read_timeout: float = 10.0
) -> Target:
    config = CredentialEngineTargetConfig(
        name=TARGET,
        base_url=f"{registry.base}/assistant/",  # type: ignore[arg-type]
        api_key=SecretRef(env="CE_API_KEY"),
        publish_for_organization=org,
        timeouts=HttpTimeouts(read=read_timeout),
    )
    return create_target(config, ledger.catalog, environ={"CE_API_KEY": API_KEY})


async def send(
    item: Change, target: Target, ledger: Ledger, sleep: SleepRecorder | None = None
) -> Delivered:
    return await deliver_change(
        item, target, ledger, policy=POLICY, sleep=sleep or SleepRecorder(asyncio.sleep)
    )


def applied(delivered: Delivered) -> bool:
    """The target took the change: the document is clean and the entity recorded applied."""
    entry = delivered.entry
    return (
        delivered.state is DocumentState.CLEAN
        and entry is not None
        and entry.last_outcome is Outcome.APPLIED
    )


def assert_holds_once(registry: Registry, name: str) -> None:
    ctid = definition().ctid
    listed = registry.listed()
    assert [c for c in listed if ctid in str(c)] != []
    assert len(listed) == 1
    resource = registry.resource(ctid)
    assert resource is not None
    assert name in str(resource)


async def test_happy_path_then_unchanged(start_registry: Any, ledger: Ledger) -> None:
    registry = start_registry()
    target = registry_target(registry, ledger)
    item = change(definition(), seq=1)

    first = await send(item, target, ledger)
    again = await send(change(definition(), seq=2), target, ledger)

    assert applied(first)
    assert first.entry is not None
    assert first.entry.remote_id == definition().ctid
    assert first.entry.remote_url is not None
    assert again.entry is not None
    assert again.entry.last_outcome is Outcome.UNCHANGED
    assert registry.counts(definition().ctid)["credential/publish"] == {"applied": 1}
    assert_holds_once(registry, "Microcredential in SQL Databases")


async def test_a_5xx_burst_then_success(start_registry: Any, ledger: Ledger) -> None:
    registry = start_registry(FaultPlan(script=("503", "502"), path_prefix="/assistant/"))
    target = registry_target(registry, ledger)

    report = await send(change(definition()), target, ledger)

    assert applied(report)
    assert registry.counts(definition().ctid)["credential/publish"] == {"applied": 1}
    assert_holds_once(registry, "Microcredential in SQL Databases")


async def test_429_retry_after_is_honoured(start_registry: Any, ledger: Ledger) -> None:
    registry = start_registry(
        FaultPlan(script=("429",), retry_after_s=1, path_prefix="/assistant/")
    )
    target = registry_target(registry, ledger)
    sleeps = SleepRecorder(asyncio.sleep)

    report = await send(change(definition()), target, ledger, sleeps)

    assert applied(report)
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 1.0  # never sooner than the registry asked
    assert_holds_once(registry, "Microcredential in SQL Databases")


async def test_timeout_after_the_write_is_retried_and_held_once(
    start_registry: Any, ledger: Ledger
) -> None:
    registry = start_registry(
        FaultPlan(
            script=("timeout_after_write",),
            timeout_after_write_delay_s=60,
            path_prefix="/assistant/",
        )
    )
    target = registry_target(registry, ledger, read_timeout=0.5)

    report = await send(change(definition()), target, ledger)

    assert applied(report)
    # The first request was applied although its answer never came; the retry of the same
    # CTID changed nothing.
    assert registry.counts(definition().ctid)["credential/publish"] == {
        "applied": 1,
        "unchanged": 1,
    }
    assert_holds_once(registry, "Microcredential in SQL Databases")


async def test_a_validation_error_is_permanent_until_fixed(
    start_registry: Any, ledger: Ledger
) -> None:
    registry = start_registry()
    misconfigured = registry_target(registry, ledger, org=OTHER_ORG)
    item = change(definition())

    refused = await send(item, misconfigured, ledger)

    [document] = refused.documents
    assert document.state is DocumentState.REJECTED
    assert document.last_error is not None
    assert document.last_error.startswith("validation")
    assert "may not publish" in document.last_error  # the registry's own message, kept
    entry = await ledger.get(TARGET, str(item.entity_key))
    assert entry is not None
    assert entry.last_outcome is Outcome.FAILED_PERMANENT
    assert registry.listed() == []

    # The operator fixes the configuration and reconciles the tenant.
    fixed = registry_target(registry, ledger)
    await ledger.reconcile(TENANT, {TARGET: fixed.document_kinds})
    replayed = await send(item, fixed, ledger)

    assert applied(replayed)
    assert_holds_once(registry, "Microcredential in SQL Databases")


class CrashingLedger(SqliteLedger):
    """A ledger whose success record is lost, as if the process died right after the call."""

    async def record_success(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerError("simulated crash between the remote call and the ledger write")


async def test_a_crash_between_call_and_ledger_write(start_registry: Any, tmp_path: Path) -> None:
    registry = start_registry()
    path = tmp_path / "crash.sqlite3"
    crashing = CrashingLedger(path)
    await crashing.migrate()
    item = change(definition())

    crashed = await send(item, registry_target(registry, crashing), crashing)
    await crashing.close()
    assert crashed.state is DocumentState.FAILING  # never settled as delivered

    # The process restarts and Kafka redelivers the change; the failing document is retried.
    restarted = SqliteLedger(path)
    await restarted.migrate()
    await restarted.reconcile(TENANT, {TARGET: registry_target(registry, restarted).document_kinds})
    await asyncio.sleep(0.1)  # the failing document is due again (tests retry quickly)
    report = await send(item, registry_target(registry, restarted), restarted)
    await restarted.close()

    assert applied(report)
    assert registry.counts(definition().ctid)["credential/publish"] == {
        "applied": 1,
        "unchanged": 1,
    }
    assert_holds_once(registry, "Microcredential in SQL Databases")


async def test_an_older_version_never_overwrites_a_newer_one(
    start_registry: Any, ledger: Ledger
) -> None:
    registry = start_registry()
    target = registry_target(registry, ledger)
    newer = change(definition(name="Microcredential in SQL Databases II"), seq=2)
    older = change(definition(name="Microcredential in SQL Databases I"), seq=1)

    await send(newer, target, ledger)
    report = await send(older, target, ledger)

    assert report.marked == []  # the catalog keeps the newer version: nothing to deliver
    assert_holds_once(registry, "Microcredential in SQL Databases II")


async def test_deprecation_republishes_the_last_known_definition(
    start_registry: Any, ledger: Ledger
) -> None:
    registry = start_registry()
    target = registry_target(registry, ledger)
    await send(change(definition(), seq=1), target, ledger)
    deleted = change(
        None,
        seq=2,
        operation=Operation.DELETE,
        entity_type=EntityType.CREDENTIAL_DEFINITION,
        source_id="MC-SQL",
    )

    report = await send(deleted, target, ledger)

    assert report.state is DocumentState.CLEAN
    resource = registry.resource(definition().ctid)
    assert "credentialStat:Deprecated" in str(resource)
    assert len(registry.listed()) == 1
