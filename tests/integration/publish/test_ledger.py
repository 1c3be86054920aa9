"""One contract, every ledger adapter: in-memory, SQLite (tmp file), PostgreSQL (real server)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from cayg_publish.adapters.ledger import DEFAULT_CLAIM_TTL, Ledger
from cayg_publish.domain.catalog import IN_FLIGHT, DecisionKind, Outcome
from cayg_shared.schema import SourceVersion
from integration.publish.publish_support import Clock

pytestmark = pytest.mark.integration

LedgerFactory = Callable[[], Ledger]
TARGET = "registry"
KEY = "acme/credential-definition/BIO-CERT"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def v(sequence: int, stream: str = "ethos:banner-1") -> SourceVersion:
    """Version ``sequence`` of the test stream (times increase with the sequence)."""
    return SourceVersion(stream=stream, sequence=sequence, time=T0 + timedelta(seconds=sequence))


async def test_migrate_is_idempotent(ledger_factory: LedgerFactory) -> None:
    first, second = ledger_factory(), ledger_factory()
    await asyncio.gather(first.migrate(), second.migrate())
    await first.migrate()
    assert await second.get(TARGET, KEY) is None


async def test_first_delivery_applies_and_claims(ledger: Ledger, clock: Clock) -> None:
    decision = await ledger.decide(TARGET, KEY, v(1), "h1")

    assert decision.kind is DecisionKind.APPLY
    entry = await ledger.get(TARGET, KEY)
    assert entry is not None
    assert entry.applied_version is None
    assert entry.claim_version == v(1)
    assert entry.claim_hash == "h1"
    assert entry.claim_expires_at == clock.now + DEFAULT_CLAIM_TTL
    assert (await ledger.totals()).by_target == {TARGET: {IN_FLIGHT: 1}}


async def test_success_is_recorded_and_same_content_is_not_sent_again(ledger: Ledger) -> None:
    await ledger.decide(TARGET, KEY, v(1), "h1")
    entry = await ledger.record_success(
        TARGET, KEY, v(1), "h1", remote_id="ce-1", remote_url="https://registry/ce-1"
    )

    assert entry.applied_version == v(1)
    assert entry.applied_hash == "h1"
    assert entry.remote_id == "ce-1"
    assert entry.claim_version is None
    again = await ledger.decide(TARGET, KEY, v(1), "h1")
    assert again.kind is DecisionKind.SKIP_UNCHANGED
    assert again.entry.remote_url == "https://registry/ce-1"


async def test_newer_version_with_same_content_is_unchanged_and_moves_forward(
    ledger: Ledger,
) -> None:
    await ledger.decide(TARGET, KEY, v(1), "h1")
    await ledger.record_success(TARGET, KEY, v(1), "h1", remote_id="ce-1")

    decision = await ledger.decide(TARGET, KEY, v(2), "h1")

    assert decision.kind is DecisionKind.SKIP_UNCHANGED
    stored = await ledger.get(TARGET, KEY)
    assert stored is not None
    assert stored.applied_version == v(2)
    assert stored.last_outcome is Outcome.UNCHANGED
    # ...so version 1 is now stale even though it has the same content.
    assert (await ledger.decide(TARGET, KEY, v(1), "h1")).kind is DecisionKind.SKIP_STALE


async def test_older_version_is_stale_and_recorded_as_such(ledger: Ledger) -> None:
    await ledger.decide(TARGET, KEY, v(5), "h5")
    await ledger.record_success(TARGET, KEY, v(5), "h5")

    decision = await ledger.decide(TARGET, KEY, v(4), "h4")

    assert decision.kind is DecisionKind.SKIP_STALE
    stored = await ledger.get(TARGET, KEY)
    assert stored is not None
    assert stored.applied_version == v(5)
    assert stored.applied_hash == "h5"
    assert stored.last_outcome is Outcome.STALE
    assert stored.last_version == v(4)


async def test_changed_content_applies_also_at_the_same_version(ledger: Ledger) -> None:
    await ledger.decide(TARGET, KEY, v(3), "old-render")
    await ledger.record_success(TARGET, KEY, v(3), "old-render")

    assert (await ledger.decide(TARGET, KEY, v(3), "new-render")).kind is DecisionKind.APPLY
    await ledger.record_success(TARGET, KEY, v(3), "new-render")
    assert (await ledger.decide(TARGET, KEY, v(4), "h4")).kind is DecisionKind.APPLY


async def test_other_version_waits_while_a_claim_is_live(ledger: Ledger, clock: Clock) -> None:
    await ledger.decide(TARGET, KEY, v(1), "h1")
    await ledger.record_success(TARGET, KEY, v(1), "h1")
    assert (await ledger.decide(TARGET, KEY, v(2), "h2")).kind is DecisionKind.APPLY

    busy = await ledger.decide(TARGET, KEY, v(3), "h3")
    # Same content as applied, but version 2 is in flight: skipping would be wrong too.
    busy_unchanged = await ledger.decide(TARGET, KEY, v(3), "h1")

    assert busy.kind is DecisionKind.BUSY
    assert busy.not_before == clock.now + DEFAULT_CLAIM_TTL
    assert busy_unchanged.kind is DecisionKind.BUSY
    clock.advance(DEFAULT_CLAIM_TTL + timedelta(seconds=1))
    assert (await ledger.decide(TARGET, KEY, v(3), "h3")).kind is DecisionKind.APPLY


async def test_same_version_and_content_may_reclaim(ledger: Ledger) -> None:
    """A delivery that crashed after the call but before the ledger write is resumed."""
    assert (await ledger.decide(TARGET, KEY, v(7), "h7")).kind is DecisionKind.APPLY
    assert (await ledger.decide(TARGET, KEY, v(7), "h7")).kind is DecisionKind.APPLY


async def test_success_never_moves_the_applied_version_back(ledger: Ledger) -> None:
    await ledger.record_success(TARGET, KEY, v(9), "h9", remote_id="ce-9")

    entry = await ledger.record_success(TARGET, KEY, v(8), "h8", remote_id="ce-8")

    assert entry.applied_version == v(9)
    assert entry.applied_hash == "h9"
    assert entry.remote_id == "ce-9"


async def test_failures_count_attempts_and_release_the_claim(ledger: Ledger) -> None:
    await ledger.decide(TARGET, KEY, v(1), "h1")
    first = await ledger.record_failure(
        TARGET, KEY, v(1), "h1", outcome=Outcome.FAILED_RETRYABLE, error="http-503", attempts=3
    )
    assert first.claim_version is None
    assert first.attempts == 3
    await ledger.decide(TARGET, KEY, v(1), "h1")
    second = await ledger.record_failure(
        TARGET, KEY, v(1), "h1", outcome=Outcome.FAILED_PERMANENT, error="validation"
    )
    assert second.attempts == 4
    assert second.last_outcome is Outcome.FAILED_PERMANENT
    assert second.last_error == "validation"
    assert second.applied_version is None

    applied = await ledger.record_success(TARGET, KEY, v(1), "h1")

    assert applied.attempts == 0
    assert applied.last_error is None
    assert applied.last_outcome is Outcome.APPLIED


async def test_failure_of_an_old_version_does_not_mark_a_healthy_entity(ledger: Ledger) -> None:
    await ledger.record_success(TARGET, KEY, v(5), "h5")

    entry = await ledger.record_failure(
        TARGET, KEY, v(4), "h4", outcome=Outcome.FAILED_PERMANENT, error="validation"
    )

    assert entry.last_outcome is Outcome.APPLIED
    assert entry.applied_version == v(5)


async def test_totals_count_last_outcomes_per_target(ledger: Ledger) -> None:
    await ledger.record_success("registry", "a", v(1), "h")
    await ledger.record_success("registry", "b", v(1), "h")
    await ledger.record_failure(
        "registry", "c", v(1), "h", outcome=Outcome.FAILED_RETRYABLE, error="timeout"
    )
    await ledger.record_failure(
        "clr", "a", v(1), "h", outcome=Outcome.FAILED_PERMANENT, error="http-400"
    )
    await ledger.decide("clr", "b", v(1), "h")

    totals = await ledger.totals()

    assert totals.by_target == {
        "registry": {"applied": 2, "failed-retryable": 1},
        "clr": {"failed-permanent": 1, IN_FLIGHT: 1},
    }
    assert totals.total == 5
    assert totals.count(Outcome.APPLIED) == 2


async def test_versions_and_keys_round_trip(ledger: Ledger) -> None:
    key = "acme/award/ünïcode-ключ-🎓"
    big = SourceVersion(
        stream="ethos:publisher-ü",
        sequence=2**63 - 1,
        time=datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=UTC),
    )
    timeless = SourceVersion(stream="sis-row-version", time=datetime(2026, 5, 2, tzinfo=UTC))

    await ledger.record_success(TARGET, key, big, "h", remote_url="https://x/é")
    await ledger.record_success(TARGET, "k2", timeless, "h")

    entry = await ledger.get(TARGET, key)
    assert entry is not None
    assert entry.applied_version == big
    assert entry.applied_version.time == big.time
    assert entry.remote_url == "https://x/é"
    assert entry.updated_at.tzinfo is not None
    other = await ledger.get(TARGET, "k2")
    assert other is not None
    assert other.applied_version == timeless
    assert other.applied_version.sequence is None
    # Another stream: compared by time, which is earlier: stale.
    older = SourceVersion(stream="sis-row-version", sequence=1, time=big.time - timedelta(days=1))
    assert (await ledger.decide(TARGET, key, older, "h2")).kind is DecisionKind.SKIP_STALE


async def test_targets_are_independent(ledger: Ledger) -> None:
    await ledger.record_success("registry", KEY, v(5), "h5")

    assert (await ledger.decide("clr", KEY, v(1), "h1")).kind is DecisionKind.APPLY


@pytest.mark.parametrize(
    "ledger_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_entries_survive_a_new_client(ledger_factory: LedgerFactory) -> None:
    first = ledger_factory()
    await first.migrate()
    await first.record_success(TARGET, KEY, v(3), "h3", remote_id="ce-3")
    await first.close()

    second = ledger_factory()
    await second.migrate()
    entry = await second.get(TARGET, KEY)
    assert entry is not None
    assert entry.remote_id == "ce-3"


async def test_racing_clients_never_end_with_the_older_version(
    ledger_factory: LedgerFactory,
) -> None:
    """Two instances record interleaved versions of one entity; the newest always wins."""
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await second.migrate()
    rng = random.Random(20260101)
    for round_number in range(5):
        key = f"{KEY}/{round_number}"
        odd = [n for n in range(1, 25) if n % 2]
        even = [n for n in range(1, 25) if not n % 2]
        rng.shuffle(odd)
        rng.shuffle(even)

        async def record(ledger: Ledger, versions: list[int], key: str = key) -> None:
            for version in versions:
                await ledger.record_success(TARGET, key, v(version), f"h{version}")

        await asyncio.gather(record(first, odd), record(second, even))

        for client in (first, second):
            entry = await client.get(TARGET, key)
            assert entry is not None
            assert entry.applied_version == v(24)
            assert entry.applied_hash == "h24"


async def test_racing_decisions_on_a_new_entity_claim_once(
    ledger_factory: LedgerFactory,
) -> None:
    """Two instances decide different versions of a never-seen entity at the same moment."""
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await second.migrate()
    for round_number in range(10):
        key = f"{KEY}/new/{round_number}"

        decisions = await asyncio.gather(
            first.decide(TARGET, key, v(1), "h1"), second.decide(TARGET, key, v(2), "h2")
        )

        kinds = sorted(d.kind for d in decisions)
        assert kinds == sorted([DecisionKind.APPLY, DecisionKind.BUSY])
