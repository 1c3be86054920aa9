"""Revocations after delivery always land, from every input format.

Learners are awarded credentials (Ethos, CloudEvents binary and structured, backfill); once
their records are at the CLR host, the SIS revokes: an Ethos record emptied of its
credentials, an Ethos record deleted, one of two credentials dropped from an Ethos record,
CloudEvent ``award.revoked`` in both modes, a backfill revocation. What the host then holds
is read back through its REST API and compared, learner by learner, with what the SIS said,
and the copies the learners had exported before the revocations are checked again by an
independent verifier (issuer resolved through did:web, status lists fetched from publish):
each copy holding a revoked award now reads revoked, the others still verify as valid.
The same with publish SIGKILLed between and during the phases, and with two publish
instances sharing a PostgreSQL ledger, one of them killed mid-delivery.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cayg_ops.feed import FeedMessage
from cayg_publish.domain.render.openbadges import clr_id
from cayg_shared.headers import CONTENT_TYPE
from cayg_signing import ContextLoader
from support.pipeline import Pipeline
from support.postgres import fresh_schema
from support.sis import NORTHFIELD, NORTHFIELD_PUBLISHER, binary_mode

pytestmark = pytest.mark.e2e

HARBOR = "harbor-tech"
START = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
_VERSIONS = {
    "academic-credentials": "application/vnd.hedtech.integration.v6+json",
    "persons": "application/vnd.hedtech.integration.v12.3.0+json",
    "student-academic-credentials": "application/vnd.hedtech.integration.v1.0.0+json",
}


def _guid(name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://test.cayg/revocations/{name}"))


class _Ethos:
    """Northfield's Colleague: notifications with increasing ids and times."""

    def __init__(self) -> None:
        self.next_id = 900_000

    def notify(
        self, resource: str, guid: str, operation: str, content: dict[str, Any] | None
    ) -> FeedMessage:
        self.next_id += 1
        moment = START + timedelta(minutes=self.next_id - 900_000)
        body = {
            "id": str(self.next_id),
            "published": moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00",
            "publisher": NORTHFIELD_PUBLISHER,
            "resource": {"name": resource, "id": guid, "version": _VERSIONS[resource]},
            "operation": operation,
            "contentType": "resource-representation" if content is not None else "empty",
            "content": content if content is not None else {},
        }
        return FeedMessage(NORTHFIELD, guid.encode(), json.dumps(body).encode())


DEFINITIONS = {
    "MC-REV1": "Microcredential: Revocation Drill One",
    "MC-REV2": "Microcredential: Revocation Drill Two",
}


