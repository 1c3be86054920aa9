"""An Ethos export of awards for the projection section: what an institution sends when it
backfills years of awards, and the end state the CLR host must reach.

Northfield (Colleague) and Lakeshore (Banner) share the learners. Each tenant's export is,
in order: its institution record, eight ``academic-credentials`` (definitions, each with a
description), one ``academic-programs`` record, then the learners sorted by student id,
each with five ``student-academic-credentials`` records (one credential each: five
different credentials, five different terms). For about 60% of the learners the
``persons`` record comes right before their awards; for the other 40% every ``persons``
record comes at the very end, after all the awards (an export that joins persons last), so
publish holds those learners' records until their identity arrives.

The expected end state is computed here, from what the export says, not from anything the
pipeline wrote: per learner the CLR record id and the five award credential ids it must
hold (normalize maps a one-credential record to one award keyed
``<tenant>/credential-award/<record>#<credential>``; publish names the award's
``AchievementCredential`` and the learner's ``ClrCredential`` by UUIDv5 of those keys,
:func:`credential_id` and :func:`clr_id`). :func:`compare` checks a CLR host's records
against it learner by learner.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from cayg_bench.records import SisRecord
from cayg_ops.feed import (
    LAKESHORE,
    NORTHFIELD,
    NORTHFIELD_HOME_INSTITUTION,
    EthosNotifier,
    FeedMessage,
    ethos_person,
    feed_guid,
)
from cayg_publish.domain.render.openbadges import clr_id, credential_id
from cayg_shared.headers import CORRELATION_ID

AWARDS_PER_LEARNER: Final = 5
#: Share of learners whose ``persons`` record comes after every award of the export.
PERSONS_LAST_SHARE: Final = 0.4

#: Each tenant's definitions: (abbreviation, title, Ethos type, description).
_Definition = tuple[str, str, str, str]
_CATALOG: Final[dict[str, list[_Definition]]] = {
    NORTHFIELD: [
        (
            "AAS-NURS",
            "Associate of Applied Science in Nursing",
            "degree",
            "Prepares graduates for the NCLEX-RN licensure examination and entry-level practice.",
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
            "Querying relational data with SQL; stacks into the business data analytics "
            "certificate.",
        ),
        (
            "MC-PHLEB",
            "Microcredential: Phlebotomy Basics",
            "certificate",
            "Venipuncture and capillary collection under supervision, with safety and "
            "specimen handling.",
        ),
        (
            "MC-EHR",
            "Microcredential: Electronic Health Records",
            "certificate",
            "Charting, coding and privacy practice in a teaching electronic health record.",
        ),
        (
            "CERT-BDA",
            "Certificate in Business Data Analytics",
            "certificate",
            "Spreadsheets, SQL and dashboards for business decisions, with a capstone report.",
        ),
        (
            "CERT-MA",
            "Medical Assistant Certificate",
            "certificate",
            "Clinical and administrative skills for physician offices, with a 160-hour externship.",
        ),
        (
            "AAS-IT",
            "Associate of Applied Science in Information Technology",
            "degree",
            "Networking, systems administration and security fundamentals for support roles.",
        ),
    ],
    LAKESHORE: [
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
        (
            "MC-ML",
            "Microcredential: Machine Learning Foundations",
            "certificate",
            "Supervised learning, validation and model cards for tabular problems.",
        ),
        (
            "MC-GIS",
            "Microcredential: Geospatial Analysis",
            "certificate",
            "Maps, projections and spatial joins for public-sector data.",
        ),
        (
            "CERT-PH",
            "Certificate in Public Health Informatics",
            "certificate",
            "Surveillance data, registries and health information exchange for public health.",
        ),
        (
            "MS-ANA",
            "Master of Science in Analytics",
            "degree",
            "Graduate study of statistical modelling, optimisation and data engineering.",
        ),
    ],
}
_PROGRAMS: Final = {
    NORTHFIELD: ("BDA.CERT", "Business Data Analytics Pathway", ["MC-SQL", "CERT-BDA"]),
    LAKESHORE: ("DA.CERT", "Data Analytics Pathway", ["MC-DATA1", "MC-DATA2", "CERT-DA"]),
}
_INSTITUTIONS: Final = {
    NORTHFIELD: (NORTHFIELD_HOME_INSTITUTION, "Northfield Community College"),
    LAKESHORE: (feed_guid(LAKESHORE, "institution"), "Lakeshore University"),
}
_DOMAINS: Final = {NORTHFIELD: "northfield.example", LAKESHORE: "lakeshore.example"}
_FIRST_IDS: Final = {NORTHFIELD: 2_104_100, LAKESHORE: 2_055_200}
#: The export was taken in June 2025; awards were earned in the terms before it.
_EXPORTED_AT: Final = datetime(2025, 6, 10, 2, 0, tzinfo=UTC)
_TERMS: Final = (
    date(2022, 12, 16),
    date(2023, 5, 12),
    date(2023, 8, 11),
    date(2023, 12, 15),
    date(2024, 5, 10),
    date(2024, 8, 9),
    date(2024, 12, 13),
    date(2025, 5, 9),
)


@dataclass(frozen=True)
class Learner:
    """What the export says one learner must end up holding on the CLR host."""

    tenant: str
    person: str
    #: The ``ClrCredential`` id of the learner's record.
    record_id: str
    #: The ``AchievementCredential`` ids of the learner's awards.
    awards: frozenset[str]


@dataclass(frozen=True)
class Export:
    """The SIS records of the export, in order, and the end state they must lead to."""

    records: list[SisRecord]
    learners: list[Learner]
    definitions: int
    persons_last: int

    @property
    def awards(self) -> int:
        """Awards the export holds."""
        return sum(len(learner.awards) for learner in self.learners)


def build_export(learners: int, *, seed: int = 2025) -> Export:
    """The export of ``learners`` learners (Northfield gets the odd one), deterministic for
    ``seed``."""
    shares = {NORTHFIELD: (learners + 1) // 2, LAKESHORE: learners // 2}
    messages: list[FeedMessage] = []
    expected: list[Learner] = []
    persons_last = 0
    for tenant, count in shares.items():
        rng = random.Random(f"{seed}:export:{tenant}")  # noqa: S311 - reproducible bench data
        tenant_messages, tenant_learners, late = _tenant_export(rng, tenant, count)
        messages += tenant_messages
        expected += tenant_learners
        persons_last += late
    records = [
        SisRecord(
            m.tenant, m.key, m.value, {**m.headers, CORRELATION_ID: f"x{n}"}, f"x{n}", m.label
        )
        for n, m in enumerate(_interleave(messages))
    ]
    return Export(records, expected, sum(len(c) for c in _CATALOG.values()), persons_last)


def _interleave(messages: Sequence[FeedMessage]) -> list[FeedMessage]:
    """The two institutions' exports running at the same time, each in its own order."""
    per_tenant: dict[str, list[FeedMessage]] = {}
    for message in messages:
        per_tenant.setdefault(message.tenant, []).append(message)
    streams = list(per_tenant.values())
    out: list[FeedMessage] = []
    for row in range(max((len(s) for s in streams), default=0)):
        out += [s[row] for s in streams if row < len(s)]
    return out


