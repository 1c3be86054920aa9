"""The projection's storage contract — catalog + dirty marking, leases, settlements —
against every ledger adapter (memory, SQLite, a real PostgreSQL).

Two clients of one store stand for two publish instances.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from cayg_publish.adapters.ledger import Ledger
from cayg_publish.domain.catalog import learner_key
from cayg_publish.domain.projection import (
    NEVER,
    DeliveryResult,
    DocumentKind,
    DocumentRef,
    DocumentState,
    RetrySchedule,
    Settlement,
    linked_definition,
    parse_award_subject,
)
from cayg_shared.schema import (
    CredentialDefinition,
    CredentialRef,
    EntityType,
    LearnerRef,
    Operation,
    OrganizationRef,
    Program,
)
from cayg_shared.schema.vocab import CtdlCredentialType, OrganizationRole, ProgramStatus
from integration.publish.conftest import LedgerFactory
from integration.publish.publish_support import Clock
from unit.publish.publish_factories import (
    ORG_CTID,
    TENANT,
    award,
    change,
    definition,
    learner_identity,
    organization,
)

pytestmark = pytest.mark.integration

CLR = "clr-host"
REGISTRY = "registry"
OB = "ob-host"
KINDS = {
    CLR: frozenset({DocumentKind.LEARNER_RECORD}),
    REGISTRY: frozenset({DocumentKind.CREDENTIAL, DocumentKind.ORGANIZATION}),
    OB: frozenset({DocumentKind.AWARD_CREDENTIAL}),
}
LEARNER = learner_key(LearnerRef(person_ref="person-1"))
RECORD = DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, LEARNER)
SCHEDULE = RetrySchedule(first_interval=timedelta(seconds=10), max_interval=timedelta(minutes=5))
TTL = 20_000


def _award_ref(award_id: str = "AW-1") -> DocumentRef:
    return DocumentRef(TENANT, DocumentKind.AWARD_CREDENTIAL, f"{award_id}\n")


async def _state(ledger: Ledger, target: str, ref: DocumentRef) -> DocumentState:
    [row] = [r for r in await ledger.documents(target=target) if r.ref == ref]
    return row.state


async def test_an_award_dirties_the_learners_record_and_its_own_credential(
    ledger: Ledger,
) -> None:
    marked = await ledger.record_change(change(award(), seq=1), KINDS)

    assert set(marked) == {(CLR, RECORD), (OB, _award_ref())}
    assert await _state(ledger, CLR, RECORD) is DocumentState.DIRTY


async def test_a_definition_dirties_its_resource_and_every_holders_record(ledger: Ledger) -> None:
    await ledger.record_change(change(award("AW-1", person_ref="person-1"), seq=1), KINDS)
    await ledger.record_change(change(award("AW-2", person_ref="person-2"), seq=2), KINDS)
    other = definition("CERT-X")
    await ledger.record_change(change(award("AW-3", of=other, person_ref="person-3"), seq=3), KINDS)

    marked = await ledger.record_change(change(definition(), seq=4), KINDS)

    learners = {ref.subject for target, ref in marked if target == CLR}
    assert learners == {"person:person-1", "person:person-2"}  # not person-3
    assert (REGISTRY, DocumentRef(TENANT, DocumentKind.CREDENTIAL, "MC-SQL")) in marked


async def test_a_definition_named_only_by_sis_id_still_finds_its_holders(ledger: Ledger) -> None:
    defined = definition()
    # The award's derived CTID differs (the tenant imported another CTID for the code).
    held = award(of=defined).model_copy(
        update={
            "definition": award(of=defined).definition.model_copy(
                update={"ctid": "ce-00000000-0000-4000-8000-000000000001"}
            )
        }
    )
    await ledger.record_change(change(held, seq=1), KINDS)

    marked = await ledger.record_change(change(defined, seq=2), KINDS)

    assert (CLR, RECORD) in marked


async def test_a_persons_record_dirties_the_learners_record_and_award_credentials(
    ledger: Ledger,
) -> None:
    await ledger.record_change(change(award(), seq=1), KINDS)

    marked = await ledger.record_change(change(learner_identity(), seq=2), KINDS)

    assert set(marked) == {(CLR, RECORD), (OB, _award_ref())}


async def test_a_record_level_revoke_dirties_the_record_of_the_learner(ledger: Ledger) -> None:
    await ledger.record_change(change(award(), seq=1, part="MC-SQL"), KINDS)

    revoke = change(
        None,
        entity_type=EntityType.CREDENTIAL_AWARD,
        source_id="AW-1",
        seq=2,
        operation=Operation.REVOKE,
    )
    marked = await ledger.record_change(revoke, KINDS)

    assert (CLR, RECORD) in marked
    assert (OB, DocumentRef(TENANT, DocumentKind.AWARD_CREDENTIAL, "AW-1\nMC-SQL")) in marked


async def test_a_batch_records_in_order_what_each_change_would(ledger: Ledger) -> None:
    batch = [
        change(award("AW-1", person_ref="person-1"), seq=1),
        change(definition(name="Old name"), seq=3),
        change(definition(name="New name for it"), seq=4),
        change(definition(name="Older name"), seq=2),  # stale within the batch: no mark
        change(learner_identity(), seq=5),
    ]
    marked = await ledger.record_changes([(c, KINDS) for c in batch])

    assert marked.count((CLR, RECORD)) == 4  # the award, two definitions, the identity
    [resource] = [r for r in await ledger.documents(target=REGISTRY)]
    assert resource.state is DocumentState.DIRTY
    assert resource.dirty_seq == 2  # the stale definition marked nothing
    assert await _state(ledger, CLR, RECORD) is DocumentState.DIRTY


async def test_a_stale_change_marks_nothing(ledger: Ledger) -> None:
    await ledger.record_change(change(definition(name="New name for it"), seq=5), KINDS)

    assert await ledger.record_change(change(definition(name="Old name"), seq=4), KINDS) == []


async def test_organizations_go_to_the_registry_only(ledger: Ledger) -> None:
    marked = await ledger.record_change(change(organization(), seq=1), KINDS)

    assert marked == [(REGISTRY, DocumentRef(TENANT, DocumentKind.ORGANIZATION, "northfield"))]


async def test_an_organization_dirties_the_definitions_naming_it_by_sis_id(
    ledger: Ledger,
) -> None:
    """Issue 9: a partner known by SIS id is rendered from its organization record, so the
    record arriving (or changing) re-renders every definition naming it, and only those."""
    guild = OrganizationRef(ctid="ce-00000000-0000-4000-8000-00000000beef", source_id="GUILD")
    naming = definition("CERT-W", partner_organizations=(guild,))
    await ledger.record_change(change(naming, seq=1), KINDS)
    await ledger.record_change(change(definition("CERT-X"), seq=2), KINDS)
    partner = organization(
        source_id="GUILD",
        name="Harbor Welding Guild",
        ctid=guild.ctid,
        webpage="https://guild.example/",
        roles=(OrganizationRole.INDUSTRY_PARTNER,),
    )

    marked = await ledger.record_change(change(partner, seq=3), KINDS)

    credentials = {ref.subject for target, ref in marked if ref.kind is DocumentKind.CREDENTIAL}
    assert credentials == {"CERT-W"}


async def test_a_lease_is_exclusive_until_it_expires(
    ledger_factory: LedgerFactory, clock: Clock
) -> None:
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await first.record_change(change(award(), seq=1), KINDS)

    [lease] = await first.lease_documents([CLR], limit=10, ttl_ms=TTL)
    assert await second.lease_documents([CLR], limit=10, ttl_ms=TTL) == []

    clock.advance(timedelta(milliseconds=TTL + 1))  # the first instance died
    [taken_over] = await second.lease_documents([CLR], limit=10, ttl_ms=TTL)
    assert taken_over.ref == lease.ref
    # The dead instance's late settlement is ignored; the new owner's counts.
    assert (
        await first.settle_document(lease, DeliveryResult(Settlement.DELIVERED), SCHEDULE) is None
    )
    settled = await second.settle_document(
        taken_over, DeliveryResult(Settlement.DELIVERED), SCHEDULE
    )
    assert settled is not None
    assert settled.state is DocumentState.CLEAN


async def test_a_renewed_lease_is_not_taken_over_and_a_lapsed_one_cannot_be_renewed(
    ledger_factory: LedgerFactory, clock: Clock
) -> None:
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    await first.record_change(change(award(), seq=1), KINDS)
    [lease] = await first.lease_documents([CLR], limit=10, ttl_ms=TTL)

    clock.advance(timedelta(milliseconds=TTL // 2))
    assert await first.renew_lease(lease, TTL)  # a slow delivery keeps its document
    clock.advance(timedelta(milliseconds=TTL // 2 + 1))
    assert await second.lease_documents([CLR], limit=10, ttl_ms=TTL) == []

    clock.advance(timedelta(milliseconds=TTL))  # now the first instance stalled too long
    [taken_over] = await second.lease_documents([CLR], limit=10, ttl_ms=TTL)
    assert not await first.renew_lease(lease, TTL)
    assert await second.renew_lease(taken_over, TTL)


async def test_concurrent_leases_never_share_a_document(ledger_factory: LedgerFactory) -> None:
    first, second = ledger_factory(), ledger_factory()
    await first.migrate()
    for n in range(30):
        await first.record_change(change(award(f"AW-{n}", person_ref=f"p-{n}"), seq=n + 1), KINDS)

    batches = await asyncio.gather(
        *(client.lease_documents([CLR], limit=7, ttl_ms=TTL) for client in (first, second) * 3)
    )

    keys = [lease.ref.key for batch in batches for lease in batch]
    assert len(keys) == len(set(keys))
    assert len(keys) == 30


async def test_a_change_during_delivery_leaves_the_document_dirty(ledger: Ledger) -> None:
    await ledger.record_change(change(award(), seq=1), KINDS)
    [lease] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)

    await ledger.record_change(change(award(awarded_on=award().awarded_on), seq=2), KINDS)
    settled = await ledger.settle_document(lease, DeliveryResult(Settlement.DELIVERED), SCHEDULE)

    assert settled is not None
    assert settled.state is DocumentState.DIRTY
    [again] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)
    assert again.seq > lease.seq


async def test_waiting_documents_are_dirtied_by_the_missing_input(ledger: Ledger) -> None:
    await ledger.record_change(change(award(), seq=1), KINDS)
    [lease] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)
    result = DeliveryResult(Settlement.WAITING, "learner-unknown: person:person-1")
    waiting = await ledger.settle_document(lease, result, SCHEDULE)
    assert waiting is not None
    assert waiting.state is DocumentState.WAITING
    assert waiting.next_attempt_ms == NEVER
    assert await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL) == []
    counts = await ledger.document_counts()
    assert (CLR, TENANT, "waiting", "learner-unknown", 1) in counts

    await ledger.record_change(change(learner_identity(), seq=2), KINDS)

    assert await _state(ledger, CLR, RECORD) is DocumentState.DIRTY
    assert len(await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)) == 1


async def test_failing_documents_back_off_and_keep_their_schedule_when_data_changes(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.record_change(change(award(), seq=1), KINDS)
    [lease] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)
    failing = await ledger.settle_document(
        lease, DeliveryResult(Settlement.FAILING, "http-503: down"), SCHEDULE
    )
    assert failing is not None
    assert failing.state is DocumentState.FAILING
    assert failing.attempts == 1

    await ledger.record_change(change(learner_identity(), seq=2), KINDS)
    assert await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL) == []  # still backing off

    clock.advance(timedelta(seconds=13))  # first interval 10 s + at most 20 % jitter
    [retry] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)
    done = await ledger.settle_document(retry, DeliveryResult(Settlement.DELIVERED), SCHEDULE)
    assert done is not None
    assert done.state is DocumentState.CLEAN
    assert done.attempts == 0


async def test_rejected_documents_wait_for_new_data_or_a_reconcile(ledger: Ledger) -> None:
    await ledger.record_change(change(definition(), seq=1), KINDS)
    [lease] = await ledger.lease_documents([REGISTRY], limit=1, ttl_ms=TTL)
    rejected = await ledger.settle_document(
        lease, DeliveryResult(Settlement.REJECTED, "validation: description too short"), SCHEDULE
    )
    assert rejected is not None
    assert rejected.state is DocumentState.REJECTED
    assert rejected.last_error == "validation: description too short"
    assert await ledger.lease_documents([REGISTRY], limit=1, ttl_ms=TTL) == []

    marked = await ledger.reconcile(TENANT, KINDS)

    assert (REGISTRY, lease.ref) in marked
    assert len(await ledger.lease_documents([REGISTRY], limit=1, ttl_ms=TTL)) == 1


async def test_reconcile_marks_every_document_of_the_tenant_only(ledger: Ledger) -> None:
    await ledger.record_change(change(definition(), seq=1), KINDS)
    await ledger.record_change(change(award(), seq=2), KINDS)
    await ledger.record_change(change(organization(), seq=3), KINDS)

    marked = await ledger.reconcile(TENANT, KINDS)
    assert await ledger.reconcile("another-tenant", KINDS) == []

    kinds = sorted(ref.kind.value for _, ref in marked)
    assert kinds == ["award-credential", "credential", "learner-record", "organization"]


async def test_documents_are_listed_by_tenant_target_state_and_subject(ledger: Ledger) -> None:
    await ledger.record_change(change(award(), seq=1), KINDS)
    await ledger.record_change(change(definition(), seq=2), KINDS)

    assert {r.target for r in await ledger.documents(tenant=TENANT)} == {CLR, OB, REGISTRY}
    assert [r.ref for r in await ledger.documents(target=REGISTRY)] == [
        DocumentRef(TENANT, DocumentKind.CREDENTIAL, "MC-SQL")
    ]
    assert [r.ref for r in await ledger.documents(subject=LEARNER)] == [RECORD]
    assert await ledger.documents(subject="person:person-%") == []
    assert await ledger.documents(states=[DocumentState.CLEAN]) == []


def test_award_subjects_parse_back() -> None:
    assert parse_award_subject("AW/1#x\nMC-SQL") == ("AW/1#x", "MC-SQL")
    assert parse_award_subject("AW-9\n") == ("AW-9", "")


def _program(*members: CredentialDefinition) -> Program:
    return Program(
        source_id="PROG-DATA",
        name="Data Analytics pathway",
        status=ProgramStatus.ACTIVE,
        owned_by=OrganizationRef(ctid=ORG_CTID),
        credentials=tuple(CredentialRef(ctid=d.ctid, source_id=d.source_id) for d in members),
    )


MICRO = definition("MC-SQL")
CERT = definition(
    "CERT-DATA",
    name="Certificate in Data Analytics",
    credential_type=CtdlCredentialType.CERTIFICATE,
)


async def test_a_program_dirties_its_members_and_their_holders(ledger: Ledger) -> None:
    await ledger.record_change(change(MICRO, seq=1), KINDS)
    await ledger.record_change(change(CERT, seq=2), KINDS)
    await ledger.record_change(change(award(of=MICRO), seq=3), KINDS)

    marked = await ledger.record_change(change(_program(MICRO, CERT), seq=4), KINDS)

    subjects = {(t, r.kind.value, r.subject) for t, r in marked}
    assert (REGISTRY, "credential", "MC-SQL") in subjects
    assert (REGISTRY, "credential", "CERT-DATA") in subjects
    assert (CLR, "learner-record", LEARNER) in subjects


async def test_a_changed_member_dirties_the_other_members_of_its_programs(
    ledger: Ledger,
) -> None:
    await ledger.record_change(change(MICRO, seq=1), KINDS)
    await ledger.record_change(change(_program(MICRO, CERT), seq=2), KINDS)

    marked = await ledger.record_change(change(CERT, seq=3), KINDS)

    subjects = {(t, r.subject) for t, r in marked if r.kind is DocumentKind.CREDENTIAL}
    assert subjects == {(REGISTRY, "CERT-DATA"), (REGISTRY, "MC-SQL")}


async def test_program_links_are_derived_from_the_catalog(ledger: Ledger) -> None:
    await ledger.record_change(change(MICRO, seq=1), KINDS)
    await ledger.record_change(change(CERT, seq=2), KINDS)
    await ledger.record_change(change(_program(MICRO, CERT), seq=3), KINDS)

    whole = await linked_definition(TENANT, CERT, ledger.catalog)
    part = await linked_definition(TENANT, MICRO, ledger.catalog)

    assert [r.ctid for r in whole.has_part] == [MICRO.ctid]
    assert [r.ctid for r in part.is_part_of] == [CERT.ctid]
    assert whole.is_part_of == ()


async def test_a_session_cancelled_while_it_begins_leaves_no_transaction_open(
    ledger: Ledger,
) -> None:
    # A delivery ends and its lease renewal is cancelled just as the renewal's transaction
    # begins: the next transaction must still start (SQLite once kept failing every one
    # after, "cannot start a transaction within a transaction").
    await ledger.record_change(change(award(), seq=1), KINDS)
    [lease] = await ledger.lease_documents([CLR], limit=1, ttl_ms=TTL)
    for _ in range(20):
        renewal = asyncio.ensure_future(ledger.renew_lease(lease, TTL))
        await asyncio.sleep(0)
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        assert await ledger.renew_lease(lease, TTL)
    settled = await ledger.settle_document(lease, DeliveryResult(Settlement.DELIVERED), SCHEDULE)
    assert settled is not None