def _harbor_event(kind: str, award_id: str, n: int, version: int) -> dict[str, Any]:
    moment = START + timedelta(hours=version, minutes=n)
    data: dict[str, Any] = {"awardId": award_id, "sourceVersion": version}
    if kind == "issued":
        data |= {
            "learner": {"institutionId": f"HR{n:06d}", "email": f"rev.{n}@harbor.example"},
            "definition": {"sourceId": "WELD-REV"},
            "awardedOn": "2025-08-29",
        }
    return {
        "specversion": "1.0",
        "id": _guid(f"harbor-{kind}-{award_id}-{version}"),
        "source": "https://sis.harbortech.example/awards",
        "type": f"org.caygsync.award.{kind}.v1",
        "subject": award_id,
        "time": moment.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def _structured(event: dict[str, Any]) -> FeedMessage:
    return FeedMessage(
        HARBOR,
        event["subject"].encode(),
        json.dumps(event).encode(),
        {CONTENT_TYPE: "application/cloudevents+json"},
    )


def _binary(event: dict[str, Any]) -> FeedMessage:
    value, headers = binary_mode(event)
    return FeedMessage(HARBOR, event["subject"].encode(), value, headers)


def _backfill(kind: str, n: int, version: int) -> FeedMessage:
    data: dict[str, Any] = {"awardId": f"BF-REV-{n}", "sourceVersion": version}
    if kind == "issued":
        data |= {
            "learner": {"institutionId": f"{880_000 + n:07d}"},
            "definition": {"sourceId": _guid("def-MC-REV1")},
            "awardedOn": "2019-05-10",
        }
    record = {
        "caygBackfill": "1.0",
        "batchId": "revocation-drill",
        "recordId": f"drill.jsonl:{n}:{kind}",
        "tenant": NORTHFIELD,
        "type": f"org.caygsync.award.{kind}.v1",
        "recordedAt": (START + timedelta(hours=version, minutes=n)).isoformat(),
        "data": data,
    }
    return FeedMessage(NORTHFIELD, f"BF-REV-{n}".encode(), json.dumps(record).encode())


@dataclass(frozen=True)
class Expect:
    """What one learner's record must be after the revocations."""

    tenant: str
    learner: str
    #: Names of the achievements the record holds (live awards).
    live: tuple[str, ...]
    #: True when every award was revoked: the record is withdrawn by expiry.
    withdrawn: bool


def _person(n: int) -> tuple[str, dict[str, Any]]:
    guid = _guid(f"person-{n}")
    return guid, {
        "id": guid,
        "credentials": [{"type": "colleaguePersonId", "value": f"{8_100_000 + n:07d}"}],
        "emails": [{"type": {"emailType": "school"}, "address": f"rev{n}@northfield.example"}],
    }


def _award_record(person: str, codes: list[str]) -> dict[str, Any]:
    return {
        "student": {"id": person},
        "credentials": [
            {"credential": {"id": _guid(f"def-{code}")}, "earnedOn": "2025-08-30"} for code in codes
        ],
        "graduatedOn": "2025-08-30",
    }


def _learner_key_inline(value: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def phases() -> tuple[list[FeedMessage], list[FeedMessage], list[Expect]]:
    """Phase 1 awards, phase 2 revokes, and the expected records."""
    ethos = _Ethos()
    one: list[FeedMessage] = []
    for code, title in DEFINITIONS.items():
        guid = _guid(f"def-{code}")
        one.append(
            ethos.notify(
                "academic-credentials",
                guid,
                "created",
                {
                    "id": guid,
                    "abbreviation": code,
                    "title": title,
                    "type": "certificate",
                    "description": f"{title}: a credential used to drill revocations end to end.",
                },
            )
        )
    records = {1: ["MC-REV1"], 2: ["MC-REV1"], 3: ["MC-REV1", "MC-REV2"], 4: ["MC-REV1"]}
    people = {n: _person(n) for n in records}
    for n, codes in records.items():
        guid, content = people[n]
        record = _guid(f"record-{n}")
        # Forward reference: the award is sent before the persons record.
        one.append(
            ethos.notify(
                "student-academic-credentials",
                record,
                "created",
                {"id": record, **_award_record(guid, codes)},
            )
        )
        one.append(ethos.notify("persons", guid, "created", content))
    harbor_definition = {
        "specversion": "1.0",
        "id": _guid("harbor-def"),
        "source": "https://sis.harbortech.example/catalog",
        "type": "org.caygsync.definition.upserted.v1",
        "subject": "WELD-REV",
        "time": START.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "sourceId": "WELD-REV",
            "code": "MC-WREV",
            "credentialType": "MicroCredential",
            "name": "Weld Revocation Drill",
            "description": "A microcredential the tests award and then revoke again.",
            "webpage": "https://harbortech.example/credentials/weld-revocation-drill",
            "language": "en-US",
            "sourceVersion": 1,
        },
    }
    # Awards before their definition: they wait for it.
    for n, mode in ((1, _structured), (2, _binary), (3, _structured)):
        one.append(mode(_harbor_event("issued", f"AWD-REV-{n}", n, 1)))
    one.append(_structured(harbor_definition))
    one += [_backfill("issued", 1, 1), _backfill("issued", 2, 1)]

    two: list[FeedMessage] = []
    two.append(
        ethos.notify(
            "student-academic-credentials",
            _guid("record-1"),
            "replaced",
            {"id": _guid("record-1"), **_award_record(people[1][0], [])},
        )
    )
    two.append(ethos.notify("student-academic-credentials", _guid("record-2"), "deleted", None))
    two.append(
        ethos.notify(
            "student-academic-credentials",
            _guid("record-3"),
            "replaced",
            {"id": _guid("record-3"), **_award_record(people[3][0], ["MC-REV2"])},
        )
    )
    two.append(_structured(_harbor_event("revoked", "AWD-REV-1", 1, 2)))
    two.append(_binary(_harbor_event("revoked", "AWD-REV-2", 2, 2)))
    two.append(_backfill("revoked", 1, 2))

    rev1, rev2 = DEFINITIONS["MC-REV1"], DEFINITIONS["MC-REV2"]
    expected = [
        Expect(NORTHFIELD, f"person:{people[1][0]}", (), withdrawn=True),
        Expect(NORTHFIELD, f"person:{people[2][0]}", (), withdrawn=True),
        Expect(NORTHFIELD, f"person:{people[3][0]}", (rev2,), withdrawn=False),
        Expect(NORTHFIELD, f"person:{people[4][0]}", (rev1,), withdrawn=False),
        Expect(HARBOR, _learner_key_inline("HR000001"), (), withdrawn=True),
        Expect(HARBOR, _learner_key_inline("HR000002"), (), withdrawn=True),
        Expect(HARBOR, _learner_key_inline("HR000003"), ("Weld Revocation Drill",), False),
        Expect(NORTHFIELD, _learner_key_inline(f"{880_001:07d}"), (), withdrawn=True),
        Expect(NORTHFIELD, _learner_key_inline(f"{880_002:07d}"), (rev1,), withdrawn=False),
    ]
    return one, two, expected


async def _records(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for tenant in (NORTHFIELD, HARBOR):
        found |= await pipeline.clr_records(tenant)
    return found


def _mismatches(records: dict[str, dict[str, Any]], expected: list[Expect]) -> list[str]:
    now = datetime.now(UTC)
    problems: list[str] = []
    for want in expected:
        record = records.get(clr_id(want.tenant, want.learner))
        if record is None:
            problems.append(f"{want.tenant} {want.learner[:20]}: no record at the host")
            continue
        subject = record["credentialSubject"]
        names = sorted(a["name"] for a in subject.get("achievement", []))
        until = record.get("validUntil")
        expired = until is not None and datetime.fromisoformat(until) <= now
        if want.withdrawn:
            if not expired:
                problems.append(
                    f"{want.tenant} {want.learner[:20]}: revoked everything, but the record "
                    f"is live (validUntil {until}, achievements {names})"
                )
        elif expired or names != sorted(want.live):
            problems.append(
                f"{want.tenant} {want.learner[:20]}: expected live {sorted(want.live)}, "
                f"got {names} (validUntil {until})"
            )
    return problems


async def _until_delivered(pipeline: Pipeline, expected: list[Expect]) -> None:
    await pipeline.wait_idle(timeout_s=120)
    records = await _records(pipeline)
    missing = [e for e in expected if clr_id(e.tenant, e.learner) not in records]
    assert not missing, f"phase 1 left {len(missing)} learner(s) without a record"


def _start(pipeline: Pipeline) -> None:
    for service in pipeline.services.values():
        service.start()


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


def _exported_copies_read(
    exported: dict[str, dict[str, Any]], expected: list[Expect], verifier: Any, *, after: bool
) -> list[str]:
    """Each learner whose copy exported after phase 1 does not read as it must: valid
    before the revocations; after them revoked exactly when it holds a revoked award."""
    problems: list[str] = []
    for want in expected:
        copy = exported[clr_id(want.tenant, want.learner)]
        held = {a["name"] for a in copy["credentialSubject"]["achievement"]}
        verdict = verifier.check(copy)
        where = f"{want.tenant} {want.learner[:20]}"
        if not verdict.verified:
            problems.append(f"{where}: does not verify: {verdict.all_problems}")
        must_be_revoked = after and bool(held - set(want.live))
        if verdict.revoked != must_be_revoked:
            problems.append(f"{where}: revoked {verdict.revoked}, expected {must_be_revoked}")
    return problems


async def test_revocations_after_delivery_land_from_every_format(
    pipeline: Pipeline, conformance_dir: Path
) -> None:
    verifier = pipeline.verifier(
        ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")
    )
    one, two, expected = phases()
    await asyncio.to_thread(_start, pipeline)
    await pipeline.feed(one)
    await _until_delivered(pipeline, expected)
    exported = await _records(pipeline)  # what the learners hold in their wallets
    problems = await asyncio.to_thread(
        _exported_copies_read, exported, expected, verifier, after=False
    )
    assert not problems, "\n".join(problems)

    await pipeline.feed(two)
    await pipeline.wait_idle(timeout_s=120)

    problems = _mismatches(await _records(pipeline), expected)
    assert not problems, "\n".join(problems)
    problems = await asyncio.to_thread(
        _exported_copies_read, exported, expected, verifier, after=True
    )
    assert not problems, "\n".join(problems)


async def test_revocations_land_when_publish_is_killed_between_and_during(
    pipeline: Pipeline,
) -> None:
    one, two, expected = phases()
    await asyncio.to_thread(_start, pipeline)
    await pipeline.feed(one)
    await _until_delivered(pipeline, expected)
    publish = pipeline.services["publish"]
    publish.kill()  # SIGKILL after delivery, before the revocations
    await asyncio.to_thread(publish.start)

    await pipeline.feed(two)
    await asyncio.sleep(0.3)
    publish.kill()  # and again while they are being applied and delivered
    await asyncio.to_thread(publish.start)
    await pipeline.wait_idle(timeout_s=120)

    problems = _mismatches(await _records(pipeline), expected)
    assert not problems, "\n".join(problems)


@pytest.mark.postgres
async def test_two_instances_on_postgres_one_killed_mid_delivery(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, postgres_dsn: str
) -> None:
    async with fresh_schema(postgres_dsn) as dsn:
        pipeline = Pipeline(
            tmp_path, kafka_bootstrap, topic_prefix, publish_instances=2, postgres_dsn=dsn
        )
        try:
            one, two, expected = phases()
            await asyncio.to_thread(_start, pipeline)
            await pipeline.feed(one)
            await _until_delivered(pipeline, expected)
            before = {(r["credential_id"]): r["total"] for r in pipeline.clr_upserts()}

            await pipeline.feed(two)
            await asyncio.sleep(0.3)
            pipeline.services["publish-1"].kill()
            await pipeline.wait_idle(timeout_s=120)

            problems = _mismatches(await _records(pipeline), expected)
            assert not problems, "\n".join(problems)
            # No record written twice with the same content: every upsert after phase 1
            # changed the record (created or replaced), none was a no-op duplicate.
            after = pipeline.clr_upserts()
            unchanged = [r for r in after if r.get("unchanged", 0) > 0]
            assert not unchanged, f"records re-sent with identical content: {unchanged}"
            assert sum(r["total"] for r in after) > sum(before.values())
        finally:
            pipeline.close()
