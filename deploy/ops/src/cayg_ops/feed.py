"""The demo's sample SIS feed: a few hundred realistic events from three institutions.

* **Northfield Community College** (Colleague, Ethos change notifications): its own
  institution record, nursing and data credentials, learners (``persons``) and awards.
* **Lakeshore University** (Banner, Ethos): a data-analytics pathway — two microcredentials
  on one program with a certificate, so they stack — learners, awards, a rescinded award.
* **Harbor Technical Institute** (no Ethos; cayg CloudEvents in structured and binary mode):
  an industry partner, welding microcredentials that stack into a certificate, awards with
  results and evidence, a retro-award for learning done years ago, and a revocation.

Plus a few bad messages an operator should find in the ingest DLQ: broken JSON, a spoofed
publisher, an unknown format, a payload over the size limit.

Everything is generated from a seed, so two runs produce the same events (and the same
event ids): feeding twice is harmless.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cayg_shared.topics import Topics

NORTHFIELD = "northfield-cc"
LAKESHORE = "lakeshore-univ"
HARBOR = "harbor-tech"

_COLLEAGUE = {
    "id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04",
    "applicationName": "Colleague Main Authoritative Source",
}
_BANNER = {
    "id": "d3a9e0c4-77b1-4e2f-b5d6-0a8c1f4e6b93",
    "applicationName": "Banner Student API",
    "tenant": {
        "id": "e8c1a5f2-3b94-4d07-a6e1-5c2f8d0b7a41",
        "alias": "lakeshore-univ",
        "name": "Lakeshore University",
        "environment": "Production",
    },
}
_NORTHFIELD_HOME = "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645"
_HARBOR_SOURCE = "https://sis.harbortech.example"

_FIRST = (
    "Ana",
    "Bao",
    "Chiamaka",
    "Dmitri",
    "Elif",
    "Farah",
    "Gustavo",
    "Hana",
    "Ines",
    "Jae-won",
    "Kwame",
    "Leilani",
    "Mateo",
    "Nadia",
    "Oluwaseun",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Thảo",
    "Uma",
    "Valentina",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zofia",
)
_LAST = (
    "Álvarez",
    "Nguyễn",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Müller",
    "Tanaka",
    "Silva",
    "O'Brien",
    "Ramírez",
    "Chen",
    "Yilmaz",
    "Fernández",
    "Mensah",
    "Novák",
    "Iyer",
)


@dataclass(frozen=True)
class FeedMessage:
    """One Kafka record for an SIS topic."""

    tenant: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: What the message is meant to show (``definition``, ``award``, ``bad:spoofed``…).
    label: str = ""


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "https://demo.cayg-sync.org/" + "/".join(parts)))


class _Ethos:
    """Ethos change notifications of one publisher, with sequential ids."""

    def __init__(self, tenant: str, publisher: dict[str, Any], first_id: int, start: datetime):
        self.tenant = tenant
        self.publisher = publisher
        self.next_id = first_id
        self.clock = start

    def notify(
        self,
        resource: str,
        version: str,
        guid: str,
        operation: str,
        content: dict[str, Any] | None,
        *,
        label: str,
    ) -> FeedMessage:
        self.clock += timedelta(seconds=7, microseconds=311_007)
        body = {
            "id": str(self.next_id),
            "published": self.clock.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00",
            "publisher": self.publisher,
            "resource": {"name": resource, "id": guid, "version": version},
            "operation": operation,
            "contentType": "resource-representation" if content is not None else "empty",
            "content": content if content is not None else {},
        }
        self.next_id += 1
        return FeedMessage(self.tenant, guid.encode(), json.dumps(body).encode(), {}, label)


_V6 = "application/vnd.hedtech.integration.v6+json"
_V6_1 = "application/vnd.hedtech.integration.v6.1.0+json"
_V15 = "application/vnd.hedtech.integration.v15.2.0+json"
_V12 = "application/vnd.hedtech.integration.v12.3.0+json"
_AWARD_V = "application/vnd.hedtech.integration.v1.0.0+json"


def _person(rng: random.Random, tenant: str, n: int, domain: str) -> tuple[str, dict[str, Any]]:
    guid = _guid(tenant, "person", str(n))
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = f"{first[0]}{last}".lower().replace("'", "").replace(" ", "")
    content = {
        "id": guid,
        "names": [
            {
                "type": {"category": "legal"},
                "fullName": f"{first} {last}",
                "firstName": first,
                "lastName": last,
            }
        ],
        "credentials": [
            {
                "type": "colleaguePersonId" if tenant == NORTHFIELD else "bannerId",
                "value": f"{7_000_000 + n:07d}",
            }
        ],
        "emails": [
            {
                "type": {"emailType": "school"},
                "preference": "primary",
                "address": f"{local}{n}@students.{domain}",
            }
        ],
    }
    return guid, content


def _ethos_institution(
    rng: random.Random,
    count: int,
    *,
    tenant: str,
    ethos: _Ethos,
    domain: str,
    credentials: list[tuple[str, str, str, str]],
    program: tuple[str, str, list[str]] | None,
    institution: dict[str, Any] | None,
) -> Iterator[FeedMessage]:
    if institution is not None:
        yield ethos.notify(
            "educational-institutions",
            _V6_1,
            institution["id"],
            "created",
            institution,
            label="organization",
        )
    for code, title, kind, description in credentials:
        guid = _guid(tenant, "credential", code)
        yield ethos.notify(
            "academic-credentials",
            _V6,
            guid,
            "created",
            {
                "id": guid,
                "abbreviation": code,
                "title": title,
                "type": kind,
                "description": description,
            },
            label="definition",
        )
    if program is not None:
        code, title, members = program
        guid = _guid(tenant, "program", code)
        yield ethos.notify(
            "academic-programs",
            _V15,
            guid,
            "created",
            {
                "id": guid,
                "code": code,
                "title": title,
                "status": "active",
                "startOn": "2023-08-21",
                "credentials": [{"id": _guid(tenant, "credential", m)} for m in members],
            },
            label="program",
        )
    codes = [c[0] for c in credentials]
    for n in range(count):
        person, content = _person(rng, tenant, n, domain)
        yield ethos.notify("persons", _V12, person, "created", content, label="learner")
        earned = rng.sample(codes, k=rng.choice((1, 1, 2)))
        award = _guid(tenant, "award", str(n))
        day = date(2025, 5, 1) + timedelta(days=rng.randrange(0, 45))
        yield ethos.notify(
            "student-academic-credentials",
            _AWARD_V,
            award,
            "created",
            {
                "id": award,
                "student": {"id": person},
                "credentials": [
                    {
                        "credential": {"id": _guid(tenant, "credential", c)},
                        "earnedOn": day.isoformat(),
                    }
                    for c in earned
                ],
                "graduatedOn": day.isoformat(),
            },
            label="award",
        )


def _northfield(rng: random.Random, learners: int) -> Iterator[FeedMessage]:
    ethos = _Ethos(NORTHFIELD, _COLLEAGUE, 104_100, datetime(2025, 6, 2, 13, 0, tzinfo=UTC))
    yield from _ethos_institution(
        rng,
        learners,
        tenant=NORTHFIELD,
        ethos=ethos,
        domain="northfield.example",
        institution={
            "id": _NORTHFIELD_HOME,
            "title": "Northfield Community College",
            "type": "postSecondarySchool",
            "homeInstitution": "home",
        },
        credentials=[
            (
                "AAS-NURS",
                "Associate of Applied Science in Nursing",
                "degree",
                "Prepares graduates for the NCLEX-RN licensure examination and entry-level "
                "practice.",
            ),
            (
                "CNA",
                "Certified Nursing Assistant",
                "certificate",
                "State-approved nurse aide training: 120 hours of classroom and clinical practice.",
            ),
            (
                "MC-SQL",
                "Microcredential: SQL for Analysts",
                "certificate",
                "Querying relational data with SQL; stacks into the Business Data Analytics "
                "certificate.",
            ),
        ],
        program=("NURS.AAS", "Nursing (AAS)", ["CNA", "AAS-NURS"]),
    )


def _lakeshore(rng: random.Random, learners: int) -> Iterator[FeedMessage]:
    ethos = _Ethos(LAKESHORE, _BANNER, 55_200, datetime(2025, 6, 3, 9, 30, tzinfo=UTC))
    yield from _ethos_institution(
        rng,
        learners,
        tenant=LAKESHORE,
        ethos=ethos,
        domain="lakeshore.example",
        institution=None,
        credentials=[
            (
                "MC-DATA1",
                "Microcredential: Data Wrangling with Python",
                "certificate",
                "Cleaning, reshaping and validating tabular data with Python and pandas.",
            ),
            (
                "MC-DATA2",
                "Microcredential: Visual Analytics",
                "certificate",
                "Designing honest charts and dashboards for decision makers.",
            ),
            (
                "CERT-DA",
                "Certificate in Data Analytics",
                "certificate",
                "Both data microcredentials plus a capstone project with a regional employer.",
            ),
            (
                "BS-DS",
                "Bachelor of Science in Data Science",
                "degree",
                "A four-year degree in statistics, computing and data ethics.",
            ),
        ],
        program=("DA.CERT", "Data Analytics Pathway", ["MC-DATA1", "MC-DATA2", "CERT-DA"]),
    )
    # A rescinded award: Banner deletes the record.
    rescinded = _guid(LAKESHORE, "award", "3")
    yield ethos.notify(
        "student-academic-credentials", _AWARD_V, rescinded, "deleted", None, label="revocation"
    )


def _cloudevent(
    kind: str,
    source: str,
    subject: str,
    data: dict[str, Any],
    when: datetime,
    *,
    binary: bool,
    label: str,
) -> FeedMessage:
    event_id = _guid(HARBOR, "ce", kind, subject, str(data.get("sourceVersion", 0)))
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"{_HARBOR_SOURCE}/{source}",
        "type": f"org.caygsync.{kind}.v1",
        "subject": subject,
        "time": when.isoformat().replace("+00:00", "Z"),
    }
    if binary:
        headers = {f"ce_{name}": value for name, value in attributes.items()}
        headers["content-type"] = "application/json"
        return FeedMessage(HARBOR, subject.encode(), json.dumps(data).encode(), headers, label)
    body = {**attributes, "datacontenttype": "application/json", "data": data}
    return FeedMessage(
        HARBOR,
        subject.encode(),
        json.dumps(body).encode(),
        {"content-type": "application/cloudevents+json"},
        label,
    )


def _harbor(rng: random.Random, learners: int) -> Iterator[FeedMessage]:
    clock = datetime(2025, 6, 4, 16, 0, tzinfo=UTC)

    def tick() -> datetime:
        nonlocal clock
        clock += timedelta(seconds=11)
        return clock

    yield _cloudevent(
        "organization.upserted",
        "partners",
        "ORG-PFA",
        {
            "sourceId": "ORG-PFA",
            "name": "Pacific Fabrication Alliance",
            "webpage": "https://pacificfab.example/",
            "description": "Metal fabrication employers who co-design Harbor Tech's welding "
            "credentials.",
            "roles": ["industry-partner"],
            "sourceVersion": 1,
        },
        tick(),
        binary=False,
        label="organization",
    )
    parts = [
        (
            "WELD-MC1",
            "Structural Welding Fundamentals",
            "SMAW fillet welds on structural steel in flat and horizontal positions.",
        ),
        (
            "WELD-MC2",
            "Pipe Welding I",
            "GTAW root passes on carbon steel pipe to ASME IX bend-test criteria.",
        ),
        (
            "WELD-MC3",
            "Weld Inspection Basics",
            "Visual inspection against AWS D1.1 acceptance criteria and weld symbols.",
        ),
    ]
    for code, name, description in parts:
        yield _cloudevent(
            "definition.upserted",
            "catalog",
            code,
            {
                "sourceId": code,
                "code": f"MC-{code}",
                "credentialType": "MicroCredential",
                "name": name,
                "description": description,
                "webpage": f"https://harbortech.example/credentials/{code.lower()}",
                "language": "en-US",
                "creditValue": {"value": 4, "unit": "QuarterHour"},
                "approaches": ["learn", "stack", "partner"],
                "isPartOf": [{"sourceId": "WELD-CERT", "name": "Welding Technology Certificate"}],
                "partnerOrganizations": [
                    {"sourceId": "ORG-PFA", "name": "Pacific Fabrication Alliance"}
                ],
                "sourceVersion": 1,
            },
            tick(),
            binary=code != "WELD-MC1",
            label="definition",
        )
    yield _cloudevent(
        "definition.upserted",
        "catalog",
        "WELD-CERT",
        {
            "sourceId": "WELD-CERT",
            "code": "CERT-WELD",
            "credentialType": "Certificate",
            "name": "Welding Technology Certificate",
            "description": "Three welding microcredentials plus 200 hours of supervised shop "
            "practice.",
            "webpage": "https://harbortech.example/credentials/weld-cert",
            "language": "en-US",
            "creditValue": {"value": 24, "unit": "QuarterHour"},
            "approaches": ["stack", "partner"],
            "hasPart": [{"sourceId": code, "name": name} for code, name, _ in parts],
            "partnerOrganizations": [
                {"sourceId": "ORG-PFA", "name": "Pacific Fabrication Alliance"}
            ],
            "sourceVersion": 1,
        },
        tick(),
        binary=False,
        label="definition",
    )
    for n in range(learners):
        learner = {
            "institutionId": f"H{418_000 + n:08d}",
            "email": f"learner{n}@students.harbortech.example",
        }
        for code, _name, _ in rng.sample(parts, k=rng.choice((1, 2, 3))):
            award_id = f"AWD-2025-{n:04d}-{code}"
            yield _cloudevent(
                "award.issued",
                "awards",
                award_id,
                {
                    "awardId": award_id,
                    "learner": learner,
                    "definition": {"sourceId": code},
                    "awardedOn": (date(2025, 5, 2) + timedelta(days=rng.randrange(40))).isoformat(),
                    "results": [{"name": "Bend test", "resultType": "Status", "value": "Passed"}],
                    "creditsEarned": {"value": 4, "unit": "QuarterHour"},
                    "sourceVersion": 1,
                },
                tick(),
                binary=n % 2 == 1,
                label="award",
            )
    # Retro-award: welding learned on the job in 2019, recognised now.
    yield _cloudevent(
        "award.issued",
        "awards",
        "AWD-RETRO-0001",
        {
            "awardId": "AWD-RETRO-0001",
            "learner": {"institutionId": "H00399001", "email": "veteran.welder@harbortech.example"},
            "definition": {"sourceId": "WELD-MC1"},
            "awardedOn": "2019-03-15",
            "approach": "retro-award",
            "sourceVersion": 1,
        },
        tick(),
        binary=False,
        label="retro-award",
    )
    # Revocation of an award issued in error.
    yield _cloudevent(
        "award.revoked",
        "awards",
        "AWD-2025-0000-WELD-MC1",
        {"awardId": "AWD-2025-0000-WELD-MC1", "sourceVersion": 2},
        tick(),
        binary=True,
        label="revocation",
    )


def _bad_messages() -> Iterator[FeedMessage]:
    yield FeedMessage(NORTHFIELD, b"broken", b'{"id": "104999", "published": ', {}, "bad:not-json")
    spoofed = {  # Lakeshore's Banner publisher on Northfield's topic.
        "id": "55999",
        "published": "2025-06-05 10:00:00.000000+00",
        "publisher": _BANNER,
        "resource": {"name": "academic-credentials", "id": _guid("spoof"), "version": _V6},
        "operation": "created",
        "contentType": "resource-representation",
        "content": {
            "id": _guid("spoof"),
            "abbreviation": "FAKE",
            "title": "Fake Degree",
            "type": "degree",
        },
    }
    yield FeedMessage(NORTHFIELD, None, json.dumps(spoofed).encode(), {}, "bad:spoofed-tenant")
    yield FeedMessage(
        LAKESHORE,
        None,
        b"<award><learner>x</learner></award>",
        {"content-type": "application/xml"},
        "bad:xml",
    )
    yield FeedMessage(
        HARBOR, None, json.dumps({"hello": "world"}).encode(), {}, "bad:unknown-format"
    )
    huge = {
        "specversion": "1.0",
        "id": "big-1",
        "source": f"{_HARBOR_SOURCE}/awards",
        "type": "org.caygsync.award.issued.v1",
        "data": {"padding": "x" * 2_200_000},
    }
    yield FeedMessage(
        HARBOR,
        None,
        json.dumps(huge).encode(),
        {"content-type": "application/cloudevents+json"},
        "bad:too-large",
    )


def tenant_rng(seed: int, tenant: str) -> random.Random:
    """Each institution's own generator: its first N learners come out the same whatever
    the learner count, so a second feed with more learners repeats them exactly (replays
    the ledger recognises) and only adds new ones, for every institution."""
    return random.Random(f"{seed}:{tenant}")  # noqa: S311 - reproducible demo data


def sample_feed(*, seed: int = 2025, learners_per_tenant: int = 40) -> list[FeedMessage]:
    """The whole demo feed, in the order an SIS would emit it per tenant."""
    return [
        *_northfield(tenant_rng(seed, NORTHFIELD), learners_per_tenant),
        *_lakeshore(tenant_rng(seed, LAKESHORE), learners_per_tenant),
        *_harbor(tenant_rng(seed, HARBOR), learners_per_tenant),
        *_bad_messages(),
    ]


#: Ethos notification ids of catalog revisions start here above each publisher's first id,
#: beyond any id the sample feed uses, so a revision is always the newest change.
_REVISION_ID_OFFSET = 900_000


def catalog_revision(revision: int) -> list[FeedMessage]:
    """Revision ``revision`` (1, 2, …) of one credential per institution: a new description,
    sent as an SIS sends an edit (Ethos ``replaced``; a CloudEvent with the next
    ``sourceVersion``). It gives the Credential Registry something new to publish, and
    every learner record naming the credential is re-issued with it."""
    if revision < 1:
        raise ValueError("catalog revisions start at 1")
    note = f" (catalog revision {revision})"
    out: list[FeedMessage] = []
    for tenant, publisher, first_id, start, (code, title, kind, description) in (
        (
            NORTHFIELD,
            _COLLEAGUE,
            104_100,
            datetime(2025, 6, 2, 13, 0, tzinfo=UTC),
            (
                "CNA",
                "Certified Nursing Assistant",
                "certificate",
                "State-approved nurse aide training: 120 hours of classroom and clinical practice.",
            ),
        ),
        (
            LAKESHORE,
            _BANNER,
            55_200,
            datetime(2025, 6, 3, 9, 30, tzinfo=UTC),
            (
                "MC-DATA2",
                "Microcredential: Visual Analytics",
                "certificate",
                "Designing honest charts and dashboards for decision makers.",
            ),
        ),
    ):
        ethos = _Ethos(
            tenant,
            publisher,
            first_id + _REVISION_ID_OFFSET + revision,
            start + timedelta(days=30 + revision),
        )
        guid = _guid(tenant, "credential", code)
        out.append(
            ethos.notify(
                "academic-credentials",
                _V6,
                guid,
                "replaced",
                {
                    "id": guid,
                    "abbreviation": code,
                    "title": title,
                    "type": kind,
                    "description": description + note,
                },
                label="definition-revision",
            )
        )
    out.append(
        _cloudevent(
            "definition.upserted",
            "catalog",
            "WELD-MC3",
            {
                "sourceId": "WELD-MC3",
                "code": "MC-WELD-MC3",
                "credentialType": "MicroCredential",
                "name": "Weld Inspection Basics",
                "description": "Visual inspection against AWS D1.1 acceptance criteria and "
                "weld symbols." + note,
                "webpage": "https://harbortech.example/credentials/weld-mc3",
                "language": "en-US",
                "creditValue": {"value": 4, "unit": "QuarterHour"},
                "approaches": ["learn", "stack", "partner"],
                "isPartOf": [{"sourceId": "WELD-CERT", "name": "Welding Technology Certificate"}],
                "partnerOrganizations": [
                    {"sourceId": "ORG-PFA", "name": "Pacific Fabrication Alliance"}
                ],
                "sourceVersion": 1 + revision,
            },
            datetime(2025, 7, 4, 16, 0, tzinfo=UTC) + timedelta(days=revision),
            binary=False,
            label="definition-revision",
        )
    )
    return out


def topic_for(message: FeedMessage, topics: Topics) -> str:
    """The SIS topic a feed message goes to."""
    return topics.sis(message.tenant)


# --------------------------------------------------------------------------- mixed feed
#
# ``sample_feed`` shows each kind of message once or twice. ``mixed_feed`` is the same
# institutions at volume, plus what a shared cluster really sees: SIS retries (exact
# duplicates), deletions, neighbours writing another institution's publisher or source,
# garbage, formats nobody registered, oversized and malformed events, and events that
# pass the trust boundary but cannot be mapped. Labels say what each message is meant to
# show: ``bad:<kind>`` should be refused by ingest, ``unmappable:<kind>`` admitted by
# ingest and parked by normalize, ``duplicate:<label>`` repeats an earlier message byte for
# byte, and everything else should become changes.

#: Size of the oversized messages: over the 1 MiB default limit of Northfield and
#: Lakeshore (Harbor's own 2 MiB limit is exceeded by ``sample_feed``'s ``bad:too-large``).
OVERSIZED_BYTES = 1_100_000
_OTHER_ETHOS_TENANT = {"id": "0d6e2f41-9b7a-4c35-8e12-6a5f3c9d0b27", "name": "Somewhere Else"}


def _ethos_of(tenant: str) -> dict[str, Any]:
    return _COLLEAGUE if tenant == NORTHFIELD else _BANNER


def _spoofs(rng: random.Random, count: int) -> Iterator[FeedMessage]:
    """Payloads naming another institution's Ethos publisher or CloudEvent source."""
    for n in range(count):
        kind = n % 6
        guid = _guid("spoof", str(n))
        if kind in (0, 1):
            # An Ethos publisher of one Ethos tenant on the other's topic.
            victim, owner = (LAKESHORE, NORTHFIELD) if kind == 0 else (NORTHFIELD, LAKESHORE)
            ethos = _Ethos(victim, _ethos_of(owner), 900_000 + n, datetime(2025, 6, 5, tzinfo=UTC))
            message = ethos.notify(
                "academic-credentials",
                _V6,
                guid,
                "created",
                {"id": guid, "abbreviation": f"FAKE{n}", "title": "Fake Degree", "type": "degree"},
                label="bad:spoofed-publisher",
            )
            yield message
        elif kind == 2:
            # Lakeshore's own Banner publisher, but naming another Ethos tenant.
            publisher = {**_BANNER, "tenant": _OTHER_ETHOS_TENANT}
            ethos = _Ethos(LAKESHORE, publisher, 910_000 + n, datetime(2025, 6, 5, tzinfo=UTC))
            yield ethos.notify(
                "academic-credentials",
                _V6,
                guid,
                "created",
                {"id": guid, "abbreviation": "MC-X", "title": "Microcredential: X"},
                label="bad:spoofed-ethos-tenant",
            )
        elif kind in (3, 4):
            # Harbor's CloudEvent source on Lakeshore's topic, Lakeshore's on Harbor's.
            source = (
                f"{_HARBOR_SOURCE}/awards"
                if kind == 3
                else "https://badges.lakeshore.example/events"
            )
            victim = LAKESHORE if kind == 3 else HARBOR
            event = _cloudevent(
                "award.issued",
                "awards",
                f"SPOOF-{n}",
                {
                    "awardId": f"SPOOF-{n}",
                    "learner": {"institutionId": f"S{n:08d}"},
                    "definition": {"sourceId": "WELD-MC1"},
                    "awardedOn": "2025-05-02",
                },
                datetime(2025, 6, 5, tzinfo=UTC),
                binary=rng.random() < 0.5,
                label="bad:spoofed-source",
            )
            body = event.value
            headers = dict(event.headers)
            if "ce_source" in headers:
                headers["ce_source"] = source
            else:
                document = json.loads(body)
                document["source"] = source
                body = json.dumps(document).encode()
            yield FeedMessage(victim, event.key, body, headers, event.label)
        else:
            # A backfill file exported for Harbor, fed to Northfield's topic.
            record = {
                "caygBackfill": "1.0",
                "batchId": "wrong-file",
                "recordId": f"row:{n}",
                "type": "org.caygsync.definition.upserted.v1",
                "recordedAt": "2024-12-01T00:00:00Z",
                "tenant": HARBOR,
                "data": {"sourceId": f"X-{n}", "name": "Not ours", "credentialType": "Badge"},
            }
            yield FeedMessage(
                NORTHFIELD, None, json.dumps(record).encode(), {}, "bad:spoofed-backfill"
            )


