"""Publish as a projection of state: target documents, what dirties them, their life cycle.

Publish does not relay messages. Each :class:`~cayg_shared.schema.Change` is applied to the
catalog (the newest state of every entity), and in the same ledger transaction every
*document* the change affects is marked dirty. A projector then renders each dirty document
from the catalog as it is *now* and delivers it; ten changes to one learner become one
signed record.

A document is one thing a target holds:

* ``credential`` — a definition's CTDL resource (and its transfer values) at a registry;
* ``organization`` — the tenant's own organization at a registry;
* ``learner-record`` — a learner's ``ClrCredential`` at a CLR 2.0 host;
* ``award-credential`` — one award's ``AchievementCredential`` at an OB 3.0 host;
* ``status-list`` — a status list of a tenant's issuer, signed and kept for serving.

A document's life (:class:`DocumentState`)::

    dirty ──deliver──► clean
      │   ──inputs missing──► waiting ──(an input arrives: dirty again)
      │   ──retryable failure──► failing ──(next attempt time)──► dirty…
      └── ──permanent refusal──► rejected ──(the data changes, or reconcile)──► dirty

Every dirtying increments ``dirty_seq``; a delivery remembers the sequence it rendered
(``done_seq``), so a change that lands while a delivery is in flight leaves the document
dirty for one more round. Pure code: the standard library and ``cayg_shared`` only.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

from cayg_publish.domain.catalog import CatalogRow, CatalogStatus, learner_key
from cayg_shared.schema import (
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    EntityType,
    Organization,
    OrganizationRef,
    Program,
    stacking_links,
)

#: A time far enough away to mean "not until something changes".
NEVER: Final = 253_402_300_799_000  # 9999-12-31T23:59:59Z in epoch milliseconds


class DocumentKind(StrEnum):
    """What a document is; each target serves some kinds."""

    CREDENTIAL = "credential"
    ORGANIZATION = "organization"
    LEARNER_RECORD = "learner-record"
    AWARD_CREDENTIAL = "award-credential"
    #: A tenant issuer's ``BitstringStatusListCredential`` (subject: the list id), kept in
    #: the ledger and served by publish (:mod:`cayg_publish.domain.status`).
    STATUS_LIST = "status-list"


class DocumentState(StrEnum):
    """Where a document stands at one target."""

    #: Must be (re)rendered and delivered.
    DIRTY = "dirty"
    #: The target holds the document as the catalog says it should be.
    CLEAN = "clean"
    #: Inputs are missing (``waiting_for`` names one); an arriving input makes it dirty.
    WAITING = "waiting"
    #: The last delivery failed in a way worth retrying; ``next_attempt_ms`` says when.
    FAILING = "failing"
    #: The target refused the document for good; dirty again when its data changes.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, order=True)
class DocumentRef:
    """One document of one tenant: its kind and the subject it is about.

    The subject is the definition's or organization's SIS id, the learner key
    (:func:`~cayg_publish.domain.learner_key`) or the award's entity key.
    """

    tenant: str
    kind: DocumentKind
    subject: str

    @property
    def key(self) -> str:
        """The document's key in the ledger (unique per target)."""
        return f"{self.kind.value}|{self.tenant}|{self.subject}"

    @staticmethod
    def parse(key: str) -> DocumentRef:
        """The reference a :attr:`key` was made from."""
        kind, tenant, subject = key.split("|", 2)
        return DocumentRef(tenant=tenant, kind=DocumentKind(kind), subject=subject)


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """What the ledger knows about one document at one target."""

    target: str
    ref: DocumentRef
    #: Incremented each time the document is made dirty.
    dirty_seq: int
    #: The ``dirty_seq`` the last settled delivery had rendered.
    done_seq: int
    state: DocumentState
    #: For WAITING: the missing input (e.g. ``learner-identity:<person>``).
    waiting_for: str | None
    #: Epoch milliseconds of the earliest next attempt (:data:`NEVER`: none planned).
    next_attempt_ms: int
    #: Failed attempts since the last success.
    attempts: int
    last_error: str | None
    #: The lease of the instance delivering it now (token) and until when it holds.
    lease_token: str | None
    lease_expires_ms: int | None
    #: Epoch milliseconds of the last change to this row.
    updated_ms: int

    @property
    def due(self) -> bool:
        """True when a delivery is owed (dirty, or failing and retried later)."""
        return self.dirty_seq > self.done_seq or self.state is DocumentState.FAILING


