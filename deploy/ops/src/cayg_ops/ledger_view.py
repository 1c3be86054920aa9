"""What publish's ledger knows, for operators: documents by state, what was published for
an entity, and reconciliation (mark a tenant's documents dirty, watch the projector).

Reads the publish targets file (``--targets-file`` or ``$CAYG_PUBLISH_TARGETS_FILE``) for the
ledger and the targets; only the ledger is opened — no target is called from here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cayg_publish.adapters.factory import create_ledger
from cayg_publish.adapters.ledger import Ledger
from cayg_publish.config import PublishTargetsConfig
from cayg_publish.domain.catalog import LedgerEntry, TargetFailure
from cayg_publish.domain.projection import DocumentKind, DocumentRef, DocumentRow, DocumentState
from cayg_publish.publisher import Drift, Publisher
from cayg_shared.schema import EntityType


class LedgerViewError(Exception):
    """The targets file or the ledger cannot be used (one line for the operator)."""


@dataclass(frozen=True, slots=True)
class TargetsView:
    """The targets file, read for the ledger and the document kinds of each target."""

    config: PublishTargetsConfig

    @classmethod
    def load(cls, path: Path) -> TargetsView:
        """Read and validate the targets file."""
        try:
            return cls(PublishTargetsConfig.load(path))
        except OSError as error:
            raise LedgerViewError(f"cannot read {path}: {error.strerror}") from error
        except ValueError as error:
            first = str(error).splitlines()[0]
            raise LedgerViewError(f"{path} is not a valid targets file: {first}") from error

    def ledger(self) -> Ledger:
        """The configured ledger (not yet opened)."""
        return create_ledger(self.config.ledger)

    def kinds_by_target(
        self, tenant: str, only: str | None = None
    ) -> dict[str, frozenset[DocumentKind]]:
        """The document kinds of each of ``tenant``'s targets (or just ``only``)."""
        targets = self.config.tenants.get(tenant)
        if targets is None:
            known = ", ".join(sorted(self.config.tenants)) or "none"
            raise LedgerViewError(f"tenant {tenant!r} has no targets (configured: {known})")
        found = {
            t.name: t.document_kinds for t in targets.targets if only is None or t.name == only
        }
        if not found:
            names = ", ".join(t.name for t in targets.targets)
            raise LedgerViewError(f"tenant {tenant!r} has no target {only!r} (it has: {names})")
        return found


async def document_counts(view: TargetsView) -> list[tuple[str, str, str, str, int]]:
    """``(target, tenant, state, reason, count)`` of every document."""
    async with view.ledger() as ledger:
        return await ledger.document_counts()


def ledger_key_of(ref: DocumentRef) -> str | None:
    """The ledger entry key the projector records a document's main request under."""
    if ref.kind is DocumentKind.LEARNER_RECORD:
        return f"clr-record|{ref.tenant}|{ref.subject}"
    if ref.kind is DocumentKind.CREDENTIAL:
        return f"{ref.tenant}/{EntityType.CREDENTIAL_DEFINITION.value}/{ref.subject}"
    if ref.kind is DocumentKind.ORGANIZATION:
        return f"{ref.tenant}/{EntityType.ORGANIZATION.value}/{ref.subject}"
    source_id, _, part = ref.subject.partition("\n")
    base = f"{ref.tenant}/{EntityType.CREDENTIAL_AWARD.value}/{source_id}"
    return f"{base}#{part}" if part else base


@dataclass(frozen=True, slots=True)
class Published:
    """One document at one target and the ledger's record of its delivery."""

    document: DocumentRow
    entry: LedgerEntry | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready view (no learner identifiers: subjects are opaque keys)."""
        row, entry = self.document, self.entry
        out: dict[str, Any] = {
            "target": row.target,
            "tenant": row.ref.tenant,
            "kind": row.ref.kind.value,
            "subject": row.ref.subject.replace("\n", "#"),
            "state": row.state.value,
            "waiting_for": row.waiting_for,
            "attempts": row.attempts,
            "last_error": row.last_error,
        }
        if entry is not None:
            applied = entry.applied_version
            out |= {
                "remote_id": entry.remote_id,
                "remote_url": entry.remote_url,
                "applied_version": None if applied is None else applied.model_dump(mode="json"),
                "content_hash": entry.applied_hash,
                "last_outcome": None if entry.last_outcome is None else str(entry.last_outcome),
                "updated_at": entry.updated_at.isoformat(),
            }
        return out


async def published(
    view: TargetsView,
    *,
    tenant: str,
    target: str | None = None,
    ctid: str | None = None,
    learner: str | None = None,
    states: Sequence[DocumentState] | None = None,
    limit: int = 200,
) -> list[Published]:
    """Documents of ``tenant`` with their ledger entries, filtered."""
    view.kinds_by_target(tenant, target)  # a clear error for an unknown tenant or target
    async with view.ledger() as ledger:
        subject = learner
        if ctid is not None:
            defined = await ledger.catalog.definition_row(tenant, ctid)
            if defined is None:
                raise LedgerViewError(f"no definition with CTID {ctid} in {tenant}'s catalog")
            subject = defined.source_id
        rows = await ledger.documents(
            tenant=tenant, target=target, states=states, subject=subject, limit=limit
        )
        found: list[Published] = []
        for row in rows:
            key = ledger_key_of(row.ref)
            entry = None if key is None else await ledger.get(row.target, key)
            found.append(Published(row, entry))
        return found


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What a reconcile marked and what the projector then did."""

    marked: int
    by_target: Mapping[str, int]
    #: Ledger entries whose applied content changed while we watched, per target.
    changed: Mapping[str, int]
    #: Documents still dirty or failing when the watch ended.
    pending: int
    #: Document states at the end, per target.
    states: Mapping[str, Mapping[str, int]]
    #: What the targets were found to hold otherwise than the ledger believed (read back
    #: before marking; each is then sent again).
    drift: Sequence[Drift] = ()


