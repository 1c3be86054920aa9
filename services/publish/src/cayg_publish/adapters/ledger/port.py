"""The ledger port: what publish remembers about every entity at every target.

Adapters (in-memory, SQLite, PostgreSQL) implement three storage primitives — read a row,
change a row atomically under a lock, count rows — and inherit the operations, whose rules
are the pure transitions of :mod:`cayg_publish.domain.catalog`. One contract test suite runs
against every adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

from cayg_publish.adapters.ledger.status_store import StatusStore
from cayg_publish.domain.catalog import (
    Catalog,
    Decision,
    LedgerEntry,
    LedgerTotals,
    Outcome,
    Version,
    decide_transition,
    failure_transition,
    success_transition,
)
from cayg_publish.domain.projection import (
    DeliveryResult,
    DocumentKind,
    DocumentRef,
    DocumentRow,
    DocumentState,
    Lease,
    RetrySchedule,
)
from cayg_shared.schema import Change

R = TypeVar("R")

#: A transition: given the current row (None: no row), a result and the row to write
#: (None: leave the row as it is).
Mutation = Callable[[LedgerEntry | None], tuple[R, LedgerEntry | None]]

#: How long an APPLY decision keeps other versions of the entity waiting. Longer than the
#: worst in-process delivery (attempts x timeouts + backoff), so a live delivery never
#: loses its claim; short enough that a crashed instance's claim soon lapses.
DEFAULT_CLAIM_TTL = timedelta(seconds=30)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class LedgerError(Exception):
    """The ledger could not be read or written (the delivery must not be acknowledged)."""


class Ledger(ABC):
    """Per (target, entity key): applied version and content hash, remote id, last outcome.

    Every operation is atomic per (target, entity key), also across processes sharing one
    database, and no operation ever moves the applied version backwards.
    """

    def __init__(
        self,
        *,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if claim_ttl <= timedelta(0):
            raise ValueError("claim_ttl must be positive")
        self._claim_ttl = claim_ttl
        self._clock = clock

    # -- storage primitives (adapters) ------------------------------------------------

    @property
    @abstractmethod
    def catalog(self) -> Catalog:
        """The catalog of reference data kept in the same store."""

    @property
    def status(self) -> StatusStore:
        """Status list entries and published lists, kept in the same store."""
        raise LedgerError(f"{type(self).__name__} keeps no status lists")

    @abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the storage schema; idempotent, safe to run concurrently."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. The ledger may not be used afterwards."""

    @abstractmethod
    async def get(self, target: str, entity_key: str) -> LedgerEntry | None:
        """The entry of ``entity_key`` at ``target``, if there is one."""

    @abstractmethod
    async def entries(
        self, target: str, *, prefix: str = "", limit: int = 10_000
    ) -> list[LedgerEntry]:
        """Entries of ``target`` whose key starts with ``prefix``, in key order."""

    @abstractmethod
    async def totals(self) -> LedgerTotals:
        """Entity counts per target and last outcome, for the operator status."""

    @abstractmethod
    async def _mutate(self, target: str, entity_key: str, mutation: Mutation[R]) -> R:
        """Run ``mutation`` on the current row while holding an exclusive lock on it.

        The row ``mutation`` returns (if any) is written in the same transaction.
        """

    # -- the projection (see cayg_publish.domain.projection) ----------------------------------

    @abstractmethod
    async def record_change(
        self, change: Change, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Apply ``change`` to the catalog and, in the same transaction, mark dirty every
        document it affects at every target serving that kind; returns what was marked."""

    @abstractmethod
    async def record_changes(
        self, changes: Sequence[tuple[Change, Mapping[str, frozenset[DocumentKind]]]]
    ) -> list[tuple[str, DocumentRef]]:
        """:meth:`record_change` for each (change, kinds by target) in order, all in one
        transaction (a consumed batch: all of it is recorded, or none of it)."""

    @abstractmethod
    async def lease_documents(
        self, targets: Sequence[str], *, limit: int, ttl_ms: int
    ) -> list[Lease]:
        """Take up to ``limit`` due, unleased documents of ``targets`` for ``ttl_ms``;
        safe when several instances lease from one database at once."""

    @abstractmethod
    async def renew_lease(self, lease: Lease, ttl_ms: int) -> bool:
        """Extend ``lease`` to ``ttl_ms`` from now while its delivery is still running;
        False when the lease is no longer held (it lapsed and another instance took it)."""

    @abstractmethod
    async def settle_document(
        self, lease: Lease, result: DeliveryResult, schedule: RetrySchedule
    ) -> DocumentRow | None:
        """Record how the delivery under ``lease`` ended (None: the lease was lost)."""

    @abstractmethod
    async def reconcile(
        self, tenant: str, kinds_by_target: Mapping[str, frozenset[DocumentKind]]
    ) -> list[tuple[str, DocumentRef]]:
        """Mark every document of ``tenant``'s catalog dirty at the given targets."""

    @abstractmethod
    async def documents(
        self,
        *,
        tenant: str | None = None,
        target: str | None = None,
        states: Sequence[DocumentState] | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[DocumentRow]:
        """Documents matching the filters, most recently changed first."""

    @abstractmethod
    async def document_counts(self) -> list[tuple[str, str, str, str, int]]:
        """``(target, tenant, state, reason, count)`` of every document."""

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    # -- operations ----------------------------------------------------------------------

    async def decide(
        self,
        target: str,
        entity_key: str,
        version: Version,
        content_hash: str,
    ) -> Decision:
        """Whether to send ``version`` (with ``content_hash``) of the entity to ``target``.

        ``SKIP_STALE`` and ``SKIP_UNCHANGED`` are recorded by this call; ``APPLY`` claims
        the entity for this version until :meth:`record_success` / :meth:`record_failure`
        (or the claim's expiry); ``BUSY`` means another version's delivery is in flight.
        """
        now = self._clock()

        def mutation(entry: LedgerEntry | None) -> tuple[Decision, LedgerEntry | None]:
            decision = decide_transition(
                entry,
                target=target,
                entity_key=entity_key,
                version=version,
                content_hash=content_hash,
                now=now,
                claim_ttl=self._claim_ttl,
            )
            return decision, (decision.entry if decision.entry != entry else None)

        return await self._mutate(target, entity_key, mutation)

    async def forget_applied(self, target: str, entity_key: str) -> None:
        """Forget which content ``target`` holds for ``entity_key`` (read back as different
        or missing): the next rendering is sent even if it equals what was last sent. The
        applied version stays, so an older version still never replaces a newer one."""

        def mutation(entry: LedgerEntry | None) -> tuple[None, LedgerEntry | None]:
            if entry is None or entry.applied_hash is None:
                return None, None
            return None, replace(entry, applied_hash=None, updated_at=self._clock())

        await self._mutate(target, entity_key, mutation)

    async def record_success(
        self,
        target: str,
        entity_key: str,
        version: Version,
        content_hash: str,
        *,
        remote_id: str | None = None,
        remote_url: str | None = None,
        outcome: Outcome = Outcome.APPLIED,
    ) -> LedgerEntry:
        """Record that ``target`` accepted ``version``; returns the entry as stored.

        If a newer version was recorded meanwhile, it stands (the returned entry shows it).
        """
        now = self._clock()

        def mutation(entry: LedgerEntry | None) -> tuple[LedgerEntry, LedgerEntry | None]:
            after = success_transition(
                entry,
                target=target,
                entity_key=entity_key,
                version=version,
                content_hash=content_hash,
                remote_id=remote_id,
                remote_url=remote_url,
                now=now,
                outcome=outcome,
            )
            return after, after

        return await self._mutate(target, entity_key, mutation)

    async def record_failure(
        self,
        target: str,
        entity_key: str,
        version: Version,
        content_hash: str,
        *,
        outcome: Outcome,
        error: str,
        attempts: int = 1,
    ) -> LedgerEntry:
        """Record ``attempts`` failed attempts to send ``version``; releases its claim."""
        now = self._clock()

        def mutation(entry: LedgerEntry | None) -> tuple[LedgerEntry, LedgerEntry | None]:
            after = failure_transition(
                entry,
                target=target,
                entity_key=entity_key,
                version=version,
                content_hash=content_hash,
                outcome=outcome,
                error=error,
                now=now,
                attempts=attempts,
            )
            return after, after

        return await self._mutate(target, entity_key, mutation)

    async def __aenter__(self) -> Self:
        await self.migrate()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
