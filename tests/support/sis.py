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


#: Harbor Technical Institute sends cayg CloudEvents from this source prefix.
HARBOR = "harbor-tech"
HARBOR_SOURCE = "https://sis.harbortech.example/awards"
#: Lakeshore University's Banner and its registered CloudEvent source.
LAKESHORE = "lakeshore-univ"
LAKESHORE_SOURCE = "https://badges.lakeshore.example/events"


def harbor_award(n: int, *, source: str = HARBOR_SOURCE) -> dict[str, Any]:
    """A structured ``award.issued`` CloudEvent of Harbor Tech, learner number ``n``."""
    award_id = f"AWD-T-{n:05d}"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"harbor-award-{n}")),
        "source": source,
        "type": "org.caygsync.award.issued.v1",
        "subject": award_id,
        "time": "2025-06-02T17:45:12.118Z",
        "datacontenttype": "application/json",
        "data": {
            "awardId": award_id,
            "learner": {
                "institutionId": f"H{n:08d}",
                "email": f"learner.{n}@students.harbortech.example",
            },
            "definition": {"sourceId": "WELD-MC1"},
            "awardedOn": "2025-05-30",
            "sourceVersion": 1,
        },
    }


def binary_mode(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The same CloudEvent in binary mode: ``data`` as value, attributes as ``ce_*``."""
    headers = {
        f"ce_{name}": str(value)
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    }
    headers["content-type"] = str(event.get("datacontenttype", "application/json"))
    return encode(event["data"]), headers


def structured_headers() -> dict[str, str]:
    """The content type that marks a structured-mode CloudEvent."""
    return {"content-type": "application/cloudevents+json"}


def backfill_award(
    n: int, *, batch: str = "nfcc-onboarding-test", tenant: str | None = NORTHFIELD
) -> dict[str, Any]:
    """A backfill record retro-awarding historic learning to learner ``n``."""
    record: dict[str, Any] = {
        "caygBackfill": "1.0",
        "batchId": batch,
        "recordId": f"awards.jsonl:{n}",
        "type": "org.caygsync.award.issued.v1",
        "recordedAt": "2025-01-15T09:30:00Z",
        "data": {
            "awardId": f"RA-2016-{n:04d}",
            "learner": {"institutionId": f"{400_000 + n:07d}"},
            "definition": {"sourceId": "GENED-MS"},
            "awardedOn": "2016-05-13",
            "approach": "retro-award",
        },
    }
    if tenant is not None:
        record["tenant"] = tenant
    return record
