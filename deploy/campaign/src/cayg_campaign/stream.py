"""A seeded, messy, multi-tenant SIS stream and the end state it must lead to.

The stream is what real institutions send, not what the sample feed sends: Ethos change
notifications from two publishers (Colleague at Northfield, Banner at Lakeshore), Harbor
Tech's cayg CloudEvents in binary and structured mode, and Northfield backfill rows;
awards before their learners and definitions, revisions and revocations after delivery,
definition deletes, exact duplicates, stale versions, unicode and decomposed (NFD) names,
definitions without a description, a ~200 KB description and deliberately bad messages.
It comes in two phases: phase 2 revises and revokes what phase 1 created, and is fed
once the pipeline has gone idle after phase 1.

The expected end state is computed here from the *intent* of the stream (what the SIS
said last about each thing), not by running any cayg mapping or rendering code. Only the
project's deterministic identifiers are borrowed (CTIDs, credential and record ids), so
that the expectation can be looked up at the targets. The rules the expectation follows:

* a definition the SIS published is in the registry with its latest name, ``Active``;
  one it deleted is ``Deprecated`` (README "Deletes"); a definition without a description
  or with a long one is still published (issue 9: description fallback; a message within
  the size limit is not refused for one long string);
* a learner's CLR holds exactly their live awards with their latest dates; when every
  award was revoked after the record had been delivered, the record is withdrawn by
  expiry (``validUntil``); a record never delivered and withdrawn sends nothing; a
  learner whose ``persons`` record never arrives has no record (README "Revocation in a
  CLR"; issue 8, "Dependencies are state");
* older versions never replace newer ones; a duplicate changes nothing (README
  "Ordering");
* every bad message ends in the ingest or normalize DLQ with the reason its label names
  (``cayg_campaign.kinds``).

Ambiguous cases are not generated: revocations in phase 2 only touch records that were
deliverable when phase 1 ended, and an award revoked in phase 1 belongs to a learner whose
``persons`` record only comes in phase 2 — so whether a record was ever delivered is
fixed by the stream, not by timing.
"""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from cayg_campaign.kinds import INGEST_REASONS, NORMALIZE_REASONS
from cayg_ops.demo import TENANTS_FILE
from cayg_ops.feed import FeedMessage
from cayg_shared.ids import ctid as derive_ctid
from cayg_shared.ids import derived_id
from cayg_shared.schema import EntityKey, EntityType

NORTHFIELD: Final = "northfield-cc"
LAKESHORE: Final = "lakeshore-univ"
HARBOR: Final = "harbor-tech"
#: A partner organization registered by another account: the registry stand-in must be
#: told it exists (``CAYG_STANDINS_REGISTERED_CTIDS``) or it refuses the reference.
REGISTERED_PARTNER: Final = "ce-5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
GUILD_NAME: Final = "Harbor Welders\u2019 Guild \u2014 C\u00f4te"
TENANTS: Final = (NORTHFIELD, LAKESHORE, HARBOR)

_HARBOR_SOURCE: Final = "https://sis.harbortech.example"
_V6: Final = "application/vnd.hedtech.integration.v6+json"
_V5: Final = "application/vnd.hedtech.integration.v5+json"
_V12: Final = "application/vnd.hedtech.integration.v12.3.0+json"
_AWARD_V: Final = "application/vnd.hedtech.integration.v1.0.0+json"

#: Words for definition names; some only exist composed, some get decomposed (NFD).
_SUBJECTS: Final = (
    "Gestión de Cuidados Críticos",
    "Análisis de Datos",
    "Soudage et Métallurgie",
    "Künstliche Intelligenz im Betrieb",
    "Tiếng Việt cho Y tế",
    "Øvelse i Sikkerhed",
    "Ciberseguridad Aplicada",
    "Phlebotomy Technician",
    "Supply Chain Logistics",
    "Cloud Infrastructure",
    "Community Health Work",
    "Precision Machining",
)
_FIRST: Final = ("Ana", "Bảo", "Chiamaka", "Dmitri", "Elif", "Søren", "Thảo", "Zofia", "Jae-won")
_LAST: Final = ("Álvarez", "Nguyễn", "Okafor", "Müller", "O'Brien", "Novák", "Iyer", "Chen")


# The identifiers the targets carry, restated from publish's derivations (its render
# openbadges module) so that the campaign imports no service internals: the
# expectation is looked up at the targets by these, and a changed derivation shows as
# every record missing.


def learner_key(institution_id: str) -> str:
    """The ledger's key of a learner known by an institution id (a sha256 of it)."""
    return "sha256:" + hashlib.sha256(institution_id.encode("utf-8")).hexdigest()


def credential_id(tenant: str, award_key: str) -> str:
    """The stable id of an award's ``AchievementCredential``."""
    return f"urn:uuid:{derived_id('achievement-credential', tenant, award_key)}"


def clr_id(tenant: str, learner: str) -> str:
    """The stable id of a learner's ``ClrCredential``."""
    return f"urn:uuid:{derived_id('clr-credential', tenant, learner)}"


@dataclass(frozen=True)
class Size:
    """How much one seed generates."""

    #: Learners per tenant in phase 1 (phase 2 adds a few).
    learners: int
    #: Definitions per tenant in phase 1.
    definitions: int