def _junk(rng: random.Random, count: int) -> Iterator[FeedMessage]:
    """Garbage bytes and formats nobody registered, spread over the three topics."""
    tenants = (NORTHFIELD, LAKESHORE, HARBOR)
    for n in range(count):
        tenant = tenants[n % 3]
        kind = n % 5
        if kind == 0:
            # Never valid UTF-8: a lone continuation byte first.
            value = b"\x80" + rng.randbytes(rng.randrange(8, 400))
            yield FeedMessage(tenant, None, value, {}, "bad:garbage")
        elif kind == 1:
            value = json.dumps({"student": f"{n}", "grade": "A", "term": "2025SP"}).encode()
            yield FeedMessage(tenant, None, value, {}, "bad:unknown-format")
        elif kind == 2:
            value = json.dumps([{"id": str(n)}, {"id": str(n + 1)}]).encode()
            yield FeedMessage(tenant, None, value, {}, "bad:not-object")
        elif kind == 3:
            value = f"<transcript><row n='{n}'/></transcript>".encode()
            yield FeedMessage(tenant, None, value, {"content-type": "text/xml"}, "bad:xml")
        else:
            value = b"%PDF-1.7 " + rng.randbytes(64)
            headers = {"content-type": "application/pdf"}
            yield FeedMessage(tenant, None, value, headers, "bad:unsupported-content-type")