def reason_of(row: DocumentRow) -> str | None:
    """The short reason code of a waiting, failing or rejected document."""
    text = row.waiting_for if row.state is DocumentState.WAITING else row.last_error
    if row.state in (DocumentState.CLEAN, DocumentState.DIRTY) or not text:
        return None
    return text.split(":", 1)[0][:80]


@dataclass(frozen=True, slots=True)
class Lease:
    """A document one instance may deliver now: renders the catalog as of ``seq``."""

    target: str
    ref: DocumentRef
    token: str
    #: The ``dirty_seq`` when the lease was taken.
    seq: int
    attempts: int
    expires_ms: int


class Settlement(StrEnum):
    """How one delivery of a document ended."""

    DELIVERED = "delivered"
    WAITING = "waiting"
    FAILING = "failing"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What the projector reports to the ledger for a lease."""

    settlement: Settlement
    #: WAITING: the missing input; FAILING / REJECTED: the error (target's message).
    detail: str | None = None
    #: FAILING: the earliest next attempt the target asked for (``Retry-After``).
    retry_after_ms: int | None = None


def dirty_transition(
    current: DocumentRow | None, *, target: str, ref: DocumentRef, now_ms: int
) -> DocumentRow:
    """The row after its document was affected by a change (or a reconcile)."""
    if current is None:
        return DocumentRow(
            target=target,
            ref=ref,
            dirty_seq=1,
            done_seq=0,
            state=DocumentState.DIRTY,
            waiting_for=None,
            next_attempt_ms=now_ms,
            attempts=0,
            last_error=None,
            lease_token=None,
            lease_expires_ms=None,
            updated_ms=now_ms,
        )
    # A failing document keeps its back-off (the target is what fails, not the data);
    # any other state is due at once.
    next_attempt = current.next_attempt_ms if current.state is DocumentState.FAILING else now_ms
    return replace(
        current,
        dirty_seq=current.dirty_seq + 1,
        state=DocumentState.FAILING
        if current.state is DocumentState.FAILING
        else DocumentState.DIRTY,
        waiting_for=None,
        next_attempt_ms=next_attempt,
        updated_ms=now_ms,
    )


def leasable(row: DocumentRow, now_ms: int) -> bool:
    """Whether an instance may take ``row`` now."""
    if not row.due or row.next_attempt_ms > now_ms:
        return False
    return row.lease_expires_ms is None or row.lease_expires_ms <= now_ms


def lease_transition(
    row: DocumentRow, *, token: str, now_ms: int, ttl_ms: int
) -> tuple[Lease, DocumentRow]:
    """Take the lease of a leasable row."""
    expires = now_ms + ttl_ms
    lease = Lease(
        target=row.target,
        ref=row.ref,
        token=token,
        seq=row.dirty_seq,
        attempts=row.attempts,
        expires_ms=expires,
    )
    return lease, replace(row, lease_token=token, lease_expires_ms=expires, updated_ms=now_ms)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When a failing document is tried again: exponential, capped, jittered.

    A document keeps failing at ``max_interval`` for as long as it fails: nothing the SIS
    said ever drops out of the pipeline on a timer.
    """

    first_interval: timedelta = timedelta(seconds=5)
    max_interval: timedelta = timedelta(minutes=10)
    #: Up to this fraction of the interval is added at random, so retries spread out.
    jitter: float = 0.2

    def delay_ms(self, attempts: int, random: Callable[[], float] = _random.random) -> int:
        """Milliseconds before attempt ``attempts + 1`` (``attempts`` ≥ 1 failures so far)."""
        base = self.first_interval.total_seconds() * (2 ** max(0, attempts - 1))
        capped = min(base, self.max_interval.total_seconds())
        return int(capped * (1.0 + self.jitter * random()) * 1000)