SIZES: Final = {
    "small": Size(learners=7, definitions=4),
    "large": Size(learners=60, definitions=10),
}


#: One Kafka record for an SIS topic (the demo feed's type: the e2e pipeline feeds it).
Message = FeedMessage


@dataclass(frozen=True)
class ExpectedDefinition:
    """A registry resource as it must end."""

    tenant: str
    ctid: str
    name: str
    status: Literal["Active", "Deprecated"]
    #: Where it came from, for the mismatch report.
    origin: str
    #: What its ``recognizedBy`` must name: ``name:<name>`` for an organization described
    #: inline, ``ctid:<CTID>`` for one registered elsewhere (sorted). Never a CTID that
    #: exists nowhere.
    partners: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExpectedRecord:
    """A learner's CLR at the host as it must end."""

    tenant: str
    clr_id: str
    #: ``live``: exactly ``awards``; ``withdrawn``: expired by ``validUntil``; ``none``:
    #: the host holds no record.
    state: Literal["live", "withdrawn", "none"]
    #: Credential id -> awarded date (ISO) of each live award.
    awards: dict[str, str]
    origin: str


@dataclass
class Expected:
    """Everything the targets and DLQs must hold once both phases are through."""

    definitions: dict[str, ExpectedDefinition] = field(default_factory=dict)
    records: dict[str, ExpectedRecord] = field(default_factory=dict)
    #: (stage, reason) -> how many messages must be parked there for it.
    parked: Counter[tuple[str, str]] = field(default_factory=Counter)

    def merge(self, other: Expected) -> None:
        """Add another seed's expectation (their ids never overlap)."""
        self.definitions.update(other.definitions)
        self.records.update(other.records)
        self.parked.update(other.parked)


@dataclass
class MessyStream:
    """The two phases of one seed's stream and their expected end state."""

    seed: int
    phase1: list[Message]
    phase2: list[Message]
    expected: Expected


# -- intent --------------------------------------------------------------------------------


@dataclass
class _Definition:
    tenant: str
    source_id: str
    code: str
    name: str
    #: The SIS type (Ethos ``type`` or the CloudEvent ``credentialType``).
    kind: str
    description: str | None
    deleted: bool = False
    #: False while no message carrying it has been sent (an award may come first).
    sent: bool = False
    #: ``partnerOrganizations`` as sent (CloudEvents only) and what each must become.
    partner_data: list[dict[str, Any]] = field(default_factory=list)
    partners: list[str] = field(default_factory=list)

    @property
    def ctid(self) -> str:
        return derive_ctid(self.tenant, EntityType.CREDENTIAL_DEFINITION.value, self.source_id)


@dataclass
class _Award:
    tenant: str
    entity_key: str
    definition: _Definition
    awarded_on: date
    live: bool = True

    @property
    def credential_id(self) -> str:
        return credential_id(self.tenant, self.entity_key)


@dataclass
class _Learner:
    tenant: str
    key: str
    origin: str
    #: Whether a record can be addressed (Ethos: the persons record was sent).
    addressable: bool
    awards: dict[str, _Award] = field(default_factory=dict)
    #: What the stream did to the learner, in order (for the mismatch report).
    history: list[str] = field(default_factory=list)
    delivered_in_phase1: bool = False

    def deliverable(self) -> bool:
        return self.addressable and any(a.live and a.definition.sent for a in self.awards.values())


def _award_key(tenant: str, record: str, part: str | None = None) -> str:
    return str(
        EntityKey(
            tenant=tenant, entity_type=EntityType.CREDENTIAL_AWARD, source_id=record, part=part
        )
    )


# -- message builders ----------------------------------------------------------------------


def _publishers() -> dict[str, dict[str, Any]]:
    """Each Ethos tenant's registered publisher, as tenants.json lists it."""
    config = json.loads(TENANTS_FILE.read_text())["tenants"]
    out: dict[str, dict[str, Any]] = {}
    for tenant in (NORTHFIELD, LAKESHORE):
        entry = config[tenant]
        publisher = entry["ethos_publishers"][0]
        body: dict[str, Any] = {
            "id": publisher["id"],
            "applicationName": publisher["application_name"],
        }
        if entry.get("ethos_tenant_ids"):
            body["tenant"] = {"id": entry["ethos_tenant_ids"][0], "alias": tenant}
        out[tenant] = body
    return out


