"""Status lists in the ledger: which credential holds which bit, and the published lists.

One port (:class:`StatusStore`) and its in-memory variant here; the SQL variant for SQLite
and PostgreSQL is :mod:`cayg_publish.adapters.ledger._status_sql`. Each ledger has one
(``ledger.status``), in the same database, so any publish instance can allocate, publish
and serve the lists. Rules (what is allocated when, what a bit means) are in
:mod:`cayg_publish.domain.status`; the store only keeps rows, atomically.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cayg_publish.domain.projection import (
    DocumentRef,
    DocumentRow,
    DocumentState,
    dirty_transition,
)
from cayg_publish.domain.status import (
    LIST_ENTRIES,
    IndexPermutation,
    StatusKind,
    StatusPurpose,
    list_id,
)

__all__ = [
    "Allocated",
    "InMemoryStatusStore",
    "StatusEntryRow",
    "StatusListRow",
    "StatusScope",
    "StatusStore",
    "coalesced_dirty",
    "status_target_name",
]


def status_target_name(owner: str) -> str:
    """The name of the status-list target beside CLR/OB target ``owner`` (``#`` cannot
    occur in a configured name, so it never collides with one)."""
    return f"{owner}#status"


@dataclass(frozen=True, slots=True, order=True)
class StatusScope:
    """Whose lists: one tenant's credentials by one issuer, for one purpose."""

    tenant: str
    issuer: str
    purpose: StatusPurpose = StatusPurpose.REVOCATION


@dataclass(frozen=True, slots=True)
class StatusListRow:
    """One list: where allocation stands, and the signed copy last published."""

    list_id: str
    scope: StatusScope
    list_no: int
    size: int
    #: Entries handed out so far (the next one takes position ``P(allocated)``).
    allocated: int
    #: Key of the list's index permutation (drawn at random when the list was opened).
    perm_key: bytes
    created_ms: int
    #: The signed ``BitstringStatusListCredential`` as served (None: never published).
    published: str | None = None
    etag: str | None = None
    published_ms: int | None = None
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StatusEntryRow:
    """One credential's entry (a credential has one per generation)."""

    scope: StatusScope
    credential_id: str
    generation: int
    list_id: str
    index: int
    kind: StatusKind
    subject: str
    #: When its credential was first seen not live (the bit is set from then on).
    revoked_ms: int | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class Allocated:
    """An entry handed out, and whether a new list had to be opened for it."""

    entry: StatusEntryRow
    opened: StatusListRow | None


def coalesced_dirty(
    current: DocumentRow | None,
    *,
    target: str,
    ref: DocumentRef,
    now_ms: int,
    not_before_ms: int,
    in_flight_not_before_ms: int | None = None,
) -> DocumentRow:
    """A document made dirty, due no earlier than ``not_before_ms`` (an already earlier
    due time stands: that delivery renders the newest state anyway).

    While a delivery of it is in flight (leased), that delivery publishes about now, so
    the next one is due no earlier than ``in_flight_not_before_ms`` (when given): a list
    is published at most once per interval even when a revocation lands mid-delivery."""
    after = dirty_transition(current, target=target, ref=ref, now_ms=now_ms)
    if after.state is DocumentState.FAILING:
        return after
    was_due = current is not None and current.due and current.state is DocumentState.DIRTY
    due = min(current.next_attempt_ms, not_before_ms) if was_due and current else not_before_ms
    in_flight = (
        current is not None
        and current.lease_token is not None
        and (current.lease_expires_ms or 0) > now_ms
    )
    if in_flight and in_flight_not_before_ms is not None:
        due = max(due, in_flight_not_before_ms)
    return replace(after, next_attempt_ms=due)


