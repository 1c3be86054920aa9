"""The demo feed keeps the README's promises: feeding again with more learners repeats the
first learners of *every* institution byte for byte (replays the ledger skips) and adds new
ones, and each catalog revision is a newer version of one credential per institution, which
ingest admits and normalize maps — so the registry lane has something new to publish."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, admit
from cayg_normalize.domain import normalize
from cayg_ops.feed import HARBOR, LAKESHORE, NORTHFIELD, FeedMessage, catalog_revision, sample_feed
from cayg_shared.schema import Change, CredentialDefinition
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

TENANTS_FILE = Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json"


def _by_tenant(messages: list[FeedMessage]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = defaultdict(list)
    for message in messages:
        if not message.label.startswith("bad:"):
            found[message.tenant].append(message.value)
    return found


def test_more_learners_repeat_every_institutions_first_learners_and_add_new_ones() -> None:
    first = _by_tenant(sample_feed(learners_per_tenant=40))
    second = _by_tenant(sample_feed(learners_per_tenant=60))
    assert set(first) == set(second) == {NORTHFIELD, LAKESHORE, HARBOR}
    for tenant in first:
        again = set(second[tenant])
        repeated = [value for value in first[tenant] if value in again]
        # Lakeshore's rescission is sent after its learners, so its Ethos id moves on.
        assert len(repeated) >= len(first[tenant]) - 1, tenant
        assert len(second[tenant]) > len(first[tenant]), tenant


def _changes(messages: list[FeedMessage], registry: TenantRegistry) -> list[Change]:
    changes: list[Change] = []
    for n, message in enumerate(messages):
        envelope = admit(
            InboundMessage(
                topic=f"sis.events.{message.tenant}",
                partition=0,
                offset=n,
                timestamp_ms=None,
                key=message.key,
                value=message.value,
                headers=tuple((k, v.encode()) for k, v in message.headers.items()),
            ),
            registry,
            IngestLimits(),
            received_at=datetime(2025, 8, 1, tzinfo=UTC),
        )
        profile = registry.get(message.tenant)
        assert profile is not None
        changes += normalize(envelope, profile)
    return changes


def test_each_catalog_revision_is_a_newer_version_of_one_credential_per_institution() -> None:
    registry = TenantRegistry.load(TENANTS_FILE)
    sample = _changes(
        [m for m in sample_feed(learners_per_tenant=1) if m.label == "definition"], registry
    )
    first = _changes(catalog_revision(1), registry)
    second = _changes(catalog_revision(2), registry)

    assert {c.tenant for c in first} == {NORTHFIELD, LAKESHORE, HARBOR}
    original = {str(c.entity_key): c for c in sample}
    for one, two in zip(first, second, strict=True):
        assert one.entity_key == two.entity_key
        before = original[str(one.entity_key)]
        assert one.source_version.compare(before.source_version) == 1
        assert two.source_version.compare(one.source_version) == 1
        assert isinstance(one.entity, CredentialDefinition)
        assert isinstance(two.entity, CredentialDefinition)
        assert "catalog revision 1" in str(one.entity.description)
        assert "catalog revision 2" in str(two.entity.description)
    with pytest.raises(ValueError, match="start at 1"):
        catalog_revision(0)
