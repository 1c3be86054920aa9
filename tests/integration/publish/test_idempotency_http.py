"""The Idempotency-Key over real HTTP: a deduplicating target applies a delivery once even
when the answer is lost (timeout after the write) or the ledger write is lost (crash)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cayg_publish.adapters.factory import create_target
from cayg_publish.adapters.ledger import Ledger, LedgerError, SqliteLedger
from cayg_publish.config import CredentialEngineTargetConfig, HttpTimeouts, Limits, SecretRef
from cayg_publish.domain.catalog import LedgerEntry, Outcome, Target
from cayg_publish.domain.idempotency import idempotency_key
from cayg_publish.domain.projection import DocumentKind, DocumentRef, RetrySchedule
from cayg_publish.domain.retry import RetryPolicy
from cayg_publish.projector import Projector
from cayg_shared.schema import Change
from integration.publish.publish_support import IdempotentRegistry, serve_registry
from unit.publish.publish_factories import ORG_CTID, TENANT, change, definition

pytestmark = pytest.mark.integration

TARGET = "dedup-registry"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
#: A failing document is due again almost at once in these tests.
SCHEDULE = RetrySchedule(
    first_interval=timedelta(milliseconds=10), max_interval=timedelta(milliseconds=10)
)


def target(
    base: str, ledger: Ledger, *, read_timeout: float = 10.0, concurrency: int = 4
) -> Target:
    config = CredentialEngineTargetConfig(
        name=TARGET,
        base_url=f"{base}/assistant/",  # type: ignore[arg-type]
        api_key=SecretRef(env="KEY"),
        publish_for_organization=ORG_CTID,
        timeouts=HttpTimeouts(read=read_timeout),
        limits=Limits(max_concurrency=concurrency, rate_per_second=None),
    )
    return create_target(config, ledger.catalog, environ={"KEY": "k" * 36})


async def send(item: Change, to: Target, ledger: Ledger) -> LedgerEntry | None:
    """Record ``item``, deliver what it dirtied, and return the ledger's entry of it."""
    await ledger.record_change(item, {to.name: to.document_kinds})
    await Projector(ledger, [to], policy=POLICY, schedule=SCHEDULE).drain()
    return await ledger.get(to.name, str(item.entity_key))


async def test_a_lost_answer_is_retried_with_the_same_key_and_applied_once(
    tmp_path: Path,
) -> None:
    registry = IdempotentRegistry(hold_after_apply=1)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.migrate()
    item = change(definition())
    with serve_registry(registry) as base:
        entry = await send(item, target(base, ledger, read_timeout=0.5), ledger)
    await ledger.close()

    assert entry is not None
    assert entry.last_outcome is Outcome.APPLIED
    keys = [r.idempotency_key for r in registry.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert registry.applies == 1
    assert list(registry.resources) == [definition().ctid]


async def test_a_lost_ledger_write_is_redelivered_with_the_same_key(tmp_path: Path) -> None:
    class CrashingLedger(SqliteLedger):
        async def record_success(self, *args: Any, **kwargs: Any) -> Any:
            raise LedgerError("simulated crash between the remote call and the ledger write")

    registry = IdempotentRegistry()
    path = tmp_path / "ledger.sqlite3"
    item = change(definition())
    with serve_registry(registry) as base:
        crashing = CrashingLedger(path)
        await crashing.migrate()
        # The delivery's ledger write fails: the document is not settled as delivered.
        await send(item, target(base, crashing), crashing)
        await crashing.close()
        restarted = SqliteLedger(path)
        await restarted.migrate()
        await asyncio.sleep(0.05)  # the failing document is due again
        await Projector(restarted, [target(base, restarted)], policy=POLICY).drain()
        entry = await restarted.get(TARGET, str(item.entity_key))
        again = await send(item, target(base, restarted), restarted)
        to = target("http://unused", restarted)
        [rendering] = await to.render_document(
            DocumentRef(TENANT, DocumentKind.CREDENTIAL, definition().source_id)
        )
        await restarted.close()

    assert entry is not None
    assert entry.last_outcome is Outcome.APPLIED
    assert again is not None
    assert again.last_outcome is Outcome.UNCHANGED
    keys = [r.idempotency_key for r in registry.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert rendering.subject_version is not None
    assert keys[0] == idempotency_key(
        TARGET, str(item.entity_key), rendering.subject_version, rendering.content_hash
    )
    assert registry.applies == 1


async def test_a_new_version_gets_a_new_key(tmp_path: Path) -> None:
    registry = IdempotentRegistry()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.migrate()
    with serve_registry(registry) as base:
        to = target(base, ledger)
        await send(change(definition(), seq=1), to, ledger)
        await send(change(definition(name="SQL Databases, revised"), seq=2), to, ledger)
    await ledger.close()

    keys = [r.idempotency_key for r in registry.requests]
    assert len(set(keys)) == 2
    assert registry.applies == 2
    assert "revised" in str(registry.resources[definition().ctid])


async def test_the_throttle_holds_concurrency_across_deliveries(tmp_path: Path) -> None:
    """Many changes for one target at once never exceed its concurrency limit."""
    registry = IdempotentRegistry()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.migrate()
    items = [change(definition(f"MC-{n}", name=f"Microcredential {n}")) for n in range(12)]
    with serve_registry(registry) as base:
        to = target(base, ledger, concurrency=2)
        for item in items:
            await ledger.record_change(item, {to.name: to.document_kinds})
        # Twelve documents delivered at once by one projector, two calls at a time.
        await Projector(ledger, [to], policy=POLICY, max_in_flight=12).drain()
        entries = [await ledger.get(TARGET, str(i.entity_key)) for i in items]
    await ledger.close()

    assert all(e is not None and e.last_outcome is Outcome.APPLIED for e in entries)
    assert registry.applies == 12
    assert len(registry.resources) == 12
    assert 1 <= registry.peak_in_flight <= 2