class _Ethos:
    """One Ethos publisher: notification ids and ``published`` times only ever grow, except
    where a stale notification is made on purpose."""

    def __init__(self, tenant: str, publisher: dict[str, Any], first_id: int, start: datetime):
        self.tenant = tenant
        self.publisher = publisher
        self.first_id = first_id
        self.next_id = first_id
        self.clock = start
        #: Stale notifications: ids and times between phase 1's and phase 2's, never reused
        #: (a reused id would be dropped as a duplicate and test nothing).
        self.stale_id = first_id + 400_000
        self.stale_clock = start

    def start_phase2(self) -> None:
        """Phase 2 starts a month later, with ids above every stale one."""
        self.stale_clock = self.clock + timedelta(days=1)
        self.clock += timedelta(days=30)
        self.next_id = self.first_id + 500_000

    def notify(
        self,
        resource: str,
        guid: str,
        operation: str,
        content: dict[str, Any] | None,
        *,
        label: str,
        version: str | None = None,
        stale: bool = False,
    ) -> Message:
        """A notification; a ``stale`` one is older than anything sent in phase 2."""
        if stale:
            self.stale_id += 1
            self.stale_clock += timedelta(seconds=5)
            number, moment = self.stale_id, self.stale_clock
        else:
            self.clock += timedelta(seconds=5)
            number, moment = self.next_id, self.clock
            self.next_id += 1
        body = {
            "id": str(number),
            "published": moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00",
            "publisher": self.publisher,
            "resource": {
                "name": resource,
                "id": guid,
                "version": version or _RESOURCE_VERSIONS[resource],
            },
            "operation": operation,
            "contentType": "resource-representation" if content is not None else "empty",
            "content": content if content is not None else {},
        }
        return Message(self.tenant, guid.encode(), json.dumps(body).encode(), {}, label)


_RESOURCE_VERSIONS: Final = {
    "academic-credentials": _V6,
    "persons": _V12,
    "student-academic-credentials": _AWARD_V,
}


class _Events:
    """Harbor Tech's CloudEvents, alternating binary and structured mode."""

    def __init__(self, rng: random.Random, seed: int, start: datetime) -> None:
        self.rng = rng
        self.seed = seed
        self.clock = start
        self.count = 0

    def event(
        self, kind: str, subject: str, data: dict[str, Any], *, label: str, binary: bool | None
    ) -> Message:
        self.clock += timedelta(seconds=3)
        self.count += 1
        attributes = {
            "specversion": "1.0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"messy/{self.seed}/ce/{self.count}")),
            "source": f"{_HARBOR_SOURCE}/{kind.split('.', maxsplit=1)[0]}s",
            "type": f"org.caygsync.{kind}.v1",
            "subject": subject,
            "time": self.clock.isoformat().replace("+00:00", "Z"),
        }
        if binary is None:
            binary = self.rng.random() < 0.5
        if binary:
            headers = {f"ce_{name}": value for name, value in attributes.items()}
            headers["content-type"] = "application/json"
            return Message(HARBOR, subject.encode(), json.dumps(data).encode(), headers, label)
        body = {**attributes, "datacontenttype": "application/json", "data": data}
        return Message(
            HARBOR,
            subject.encode(),
            json.dumps(body).encode(),
            {"content-type": "application/cloudevents+json"},
            label,
        )


def _backfill(batch: str, row: int, kind: str, data: dict[str, Any], at: datetime) -> Message:
    record = {
        "caygBackfill": "1.0",
        "batchId": batch,
        "recordId": f"awards.jsonl:{row}",
        "type": f"org.caygsync.{kind}.v1",
        "recordedAt": at.isoformat().replace("+00:00", "Z"),
        "tenant": NORTHFIELD,
        "data": data,
    }
    return Message(
        NORTHFIELD, f"{batch}/{row}".encode(), json.dumps(record).encode(), {}, f"backfill:{kind}"
    )


# -- the generator -------------------------------------------------------------------------