def _tenant_export(
    rng: random.Random, tenant: str, count: int
) -> tuple[list[FeedMessage], list[Learner], int]:
    ethos = EthosNotifier(tenant, first_id=_FIRST_IDS[tenant], start=_EXPORTED_AT)
    out: list[FeedMessage] = []
    home, title = _INSTITUTIONS[tenant]
    out.append(
        ethos.notify(
            "educational-institutions",
            home,
            "created",
            {"id": home, "title": title, "type": "postSecondarySchool", "homeInstitution": "home"},
            label="organization",
        )
    )
    codes: list[str] = []
    for code, name, kind, description in _CATALOG[tenant]:
        guid = feed_guid(tenant, "credential", code)
        codes.append(code)
        out.append(
            ethos.notify(
                "academic-credentials",
                guid,
                "created",
                {
                    "id": guid,
                    "abbreviation": code,
                    "title": name,
                    "type": kind,
                    "description": description,
                },
                label="definition",
            )
        )
    program, program_title, members = _PROGRAMS[tenant]
    program_guid = feed_guid(tenant, "program", program)
    out.append(
        ethos.notify(
            "academic-programs",
            program_guid,
            "created",
            {
                "id": program_guid,
                "code": program,
                "title": program_title,
                "status": "active",
                "startOn": "2022-08-22",
                "credentials": [{"id": feed_guid(tenant, "credential", m)} for m in members],
            },
            label="program",
        )
    )
    late = set(rng.sample(range(count), k=round(count * PERSONS_LAST_SHARE)))
    persons: list[tuple[int, str, dict[str, Any]]] = []
    expected: list[Learner] = []
    # Sorted by student: the SIS id is 7000000 + n, so n's order is the export's order.
    for n in range(count):
        person, content = ethos_person(rng, tenant, n, _DOMAINS[tenant])
        if n in late:
            persons.append((n, person, content))
        else:
            out.append(ethos.notify("persons", person, "created", content, label="learner"))
        earned = sorted(
            zip(
                sorted(rng.sample(range(len(_TERMS)), k=AWARDS_PER_LEARNER)),
                rng.sample(codes, k=AWARDS_PER_LEARNER),
                strict=True,
            )
        )
        awards: list[str] = []
        for term, code in earned:
            record = feed_guid(tenant, "export-award", str(n), code)
            credential = feed_guid(tenant, "credential", code)
            out.append(
                ethos.notify(
                    "student-academic-credentials",
                    record,
                    "created",
                    {
                        "id": record,
                        "student": {"id": person},
                        "credentials": [
                            {
                                "credential": {"id": credential},
                                "earnedOn": _TERMS[term].isoformat(),
                            }
                        ],
                        "graduatedOn": _TERMS[term].isoformat(),
                    },
                    label="award",
                )
            )
            awards.append(award_credential_id(tenant, record, credential))
        expected.append(
            Learner(tenant, person, clr_id(tenant, f"person:{person}"), frozenset(awards))
        )
    for _n, person, content in persons:
        out.append(ethos.notify("persons", person, "created", content, label="learner-late"))
    return out, expected, len(late)