def _oversized() -> Iterator[FeedMessage]:
    """Valid notifications, padded past Northfield's and Lakeshore's 1 MiB limit."""
    for tenant in (NORTHFIELD, LAKESHORE):
        guid = _guid(tenant, "oversized")
        ethos = _Ethos(tenant, _ethos_of(tenant), 990_000, datetime(2025, 6, 6, tzinfo=UTC))
        message = ethos.notify(
            "academic-credentials",
            _V6,
            guid,
            "created",
            {
                "id": guid,
                "title": "Microcredential: Padding",
                "abbreviation": "MC-PAD",
                "description": "x" * 90_000,
                "extensions": ["y" * 90_000] * (OVERSIZED_BYTES // 90_000),
            },
            label="bad:too-large",
        )
        yield message


def _malformed_cloudevents(rng: random.Random, count: int) -> Iterator[FeedMessage]:
    """Harbor events that break the CloudEvents contract in the ways SIS vendors do."""
    for n in range(count):
        award_id = f"AWD-BAD-{n:04d}"
        good = _cloudevent(
            "award.issued",
            "awards",
            award_id,
            {
                "awardId": award_id,
                "learner": {"institutionId": f"B{n:08d}"},
                "definition": {"sourceId": "WELD-MC2"},
                "awardedOn": "2025-05-20",
            },
            datetime(2025, 6, 6, 8, 0, tzinfo=UTC) + timedelta(seconds=n),
            binary=False,
            label="",
        )
        event = json.loads(good.value)
        headers = dict(good.headers)
        kind = n % 8
        if kind == 0:
            event["specversion"] = "0.3"
            label = "bad:cloudevent-specversion"
        elif kind == 1:
            del event["id"]
            label = "bad:cloudevent-no-id"
        elif kind == 2:
            event["type"] = "com.example.grade.posted"
            label = "bad:cloudevent-type"
        elif kind == 3:
            event["data"] = "awarded"
            label = "bad:cloudevent-data"
        elif kind == 4:
            event["data_base64"] = "eyJ4IjoxfQ=="
            del event["data"]
            label = "bad:cloudevent-data-base64"
        elif kind == 5:
            event["time"] = "yesterday at noon"
            label = "bad:cloudevent-time"
        elif kind == 6:
            # Binary mode whose data is XML.
            headers = {f"ce_{k}": str(v) for k, v in event.items() if k not in ("data",)}
            headers.pop("ce_datacontenttype", None)
            headers["content-type"] = "application/xml"
            value = f"<award id='{award_id}'/>".encode()
            yield FeedMessage(HARBOR, good.key, value, headers, "bad:cloudevent-binary-xml")
            continue
        else:
            headers = {"content-type": "application/cloudevents-batch+json"}
            event = {"batch": [event]}
            label = "bad:cloudevent-batch"
        if rng.random() < 0.1:
            headers["traceparent"] = f"00-{rng.randbytes(16).hex()}-{rng.randbytes(8).hex()}-01"
        yield FeedMessage(HARBOR, good.key, json.dumps(event).encode(), headers, label)


def _unmappable(count: int) -> Iterator[FeedMessage]:
    """Messages ingest admits (their envelope is sound) that normalize cannot map."""
    when = datetime(2025, 6, 7, 9, 0, tzinfo=UTC)
    for n in range(count):
        kind = n % 4
        if kind == 0:
            yield _cloudevent(
                "award.issued",
                "awards",
                f"AWD-NOLEARNER-{n}",
                {
                    "awardId": f"AWD-NOLEARNER-{n}",
                    "definition": {"sourceId": "WELD-MC1"},
                    "awardedOn": "2025-05-21",
                },
                when + timedelta(seconds=n),
                binary=n % 2 == 0,
                label="unmappable:missing-field",
            )
        elif kind == 1:
            yield _cloudevent(
                "definition.upserted",
                "catalog",
                f"SHOP-{n}",
                {"sourceId": f"SHOP-{n}", "code": f"SHOP-{n}", "name": "Shop Safety Orientation"},
                when + timedelta(seconds=n),
                binary=False,
                label="unmappable:unknown-credential-type",
            )
        elif kind == 2:
            # A Colleague person with only a national id: no usable learner identifier.
            guid = _guid(NORTHFIELD, "person-ssn-only", str(n))
            ethos = _Ethos(NORTHFIELD, _COLLEAGUE, 980_000 + n, when)
            yield ethos.notify(
                "persons",
                _V12,
                guid,
                "created",
                {"id": guid, "credentials": [{"type": "ssn", "value": f"000-00-{n:04d}"}]},
                label="unmappable:no-learner-identifier",
            )
        else:
            guid = _guid(LAKESHORE, "credential-v5", str(n))
            ethos = _Ethos(LAKESHORE, _BANNER, 985_000 + n, when)
            yield ethos.notify(
                "academic-credentials",
                "application/vnd.hedtech.integration.v5+json",
                guid,
                "created",
                {"id": guid, "title": "Certificate in Old Versions", "type": "certificate"},
                label="unmappable:unsupported-version",
            )


def _large_unmappable() -> FeedMessage:
    """A 900 kB Harbor event: within Harbor's own 2 MiB limit, so ingest admits it, but
    its data carries a field the award schema does not have."""
    return _cloudevent(
        "award.issued",
        "awards",
        "AWD-LARGE-0001",
        {
            "awardId": "AWD-LARGE-0001",
            "learner": {"institutionId": "H00777001"},
            "definition": {"sourceId": "WELD-MC1"},
            "awardedOn": "2025-05-22",
            "portfolio": ["z" * 90_000] * 10,
        },
        datetime(2025, 6, 7, 10, 0, tzinfo=UTC),
        binary=False,
        label="unmappable:invalid-field",
    )


def _deletions(rng: random.Random, learners: int, count: int) -> Iterator[FeedMessage]:
    """What SIS delete: learners, award records, a definition, an institution record."""
    ethos = {
        NORTHFIELD: _Ethos(NORTHFIELD, _COLLEAGUE, 970_000, datetime(2025, 6, 8, tzinfo=UTC)),
        LAKESHORE: _Ethos(LAKESHORE, _BANNER, 975_000, datetime(2025, 6, 8, tzinfo=UTC)),
    }
    yield ethos[NORTHFIELD].notify(
        "educational-institutions", _V6_1, _NORTHFIELD_HOME, "deleted", None, label="delete"
    )
    yield ethos[LAKESHORE].notify(
        "academic-credentials",
        _V6,
        _guid(LAKESHORE, "credential", "BS-DS"),
        "deleted",
        None,
        label="delete",
    )
    yield _cloudevent(
        "definition.deleted",
        "catalog",
        "WELD-MC3",
        {"sourceId": "WELD-MC3", "sourceVersion": 2},
        datetime(2025, 6, 8, 12, 0, tzinfo=UTC),
        binary=True,
        label="delete",
    )
    for n in range(count):
        learner = rng.randrange(learners)
        kind = n % 3
        if kind == 2:
            award_id = f"AWD-2025-{learner:04d}-WELD-MC2"
            yield _cloudevent(
                "award.revoked",
                "awards",
                award_id,
                {"awardId": award_id, "sourceVersion": 3 + n},
                datetime(2025, 6, 8, 12, 0, tzinfo=UTC) + timedelta(seconds=n),
                binary=n % 2 == 0,
                label="revocation",
            )
            continue
        tenant = NORTHFIELD if n % 2 == 0 else LAKESHORE
        resource, guid = (
            ("persons", _guid(tenant, "person", str(learner)))
            if kind == 0
            else ("student-academic-credentials", _guid(tenant, "award", str(learner)))
        )
        version = _V12 if kind == 0 else _AWARD_V
        label = "delete" if kind == 0 else "revocation"
        yield ethos[tenant].notify(resource, version, guid, "deleted", None, label=label)


def _other_mode(messages: list[FeedMessage], rng: random.Random, count: int) -> list[FeedMessage]:
    """Structured CloudEvents re-sent in binary mode: other bytes, the same event."""
    structured = [
        m
        for m in messages
        if m.tenant == HARBOR
        and m.headers.get("content-type") == "application/cloudevents+json"
        and not m.label.startswith("bad:")
    ]
    out: list[FeedMessage] = []
    for message in rng.sample(structured, k=min(count, len(structured))):
        event = json.loads(message.value)
        headers = {
            f"ce_{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")
        }
        headers["content-type"] = "application/json"
        value = json.dumps(event["data"]).encode()
        out.append(FeedMessage(HARBOR, message.key, value, headers, f"other-mode:{message.label}"))
    return out


