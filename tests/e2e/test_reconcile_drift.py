"""``cayg reconcile`` reads the targets back first: what a target lost or holds otherwise
than the ledger believes is reported as drift and sent again (issue 8, item 7).

Learners' records and definitions are delivered through the whole pipeline; then the CLR
host loses a record (its row deleted behind publish's back) and the registry loses a
credential (deleted through the Assistant API by someone else). A dry run reports both and
changes nothing; the reconcile reports them, and the running publish sends them again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cayg_ops import ledger_view
from e2e.test_revocations_land import _start, _until_delivered, phases
from support.pipeline import Pipeline

pytestmark = pytest.mark.e2e

TENANT = "northfield-cc"


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


def _northfield_credential(pipeline: Pipeline) -> str:
    secrets = next(t for t in pipeline.tenants if t.tenant == TENANT)
    response = httpx.get(
        f"{pipeline.ports.registry_url}/organizations/{secrets.org_ctid}/credentials", timeout=10
    )
    response.raise_for_status()
    return str(response.json()["credentials"][0]["ctid"])


def _delete_at_registry(pipeline: Pipeline, ctid: str) -> None:
    secrets = next(t for t in pipeline.tenants if t.tenant == TENANT)
    response = httpx.request(
        "DELETE",
        f"{pipeline.ports.registry_url}/assistant/credential/delete",
        json={"CTID": ctid, "PublishForOrganizationIdentifier": secrets.org_ctid},
        headers={"Authorization": f"ApiToken {secrets.api_key_file.read_text().strip()}"},
        timeout=10,
    )
    response.raise_for_status()
    assert response.json()["Successful"] is True, response.text


def _lose_at_clr_host(pipeline: Pipeline, credential_id: str) -> None:
    with sqlite3.connect(pipeline.base / "clr" / "clr.sqlite3") as db:
        deleted = db.execute(
            "DELETE FROM credentials WHERE credential_id = ?", (credential_id,)
        ).rowcount
    assert deleted == 1


@pytest.mark.timeout(420)
async def test_reconcile_reports_drift_and_sends_it_again(pipeline: Pipeline) -> None:
    one, _, expected = phases()
    await asyncio.to_thread(_start, pipeline)
    await pipeline.feed(one)
    await _until_delivered(pipeline, expected)
    await pipeline.wait_idle(timeout_s=120)
    view = ledger_view.TargetsView.load(pipeline.config)

    clean = await ledger_view.reconcile(view, tenant=TENANT, dry_run=True)
    assert clean.drift == [], clean.drift

    lost = next(iter(await pipeline.clr_records(TENANT)))
    _lose_at_clr_host(pipeline, lost)
    ctid = _northfield_credential(pipeline)
    _delete_at_registry(pipeline, ctid)

    dry = await ledger_view.reconcile(view, tenant=TENANT, dry_run=True)
    problems = {(d.target, d.remote_id, d.problem) for d in dry.drift}
    assert problems == {
        (f"{TENANT}-clr", lost, "missing at the host"),
        (f"{TENANT}-registry", ctid, "missing from the registry"),
    }, dry.drift
    assert lost not in await pipeline.clr_records(TENANT), "a dry run changes nothing"

    result = await ledger_view.reconcile(view, tenant=TENANT, wait_s=120)
    assert {(d.target, d.remote_id) for d in result.drift} == {
        (f"{TENANT}-clr", lost),
        (f"{TENANT}-registry", ctid),
    }
    assert result.pending == 0
    assert lost in await pipeline.clr_records(TENANT), "the lost record was sent again"
    assert pipeline.registry_resource(ctid) is not None, "the credential is back"
    after = await ledger_view.reconcile(view, tenant=TENANT, dry_run=True)
    assert after.drift == [], after.drift
