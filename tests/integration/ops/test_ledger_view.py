"""``cayg status``'s documents, ``cayg published`` and ``cayg reconcile`` against a real
SQLite ledger named by a real targets file (no broker, no target: they read the ledger)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cayg_ops import ledger_view
from cayg_ops.cli import main
from cayg_ops.demo import TENANTS_FILE, publish_config, tenant_secrets
from cayg_publish.domain.projection import DeliveryResult, DocumentState, RetrySchedule, Settlement
from cayg_shared.tenants import TenantRegistry
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.integration

CLR = f"{TENANT}-clr"
REGISTRY = f"{TENANT}-registry"


@pytest.fixture
def targets_file(tmp_path: Path) -> Path:
    registry = TenantRegistry.load(TENANTS_FILE)
    return publish_config(tmp_path, tenant_secrets(tmp_path, registry), registry)


async def _record(view: ledger_view.TargetsView) -> None:
    async with view.ledger() as ledger:
        kinds = view.kinds_by_target(TENANT)
        for item in (definition(), award(), learner_identity()):
            await ledger.record_change(change(item), kinds)


async def _deliver_everything(view: ledger_view.TargetsView, stop: asyncio.Event) -> int:
    """A stand-in for a running publish instance: settles every due document delivered."""
    settled = 0
    async with view.ledger() as ledger:
        while not stop.is_set():
            for lease in await ledger.lease_documents([CLR, REGISTRY], limit=50, ttl_ms=5_000):
                await ledger.settle_document(
                    lease, DeliveryResult(Settlement.DELIVERED), RetrySchedule()
                )
                settled += 1
            await asyncio.sleep(0.05)
    return settled


async def test_published_lists_documents_with_their_state(targets_file: Path) -> None:
    view = ledger_view.TargetsView.load(targets_file)
    await _record(view)

    everything = await ledger_view.published(view, tenant=TENANT)
    record = await ledger_view.published(view, tenant=TENANT, learner="person:person-1")
    by_ctid = await ledger_view.published(view, tenant=TENANT, ctid=definition().ctid)

    assert {(p.document.target, p.document.ref.kind.value) for p in everything} == {
        (CLR, "learner-record"),
        (REGISTRY, "credential"),
    }
    assert all(p.document.state is DocumentState.DIRTY for p in everything)
    assert [p.document.target for p in record] == [CLR]
    assert [p.document.ref.subject for p in by_ctid] == ["MC-SQL"]
    shown = json.loads(ledger_view.dumps(record))
    assert shown[0]["state"] == "dirty"
    assert "0012345" not in ledger_view.dumps(everything)  # no raw learner identifier
    with pytest.raises(ledger_view.LedgerViewError, match="no targets"):
        await ledger_view.published(view, tenant="nowhere")


async def test_reconcile_marks_everything_and_watches_it_delivered(targets_file: Path) -> None:
    view = ledger_view.TargetsView.load(targets_file)
    await _record(view)
    stop = asyncio.Event()
    worker = asyncio.create_task(_deliver_everything(view, stop))
    await asyncio.sleep(0.3)  # the first round is delivered

    # Nothing was really delivered (no target runs here): nothing to read back.
    dry = await ledger_view.reconcile(view, tenant=TENANT, dry_run=True, check_targets=False)
    result = await ledger_view.reconcile(view, tenant=TENANT, wait_s=20, check_targets=False)
    stop.set()
    settled = await worker

    # The dry run counts the documents there are; a status list (``<clr>#status``, opened
    # when a record is first rendered, also by the read-back) is kept current by publish.
    assert {t: n for t, n in dry.by_target.items() if not t.endswith("#status")} == {
        CLR: 1,
        REGISTRY: 1,
    }
    assert result.marked == 2
    assert result.pending == 0
    assert result.states == {CLR: {"clean": 1}, REGISTRY: {"clean": 1}}
    assert settled == 4  # each document delivered twice: once recorded, once reconciled


def test_the_cli_reports_documents_and_refuses_unknown_tenants(
    targets_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = ledger_view.TargetsView.load(targets_file)
    asyncio.run(_record(view))

    assert main(["published", "--targets-file", str(targets_file), "--tenant", TENANT]) == 0
    listed = capsys.readouterr().out
    assert "2 document(s)" in listed
    assert "learner-record" in listed

    code = main(["reconcile", "--targets-file", str(targets_file), "--tenant", "nowhere"])
    assert code == 2
    assert "has no targets" in capsys.readouterr().err

    assert (
        main(["reconcile", "--targets-file", str(targets_file), "--tenant", TENANT, "--dry-run"])
        == 0
    )
    assert "2 known document(s)" in capsys.readouterr().out
