"""The status-list store, one contract for every ledger: in-memory, SQLite, PostgreSQL.

Entries are handed out once per credential, at distinct positions of a list, also when two
instances ask at once; a revoked entry stays revoked and a reinstated credential gets the
next generation; a published list is kept for any instance to serve; marking a list's
document dirty respects the coalescing time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from cayg_publish.adapters.ledger import Ledger
from cayg_publish.adapters.ledger.status_store import StatusScope, coalesced_dirty
from cayg_publish.domain.projection import DocumentKind, DocumentRef, DocumentState
from cayg_publish.domain.status import LIST_ENTRIES, StatusKind, list_id

pytestmark = pytest.mark.integration

LedgerFactory = Callable[[], Ledger]
SCOPE = StatusScope("northfield-cc", "did:web:northfield.example")
T0 = 1_770_000_000_000


def _credential(n: int) -> str:
    return f"urn:uuid:00000000-0000-4000-8000-{n:012d}"


async def test_entries_are_allocated_once_at_distinct_unordered_positions(
    ledger_factory: LedgerFactory,
) -> None:
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await second.migrate()

    async def allocate(ledger: Ledger, n: int) -> tuple[str, int]:
        got = await ledger.status.allocate(
            SCOPE, _credential(n), kind=StatusKind.AWARD, subject=f"a{n}", replacing=None, now_ms=T0
        )
        return got.entry.list_id, got.entry.index

    # Two instances allocate the same 40 credentials at once (each twice).
    results = await asyncio.gather(
        *(allocate(ledger, n) for n in range(40) for ledger in (first, second, first))
    )
    by_credential: dict[int, set[tuple[str, int]]] = {}
    for (n, _ledger), result in zip(
        ((n, i) for n in range(40) for i in range(3)), results, strict=True
    ):
        by_credential.setdefault(n, set()).add(result)
    assert all(len(found) == 1 for found in by_credential.values()), "one entry per credential"
    positions = [next(iter(found))[1] for found in by_credential.values()]
    assert len(set(positions)) == 40, "a position is never handed out twice"
    assert all(0 <= p < LIST_ENTRIES for p in positions)
    in_order = [p for _, p in sorted((n, next(iter(f))[1]) for n, f in by_credential.items())]
    assert in_order != sorted(in_order), "positions do not follow the issue order"
    lists = await second.status.lists(SCOPE)
    assert [(row.list_no, row.allocated) for row in lists] == [(0, 40)]
    assert lists[0].list_id == list_id(SCOPE.tenant, SCOPE.issuer, SCOPE.purpose, 0)


async def test_revocation_sticks_and_a_reinstated_credential_gets_the_next_generation(
    ledger: Ledger,
) -> None:
    store = ledger.status
    first = await store.allocate(
        SCOPE, _credential(1), kind=StatusKind.AWARD, subject="a1", replacing=None, now_ms=T0
    )
    assert first.opened is not None  # the first entry opened the scope's first list
    changed = await store.revoke(SCOPE, _credential(1), now_ms=T0 + 5)
    assert changed == first.entry.list_id
    assert await store.revoke(SCOPE, _credential(1), now_ms=T0 + 6) is None  # already
    assert await store.revoked_indexes(first.entry.list_id) == [first.entry.index]

    again = await store.allocate(
        SCOPE, _credential(1), kind=StatusKind.AWARD, subject="a1", replacing=0, now_ms=T0 + 9
    )
    assert again.entry.generation == 1
    assert again.entry.index != first.entry.index
    current = await store.current_entry(SCOPE, _credential(1))
    assert current is not None
    assert current.generation == 1
    assert current.revoked_ms is None
    # The copies issued with generation 0 stay revoked.
    assert await store.revoked_indexes(first.entry.list_id) == [first.entry.index]
    # Asking for "the one after generation 0" again returns generation 1, not a third.
    same = await store.allocate(
        SCOPE, _credential(1), kind=StatusKind.AWARD, subject="a1", replacing=0, now_ms=T0 + 10
    )
    assert same.entry == again.entry


async def test_revoke_all_sets_every_bit_of_the_scope(ledger: Ledger) -> None:
    store = ledger.status
    other = StatusScope("harbor-tech", "did:web:harbor.example")
    for n in range(3):
        await store.allocate(
            SCOPE, _credential(n), kind=StatusKind.RECORD, subject=f"{n}", replacing=None, now_ms=T0
        )
    kept = await store.allocate(
        other, _credential(9), kind=StatusKind.AWARD, subject="x", replacing=None, now_ms=T0
    )
    changed = await store.revoke_all(SCOPE, now_ms=T0 + 1)
    (row,) = await store.lists(SCOPE)
    assert changed == [row.list_id]
    assert len(await store.revoked_indexes(row.list_id)) == 3
    assert await store.revoked_indexes(kept.entry.list_id) == []


async def test_a_published_list_is_kept_for_every_instance(ledger_factory: LedgerFactory) -> None:
    writer, reader = ledger_factory(), ledger_factory()
    await writer.migrate()
    got = await writer.status.allocate(
        SCOPE, _credential(1), kind=StatusKind.AWARD, subject="a1", replacing=None, now_ms=T0
    )
    await writer.status.record_published(
        got.entry.list_id,
        body='{"id": "x"}',
        etag='"abc"',
        published_ms=T0 + 1,
        valid_from_ms=T0,
        valid_until_ms=T0 + 7_200_000,
    )
    row = await reader.status.list_row(got.entry.list_id)
    assert row is not None
    assert (row.published, row.etag, row.valid_until_ms) == ('{"id": "x"}', '"abc"', T0 + 7_200_000)
    assert await reader.status.list_row("no-such-list") is None


async def test_marking_a_list_dirty_coalesces_to_the_earliest_due_time(ledger: Ledger) -> None:
    ref = DocumentRef(SCOPE.tenant, DocumentKind.STATUS_LIST, "list-1")
    target = "northfield-cc-clr#status"
    await ledger.status.mark_dirty(target, ref, now_ms=T0, not_before_ms=T0 + 30_000)
    await ledger.status.mark_dirty(target, ref, now_ms=T0 + 1, not_before_ms=T0 + 60_000)
    (row,) = await ledger.documents(target=target)
    assert row.state is DocumentState.DIRTY
    assert row.dirty_seq == 2
    assert row.next_attempt_ms == T0 + 30_000
    # Not due before its time, due after.
    assert await ledger.lease_documents([target], limit=5, ttl_ms=10_000) == []


def test_a_revocation_during_a_publication_waits_a_whole_interval() -> None:
    """A list being published right now (leased) counts as published now: the revocation
    that lands meanwhile is published one interval later, not at once (issue 12: at most
    once per interval per list)."""
    ref = DocumentRef(SCOPE.tenant, DocumentKind.STATUS_LIST, "list-1")
    target = "northfield-cc-clr#status"
    due = coalesced_dirty(None, target=target, ref=ref, now_ms=T0, not_before_ms=T0)
    leased = replace(due, lease_token="t", lease_expires_ms=T0 + 30_000)

    during = coalesced_dirty(
        leased,
        target=target,
        ref=ref,
        now_ms=T0 + 5,
        not_before_ms=T0 + 5,
        in_flight_not_before_ms=T0 + 5 + 60_000,
    )
    after_lease = coalesced_dirty(
        replace(leased, lease_token=None, lease_expires_ms=None),
        target=target,
        ref=ref,
        now_ms=T0 + 5,
        not_before_ms=T0 + 5,
        in_flight_not_before_ms=T0 + 5 + 60_000,
    )

    assert during.next_attempt_ms == T0 + 60_005
    assert during.dirty_seq == due.dirty_seq + 1
    assert after_lease.next_attempt_ms == T0, "not in flight: the earlier due time stands"


async def test_issue_all_hands_out_live_entries_in_order_in_one_go(ledger: Ledger) -> None:
    store = ledger.status
    # Credential 1 already issued; credential 2 issued and revoked; 3 and 4 never issued.
    one = await store.allocate(
        SCOPE, _credential(1), kind=StatusKind.AWARD, subject="a1", replacing=None, now_ms=T0
    )
    two = await store.allocate(
        SCOPE, _credential(2), kind=StatusKind.AWARD, subject="a2", replacing=None, now_ms=T0
    )
    await store.revoke(SCOPE, _credential(2), now_ms=T0 + 1)

    wanted = [
        (_credential(n), StatusKind.RECORD if n == 4 else StatusKind.AWARD, f"a{n}")
        for n in (1, 2, 3, 4)
    ]
    issued = await store.issue_all(SCOPE, wanted, now_ms=T0 + 2)

    assert [got.entry.credential_id for got in issued] == [c for c, _, _ in wanted]
    assert issued[0].entry == one.entry  # still live: the same entry
    assert issued[1].entry.generation == two.entry.generation + 1  # reinstated: next one
    assert issued[1].entry.index != two.entry.index
    assert issued[2].entry.generation == issued[3].entry.generation == 0
    assert issued[3].entry.kind is StatusKind.RECORD
    positions = {got.entry.index for got in issued} | {two.entry.index}
    assert len(positions) == 5, "every entry at its own position"
    assert not any(got.opened for got in issued), "the scope's list was already open"
    lists = await store.lists(SCOPE)
    assert [(row.list_no, row.allocated) for row in lists] == [(0, 5)]
    # Asked again, nothing changes.
    assert [g.entry for g in await store.issue_all(SCOPE, wanted, now_ms=T0 + 3)] == [
        g.entry for g in issued
    ]
    assert await store.issue_all(SCOPE, [], now_ms=T0 + 4) == []


async def test_issue_all_opens_the_first_list_once(ledger: Ledger) -> None:
    wanted = [(_credential(n), StatusKind.AWARD, f"a{n}") for n in range(3)]
    issued = await ledger.status.issue_all(SCOPE, wanted, now_ms=T0)
    assert [got.opened is not None for got in issued] == [True, False, False]
    assert len({got.entry.index for got in issued}) == 3