class _Generator:
    def __init__(self, seed: int, size: Size) -> None:
        self.seed = seed
        self.size = size
        self.rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
        publishers = _publishers()
        # Each seed has its own id range and its own days, so seeds can share one pipeline.
        # Source times stay after the award dates (May-June 2025) and, phase 2 included,
        # before November 2025: a withdrawn record must already have expired when read.
        base = datetime(2025, 7, 1, tzinfo=UTC) + timedelta(days=seed % 90)
        self.ethos = {
            NORTHFIELD: _Ethos(NORTHFIELD, publishers[NORTHFIELD], 10_000_000 * (seed + 1), base),
            LAKESHORE: _Ethos(LAKESHORE, publishers[LAKESHORE], 10_000_000 * (seed + 1), base),
        }
        self.events = _Events(self.rng, seed, base)
        self.definitions: dict[str, list[_Definition]] = {t: [] for t in TENANTS}
        self.learners: dict[str, _Learner] = {}
        self.parked: Counter[tuple[str, str]] = Counter()
        #: Ethos award records: guid -> (learner, {credential guid: date}).
        self.records: dict[str, tuple[_Learner, dict[str, date]]] = {}
        #: Ethos persons content to send later (forward references).
        self.person_content: dict[str, dict[str, Any]] = {}
        #: Harbor awards: award id -> (learner, data as first issued).
        self.harbor_awards: dict[str, tuple[_Learner, dict[str, Any]]] = {}
        self.backfill_rows = 0
        self.backfill_awards: list[str] = []
        #: The partner named by SIS id only (each seed its own), described in phase 2.
        self.guild_id = f"S{seed}-GUILD"
        self.guild_named = False
        #: Ethos learners whose persons record is held back until phase 2.
        self.unsent_people: list[_Learner] = []
        #: The ``created`` notification of each Ethos award record (re-sent stale later).
        self.ethos_created: dict[str, Message] = {}

    def guid(self, *parts: object) -> str:
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"messy/{self.seed}/" + "/".join(map(str, parts)))
        )

    def day(self) -> date:
        return date(2025, 5, 1) + timedelta(days=self.rng.randrange(60))

    # ---- definitions

    def definition_name(self, n: int) -> str:
        subject = self.rng.choice(_SUBJECTS)
        name = f"{subject} {self.seed}-{n}"
        # Decomposed spelling now and then: the registry must show the composed one.
        return unicodedata.normalize("NFD", name) if self.rng.random() < 0.3 else name

    def ethos_definition(self, tenant: str, n: int, *, description: str | None) -> Message:
        kind = n % 3
        prefix, sis_type = (("MC-", "certificate"), ("CERT-", "certificate"), ("AAS-", "degree"))[
            kind
        ]
        code = f"{prefix}S{self.seed}X{n}"
        guid = self.guid(tenant, "definition", n)
        definition = _Definition(tenant, guid, code, self.definition_name(n), sis_type, description)
        self.definitions[tenant].append(definition)
        return self.send_ethos_definition(definition)

    def send_ethos_definition(
        self,
        definition: _Definition,
        operation: str = "created",
        *,
        name: str | None = None,
        stale: bool = False,
    ) -> Message:
        """The definition's full representation (``name``: an older title, when stale)."""
        content: dict[str, Any] = {
            "id": definition.source_id,
            "abbreviation": definition.code,
            "title": name or definition.name,
            "type": definition.kind,
        }
        if definition.description is not None:
            content["description"] = definition.description
        definition.sent = True
        return self.ethos[definition.tenant].notify(
            "academic-credentials",
            definition.source_id,
            operation,
            content,
            label="stale" if stale else "definition",
            stale=stale,
        )

    def harbor_definition(self, n: int, *, description: str | None, version: int = 1) -> Message:
        kind = n % 2
        credential_type = ("MicroCredential", "Certificate")[kind]
        code = f"S{self.seed}-WELD-{n}"
        definition = _Definition(
            HARBOR, code, code, self.definition_name(n), credential_type, description
        )
        self.definitions[HARBOR].append(definition)
        self.add_partner(definition, n)
        return self.send_harbor_definition(definition, version)

    def add_partner(self, definition: _Definition, n: int) -> None:
        """Partners in every form an SIS names them (issue 9): by SIS id only, described in
        a later ``organization.upserted``; by SIS id with a name and webpage, never
        described; by a CTID registered elsewhere; or none."""
        match n % 4:
            case 0:
                definition.partner_data = [{"sourceId": self.guild_id}]
                definition.partners = [f"name:{GUILD_NAME}"]
                self.guild_named = True
            case 1:
                definition.partner_data = [
                    {
                        "sourceId": f"S{self.seed}-PORT",
                        "name": "Port Authority Training Office",
                        "webpage": "https://port.example/training",
                    }
                ]
                definition.partners = ["name:Port Authority Training Office"]
            case 2:
                definition.partner_data = [{"ctid": REGISTERED_PARTNER}]
                definition.partners = [f"ctid:{REGISTERED_PARTNER}"]
            case _:
                pass

    def send_guild(self) -> Message:
        """The partner named by SIS id only, described at last (after the definitions)."""
        data = {
            "sourceId": self.guild_id,
            "name": GUILD_NAME,
            "webpage": "https://welders-guild.example/",
            "roles": ["industry-partner"],
            "sourceVersion": 1,
        }
        return self.events.event(
            "organization.upserted", self.guild_id, data, label="organization", binary=None
        )

    def send_harbor_definition(
        self, definition: _Definition, version: int, *, name: str | None = None
    ) -> Message:
        """``definition.upserted`` (``name``: an older name, for a stale version)."""
        description = definition.description
        data: dict[str, Any] = {
            "sourceId": definition.source_id,
            "code": definition.code,
            "credentialType": definition.kind,
            "name": name or definition.name,
            "webpage": f"https://harbortech.example/credentials/{definition.code.lower()}",
            "sourceVersion": version,
        }
        if description is not None:
            data["description"] = description
        if definition.partner_data:
            data["partnerOrganizations"] = definition.partner_data
        definition.sent = True
        return self.events.event(
            "definition.upserted",
            definition.source_id,
            data,
            label="stale" if name else "definition",
            binary=None,
        )

    # ---- learners and awards

    def ethos_learner(self, tenant: str, n: int) -> _Learner:
        guid = self.guid(tenant, "person", n)
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        id_type = "colleaguePersonId" if tenant == NORTHFIELD else "bannerId"
        self.person_content[guid] = {
            "id": guid,
            "names": [{"type": {"category": "legal"}, "fullName": f"{first} {last}"}],
            "credentials": [{"type": id_type, "value": f"S{self.seed:03d}{n:05d}"}],
            "emails": [
                {
                    "type": {"emailType": "school"},
                    "preference": "primary",
                    "address": f"learner{self.seed}.{n}@students.{tenant}.example",
                }
            ],
        }
        learner = _Learner(tenant, f"person:{guid}", f"{tenant} person {guid}", addressable=False)
        self.learners[learner.key + tenant] = learner
        return learner

    def send_person(self, learner: _Learner) -> Message:
        guid = learner.key.removeprefix("person:")
        learner.addressable = True
        return self.ethos[learner.tenant].notify(
            "persons", guid, "created", self.person_content[guid], label="learner"
        )

    def ethos_award(self, learner: _Learner, definitions: list[_Definition], n: int) -> Message:
        tenant = learner.tenant
        record = self.guid(tenant, "award", n)
        dates: dict[str, date] = {}
        for definition in definitions:
            on = self.day()
            dates[definition.source_id] = on
            key = _award_key(tenant, record, definition.source_id)
            learner.awards[key] = _Award(tenant, key, definition, on)
        self.records[record] = (learner, dates)
        return self.send_ethos_record(record, "created")

    def record_content(self, record: str) -> dict[str, Any]:
        learner, dates = self.records[record]
        return {
            "id": record,
            "student": {"id": learner.key.removeprefix("person:")},
            "credentials": [
                {"credential": {"id": source}, "earnedOn": on.isoformat()}
                for source, on in dates.items()
            ],
        }

    def send_ethos_record(self, record: str, operation: str) -> Message:
        learner, _ = self.records[record]
        return self.ethos[learner.tenant].notify(
            "student-academic-credentials",
            record,
            operation,
            self.record_content(record),
            label="award" if operation == "created" else "award-replaced",
        )

    def revise_ethos_record(self, record: str, keep: list[str], *, redate: bool) -> Message:
        """A ``replaced`` listing only ``keep`` (the others are rescinded)."""
        learner, dates = self.records[record]
        for source in list(dates):
            key = _award_key(learner.tenant, record, source)
            if source not in keep:
                del dates[source]
                learner.awards[key].live = False
            elif redate:
                dates[source] = self.day()
                learner.awards[key].awarded_on = dates[source]
        return self.send_ethos_record(record, "replaced")

    def harbor_learner(self, n: int) -> _Learner:
        institution_id = f"H{self.seed:03d}{n:05d}"
        key = learner_key(institution_id)
        learner = _Learner(HARBOR, key, f"harbor learner {institution_id}", addressable=True)
        learner.origin = institution_id
        self.learners[key + HARBOR] = learner
        return learner

    def harbor_award(self, learner: _Learner, definition: _Definition, n: int) -> Message:
        award_id = f"AWD-S{self.seed}-{n:05d}"
        on = self.day()
        key = _award_key(HARBOR, award_id)
        learner.awards[key] = _Award(HARBOR, key, definition, on)
        data = {
            "awardId": award_id,
            "learner": {
                "institutionId": learner.origin,
                "email": f"{learner.origin.lower()}@students.harbortech.example",
            },
            "definition": {"sourceId": definition.source_id},
            "awardedOn": on.isoformat(),
            "results": [{"name": "Bend test", "resultType": "Status", "value": "Passed"}],
            "sourceVersion": 1,
        }
        self.harbor_awards[award_id] = (learner, data)
        return self.events.event("award.issued", award_id, data, label="award", binary=None)

    # ---- bad messages

    def bad(self, phase: int) -> list[Message]:
        out: list[Message] = []
        ethos = self.ethos[NORTHFIELD]
        out.append(Message(NORTHFIELD, b"broken", b'{"id": "1", "published": ', {}, "bad:not-json"))
        spoof = json.loads(
            self.ethos[LAKESHORE]
            .notify(
                "academic-credentials",
                self.guid("spoof", phase),
                "created",
                {
                    "id": self.guid("spoof", phase),
                    "abbreviation": "FAKE",
                    "title": "Fake",
                    "type": "degree",
                },
                label="",
            )
            .value
        )
        out.append(
            Message(NORTHFIELD, None, json.dumps(spoof).encode(), {}, "bad:spoofed-publisher")
        )
        event = json.loads(
            self.events.event(
                "award.issued",
                f"AWD-BAD-{self.seed}-{phase}",
                {"awardId": f"AWD-BAD-{self.seed}-{phase}"},
                label="",
                binary=False,
            ).value
        )
        event["specversion"] = "0.3"
        out.append(
            Message(
                HARBOR,
                None,
                json.dumps(event).encode(),
                {"content-type": "application/cloudevents+json"},
                "bad:cloudevent-specversion",
            )
        )
        out.append(
            self.events.event(
                "award.issued",
                f"AWD-NOLEARNER-{self.seed}-{phase}",
                {
                    "awardId": f"AWD-NOLEARNER-{self.seed}-{phase}",
                    "definition": {"sourceId": "ANY"},
                    "awardedOn": "2025-05-21",
                },
                label="unmappable:missing-field",
                binary=None,
            )
        )
        out.append(
            self.events.event(
                "definition.upserted",
                f"SHOP-{self.seed}-{phase}",
                {
                    "sourceId": f"SHOP-{self.seed}-{phase}",
                    "code": f"SHOP-{self.seed}-{phase}",
                    "name": "Shop Safety Orientation",
                },
                label="unmappable:unknown-credential-type",
                binary=None,
            )
        )
        ssn_only = self.guid("ssn-only", phase)
        out.append(
            ethos.notify(
                "persons",
                ssn_only,
                "created",
                {"id": ssn_only, "credentials": [{"type": "ssn", "value": "000-00-0000"}]},
                label="unmappable:no-learner-identifier",
            )
        )
        old = self.guid("v5", phase)
        out.append(
            self.ethos[LAKESHORE].notify(
                "academic-credentials",
                old,
                "created",
                {"id": old, "title": "Certificate in Old Versions", "type": "certificate"},
                label="unmappable:unsupported-version",
                version=_V5,
            )
        )
        for message in out:
            if message.label in INGEST_REASONS:
                self.parked["ingest", INGEST_REASONS[message.label]] += 1
            else:
                self.parked["normalize", NORMALIZE_REASONS[message.label]] += 1
        return out

    # ---- phase 1: everything created, out of order

    def phase1(self) -> list[Message]:
        size, rng = self.size, self.rng
        streams: dict[str, list[Message]] = {t: [] for t in TENANTS}
        late: dict[str, list[Message]] = {t: [] for t in TENANTS}
        for tenant in (NORTHFIELD, LAKESHORE):
            out = streams[tenant]
            for n in range(size.definitions):
                description: str | None = f"Hands-on skill {n}: what a learner can do after it."
                if n % 3 == 1:
                    description = None  # optional in Ethos, and often absent
                message = self.ethos_definition(tenant, n, description=description)
                # Forward references: the last definition comes after the awards naming it.
                (late if n == size.definitions - 1 else streams)[tenant].append(message)
            usable = list(self.definitions[tenant])
            # A ~200 KB description (no awards point at it: it tests the registry).
            big = "Ünïcode paragraph on professional practice. " * 4_600
            out.append(self.ethos_definition(tenant, 900, description=big))
            for n in range(size.learners):
                learner = self.ethos_learner(tenant, n)
                award = self.ethos_award(learner, rng.sample(usable, k=rng.choice((1, 1, 2))), n)
                if n == size.learners - 1:
                    # Awarded and deleted in phase 1, the learner only known in phase 2:
                    # the record was never delivered, so nothing may ever be sent.
                    out.append(award)
                    for a in learner.awards.values():
                        a.live = False
                    record = self.guid(tenant, "award", n)
                    out.append(
                        self.ethos[tenant].notify(
                            "student-academic-credentials",
                            record,
                            "deleted",
                            None,
                            label="revocation",
                        )
                    )
                    self.unsent_people.append(learner)
                    learner.history.append("award created and deleted, persons in phase 2")
                elif n % 3 == 0:
                    out.append(award)  # the award before its learner
                    late[tenant].append(self.send_person(learner))
                    learner.history.append("award before persons")
                else:
                    out.append(self.send_person(learner))
                    out.append(award)
            # A learner whose persons record never comes: waiting, no record at the host.
            ghost = self.ethos_learner(tenant, 9_000)
            ghost.history.append("persons never sent")
            out.append(self.ethos_award(ghost, [usable[0]], 9_000))
        self.phase1_backfill(streams[NORTHFIELD])
        # Harbor: CloudEvents; awards come before the definitions they name.
        for n in range(size.definitions):
            description = None if n % 3 == 1 else f"Welding skill {n}: assessed in the shop."
            late[HARBOR].append(self.harbor_definition(n, description=description))
        for n in range(size.learners):
            learner = self.harbor_learner(n)
            picks = rng.sample(self.definitions[HARBOR], k=rng.choice((1, 2)))
            for i, definition in enumerate(picks):
                streams[HARBOR].append(self.harbor_award(learner, definition, n * 10 + i))
        for tenant in TENANTS:
            streams[tenant].extend(late[tenant])
        messages = self.interleave(streams)
        for message in self.bad(1):
            messages.insert(rng.randrange(len(messages) + 1), message)
        for learner in self.learners.values():
            learner.delivered_in_phase1 = learner.deliverable()
        return messages

    def phase1_backfill(self, out: list[Message]) -> None:
        """Historic awards of some Northfield persons, from an onboarding backfill."""
        people = [
            learner
            for learner in self.learners.values()
            if learner.tenant == NORTHFIELD and learner.addressable
        ]
        for learner in self.rng.sample(people, k=min(len(people), 2)):
            definition = self.rng.choice(self.definitions[NORTHFIELD][:2])
            self.backfill_rows += 1
            award_id = f"RA-S{self.seed}-{self.backfill_rows:04d}"
            on = date(2016, 5, 1) + timedelta(days=self.rng.randrange(300))
            key = _award_key(NORTHFIELD, award_id)
            learner.awards[key] = _Award(NORTHFIELD, key, definition, on)
            learner.history.append(f"backfill award {award_id}")
            self.backfill_awards.append(award_id)
            out.append(
                _backfill(
                    f"onboarding-{self.seed}",
                    self.backfill_rows,
                    "award.issued",
                    {
                        "awardId": award_id,
                        "learner": {"personId": learner.key.removeprefix("person:")},
                        "definition": {"sourceId": definition.source_id},
                        "awardedOn": on.isoformat(),
                        "approach": "retro-award",
                        "sourceVersion": 1,
                    },
                    datetime(2025, 1, 15, tzinfo=UTC),
                )
            )

    # ---- phase 2: revisions, revocations, deletes and stale versions of phase 1

    def phase2(self) -> list[Message]:
        size, rng = self.size, self.rng
        streams: dict[str, list[Message]] = {t: [] for t in TENANTS}
        for ethos in self.ethos.values():
            ethos.start_phase2()
        self.events.clock += timedelta(days=30)
        for tenant in (NORTHFIELD, LAKESHORE):
            out = streams[tenant]
            for learner in self.unsent_people:
                if learner.tenant == tenant:
                    out.append(self.send_person(learner))
            records = [
                (record, learner)
                for record, (learner, dates) in self.records.items()
                if learner.tenant == tenant and learner.delivered_in_phase1 and dates
            ]
            for index, (record, _learner) in enumerate(records):
                action = index % 4
                before = self.record_content(record)
                created = self.ethos_created.get(record)
                _, dates = self.records[record]
                if action == 0:
                    out.append(self.revise_ethos_record(record, list(dates), redate=True))
                    # The superseded version arrives late (an older notification id).
                    out.append(self.stale_ethos_record(record, before))
                    _learner.history.append(f"record {record} redated, then the old version")
                elif action == 1:
                    # One credential rescinded (or the only one: the record is emptied).
                    keep = list(dates)[1:]
                    out.append(self.revise_ethos_record(record, keep, redate=False))
                    if created is not None:
                        out.append(_resent(created))
                    listed = len(before["credentials"])
                    _learner.history.append(
                        f"record {record} replaced with {len(keep)} of {listed} credentials, "
                        "then its created re-sent"
                    )
                elif action == 2:
                    out.append(self.delete_ethos_record(record))
                    if created is not None:
                        out.append(_resent(created))
                    _learner.history.append(f"record {record} deleted, then its created re-sent")
                # Other records stay as they are.
            definitions = self.definitions[tenant][: size.definitions]
            # (Number 1 has no description: it stays active, so a refusal is not hidden
            # behind a deprecation.)
            renamed, deleted = definitions[0], definitions[2]
            old_name = renamed.name
            renamed.name = f"{old_name} (revised)"
            out.append(self.send_ethos_definition(renamed, "replaced"))
            # The old name again, with an older notification id and time: ignored.
            out.append(self.send_ethos_definition(renamed, "replaced", name=old_name, stale=True))
            deleted.deleted = True
            out.append(
                self.ethos[tenant].notify(
                    "academic-credentials", deleted.source_id, "deleted", None, label="delete"
                )
            )
            # New in phase 2: a learner whose award precedes both person and definition.
            learner = self.ethos_learner(tenant, 5_000)
            learner.history.append("new in phase 2: award before persons and definition")
            fresh_message = self.ethos_definition(
                tenant, 5_000, description="A new credential, published in the second phase."
            )
            out.append(self.ethos_award(learner, [self.definitions[tenant][-1]], 5_000))
            out.append(self.send_person(learner))
            out.append(fresh_message)
        self.phase2_backfill(streams[NORTHFIELD])
        self.phase2_harbor(streams[HARBOR])
        messages = self.interleave(streams)
        for message in self.bad(2):
            messages.insert(rng.randrange(len(messages) + 1), message)
        return messages

    def stale_ethos_record(self, record: str, content: dict[str, Any]) -> Message:
        learner, _ = self.records[record]
        return self.ethos[learner.tenant].notify(
            "student-academic-credentials",
            record,
            "replaced",
            content,
            label="stale",
            stale=True,
        )

    def delete_ethos_record(self, record: str) -> Message:
        learner, dates = self.records[record]
        for source in dates:
            learner.awards[_award_key(learner.tenant, record, source)].live = False
        dates.clear()
        return self.ethos[learner.tenant].notify(
            "student-academic-credentials", record, "deleted", None, label="revocation"
        )

    def phase2_backfill(self, out: list[Message]) -> None:
        """A correction batch revokes the first historic award."""
        if not self.backfill_awards:
            return
        award_id = self.backfill_awards[0]
        for learner in self.learners.values():
            key = _award_key(NORTHFIELD, award_id)
            if key in learner.awards:
                learner.awards[key].live = False
                learner.history.append(f"backfill award {award_id} revoked by backfill")
        self.backfill_rows += 1
        out.append(
            _backfill(
                f"correction-{self.seed}",
                self.backfill_rows,
                "award.revoked",
                {"awardId": award_id, "sourceVersion": 2},
                # Recorded before any of the learner's Ethos changes (they start in July):
                # the record must be re-issued without the award all the same, "whatever
                # order that learner's award changes arrive in" (README "Ordering").
                datetime(2025, 6, 15, tzinfo=UTC),
            )
        )

    def phase2_harbor(self, out: list[Message]) -> None:
        events = self.events
        for index, award_id in enumerate(list(self.harbor_awards)):
            learner, data = self.harbor_awards[award_id]
            key = _award_key(HARBOR, award_id)
            action = index % 5
            if action == 0:
                revised = {**data, "awardedOn": self.day().isoformat(), "sourceVersion": 2}
                revised["results"] = [
                    {
                        "name": "Bend test",
                        "resultType": "Status",
                        "value": "Passed with distinction",
                    }
                ]
                learner.awards[key].awarded_on = date.fromisoformat(revised["awardedOn"])
                learner.history.append(f"{award_id} revised (v2), then v1 re-sent")
                out.append(
                    events.event("award.issued", award_id, revised, label="revision", binary=None)
                )
                # An older version with another date, sent after the newer one.
                stale = {**data, "awardedOn": "2024-01-02", "sourceVersion": 1}
                out.append(
                    events.event("award.issued", award_id, stale, label="stale", binary=None)
                )
            elif action == 1:
                learner.awards[key].live = False
                learner.history.append(f"{award_id} revoked (v3), then v2 re-sent")
                out.append(
                    events.event(
                        "award.revoked",
                        award_id,
                        {"awardId": award_id, "sourceVersion": 3},
                        label="revocation",
                        binary=None,
                    )
                )
                # The revision before the revocation arrives after it: still revoked.
                stale = {**data, "sourceVersion": 2}
                out.append(
                    events.event("award.issued", award_id, stale, label="stale", binary=None)
                )
        if self.guild_named:
            out.append(self.send_guild())
        definitions = self.definitions[HARBOR]
        renamed, deleted = definitions[0], definitions[2]
        old_name = renamed.name
        renamed.name = f"{old_name} (revised)"
        out.append(self.send_harbor_definition(renamed, 2))
        # The version before, sent after it (a new event id): ignored.
        out.append(self.send_harbor_definition(renamed, 1, name=old_name))
        deleted.deleted = True
        out.append(
            events.event(
                "definition.deleted",
                deleted.source_id,
                {"sourceId": deleted.source_id, "sourceVersion": 2},
                label="delete",
                binary=None,
            )
        )

    # ---- mixing and the expectation

    def interleave(self, streams: dict[str, list[Message]]) -> list[Message]:
        """Tenants' streams mixed at random, each kept in its own order; about one message
        in ten sent again, unchanged, somewhere after the original."""
        queues = {t: list(m) for t, m in streams.items() if m}
        out: list[Message] = []
        while queues:
            tenant = self.rng.choice(sorted(queues))
            out.append(queues[tenant].pop(0))
            if not queues[tenant]:
                del queues[tenant]
        for message in out:
            if message.label == "award" and message.tenant != HARBOR:
                self.ethos_created.setdefault(message.key.decode() if message.key else "", message)
        small = [m for m in out if len(m.value) < 100_000]
        for m in self.rng.sample(small, k=len(small) // 10):
            at = self.rng.randrange(out.index(m) + 1, len(out) + 1)
            out.insert(at, _resent(m))
        return out

    def expected(self) -> Expected:
        expected = Expected(parked=Counter(self.parked))
        for tenant, definitions in self.definitions.items():
            for d in definitions:
                if not d.sent:
                    continue
                expected.definitions[d.ctid] = ExpectedDefinition(
                    tenant=tenant,
                    ctid=d.ctid,
                    name=unicodedata.normalize("NFC", d.name).strip(),
                    status="Deprecated" if d.deleted else "Active",
                    origin=_definition_origin(d),
                    partners=tuple(sorted(d.partners)),
                )
        for learner in self.learners.values():
            record = clr_id(learner.tenant, learner.key)
            live = {
                a.credential_id: a.awarded_on.isoformat() for a in learner.awards.values() if a.live
            }
            state: Literal["live", "withdrawn", "none"]
            if not learner.addressable:
                state, live = "none", {}
            elif live:
                state = "live"
            else:
                state = "withdrawn" if learner.delivered_in_phase1 else "none"
            expected.records[record] = ExpectedRecord(
                tenant=learner.tenant,
                clr_id=record,
                state=state,
                awards=live,
                origin="; ".join([learner.origin, *learner.history]),
            )
        return expected


def _definition_origin(d: _Definition) -> str:
    """Which input made the definition, and what is special about it."""
    source = (
        "CloudEvent definition.upserted" if d.tenant == HARBOR else "Ethos academic-credentials"
    )
    notes = [d.code]
    if d.description is None:
        notes.append("sent without a description")
    elif len(d.description) > 100_000:
        notes.append(f"sent with a {len(d.description.encode()) // 1024} KB description")
    if d.deleted:
        notes.append("deleted in phase 2")
    if d.name.endswith("(revised)"):
        notes.append("renamed in phase 2, stale old name re-sent")
    return f"{d.tenant} {source} {d.source_id}: " + "; ".join(notes)


def _resent(message: Message) -> Message:
    """The very same record again (a producer retry, a replayed export)."""
    label = message.label.removeprefix("duplicate:")
    return Message(
        message.tenant, message.key, message.value, dict(message.headers), f"duplicate:{label}"
    )


def messy_stream(seed: int, size: Size = SIZES["small"]) -> MessyStream:
    """Both phases of the messy stream of ``seed`` and the end state they must lead to."""
    generator = _Generator(seed, size)
    phase1 = generator.phase1()
    phase2 = generator.phase2()
    return MessyStream(seed, phase1, phase2, generator.expected())


def describe(messages: Iterable[Message]) -> Counter[str]:
    """How many messages of each kind (for logs and reports)."""
    return Counter(
        m.label.split(":")[0] if m.label.startswith("bad") else m.label for m in messages
    )