def mixed_feed(
    *, seed: int = 2025, learners_per_tenant: int = 450, duplicate_every: int = 25
) -> list[FeedMessage]:
    """``sample_feed`` at volume, mixed with hostile and broken traffic (see above).

    With the defaults about 3,100 messages. Deterministic for a seed. Every ``duplicate_every``-th
    message (on average) is sent again, unchanged, after the rest.
    """
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible test data, not security
    stream = sample_feed(seed=seed, learners_per_tenant=learners_per_tenant)
    scale = max(1, learners_per_tenant // 15)
    extras = [
        *_spoofs(rng, 2 * scale),
        *_junk(rng, 2 * scale),
        *_oversized(),
        *_malformed_cloudevents(rng, 2 * scale),
        *_unmappable(scale),
        _large_unmappable(),
    ]
    for message in extras:
        stream.insert(rng.randrange(len(stream) + 1), message)
    stream.extend(_deletions(rng, learners_per_tenant, 2 * scale))
    stream.extend(_other_mode(stream, rng, scale))
    originals = [m for m in stream if len(m.value) < 100_000]
    repeats = rng.sample(originals, k=len(stream) // duplicate_every)
    stream.extend(
        FeedMessage(m.tenant, m.key, m.value, dict(m.headers), f"duplicate:{m.label}")
        for m in repeats
    )
    return stream


# --------------------------------------------------------------------------- building blocks
#
# For generators outside this module (the benchmark's Ethos export): the sample feed's own
# publishers, GUIDs, persons and notification envelopes, so what they build is read by
# ingest and normalize exactly as the sample feed is.

#: The Ethos media type of each resource, as the sample feed sends it.
ETHOS_VERSIONS: dict[str, str] = {
    "educational-institutions": _V6_1,
    "academic-credentials": _V6,
    "academic-programs": _V15,
    "persons": _V12,
    "student-academic-credentials": _AWARD_V,
}
#: Northfield's Ethos home institution GUID (configured in ``deploy/config/tenants.json``).
NORTHFIELD_HOME_INSTITUTION = _NORTHFIELD_HOME


def feed_guid(*parts: str) -> str:
    """The deterministic GUID (UUIDv5) the feed gives an entity named by ``parts``."""
    return _guid(*parts)


class EthosNotifier:
    """Ethos change notifications of Northfield's (Colleague) or Lakeshore's (Banner)
    publisher: ids counting up from ``first_id``, ``published`` 7.3 s apart from ``start``."""

    def __init__(self, tenant: str, *, first_id: int, start: datetime) -> None:
        if tenant not in (NORTHFIELD, LAKESHORE):
            raise ValueError(f"{tenant} has no Ethos publisher in the feed")
        self._ethos = _Ethos(tenant, _ethos_of(tenant), first_id, start)

    def notify(
        self,
        resource: str,
        guid: str,
        operation: str,
        content: dict[str, Any] | None,
        *,
        label: str,
    ) -> FeedMessage:
        """The next notification, for ``resource`` at its :data:`ETHOS_VERSIONS` version."""
        return self._ethos.notify(
            resource, ETHOS_VERSIONS[resource], guid, operation, content, label=label
        )


def ethos_person(
    rng: random.Random, tenant: str, n: int, domain: str
) -> tuple[str, dict[str, Any]]:
    """Learner ``n``'s ``persons`` representation (GUID, content), as the sample feed
    makes it: a name drawn from ``rng``, the SIS id ``7000000 + n``, a school email."""
    return _person(rng, tenant, n, domain)