class StatusStore(ABC):
    """Status entries and lists (see the module docs); every method is one transaction."""

    @abstractmethod
    async def migrate(self) -> None:
        """Create the tables (idempotent)."""

    @abstractmethod
    async def current_entry(self, scope: StatusScope, credential_id: str) -> StatusEntryRow | None:
        """The newest generation of the credential's entry, if it has one."""

    @abstractmethod
    async def allocate(
        self,
        scope: StatusScope,
        credential_id: str,
        *,
        kind: StatusKind,
        subject: str,
        replacing: int | None,
        now_ms: int,
    ) -> Allocated:
        """Hand out an entry: the first (``replacing`` None) or the one after generation
        ``replacing``. When another instance got there first, its entry is returned."""

    async def issue_all(
        self,
        scope: StatusScope,
        credentials: Sequence[tuple[str, StatusKind, str]],
        *,
        now_ms: int,
    ) -> list[Allocated]:
        """The live entry of each (credential id, kind, subject), in order: its current
        entry, the next generation when that is revoked, the first when it has none.

        This default asks :meth:`allocate` one by one; a database does all of it in one
        transaction.
        """
        issued = []
        for credential_id, kind, subject in credentials:
            got = await self.allocate(
                scope, credential_id, kind=kind, subject=subject, replacing=None, now_ms=now_ms
            )
            if got.entry.revoked_ms is not None:
                got = await self.allocate(
                    scope,
                    credential_id,
                    kind=kind,
                    subject=subject,
                    replacing=got.entry.generation,
                    now_ms=now_ms,
                )
            issued.append(got)
        return issued

    @abstractmethod
    async def revoke(self, scope: StatusScope, credential_id: str, *, now_ms: int) -> str | None:
        """Mark the credential's current entry revoked; its list id when that changed it."""

    @abstractmethod
    async def revoke_all(self, scope: StatusScope, *, now_ms: int) -> list[str]:
        """Mark every entry of ``scope`` revoked (a key leaked); the lists changed."""

    @abstractmethod
    async def list_row(self, list_id: str) -> StatusListRow | None:
        """One list."""

    @abstractmethod
    async def lists(self, scope: StatusScope | None = None) -> list[StatusListRow]:
        """Every list (of ``scope``), oldest first."""

    @abstractmethod
    async def revoked_indexes(self, list_id: str) -> list[int]:
        """The positions of a list whose bit is set."""

    @abstractmethod
    async def record_published(
        self,
        list_id: str,
        *,
        body: str,
        etag: str,
        published_ms: int,
        valid_from_ms: int,
        valid_until_ms: int,
    ) -> None:
        """Keep the signed list as served from now on."""

    @abstractmethod
    async def mark_dirty(
        self,
        target: str,
        ref: DocumentRef,
        *,
        now_ms: int,
        not_before_ms: int,
        in_flight_not_before_ms: int | None = None,
    ) -> None:
        """Make a status list document due at ``target`` (see :func:`coalesced_dirty`)."""


def new_list(scope: StatusScope, list_no: int, now_ms: int) -> StatusListRow:
    """A freshly opened list with a random permutation key."""
    return StatusListRow(
        list_id=list_id(scope.tenant, scope.issuer, scope.purpose, list_no),
        scope=scope,
        list_no=list_no,
        size=LIST_ENTRIES,
        allocated=0,
        perm_key=secrets.token_bytes(16),
        created_ms=now_ms,
    )


def next_entry(
    scope: StatusScope,
    credential_id: str,
    chosen: StatusListRow,
    *,
    current: StatusEntryRow | None,
    kind: StatusKind,
    subject: str,
    now_ms: int,
) -> StatusEntryRow:
    """The entry ``credential_id`` gets as ``chosen``'s next allocation: the next
    generation after ``current``, at the position the list's permutation gives its
    ``allocated``-th entry. Every store builds its entries here, so they agree."""
    return StatusEntryRow(
        scope=scope,
        credential_id=credential_id,
        generation=0 if current is None else current.generation + 1,
        list_id=chosen.list_id,
        index=IndexPermutation(chosen.perm_key, chosen.size).position(chosen.allocated),
        kind=kind,
        subject=subject,
        revoked_ms=None,
        created_ms=now_ms,
    )


