"""Pure domain rules: version order, ledger and document transitions, idempotency keys,
the retry schedule, which targets a change is recorded for."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cayg_publish.adapters.ledger import InMemoryLedger
from cayg_publish.domain.catalog import (
    DecisionKind,
    Outcome,
    compare_versions,
    decide_transition,
    failure_transition,
    success_transition,
)
from cayg_publish.domain.idempotency import content_hash, idempotency_key
from cayg_publish.domain.projection import (
    DeliveryResult,
    DocumentKind,
    DocumentRef,
    DocumentState,
    RetrySchedule,
    Settlement,
    dirty_transition,
    leasable,
    lease_transition,
    settle_transition,
)
from cayg_publish.publisher import Publisher
from cayg_shared.schema import SourceVersion
from unit.publish.publish_factories import FakeTarget, change, definition, version

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
TTL = timedelta(minutes=5)


def test_versions_compare_by_sequence_within_a_stream_else_by_time() -> None:
    early, late = NOW, NOW + timedelta(hours=1)
    a = SourceVersion(stream="ethos:p1", sequence=10, time=late)
    b = SourceVersion(stream="ethos:p1", sequence=11, time=early)
    c = SourceVersion(stream="sis-row-version", sequence=1, time=late + timedelta(seconds=1))

    assert compare_versions(a, b) == -1  # same stream: the sequence decides, not the clock
    assert compare_versions(b, c) == -1  # different streams: the time decides
    assert compare_versions(a, a) == 0


def test_decisions_from_an_empty_ledger_row() -> None:
    decision = decide_transition(
        None, target="t", entity_key="k", version=version(1), content_hash="h", now=NOW,
        claim_ttl=TTL,
    )  # fmt: skip

    assert decision.kind is DecisionKind.APPLY
    assert decision.should_apply
    assert decision.entry.claim_expires_at == NOW + TTL


def test_indistinguishable_versions_apply_only_changed_content() -> None:
    applied = success_transition(
        None, target="t", entity_key="k", version=version(1), content_hash="h",
        remote_id=None, remote_url=None, now=NOW,
    )  # fmt: skip
    same_time = SourceVersion(stream="other", time=version(1).time)

    def decide(content: str) -> DecisionKind:
        return decide_transition(
            applied, target="t", entity_key="k", version=same_time, content_hash=content,
            now=NOW, claim_ttl=TTL,
        ).kind  # fmt: skip

    assert decide("h") is DecisionKind.SKIP_UNCHANGED
    assert decide("other") is DecisionKind.APPLY


def test_transitions_refuse_the_wrong_outcome_kind() -> None:
    with pytest.raises(ValueError, match="not a success"):
        success_transition(
            None, target="t", entity_key="k", version=version(1), content_hash="h",
            remote_id=None, remote_url=None, now=NOW, outcome=Outcome.STALE,
        )  # fmt: skip
    with pytest.raises(ValueError, match="not a failure"):
        failure_transition(
            None, target="t", entity_key="k", version=version(1), content_hash="h",
            outcome=Outcome.APPLIED, error="x", now=NOW,
        )  # fmt: skip


def test_idempotency_keys_are_stable_and_specific() -> None:
    base = ("registry", "t/credential-definition/A", version(1), "sha256:abc")
    same_instant_other_offset = SourceVersion(
        stream=version(1).stream,
        sequence=version(1).sequence,
        time=version(1).time.astimezone(datetime.now().astimezone().tzinfo),
    )

    key = idempotency_key(*base)

    assert key == idempotency_key(*base)
    assert len(key) == 64
    assert key == idempotency_key(base[0], base[1], same_instant_other_offset, base[3])
    assert key != idempotency_key("clr", *base[1:])
    assert key != idempotency_key(base[0], "t/credential-definition/B", *base[2:])
    assert key != idempotency_key(base[0], base[1], version(2), base[3])
    assert key != idempotency_key(*base[:3], "sha256:abd")
    assert "credential-definition" not in key


def test_content_hash_ignores_key_order() -> None:
    assert content_hash({"a": 1, "b": [1, {"c": "é"}]}) == content_hash(
        {"b": [1, {"c": "é"}], "a": 1}
    )
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    with pytest.raises(ValueError, match="JSON"):
        content_hash({"a": float("nan")})


def test_retry_schedule_backs_off_to_its_longest_interval_and_stays_there() -> None:
    schedule = RetrySchedule(
        first_interval=timedelta(seconds=5), max_interval=timedelta(minutes=10), jitter=0.2
    )

    delays = [schedule.delay_ms(n, lambda: 0.0) for n in (1, 2, 3, 10, 1000)]

    assert delays[:3] == [5_000, 10_000, 20_000]
    assert delays[3:] == [600_000, 600_000]
    assert schedule.delay_ms(1, lambda: 1.0) == 6_000  # at most 20 % jitter on top


def test_a_lost_lease_settles_nothing() -> None:
    ref = DocumentRef("northfield-cc", DocumentKind.LEARNER_RECORD, "person:1")
    row = dirty_transition(None, target="clr", ref=ref, now_ms=0)
    lease, leased = lease_transition(row, token="mine", now_ms=0, ttl_ms=1_000)
    taken_over = replace(leased, lease_token="theirs")

    delivered = DeliveryResult(Settlement.DELIVERED)
    assert (
        settle_transition(taken_over, lease, delivered, now_ms=1, schedule=RetrySchedule()) is None
    )
    after = settle_transition(leased, lease, delivered, now_ms=1, schedule=RetrySchedule())
    assert after is not None
    assert after.state is DocumentState.CLEAN
    assert not leasable(after, now_ms=10**12)


async def test_the_publisher_marks_documents_only_at_the_targets_of_this_lane() -> None:
    first = FakeTarget(name="first", kinds=frozenset({DocumentKind.CREDENTIAL}))
    second = FakeTarget(name="second", kinds=frozenset({DocumentKind.CREDENTIAL}))
    publisher = Publisher(InMemoryLedger(), {"northfield-cc": [first, second]})

    everyone = await publisher.record(change(definition(), seq=1))
    only = await publisher.record(
        change(definition(name="SQL II"), seq=2), serves=lambda name: name == "second"
    )

    assert sorted(target for target, _ in everyone) == ["first", "second"]
    assert [target for target, _ in only] == ["second"]
    await publisher.aclose()
