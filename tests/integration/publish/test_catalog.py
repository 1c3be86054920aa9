"""The catalog contract, against every ledger adapter's catalog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from cayg_publish.adapters.ledger import Ledger
from cayg_publish.domain.catalog import learner_key
from cayg_shared.schema import AwardStatus, Change, EntityType, LearnerRef, Operation
from unit.publish.publish_factories import (
    TENANT,
    award,
    change,
    definition,
    learner_identity,
)

pytestmark = pytest.mark.integration

LEARNER = learner_key(LearnerRef(person_ref="person-1"))


async def test_definitions_are_found_by_ctid_and_source_id(ledger: Ledger) -> None:
    defined = definition()

    await ledger.catalog.remember(change(defined, seq=1))

    assert await ledger.catalog.definition(TENANT, defined.ctid) == defined
    assert await ledger.catalog.definition_by_source(TENANT, "MC-SQL") == defined
    assert await ledger.catalog.definition("other-tenant", defined.ctid) is None


async def test_an_older_snapshot_never_replaces_a_newer_one(ledger: Ledger) -> None:
    newer, older = definition(name="SQL Databases II"), definition(name="SQL Databases I")

    await ledger.catalog.remember(change(newer, seq=5))
    await ledger.catalog.remember(change(older, seq=4))

    found = await ledger.catalog.definition_by_source(TENANT, "MC-SQL")
    assert found is not None
    assert found.name == "SQL Databases II"


async def test_a_deleted_definition_is_still_known_for_deprecation(ledger: Ledger) -> None:
    defined = definition()
    await ledger.catalog.remember(change(defined, seq=1))

    deleted = change(
        None,
        seq=2,
        operation=Operation.DELETE,
        entity_type=EntityType.CREDENTIAL_DEFINITION,
        source_id="MC-SQL",
    )
    await ledger.catalog.remember(deleted)

    assert await ledger.catalog.definition_by_source(TENANT, "MC-SQL") == defined


async def test_learner_identities_keep_their_identifiers(ledger: Ledger) -> None:
    identity = learner_identity()

    await ledger.catalog.remember(change(identity))

    found = await ledger.catalog.learner(TENANT, "person-1")
    assert found is not None
    assert found.institution_ids[0].value.get_secret_value() == "0012345"
    assert found.emails[0].get_secret_value() == "ada.learner@student.northfield.example"


async def test_awards_of_a_learner_exclude_revoked_ones(ledger: Ledger) -> None:
    first, second = award("AW-1"), award("AW-2", of=definition("MC-PY", name="Python"))
    other = award("AW-3", person_ref="person-2")
    for item in (first, second, other):
        await ledger.catalog.remember(change(item, seq=1))

    held = await ledger.catalog.awards_of(TENANT, LEARNER)
    assert [h.award for h in held] == [first, second]
    assert [h.key for h in held] == [
        f"{TENANT}/credential-award/AW-1",
        f"{TENANT}/credential-award/AW-2",
    ]

    revoked = first.model_copy(update={"status": AwardStatus.REVOKED})
    await ledger.catalog.remember(change(revoked, seq=2, operation=Operation.REVOKE))

    assert [h.award for h in await ledger.catalog.awards_of(TENANT, LEARNER)] == [second]


async def test_record_level_revoke_keeps_retained_parts(ledger: Ledger) -> None:
    degree = definition("AAS", name="Associate of Applied Science in Nursing")
    certificate = definition("CERT", name="Certificate in Patient Care")
    for part, defined in (("AAS", degree), ("CERT", certificate)):
        await ledger.catalog.remember(
            change(award("REC-1", of=defined), seq=1, source_id="REC-1", part=part)
        )

    record_revoke = change(
        None,
        seq=2,
        operation=Operation.REVOKE,
        entity_type=EntityType.CREDENTIAL_AWARD,
        source_id="REC-1",
    ).model_copy(update={"retain_parts": ("CERT",)})
    await ledger.catalog.remember(record_revoke)

    remaining = await ledger.catalog.awards_of(TENANT, LEARNER)
    assert [h.award.definition.source_id for h in remaining] == ["CERT"]
    assert [h.key for h in remaining] == [f"{TENANT}/credential-award/REC-1#CERT"]


async def test_concurrent_writers_keep_the_newest(
    ledger_factory: Callable[[], Ledger],
) -> None:
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await second.migrate()
    changes = [change(definition(name=f"SQL Databases v{n}"), seq=n) for n in range(1, 21)]

    async def write(ledger: Ledger, items: list[Change]) -> None:
        for item in items:
            await ledger.catalog.remember(item)

    await asyncio.gather(write(first, changes[::2][::-1]), write(second, changes[1::2]))

    found = await first.catalog.definition_by_source(TENANT, "MC-SQL")
    assert found is not None
    assert found.name == "SQL Databases v20"


async def test_last_award_change_counts_revoked_awards_too(ledger: Ledger) -> None:
    assert await ledger.catalog.last_award_change(TENANT, LEARNER) is None
    first, second = award("AW-1"), award("AW-2", of=definition("MC-PY", name="Python"))
    await ledger.catalog.remember(change(first, seq=1))
    await ledger.catalog.remember(change(second, seq=2))
    after_two = await ledger.catalog.last_award_change(TENANT, LEARNER)
    revoked = first.model_copy(update={"status": AwardStatus.REVOKED})
    await ledger.catalog.remember(change(revoked, seq=5, operation=Operation.REVOKE))
    after_revoke = await ledger.catalog.last_award_change(TENANT, LEARNER)

    assert after_two is not None
    assert after_revoke is not None
    assert after_revoke > after_two
    assert await ledger.catalog.last_award_change(TENANT, "person:someone-else") is None