def award_credential_id(tenant: str, record: str, credential: str) -> str:
    """The ``AchievementCredential`` id of the award a one-credential Ethos record makes."""
    return credential_id(tenant, f"{tenant}/credential-award/{record}#{credential}")


@dataclass(frozen=True)
class Comparison:
    """How a CLR host's records differ from the expected end state (all zero: equal)."""

    learners: int
    learners_missing: int
    learners_wrong_award_count: int
    learners_wrong_awards: int
    records_unexpected: int
    examples: list[str]

    @property
    def equal(self) -> bool:
        """The host holds exactly the expected records."""
        return not (
            self.learners_missing
            or self.learners_wrong_award_count
            or self.learners_wrong_awards
            or self.records_unexpected
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "equal": self.equal,
            "learners": self.learners,
            "learners_missing": self.learners_missing,
            "learners_wrong_award_count": self.learners_wrong_award_count,
            "learners_wrong_awards": self.learners_wrong_awards,
            "records_unexpected": self.records_unexpected,
            "examples": self.examples,
        }


def compare(expected: Iterable[Learner], held: Mapping[str, Sequence[str]]) -> Comparison:
    """Each expected learner against the host's records (``held``: record id → the award
    credential ids inside it): the learner's record must exist and hold exactly its awards
    (no fewer, no more, no other's), and the host must hold no other record."""
    learners = list(expected)
    missing = wrong_count = wrong_awards = 0
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < 10:
            examples.append(text)

    for learner in learners:
        found = held.get(learner.record_id)
        if found is None:
            missing += 1
            note(f"{learner.tenant} person {learner.person}: no CLR record")
        elif len(found) != len(learner.awards):
            wrong_count += 1
            note(
                f"{learner.tenant} person {learner.person}: {len(found)} awards, "
                f"{len(learner.awards)} expected"
            )
        elif set(found) != learner.awards:
            wrong_awards += 1
            note(f"{learner.tenant} person {learner.person}: other awards than expected")
    unexpected = set(held) - {learner.record_id for learner in learners}
    for record in sorted(unexpected)[:3]:
        note(f"unexpected CLR record {record}")
    return Comparison(len(learners), missing, wrong_count, wrong_awards, len(unexpected), examples)


def comparison_catches_errors(expected: Sequence[Learner]) -> bool:
    """Whether :func:`compare` flags a host that lost a learner, dropped an award, swapped
    one for another learner's and holds a stranger's record (a check that cannot fail would
    read as a result)."""
    if len(expected) < 3:
        return False
    held = {learner.record_id: sorted(learner.awards) for learner in expected}
    first, second, third = expected[:3]
    del held[first.record_id]
    held[second.record_id] = held[second.record_id][1:]
    held[third.record_id] = [*held[third.record_id][1:], "urn:uuid:not-an-award"]
    held["urn:uuid:stranger"] = ["urn:uuid:not-an-award"]
    found = compare(expected, held)
    return (
        found.learners_missing == 1
        and found.learners_wrong_award_count == 1
        and found.learners_wrong_awards == 1
        and found.records_unexpected == 1
        and not found.equal
        and compare(expected, {r.record_id: sorted(r.awards) for r in expected}).equal
    )
