"""Status lists at work: entries for the renderers, the list as a target document, serving.

* :class:`LedgerStatusAllocator` — the renderers' :class:`~cayg_publish.domain.status.
  StatusAllocator` for one tenant's issuer, backed by the ledger's status store. A newly
  opened list, or an entry newly revoked, makes the list's document due (a revocation no
  earlier than ``min_interval`` after the list was last published: coalesced).
* :class:`StatusListTarget` — the "target" holding a tenant issuer's lists: rendering one
  reads the revoked positions from the ledger; applying it signs the
  ``BitstringStatusListCredential`` with the issuer's key and keeps it in the ledger, from
  where every publish instance serves it. As a target document it gets the projection's
  guarantees: leased, idempotent (same content → no new signature), retried.
* :func:`served_list` — what ``GET /status-lists/{id}`` answers (ETag, Cache-Control).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from cayg_publish.adapters.ledger.status_store import StatusScope, StatusStore, status_target_name
from cayg_publish.domain.catalog import Applied, Operation, Rendering, TargetFailure, TargetLimits
from cayg_publish.domain.idempotency import content_hash
from cayg_publish.domain.projection import DocumentKind, DocumentRef
from cayg_publish.domain.retry import permanent_failure
from cayg_publish.domain.status import (
    CredentialStatusEntry,
    StatusKind,
    StatusRequest,
    StatusWindow,
    status_list_credential,
)
from cayg_shared.schema import SourceVersion

__all__ = [
    "STATUS_LIST_ACTION",
    "STATUS_LIST_MEDIA_TYPE",
    "LedgerStatusAllocator",
    "ServedList",
    "StatusListTarget",
    "served_list",
    "status_target_name",
]

STATUS_LIST_ACTION: Final = "status-list"
STATUS_LIST_MEDIA_TYPE: Final = "application/vc+ld+json"
#: How long a verifier or cache may keep a served list at most (seconds): a revocation is
#: visible within the coalescing interval plus this.
MAX_CACHE_S: Final = 60

#: Signs an unsigned document (in a worker thread) or off the event loop (a signing pool).
Signer = Callable[[Mapping[str, Any]], dict[str, Any]]
AsyncSigner = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class LedgerStatusAllocator:
    """Entries of one tenant's issuer (``scope``), from the ledger (see the module docs)."""

    def __init__(
        self,
        store: StatusStore,
        scope: StatusScope,
        *,
        list_base_url: str,
        status_target: str,
        min_interval: timedelta,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self.scope = scope
        self.list_base_url = list_base_url
        self.status_target = status_target
        self._min_interval_ms = int(min_interval.total_seconds() * 1000)
        self._clock_ms = clock_ms

    def list_url(self, list_id: str) -> str:
        """The public URL of a list (its ``statusListCredential`` and credential id)."""
        return f"{self.list_base_url}{list_id}"

    async def entry(
        self,
        tenant: str,
        credential_id: str,
        *,
        kind: StatusKind,
        subject: str,
        live: bool,
    ) -> CredentialStatusEntry | None:
        """The entry of ``credential_id`` as issued now (see
        :meth:`~cayg_publish.domain.status.StatusAllocator.entry`)."""
        if tenant != self.scope.tenant:
            raise ValueError(f"status entries of {tenant} asked from {self.scope.tenant}'s lists")
        if live:
            # The live case is the batch of one (the ledger's issue_all).
            [issued] = await self.entries(
                tenant, [StatusRequest(credential_id, kind, subject, live=True)]
            )
            return issued
        now = self._clock_ms()
        current = await self._store.current_entry(self.scope, credential_id)
        if current is None:
            return None
        if current.revoked_ms is None:
            changed = await self._store.revoke(self.scope, credential_id, now_ms=now)
            if changed is not None:
                await self.touch(changed, now_ms=now, coalesce=True)
        return CredentialStatusEntry(
            self.scope.purpose, self.list_url(current.list_id), current.index
        )

    async def entries(
        self, tenant: str, requests: Sequence[StatusRequest]
    ) -> list[CredentialStatusEntry | None]:
        """:meth:`entry` of each request, in order; the live ones in one transaction."""
        if tenant != self.scope.tenant:
            raise ValueError(f"status entries of {tenant} asked from {self.scope.tenant}'s lists")
        now = self._clock_ms()
        live = [r for r in requests if r.live]
        issued = await self._store.issue_all(
            self.scope, [(r.credential_id, r.kind, r.subject) for r in live], now_ms=now
        )
        by_credential = {r.credential_id: got.entry for r, got in zip(live, issued, strict=True)}
        for list_id in dict.fromkeys(got.entry.list_id for got in issued if got.opened):
            # A new list is published at once: credentials will point at it.
            await self.touch(list_id, now_ms=now, coalesce=False)
        found: list[CredentialStatusEntry | None] = []
        for request in requests:
            if request.live:
                entry = by_credential[request.credential_id]
                found.append(
                    CredentialStatusEntry(
                        self.scope.purpose, self.list_url(entry.list_id), entry.index
                    )
                )
            else:
                found.append(
                    await self.entry(
                        tenant,
                        request.credential_id,
                        kind=request.kind,
                        subject=request.subject,
                        live=False,
                    )
                )
        return found

    async def touch(self, list_id: str, *, now_ms: int, coalesce: bool) -> None:
        """Make a list's document due: now, or (``coalesce``) no earlier than
        ``min_interval`` after its last publication."""
        not_before = now_ms
        if coalesce:
            row = await self._store.list_row(list_id)
            if row is not None and row.published_ms is not None:
                not_before = max(now_ms, row.published_ms + self._min_interval_ms)
        ref = DocumentRef(self.scope.tenant, DocumentKind.STATUS_LIST, list_id)
        await self._store.mark_dirty(
            self.status_target,
            ref,
            now_ms=now_ms,
            not_before_ms=not_before,
            # A publication in flight right now counts as the last one.
            in_flight_not_before_ms=now_ms + self._min_interval_ms if coalesce else None,
        )


def _as_async(signer: Signer | AsyncSigner) -> AsyncSigner:
    if inspect.iscoroutinefunction(signer):
        return cast(AsyncSigner, signer)
    blocking = cast(Signer, signer)

    async def in_thread(body: Mapping[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(blocking, body)

    return in_thread


@dataclass(frozen=True, slots=True)
class _Period:
    valid_from: datetime
    valid_until: datetime


class StatusListTarget:
    """Signs and keeps the status lists of one tenant's issuer (see the module docs).

    It belongs to the CLR/OB target whose issuer it signs for, and runs in that target's
    publish lane (:attr:`lane_name`).
    """

    def __init__(
        self,
        allocator: LedgerStatusAllocator,
        store: StatusStore,
        *,
        owner: str,
        issuer: str,
        window: StatusWindow,
        signer: Signer | AsyncSigner,
        signer_id: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._allocator = allocator
        self._store = store
        self._owner = owner
        self._issuer = issuer
        self.window = window
        self._sign = _as_async(signer)
        self._signer_id = signer_id
        self._clock = clock
        self._limits = TargetLimits(max_concurrency=2, rate_per_second=None)

    def __repr__(self) -> str:
        return f"StatusListTarget(name={self.name!r})"

    @property
    def name(self) -> str:
        """``<owner>#status``."""
        return self._allocator.status_target

    @property
    def lane_name(self) -> str:
        """The CLR/OB target it belongs to: lanes serving that target serve this one."""
        return self._owner

    @property
    def scope(self) -> StatusScope:
        """Whose lists."""
        return self._allocator.scope

    @property
    def limits(self) -> TargetLimits:
        """Signing is the only cost: two at a time."""
        return self._limits

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """Status lists."""
        return frozenset({DocumentKind.STATUS_LIST})

    def _period(self) -> _Period:
        start = self.window.period_start(self._clock())
        return _Period(start, start + self.window.valid_for)

    async def render_document(self, ref: DocumentRef) -> Sequence[Rendering]:
        """The unsigned list credential as the ledger's bits say now."""
        row = await self._store.list_row(ref.subject)
        if row is None or row.scope != self.scope:
            return ()
        revoked = await self._store.revoked_indexes(row.list_id)
        period = self._period()
        body = status_list_credential(
            list_url=self._allocator.list_url(row.list_id),
            issuer=self._issuer,
            purpose=row.scope.purpose,
            revoked=revoked,
            valid_from=period.valid_from,
            valid_until=period.valid_until,
            ttl=self.window.refresh,
            entries=row.size,
        )
        # Newer means more bits set (they are never cleared), then a later period: two
        # instances whose clocks differ never publish fewer bits over more.
        periods = int(period.valid_from.timestamp() // self.window.refresh.total_seconds())
        sequence = len(revoked) * 2**32 + periods
        return (
            Rendering(
                action=STATUS_LIST_ACTION,
                operation=Operation.UPSERT,
                body=body,
                remote_id=body["id"],
                content_hash=content_hash({"body": body, "signer": self._signer_id}),
                subject=f"status-list|{row.list_id}",
                subject_version=SourceVersion(
                    stream="status-list", sequence=sequence, time=self._clock()
                ),
            ),
        )

    async def apply(self, rendering: Rendering, idempotency_key: str) -> Applied:
        """Sign the list and keep it for serving."""
        del idempotency_key  # the ledger write is idempotent by itself
        body = dict(rendering.body)
        try:
            signed = await self._sign(body)
        except ValueError as exc:
            raise TargetFailure(permanent_failure("signing", str(exc)[:500])) from exc
        text = json.dumps(signed, ensure_ascii=False, separators=(",", ":"))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        list_id = str(rendering.subject).removeprefix("status-list|")
        await self._store.record_published(
            list_id,
            body=text,
            etag=f'"{digest}"',
            published_ms=int(self._clock().timestamp() * 1000),
            valid_from_ms=_ms(body["validFrom"]),
            valid_until_ms=_ms(body["validUntil"]),
        )
        return Applied(remote_id=rendering.remote_id, changed=True)

    async def refresh(self) -> int:
        """Make due every list of this issuer that was never published or was published
        in an earlier period (so it is re-signed before it expires); how many."""
        start_ms = int(self.window.period_start(self._clock()).timestamp() * 1000)
        now_ms = int(self._clock().timestamp() * 1000)
        touched = 0
        for row in await self._store.lists(self.scope):
            if row.published_ms is None or (row.valid_from_ms or 0) < start_ms:
                await self._allocator.touch(row.list_id, now_ms=now_ms, coalesce=False)
                touched += 1
        return touched


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ServedList:
    """An HTTP answer for a status list."""

    status: int
    headers: dict[str, str]
    body: bytes


async def served_list(
    store: StatusStore, list_id: str, *, if_none_match: str | None, now_ms: int | None = None
) -> ServedList:
    """``GET /status-lists/{list_id}``: the signed list with an ETag and a short
    ``Cache-Control`` (never past the list's ``validUntil``), 304 for a matching
    ``If-None-Match``, 404 for a list that does not exist or was never published."""
    row = await store.list_row(list_id) if 0 < len(list_id) <= 64 else None
    if row is None or row.published is None or row.etag is None:
        body = json.dumps({"error": "not-found", "detail": "no such status list"}).encode()
        return ServedList(404, {"content-type": "application/json"}, body)
    now = _now_ms() if now_ms is None else now_ms
    remaining = max(0, ((row.valid_until_ms or now) - now) // 1000)
    headers = {
        "etag": row.etag,
        "cache-control": f"public, max-age={min(MAX_CACHE_S, remaining)}",
        "access-control-allow-origin": "*",
    }
    if if_none_match is not None and row.etag in {t.strip() for t in if_none_match.split(",")}:
        return ServedList(304, headers, b"")
    return ServedList(
        200, {**headers, "content-type": STATUS_LIST_MEDIA_TYPE}, row.published.encode("utf-8")
    )
