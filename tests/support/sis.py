"""Realistic SIS messages for tests: Ethos change notifications of the demo tenants."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cayg_shared.headers import CORRELATION_ID, TRACEPARENT

#: Northfield Community College's Colleague publisher (deploy/config/tenants.json).
NORTHFIELD = "northfield-cc"
NORTHFIELD_PUBLISHER = {
    "id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04",
    "applicationName": "Colleague Main Authoritative Source",
}
_BASE_TIME = datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)


def ethos_time(sequence: int) -> str:
    """Ethos's own timestamp spelling (``2017-12-12 22:37:44.242116+00``)."""
    moment = _BASE_TIME + timedelta(seconds=sequence)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"


def definition_guid(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"test-definition-{n}"))


def academic_credential_created(sequence: int, n: int) -> dict[str, Any]:
    """An ``academic-credentials`` created notification for definition number ``n``."""
    guid = definition_guid(n)
    return {
        "id": str(sequence),
        "published": ethos_time(sequence),
        "publisher": NORTHFIELD_PUBLISHER,
        "resource": {
            "name": "academic-credentials",
            "id": guid,
            "version": "application/vnd.hedtech.integration.v6+json",
        },
        "operation": "created",
        "contentType": "resource-representation",
        "content": {
            "id": guid,
            "abbreviation": f"MC-T{n:04d}",
            "title": f"Microcredential: Test Skill {n} — Análisis",
            "description": "A short, stackable credential used by the integration tests.",
            "type": "certificate",
        },
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def trace_headers(n: int) -> dict[str, str]:
    """Headers an SIS would send: a W3C traceparent and a correlation id."""
    trace = uuid.uuid5(uuid.NAMESPACE_OID, f"trace-{n}").hex
    return {
        TRACEPARENT: f"00-{trace}-{trace[:16]}-01",
        CORRELATION_ID: f"sis-batch-{n}",
    }