async def _snapshot(ledger: Ledger, targets: Sequence[str]) -> dict[tuple[str, str], str | None]:
    found: dict[tuple[str, str], str | None] = {}
    for target in targets:
        for entry in await ledger.entries(target, limit=1_000_000):
            found[(target, entry.entity_key)] = entry.applied_hash
    return found


async def reconcile(
    view: TargetsView,
    *,
    tenant: str,
    target: str | None = None,
    dry_run: bool = False,
    wait_s: float = 120.0,
    progress: Any = None,
    check_targets: bool = True,
) -> Reconciliation:
    """Mark every document of ``tenant`` (at ``target``) dirty and watch the projector.

    The running publish instances deliver them; content that is already at the target is
    recognised as unchanged by the ledger and not sent. First (``check_targets``) the
    targets are read back: a document a target holds otherwise than the ledger believes
    (changed or lost there) is reported as drift and its ledger entry forgotten, so it is
    sent again. ``dry_run`` reports drift and what would be marked, and changes nothing.
    """
    kinds = view.kinds_by_target(tenant, target)
    drift = await read_back(view, tenant=tenant, target=target) if check_targets else []
    async with view.ledger() as ledger:
        if dry_run:
            existing = await ledger.documents(tenant=tenant, target=target, limit=1_000_000)
            counts: dict[str, int] = {}
            for row in existing:
                counts[row.target] = counts.get(row.target, 0) + 1
            return Reconciliation(sum(counts.values()), counts, {}, 0, {}, drift)
        for found in drift:
            # The target does not hold what the ledger says: send it again.
            await ledger.forget_applied(found.target, found.ledger_key)
        before = await _snapshot(ledger, list(kinds))
        marked = await ledger.reconcile(tenant, kinds)
        by_target: dict[str, int] = {}
        for name, _ in marked:
            by_target[name] = by_target.get(name, 0) + 1
        deadline = time.monotonic() + wait_s
        pending = len(marked)
        while time.monotonic() < deadline:
            rows = await ledger.documents(
                tenant=tenant,
                target=target,
                states=[DocumentState.DIRTY, DocumentState.FAILING],
                limit=1_000_000,
            )
            pending = len(rows)
            if progress is not None:
                progress(pending)
            if pending == 0:
                break
            await asyncio.sleep(1.0)
        after = await _snapshot(ledger, list(kinds))
        changed: dict[str, int] = {}
        for (name, key), digest in after.items():
            if before.get((name, key)) != digest:
                changed[name] = changed.get(name, 0) + 1
        states: dict[str, dict[str, int]] = {}
        for row in await ledger.documents(tenant=tenant, target=target, limit=1_000_000):
            per = states.setdefault(row.target, {})
            per[row.state.value] = per.get(row.state.value, 0) + 1
        return Reconciliation(len(marked), by_target, changed, pending, states, drift)


async def read_back(view: TargetsView, *, tenant: str, target: str | None = None) -> list[Drift]:
    """Read the tenant's targets back and compare with what the ledger believes they hold
    (publish's own read-back; nothing is changed)."""
    try:
        publisher = Publisher.from_config(view.config, signing_workers=0)
    except ValueError as error:
        raise LedgerViewError(str(error).splitlines()[0]) from error
    try:
        await publisher.start()
        return await publisher.drift(tenant, target)
    except TargetFailure as failure:
        raise LedgerViewError(f"reading the targets back failed: {failure}") from failure
    finally:
        await publisher.aclose()


def dumps(items: Sequence[Published]) -> str:
    """``published`` as JSON."""
    return json.dumps([item.as_json() for item in items], indent=2)
