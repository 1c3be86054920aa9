"""Pure domain rules: version order, ledger transitions, idempotency keys, reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cayg_publish.adapters.factory import Publisher
from cayg_publish.domain import (
    DecisionKind,
    DeliveryReport,
    DeliveryStatus,
    Outcome,
    TargetOutcome,
    compare_versions,
    decide_transition,
    failure_transition,
    success_transition,
)
from cayg_publish.idempotency import content_hash, idempotency_key
from cayg_publish.ledger import InMemoryLedger
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


def test_report_routing_helpers() -> None:
    later = NOW + timedelta(minutes=1)
    report = DeliveryReport(
        entity_key="k",
        version=version(1),
        outcomes=(
            TargetOutcome("a", DeliveryStatus.APPLIED),
            TargetOutcome("b", DeliveryStatus.RETRY_LATER, reason="http-503", not_before=NOW),
            TargetOutcome("c", DeliveryStatus.RETRY_LATER, reason="busy", not_before=later),
            TargetOutcome("d", DeliveryStatus.PERMANENT, reason="validation"),
        ),
    )

    assert [o.target for o in report.needs_retry] == ["b", "c"]
    assert [o.target for o in report.permanent_failures] == ["d"]
    assert report.not_before == later
    assert not report.ok
    assert report.for_target("a").done
    with pytest.raises(KeyError):
        report.for_target("z")


async def test_publisher_delivers_to_one_target_on_request() -> None:
    first, second = FakeTarget(name="first"), FakeTarget(name="second")
    publisher = Publisher(InMemoryLedger(), {"northfield-cc": [first, second]})

    everyone = await publisher.deliver(change(definition(), seq=1))
    only = await publisher.deliver(change(definition(name="SQL II"), seq=2), "second")
    nobody = await publisher.deliver(
        change(definition(), seq=3).model_copy(update={"tenant": "northfield-cc"}), "missing"
    )

    assert [o.target for o in everyone.outcomes] == ["first", "second"]
    assert [o.target for o in only.outcomes] == ["second"]
    assert nobody.outcomes == ()
    assert len(first.calls) == 1
    assert len(second.calls) == 2
    await publisher.aclose()