def settle_transition(
    row: DocumentRow,
    lease: Lease,
    result: DeliveryResult,
    *,
    now_ms: int,
    schedule: RetrySchedule,
    random: Callable[[], float] = _random.random,
) -> DocumentRow | None:
    """The row after a delivery under ``lease`` ended (None: the lease was lost, ignore).

    A document dirtied again while its delivery was in flight stays dirty (due at once):
    the delivery rendered an older state.
    """
    if row.lease_token != lease.token:
        return None
    changed_since = row.dirty_seq > lease.seq
    base = replace(row, lease_token=None, lease_expires_ms=None, updated_ms=now_ms)
    settlement = result.settlement
    if settlement is Settlement.DELIVERED:
        return replace(
            base,
            done_seq=max(row.done_seq, lease.seq),
            state=DocumentState.DIRTY if changed_since else DocumentState.CLEAN,
            waiting_for=None,
            next_attempt_ms=now_ms if changed_since else NEVER,
            attempts=0,
            last_error=None,
        )
    if settlement is Settlement.WAITING:
        return replace(
            base,
            done_seq=max(row.done_seq, lease.seq),
            state=DocumentState.DIRTY if changed_since else DocumentState.WAITING,
            waiting_for=result.detail,
            next_attempt_ms=now_ms if changed_since else NEVER,
            attempts=0,
            last_error=None,
        )
    attempts = row.attempts + 1
    if settlement is Settlement.REJECTED:
        return replace(
            base,
            done_seq=max(row.done_seq, lease.seq),
            state=DocumentState.DIRTY if changed_since else DocumentState.REJECTED,
            waiting_for=None,
            next_attempt_ms=now_ms if changed_since else NEVER,
            attempts=attempts,
            last_error=(result.detail or "rejected")[:2000],
        )
    delay = schedule.delay_ms(attempts, random)
    if result.retry_after_ms is not None:
        delay = max(delay, result.retry_after_ms - now_ms)
    return replace(
        base,
        state=DocumentState.FAILING,
        waiting_for=None,
        next_attempt_ms=now_ms + delay,
        attempts=attempts,
        last_error=(result.detail or "failed")[:2000],
    )


# --------------------------------------------------------------------------------------
# Which documents a change affects


def award_definition_keys(award: CredentialAward) -> tuple[str | None, str | None]:
    """The definition an award names, as (CTID, SIS id): the catalog indexes both."""
    return award.definition.ctid, award.definition.source_id


def documents_of_rows(rows: Iterable[CatalogRow]) -> set[DocumentRef]:
    """Every document the catalog rows take part in, directly.

    Definitions → their registry resource; organizations → their registry resource;
    awards → the learner's record and the award's own credential; learner identities →
    the learner's record.
    """
    refs: set[DocumentRef] = set()
    for row in rows:
        tenant = row.tenant
        if row.entity_type is EntityType.CREDENTIAL_DEFINITION:
            refs.add(DocumentRef(tenant, DocumentKind.CREDENTIAL, row.source_id))
        elif row.entity_type is EntityType.ORGANIZATION:
            refs.add(DocumentRef(tenant, DocumentKind.ORGANIZATION, row.source_id))
        elif row.entity_type is EntityType.CREDENTIAL_AWARD:
            refs.add(DocumentRef(tenant, DocumentKind.AWARD_CREDENTIAL, award_subject(row)))
            learner = row.learner_key
            if learner is None and isinstance(row.entity, CredentialAward):
                learner = learner_key(row.entity.learner)
            if learner is not None:
                refs.add(DocumentRef(tenant, DocumentKind.LEARNER_RECORD, learner))
        elif row.entity_type is EntityType.LEARNER_IDENTITY:
            refs.add(DocumentRef(tenant, DocumentKind.LEARNER_RECORD, f"person:{row.source_id}"))
    return refs


def award_subject(row: CatalogRow) -> str:
    """The document subject of an award: its SIS record id and part, split by a line break
    (which neither may contain, so the subject parses back unambiguously)."""
    return f"{row.source_id}\n{row.part}"


def parse_award_subject(subject: str) -> tuple[str, str]:
    """(source id, part) of an :func:`award_subject`."""
    source_id, _, part = subject.partition("\n")
    return source_id, part


class Waiting(Exception):
    """A document cannot be rendered yet: an input it needs has not arrived.

    ``missing`` is ``<reason>: <key>`` (e.g. ``learner-unknown: person:123``); the document
    waits, visibly, until a change to that input makes it dirty again.
    """

    def __init__(self, reason: str, key: str) -> None:
        super().__init__(f"{reason}: {key}")
        self.reason = reason
        self.key = key

    @property
    def missing(self) -> str:
        """``<reason>: <key>``."""
        return f"{self.reason}: {self.key}"


class ProgramLookup(Protocol):
    """What deriving stacking links needs from the catalog."""

    async def programs(self, tenant: str) -> list[CatalogRow]:
        """The tenant's program rows."""
        ...

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        """A definition row by CTID, else by SIS id."""
        ...


