"""Fixtures for ingest's domain tests: the golden tenant registry and message builders."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, admit
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.tenants import TenantRegistry

REPO = Path(__file__).resolve().parents[3]
RECEIVED_AT = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)

NORTHFIELD_PUBLISHER = {
    "id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04",
    "applicationName": "Colleague Main Authoritative Source",
}
ETHOS_NOTIFICATION: dict[str, Any] = {
    "id": "104233",
    "published": "2025-02-03 14:05:11.482913+00",
    "publisher": NORTHFIELD_PUBLISHER,
    "resource": {
        "name": "academic-credentials",
        "id": "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58",
        "version": "application/vnd.hedtech.integration.v6+json",
    },
    "operation": "created",
    "contentType": "resource-representation",
    "content": {
        "id": "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58",
        "abbreviation": "MC-SQL",
        "title": "Microcredential: SQL for Analysts",
        "type": "certificate",
    },
}
CLOUDEVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "9e7a3c52-1d08-4f6b-b2a9-3c5e8d0f4a17",
    "source": "https://sis.harbortech.example/awards",
    "type": "org.caygsync.award.issued.v1",
    "time": "2025-06-02T17:45:12.118Z",
    "datacontenttype": "application/json",
    "data": {
        "awardId": "AWD-2025-000417",
        "learner": {"institutionId": "H00418822", "email": "c.okafor@students.harbortech.example"},
        "definition": {"sourceId": "WELD-MC1"},
        "awardedOn": "2025-05-30",
    },
}
BACKFILL_RECORD: dict[str, Any] = {
    "caygBackfill": "1.0",
    "batchId": "nfcc-onboarding-2025-01",
    "recordId": "awards.jsonl:118",
    "type": "org.caygsync.award.issued.v1",
    "recordedAt": "2025-01-15T09:30:00Z",
    "data": {
        "awardId": "RA-2016-0042",
        "learner": {"institutionId": "0412277"},
        "definition": {"sourceId": "GENED-MS"},
        "awardedOn": "2016-05-13",
    },
}

MessageFactory = Callable[..., InboundMessage]


@pytest.fixture(scope="session")
def tenants() -> TenantRegistry:
    return TenantRegistry.load(REPO / "tests" / "golden" / "tenants.json")


@pytest.fixture
def ethos() -> dict[str, Any]:
    """A fresh valid Ethos notification of Northfield's Colleague."""
    return copy.deepcopy(ETHOS_NOTIFICATION)


@pytest.fixture
def cloudevent() -> dict[str, Any]:
    """A fresh valid structured cayg CloudEvent of Harbor Tech."""
    return copy.deepcopy(CLOUDEVENT)


@pytest.fixture
def backfill() -> dict[str, Any]:
    """A fresh valid backfill record for Northfield."""
    return copy.deepcopy(BACKFILL_RECORD)


@pytest.fixture
def message() -> MessageFactory:
    """Build an inbound record: a dict value is JSON-encoded, bytes are taken as they are."""

    def build(
        value: Any,
        *,
        topic: str = "sis.events.northfield-cc",
        headers: dict[str, str] | list[tuple[str, bytes]] | None = None,
        key: bytes | None = None,
    ) -> InboundMessage:
        raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
        if isinstance(headers, dict):
            header_tuple = tuple((k, v.encode()) for k, v in headers.items())
        else:
            header_tuple = tuple(headers or ())
        return InboundMessage(
            topic=topic,
            partition=0,
            offset=42,
            timestamp_ms=1754049600000,
            key=key,
            value=raw,
            headers=header_tuple,
        )

    return build


@pytest.fixture
def admit_one(tenants: TenantRegistry, message: MessageFactory) -> Callable[..., IngestEnvelope]:
    """Admit a value with default limits (keyword arguments go to ``message``)."""

    def run(value: Any, *, limits: IngestLimits | None = None, **kwargs: Any) -> IngestEnvelope:
        return admit(
            message(value, **kwargs), tenants, limits or IngestLimits(), received_at=RECEIVED_AT
        )

    return run