class InMemoryStatusStore(StatusStore):
    """The store in dicts, beside an :class:`InMemoryLedger` (whose documents it marks)."""

    def __init__(self, documents: dict[tuple[str, str], DocumentRow]) -> None:
        self._documents = documents
        self._lists: dict[str, StatusListRow] = {}
        self._entries: dict[tuple[StatusScope, str, int], StatusEntryRow] = {}
        self._lock = asyncio.Lock()

    async def migrate(self) -> None:
        """Nothing to create."""

    def _current(self, scope: StatusScope, credential_id: str) -> StatusEntryRow | None:
        found = [e for (s, c, _), e in self._entries.items() if s == scope and c == credential_id]
        return max(found, key=lambda e: e.generation) if found else None

    async def current_entry(self, scope: StatusScope, credential_id: str) -> StatusEntryRow | None:
        """The newest generation."""
        return self._current(scope, credential_id)

    async def allocate(
        self,
        scope: StatusScope,
        credential_id: str,
        *,
        kind: StatusKind,
        subject: str,
        replacing: int | None,
        now_ms: int,
    ) -> Allocated:
        """Hand out an entry (see :meth:`StatusStore.allocate`)."""
        async with self._lock:
            current = self._current(scope, credential_id)
            if current is not None and (replacing is None or current.generation != replacing):
                return Allocated(current, None)
            lists = sorted(
                (row for row in self._lists.values() if row.scope == scope),
                key=lambda r: r.list_no,
            )
            opened: StatusListRow | None = None
            chosen = lists[-1] if lists else None
            if chosen is None or chosen.allocated >= chosen.size:
                chosen = opened = new_list(scope, chosen.list_no + 1 if chosen else 0, now_ms)
            entry = next_entry(
                scope,
                credential_id,
                chosen,
                current=current,
                kind=kind,
                subject=subject,
                now_ms=now_ms,
            )
            self._lists[chosen.list_id] = replace(chosen, allocated=chosen.allocated + 1)
            self._entries[(scope, credential_id, entry.generation)] = entry
            return Allocated(entry, opened)

    async def revoke(self, scope: StatusScope, credential_id: str, *, now_ms: int) -> str | None:
        """Mark the current entry revoked."""
        async with self._lock:
            current = self._current(scope, credential_id)
            if current is None or current.revoked_ms is not None:
                return None
            key = (scope, credential_id, current.generation)
            self._entries[key] = replace(current, revoked_ms=now_ms)
            return current.list_id

    async def revoke_all(self, scope: StatusScope, *, now_ms: int) -> list[str]:
        """Mark every entry of ``scope`` revoked."""
        changed: set[str] = set()
        async with self._lock:
            for key, entry in list(self._entries.items()):
                if entry.scope == scope and entry.revoked_ms is None:
                    self._entries[key] = replace(entry, revoked_ms=now_ms)
                    changed.add(entry.list_id)
        return sorted(changed)

    async def list_row(self, list_id: str) -> StatusListRow | None:
        """One list."""
        return self._lists.get(list_id)

    async def lists(self, scope: StatusScope | None = None) -> list[StatusListRow]:
        """Every list (of ``scope``)."""
        found = [r for r in self._lists.values() if scope is None or r.scope == scope]
        return sorted(found, key=lambda r: (r.scope, r.list_no))

    async def revoked_indexes(self, list_id: str) -> list[int]:
        """Positions whose bit is set."""
        return sorted(
            e.index
            for e in self._entries.values()
            if e.list_id == list_id and e.revoked_ms is not None
        )

    async def record_published(
        self,
        list_id: str,
        *,
        body: str,
        etag: str,
        published_ms: int,
        valid_from_ms: int,
        valid_until_ms: int,
    ) -> None:
        """Keep the signed list."""
        async with self._lock:
            row = self._lists[list_id]
            self._lists[list_id] = replace(
                row,
                published=body,
                etag=etag,
                published_ms=published_ms,
                valid_from_ms=valid_from_ms,
                valid_until_ms=valid_until_ms,
            )

    async def mark_dirty(
        self,
        target: str,
        ref: DocumentRef,
        *,
        now_ms: int,
        not_before_ms: int,
        in_flight_not_before_ms: int | None = None,
    ) -> None:
        """Make the list's document due."""
        async with self._lock:
            key = (target, ref.key)
            self._documents[key] = coalesced_dirty(
                self._documents.get(key),
                target=target,
                ref=ref,
                now_ms=now_ms,
                not_before_ms=not_before_ms,
                in_flight_not_before_ms=in_flight_not_before_ms,
            )
