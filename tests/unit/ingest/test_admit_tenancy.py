"""The trust boundary: the tenant comes from the topic, and payloads must belong to it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, Rejection, admit
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

Admit = Callable[..., IngestEnvelope]


def _rejected(admit_one: Admit, value: Any, **kwargs: Any) -> Rejection:
    with pytest.raises(Rejection) as caught:
        admit_one(value, **kwargs)
    return caught.value


def test_the_tenant_is_the_topics(admit_one: Admit, ethos: dict[str, Any]) -> None:
    envelope = admit_one(ethos, topic="sis.events.northfield-cc")
    assert envelope.tenant == "northfield-cc"


@pytest.mark.parametrize("topic", ["sis.events.", "cayg.ingested.v1", "sis.events.Bad_Tenant"])
def test_a_topic_that_names_no_tenant_is_refused(
    admit_one: Admit, ethos: dict[str, Any], topic: str
) -> None:
    rejection = _rejected(admit_one, ethos, topic=topic)
    assert rejection.reason == "bad-topic"
    assert rejection.tenant is None


def test_an_unregistered_tenant_is_refused(admit_one: Admit, ethos: dict[str, Any]) -> None:
    rejection = _rejected(admit_one, ethos, topic="sis.events.unknown-college")
    assert (rejection.reason, rejection.tenant) == ("unknown-tenant", "unknown-college")


def test_an_ethos_publisher_of_another_tenant_is_a_mismatch(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    rejection = _rejected(admit_one, ethos, topic="sis.events.lakeshore-univ")
    assert rejection.reason == "tenant-mismatch"
    assert rejection.field_path == "$.publisher.id"
    assert rejection.tenant == "lakeshore-univ"
    assert "another tenant" in rejection.detail


def test_an_unregistered_ethos_publisher_is_a_mismatch(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    ethos["publisher"]["id"] = "00000000-0000-4000-8000-000000000000"
    rejection = _rejected(admit_one, ethos)
    assert rejection.reason == "tenant-mismatch"
    assert "no tenant" in rejection.detail


def test_a_tenant_without_ethos_publishers_refuses_ethos(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    assert _rejected(admit_one, ethos, topic="sis.events.harbor-tech").reason == "tenant-mismatch"


def test_a_registered_application_name_must_match(admit_one: Admit, ethos: dict[str, Any]) -> None:
    ethos["publisher"]["applicationName"] = "colleague main AUTHORITATIVE source"
    assert admit_one(ethos).tenant == "northfield-cc"
    ethos["publisher"]["applicationName"] = "Banner Student API"
    assert _rejected(admit_one, ethos).field_path == "$.publisher.applicationName"


def test_an_ethos_tenant_block_naming_another_institution_is_a_mismatch(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    ethos["publisher"] = {
        "id": "d3a9e0c4-77b1-4e2f-b5d6-0a8c1f4e6b93",
        "applicationName": "Banner Student API",
        "tenant": {"id": "e8c1a5f2-3b94-4d07-a6e1-5c2f8d0b7a41", "alias": "lakeshore-univ"},
    }
    assert admit_one(ethos, topic="sis.events.lakeshore-univ").tenant == "lakeshore-univ"
    ethos["publisher"]["tenant"]["id"] = "11111111-2222-4333-8444-555555555555"
    rejection = _rejected(admit_one, ethos, topic="sis.events.lakeshore-univ")
    assert (rejection.reason, rejection.field_path) == ("tenant-mismatch", "$.publisher.tenant.id")


def test_payload_fields_naming_a_tenant_never_choose_the_tenant(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    ethos["tenant"] = "lakeshore-univ"
    ethos["content"]["tenant"] = "lakeshore-univ"
    assert admit_one(ethos).tenant == "northfield-cc"


def test_cloudevent_sources_belong_to_one_tenant(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    assert admit_one(cloudevent, topic="sis.events.harbor-tech").tenant == "harbor-tech"
    cloudevent["source"] = "https://badges.lakeshore.example/events"
    rejection = _rejected(admit_one, cloudevent, topic="sis.events.harbor-tech")
    assert (rejection.reason, rejection.field_path) == ("tenant-mismatch", "$.source")
    assert "another tenant" in rejection.detail
    cloudevent["source"] = "https://sis.harbortech.example.attacker.example/awards"
    assert "no tenant" in _rejected(admit_one, cloudevent, topic="sis.events.harbor-tech").detail


def test_a_backfill_file_for_another_tenant_is_a_mismatch(
    admit_one: Admit, backfill: dict[str, Any]
) -> None:
    assert admit_one(backfill | {"tenant": "northfield-cc"}).tenant == "northfield-cc"
    rejection = _rejected(admit_one, backfill | {"tenant": "lakeshore-univ"})
    assert (rejection.reason, rejection.field_path) == ("tenant-mismatch", "$.tenant")


def test_backfill_can_be_switched_off_per_tenant(
    tenants: TenantRegistry, message: Callable[..., InboundMessage], backfill: dict[str, Any]
) -> None:
    data = tenants.model_dump()
    data["tenants"]["northfield-cc"]["backfill_enabled"] = False
    closed = TenantRegistry.model_validate(data)
    with pytest.raises(Rejection) as caught:
        admit(message(backfill), closed, IngestLimits(), received_at=datetime.now(UTC))
    assert caught.value.reason == "format-not-enabled"