class DependencyLookup(ProgramLookup, Protocol):
    """Indexed catalog lookups the adapter answers inside the recording transaction."""

    async def awards_naming(
        self, tenant: str, ctid: str | None, source: str | None
    ) -> list[CatalogRow]:
        """Award rows naming a definition by CTID or SIS id."""
        ...

    async def award_history(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Award rows of a learner, whatever their status."""
        ...

    async def definitions(self, tenant: str) -> list[CatalogRow]:
        """Current definition rows of the tenant."""
        ...


def _lists(program: Program, definition: CredentialDefinition) -> bool:
    return any(
        ref.ctid == definition.ctid
        or (ref.source_id is not None and ref.source_id == definition.source_id)
        for ref in program.credentials
    )


async def affected_rows(
    written: Sequence[CatalogRow], lookup: DependencyLookup
) -> list[CatalogRow]:
    """The catalog rows whose documents a change affects: the rows it wrote, and

    * for a definition: the awards naming it (their learners' records hold it), and the
      other definitions of every program listing it (stacking links are derived from
      programs: a new or changed member changes the others' ``hasPart``/``isPartOf``);
    * for a program: every definition it lists and the awards naming them;
    * for a learner's identity: that learner's awards.
    """
    rows: list[CatalogRow] = list(written)
    for row in written:
        entity = row.entity
        tenant = row.tenant
        if row.entity_type is EntityType.CREDENTIAL_DEFINITION:
            ctid = entity.ctid if isinstance(entity, CredentialDefinition) else row.ctid
            rows.extend(await lookup.awards_naming(tenant, ctid, row.source_id))
            if isinstance(entity, CredentialDefinition):
                for program_row in await lookup.programs(tenant):
                    program = program_row.entity
                    if isinstance(program, Program) and _lists(program, entity):
                        rows.extend(await _members(tenant, program, lookup, holders=False))
        elif row.entity_type is EntityType.PROGRAM and isinstance(entity, Program):
            rows.extend(await _members(tenant, entity, lookup, holders=True))
        elif row.entity_type is EntityType.LEARNER_IDENTITY:
            rows.extend(await lookup.award_history(tenant, f"person:{row.source_id}"))
        elif row.entity_type is EntityType.ORGANIZATION:
            # Definitions naming it by SIS id render it inline from this record (or wait
            # for it): a new or changed organization changes them.
            rows.extend(
                d
                for d in await lookup.definitions(tenant)
                if isinstance(d.entity, CredentialDefinition)
                and row.source_id in _organization_sources(d.entity)
            )
    return rows


def organization_refs(definition: CredentialDefinition) -> Iterator[OrganizationRef]:
    """Every organization a definition names (owners, offerers, partners, approvers,
    accreditors and the organizations accepting its transfer values)."""
    yield from definition.owned_by
    yield from definition.offered_by
    yield from definition.partner_organizations
    yield from definition.approved_by
    yield from definition.accredited_by
    for value in definition.transfer_values:
        yield value.accepted_by


def _organization_sources(definition: CredentialDefinition) -> set[str]:
    return {r.source_id for r in organization_refs(definition) if r.source_id is not None}


class OrganizationLookup(Protocol):
    """What resolving organization references needs from the catalog."""

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> CatalogRow | None:
        """The catalog row of one entity, whatever its status."""
        ...


async def resolved_organizations(
    tenant: str, definition: CredentialDefinition, catalog: OrganizationLookup, *, wait: bool
) -> CredentialDefinition:
    """``definition`` with no reference to a CTID that exists nowhere.

    A reference whose CTID was derived from an SIS id (``source_id`` set: neither the
    tenant's institution nor an imported CTID) points at nothing the registry holds, since
    only the tenant's own organization is published under its account. It becomes an
    inline description (name, webpage) from the organization record the SIS sent, else
    from the reference itself. With neither, the definition is :class:`Waiting` for that
    record (``wait``), or the reference is left out (a retired definition, which must not
    wait).
    """
    resolved: dict[str, OrganizationRef | None] = {}
    for source in sorted(_organization_sources(definition)):
        row = await catalog.row(tenant, EntityType.ORGANIZATION, source)
        entity = None if row is None or row.status is not CatalogStatus.CURRENT else row.entity
        if isinstance(entity, Organization):
            resolved[source] = (
                OrganizationRef(ctid=entity.ctid)
                if entity.ctid_imported
                else OrganizationRef(name=entity.name, webpage=entity.webpage)
            )
    missing: list[str] = []

    def one(ref: OrganizationRef) -> OrganizationRef | None:
        if ref.source_id is None:
            return ref
        if ref.source_id in resolved:
            return resolved[ref.source_id]
        if ref.name is not None and ref.webpage is not None:
            return OrganizationRef(name=ref.name, webpage=ref.webpage)
        missing.append(ref.source_id)
        return None

    def many(refs: Sequence[OrganizationRef]) -> tuple[OrganizationRef, ...]:
        return tuple(r for r in map(one, refs) if r is not None)

    if not resolved and not any(r.source_id for r in organization_refs(definition)):
        return definition
    owners = many(definition.owned_by)
    values = []
    for value in definition.transfer_values:
        accepted = one(value.accepted_by)
        if accepted is not None:
            values.append(value.model_copy(update={"accepted_by": accepted}))
    update = {
        "owned_by": owners or definition.owned_by,
        "offered_by": many(definition.offered_by),
        "partner_organizations": many(definition.partner_organizations),
        "approved_by": many(definition.approved_by),
        "accredited_by": many(definition.accredited_by),
        "transfer_values": tuple(values),
    }
    if missing and wait:
        raise Waiting("organization-unknown", f"organization:{sorted(missing)[0]}")
    return definition.model_copy(update=update)


async def _members(
    tenant: str, program: Program, lookup: DependencyLookup, *, holders: bool
) -> list[CatalogRow]:
    found: list[CatalogRow] = []
    for ref in program.credentials:
        member = await lookup.definition_named(tenant, ref)
        if member is None:
            continue
        found.append(member)
        if holders:
            found.extend(await lookup.awards_naming(tenant, member.ctid, member.source_id))
    return found


def with_program_links(
    definition: CredentialDefinition,
    programs: Sequence[Program],
    members: Mapping[str, CredentialDefinition],
) -> CredentialDefinition:
    """``definition`` with the stacking links its programs imply added to its own.

    ``members`` holds every definition the programs list that the catalog knows, keyed by
    the CTID each program names (a CTID imported by SIS code resolves to the definition's
    own). Links are :func:`~cayg_shared.schema.stacking_links`; declared links are kept.
    """
    has_part = list(definition.has_part)
    is_part_of = list(definition.is_part_of)
    for program in programs:
        if not _lists(program, definition):
            continue
        by_ref = {ref.ctid: members[ref.ctid] for ref in program.credentials if ref.ctid in members}
        for link in stacking_links(program, by_ref):
            if link.whole.ctid == definition.ctid and all(
                r.ctid != link.part.ctid for r in has_part
            ):
                has_part.append(link.part)
            if link.part.ctid == definition.ctid and all(
                r.ctid != link.whole.ctid for r in is_part_of
            ):
                is_part_of.append(link.whole)
    if len(has_part) == len(definition.has_part) and len(is_part_of) == len(definition.is_part_of):
        return definition
    return definition.model_copy(
        update={"has_part": tuple(has_part), "is_part_of": tuple(is_part_of)}
    )


def route(
    refs: Iterable[DocumentRef], kinds_by_target: Mapping[str, frozenset[DocumentKind]]
) -> list[tuple[str, DocumentRef]]:
    """(target, document) pairs: each document at every target that serves its kind."""
    return [
        (target, ref)
        for ref in sorted(refs)
        for target, kinds in sorted(kinds_by_target.items())
        if ref.kind in kinds
    ]


def is_current(row: CatalogRow) -> bool:
    """Whether a catalog row is a live entity."""
    return row.status is CatalogStatus.CURRENT


def ms(moment: datetime) -> int:
    """Epoch milliseconds of a timezone-aware time."""
    return int(moment.timestamp() * 1000)


async def linked_definition(
    tenant: str, definition: CredentialDefinition, catalog: ProgramLookup
) -> CredentialDefinition:
    """``definition`` with the stacking links of the tenant's programs (see
    :func:`with_program_links`), read from the catalog."""
    programs = [
        row.entity
        for row in await catalog.programs(tenant)
        if isinstance(row.entity, Program) and _lists(row.entity, definition)
    ]
    if not programs:
        return definition
    members: dict[str, CredentialDefinition] = {}
    for program in programs:
        for ref in program.credentials:
            row = await catalog.definition_named(tenant, ref)
            if row is not None and isinstance(row.entity, CredentialDefinition):
                members[ref.ctid] = row.entity
    return with_program_links(definition, programs, members)
