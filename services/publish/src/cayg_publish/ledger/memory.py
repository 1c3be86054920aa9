"""An in-process ledger: for tests and single-shot tools, never for production."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from cayg_publish.domain import (
    IN_FLIGHT,
    CatalogRow,
    CatalogStatus,
    HeldAward,
    LedgerEntry,
    LedgerTotals,
    catalog_rows,
    catalog_transition,
    revoke_transition,
)
from cayg_publish.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError, Mutation, utc_now
from cayg_shared.schema import (
    Change,
    CredentialDefinition,
    EntityType,
    LearnerIdentity,
)

T = TypeVar("T")


class InMemoryLedger(Ledger):
    """A :class:`~cayg_publish.ledger.port.Ledger` in a dict; nothing survives the process."""

    def __init__(
        self,
        *,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(claim_ttl=claim_ttl, clock=clock)
        self._rows: dict[tuple[str, str], LedgerEntry] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._catalog = InMemoryCatalog()

    @property
    def catalog(self) -> InMemoryCatalog:
        """A catalog living as long as this ledger."""
        return self._catalog

    def __repr__(self) -> str:
        return f"InMemoryLedger(entries={len(self._rows)})"

    async def migrate(self) -> None:
        """Nothing to migrate."""
        if self._closed:
            raise LedgerError("the ledger is closed")

    async def close(self) -> None:
        """Forget nothing, accept nothing more."""
        self._closed = True

    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The stored entry, if any."""
        return self._rows.get((target, entity_key))

    async def totals(self) -> LedgerTotals:
        """Counts per target and last outcome."""
        by_target: dict[str, dict[str, int]] = {}
        for (target, _), entry in self._rows.items():
            outcome = IN_FLIGHT if entry.last_outcome is None else str(entry.last_outcome)
            counts = by_target.setdefault(target, {})
            counts[outcome] = counts.get(outcome, 0) + 1
        return LedgerTotals(by_target=by_target)

    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[T]) -> T:
        if self._closed:
            raise LedgerError("the ledger is closed")
        async with self._lock:
            result, after = mutation(self._rows.get((target, entity_key)))
            if after is not None:
                self._rows[(target, entity_key)] = after
            return result

    def forget(self, target: str, entity_key: str) -> None:
        """Drop a row, as if its write had been lost (crash tests)."""
        self._rows.pop((target, entity_key), None)


class InMemoryCatalog:
    """A :class:`~cayg_publish.domain.Catalog` in a dict."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str, str], CatalogRow] = {}

    def __repr__(self) -> str:
        return f"InMemoryCatalog(entries={len(self._rows)})"

    async def remember(self, change: Change) -> None:
        """Store what ``change`` says, unless a newer snapshot is already stored."""
        rows = catalog_rows(change)
        for incoming in rows:
            key = (incoming.tenant, incoming.entity_type.value, incoming.source_id, incoming.part)
            new = catalog_transition(self._rows.get(key), incoming)
            if new is not None:
                self._rows[key] = new
        if not rows:  # a record-level revoke
            record = (
                change.tenant,
                change.entity_key.entity_type.value,
                change.entity_key.source_id,
            )
            for key, existing in list(self._rows.items()):
                if key[:3] == record:
                    new = revoke_transition(existing, change)
                    if new is not None:
                        self._rows[key] = new

    async def definition(self, tenant: str, ctid: str) -> CredentialDefinition | None:
        """The last known definition with ``ctid``."""
        found = [
            row
            for row in self._rows.values()
            if row.tenant == tenant
            and row.entity_type is EntityType.CREDENTIAL_DEFINITION
            and row.ctid == ctid
        ]
        found.sort(key=lambda row: row.version.time, reverse=True)
        entity = found[0].entity if found else None
        return entity if isinstance(entity, CredentialDefinition) else None

    async def definition_by_source(
        self, tenant: str, source_id: str
    ) -> CredentialDefinition | None:
        """The last known definition with SIS id ``source_id``."""
        row = self._rows.get((tenant, EntityType.CREDENTIAL_DEFINITION.value, source_id, ""))
        entity = None if row is None else row.entity
        return entity if isinstance(entity, CredentialDefinition) else None

    async def learner(self, tenant: str, person_ref: str) -> LearnerIdentity | None:
        """The current identity of a learner."""
        row = self._rows.get((tenant, EntityType.LEARNER_IDENTITY.value, person_ref, ""))
        if row is None or row.status is not CatalogStatus.CURRENT:
            return None
        return row.entity if isinstance(row.entity, LearnerIdentity) else None

    async def awards_of(self, tenant: str, learner: str) -> tuple[HeldAward, ...]:
        """The current awards of a learner."""
        rows = sorted(
            (
                row
                for row in self._rows.values()
                if row.tenant == tenant
                and row.entity_type is EntityType.CREDENTIAL_AWARD
                and row.learner_key == learner
                and row.status is CatalogStatus.CURRENT
            ),
            key=lambda row: (row.source_id, row.part),
        )
        return tuple(h for h in map(HeldAward.of, rows) if h is not None)

    async def last_award_change(self, tenant: str, learner: str) -> datetime | None:
        """The newest source time of any award row of the learner."""
        return max(
            (
                row.version.time
                for row in self._rows.values()
                if row.tenant == tenant
                and row.entity_type is EntityType.CREDENTIAL_AWARD
                and row.learner_key == learner
            ),
            default=None,
        )
