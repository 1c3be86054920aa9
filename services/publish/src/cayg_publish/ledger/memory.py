"""An in-process ledger: for tests and single-shot tools, never for production."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from cayg_publish.domain import IN_FLIGHT, LedgerEntry, LedgerTotals
from cayg_publish.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError, Mutation, utc_now

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
