"""Publish's domain: versions, ledger state and its transitions, the target port, outcomes.

Pure code: the standard library and ``cayg_shared`` only. Storage adapters and the delivery
use-case build on the transitions here, so the rules "same content → no call" and "an older
version never overwrites a newer one" live in exactly one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, runtime_checkable

from cayg_publish.domain.retry import Failure
from cayg_shared.schema import (
    Change,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    Entity,
    EntityKey,
    EntityType,
    LearnerIdentity,
    LearnerRef,
    Organization,
    SourceVersion,
)
from cayg_shared.schema import Operation as ChangeOperation

if TYPE_CHECKING:
    from cayg_publish.domain.projection import DocumentKind, DocumentRef

#: How new a change is: the shared schema's :class:`~cayg_shared.schema.SourceVersion`
#: (``stream``, ``sequence``, ``time``).
Version: TypeAlias = SourceVersion


def compare_versions(left: Version, right: Version) -> int:
    """-1, 0 or 1 as ``left`` is older than, not distinguishable from, or newer than ``right``.

    The only place publish orders versions, and it defers to the schema's own rule
    (:meth:`SourceVersion.compare`: sequences within one stream, else source times), so
    normalize and publish can never disagree. Storage adapters keep versions as columns
    and never compare them in SQL. 0 means "the same version" to the ledger: skipped when
    the content is unchanged, applied when it differs.
    """
    return left.compare(right)


class Outcome(StrEnum):
    """The last thing that happened to one entity at one target."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    FAILED_RETRYABLE = "failed-retryable"
    FAILED_PERMANENT = "failed-permanent"


class DecisionKind(StrEnum):
    """What to do with a change for one target, given what the ledger knows."""

    #: Call the target; the ledger now holds a claim on the entity for this version.
    APPLY = "apply"
    #: The target already holds this content: no call.
    SKIP_UNCHANGED = "skip-unchanged"
    #: The target already holds a newer version: no call.
    SKIP_STALE = "skip-stale"
    #: Another delivery of a different version of this entity is in flight: try later.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger knows about one entity at one target."""

    target: str
    entity_key: str
    #: The version and content hash the target is known to hold (None: nothing yet).
    applied_version: Version | None
    applied_hash: str | None
    #: The target's id and URL of the entity (CTID, credential id, envelope URL…).
    remote_id: str | None
    remote_url: str | None
    #: The version and hash of the latest delivery attempt or decision, and its outcome.
    last_version: Version | None
    last_hash: str | None
    last_outcome: Outcome | None
    #: Failed attempts at ``last_version`` since the last success.
    attempts: int
    last_error: str | None
    #: An in-flight delivery: the version and hash being sent, until when the claim holds.
    claim_version: Version | None
    claim_hash: str | None
    claim_expires_at: datetime | None
    updated_at: datetime

    @staticmethod
    def empty(target: str, entity_key: str, now: datetime) -> LedgerEntry:
        """A row for an entity the ledger has never seen."""
        return LedgerEntry(
            target=target,
            entity_key=entity_key,
            applied_version=None,
            applied_hash=None,
            remote_id=None,
            remote_url=None,
            last_version=None,
            last_hash=None,
            last_outcome=None,
            attempts=0,
            last_error=None,
            claim_version=None,
            claim_hash=None,
            claim_expires_at=None,
            updated_at=now,
        )

    def claim_held_by_other(self, version: Version, content_hash: str, now: datetime) -> bool:
        """Whether an unexpired claim exists for a different version or content."""
        if self.claim_version is None or self.claim_expires_at is None:
            return False
        if self.claim_expires_at <= now:
            return False
        return (self.claim_version, self.claim_hash) != (version, content_hash)

    def _without_claim_for(self, version: Version, content_hash: str) -> LedgerEntry:
        if (self.claim_version, self.claim_hash) == (version, content_hash):
            return replace(self, claim_version=None, claim_hash=None, claim_expires_at=None)
        return self


@dataclass(frozen=True, slots=True)
class Decision:
    """The ledger's answer to "should this change be sent to this target?"."""

    kind: DecisionKind
    entry: LedgerEntry
    #: For BUSY: when the competing claim expires (a sensible earliest retry time).
    not_before: datetime | None = None

    @property
    def should_apply(self) -> bool:
        """True when the target must be called."""
        return self.kind is DecisionKind.APPLY


def decide_transition(
    entry: LedgerEntry | None,
    *,
    target: str,
    entity_key: str,
    version: Version,
    content_hash: str,
    now: datetime,
    claim_ttl: timedelta,
) -> Decision:
    """Decide a delivery and compute the ledger row that records the decision.

    Skips are recorded at once (a ``SKIP_UNCHANGED`` for a newer version moves the applied
    version forward, because the target already holds that content); ``APPLY`` places a
    claim so that a concurrent delivery of a *different* version by another instance waits
    (``BUSY``) instead of racing it to the target. A claim for the same version and content
    never blocks: resending identical content is idempotent, and that is how a delivery
    that crashed after the call but before the ledger write is resumed.
    """
    current = entry if entry is not None else LedgerEntry.empty(target, entity_key, now)
    applied = current.applied_version
    if applied is not None and compare_versions(version, applied) < 0:
        stale = replace(
            current,
            last_version=version,
            last_hash=content_hash,
            last_outcome=Outcome.STALE,
            updated_at=now,
        )
        return Decision(DecisionKind.SKIP_STALE, stale)
    if current.claim_held_by_other(version, content_hash, now):
        # Checked before "unchanged": skipping now and moving the applied version past an
        # in-flight delivery would let that delivery's content stand under our version.
        return Decision(DecisionKind.BUSY, current, not_before=current.claim_expires_at)
    if applied is not None and current.applied_hash == content_hash:
        unchanged = replace(
            current._without_claim_for(version, content_hash),
            applied_version=version,
            last_version=version,
            last_hash=content_hash,
            last_outcome=Outcome.UNCHANGED,
            attempts=0,
            last_error=None,
            updated_at=now,
        )
        return Decision(DecisionKind.SKIP_UNCHANGED, unchanged)
    claimed = replace(
        current,
        claim_version=version,
        claim_hash=content_hash,
        claim_expires_at=now + claim_ttl,
        updated_at=now,
    )
    return Decision(DecisionKind.APPLY, claimed)


def success_transition(
    entry: LedgerEntry | None,
    *,
    target: str,
    entity_key: str,
    version: Version,
    content_hash: str,
    remote_id: str | None,
    remote_url: str | None,
    now: datetime,
    outcome: Outcome = Outcome.APPLIED,
) -> LedgerEntry:
    """The row after the target accepted ``version``.

    Never moves the applied version backwards: if the ledger already records a newer
    applied version (another instance won a race), that record stands and only this
    delivery's claim is released.
    """
    if outcome not in (Outcome.APPLIED, Outcome.UNCHANGED):
        raise ValueError(f"{outcome} is not a success")
    current = entry if entry is not None else LedgerEntry.empty(target, entity_key, now)
    released = current._without_claim_for(version, content_hash)
    applied = current.applied_version
    if applied is not None and compare_versions(version, applied) < 0:
        return replace(released, updated_at=now)
    return replace(
        released,
        applied_version=version,
        applied_hash=content_hash,
        remote_id=remote_id if remote_id is not None else current.remote_id,
        remote_url=remote_url if remote_url is not None else current.remote_url,
        last_version=version,
        last_hash=content_hash,
        last_outcome=outcome,
        attempts=0,
        last_error=None,
        updated_at=now,
    )


def failure_transition(
    entry: LedgerEntry | None,
    *,
    target: str,
    entity_key: str,
    version: Version,
    content_hash: str,
    outcome: Outcome,
    error: str,
    now: datetime,
    attempts: int = 1,
) -> LedgerEntry:
    """The row after ``attempts`` more failed attempts to deliver ``version``.

    The applied version is untouched (the target still holds what it held). A failure of a
    version older than the applied one is not recorded as the last outcome, so that an old
    straggler cannot make a healthy entity look failed.
    """
    if outcome not in (Outcome.FAILED_RETRYABLE, Outcome.FAILED_PERMANENT):
        raise ValueError(f"{outcome} is not a failure")
    current = entry if entry is not None else LedgerEntry.empty(target, entity_key, now)
    released = current._without_claim_for(version, content_hash)
    applied = current.applied_version
    if applied is not None and compare_versions(version, applied) < 0:
        return replace(released, updated_at=now)
    same_attempt = (current.last_version, current.last_hash) == (version, content_hash) and (
        current.last_outcome in (Outcome.FAILED_RETRYABLE, Outcome.FAILED_PERMANENT)
    )
    return replace(
        released,
        last_version=version,
        last_hash=content_hash,
        last_outcome=outcome,
        attempts=(current.attempts if same_attempt else 0) + attempts,
        last_error=error[:2000],
        updated_at=now,
    )


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Counts for the operator status: entities per target and last outcome."""

    #: ``{target: {outcome or "in-flight": count}}``
    by_target: Mapping[str, Mapping[str, int]]

    @property
    def total(self) -> int:
        """Entities across all targets."""
        return sum(sum(counts.values()) for counts in self.by_target.values())

    def count(self, outcome: Outcome | str) -> int:
        """Entities whose last outcome is ``outcome``, across targets."""
        return sum(counts.get(str(outcome), 0) for counts in self.by_target.values())


#: The key used in :class:`LedgerTotals` for rows with a claim but no outcome yet.
IN_FLIGHT: Final = "in-flight"


# --------------------------------------------------------------------------------------
# The target port


class Operation(StrEnum):
    """What a rendering asks the target to do."""

    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Rendering:
    """One request a change renders to for one target, before any signing.

    A change may render to several requests (a definition and each of its transfer
    values); all but the main one name a ``part``, and the ledger keeps each part as an
    entity of its own (:meth:`ledger_key`).

    ``content_hash`` covers ``action``, ``operation`` and ``body``: it is what the ledger
    compares, so it must not include anything that varies between renderings of the same
    content (proof timestamps, for instance: signing happens after the ledger decision).
    """

    #: The target-specific action, e.g. ``credential/publish`` or ``credentials``.
    action: str
    operation: Operation
    body: Mapping[str, Any]
    #: The stable id the target will know the entity by (CTID, credential id).
    remote_id: str | None
    content_hash: str
    #: None for the change's own entity; a stable name for a sub-entity.
    part: str | None = None
    #: When the request is about something other than the change's entity — a learner's
    #: whole CLR, which every award change of that learner re-renders — the ledger keys and
    #: versions it by that thing instead, so re-rendering the same record from another
    #: award's change is recognised as unchanged.
    subject: str | None = None
    subject_version: Version | None = None
    #: Send only to replace something the target already holds (a withdrawn learner
    #: record): when the ledger has never delivered this subject, nothing is sent.
    replaces_only: bool = False

    def ledger_key(self, entity_key: str) -> str:
        """The ledger's entity key of this request."""
        if self.subject is not None:
            return self.subject
        return entity_key if self.part is None else f"{entity_key}|{self.part}"


@dataclass(frozen=True, slots=True)
class Applied:
    """The target accepted a rendering."""

    remote_id: str | None = None
    remote_url: str | None = None
    #: Whether the target says the stored content changed (None: it does not say).
    changed: bool | None = None
    #: HTTP status of the successful response.
    status: int | None = None
    #: Warnings or notes the target returned with a success.
    messages: tuple[str, ...] = ()


class TargetFailure(Exception):
    """A target call failed; ``failure`` says whether and when to retry."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.reason}: {failure.detail}")
        self.failure = failure


@dataclass(frozen=True, slots=True)
class TargetLimits:
    """Per-target protection: concurrent calls, sustained rate and burst."""

    max_concurrency: int = 8
    #: Calls per second on average; ``None`` disables rate limiting.
    rate_per_second: float | None = 100.0
    burst: int = 100

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


class DocumentRenderer(Protocol):
    """Renders one target family's documents from the catalog (registry, CLR/OB)."""

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """The kinds of document it renders."""
        ...

    async def document(self, ref: DocumentRef) -> tuple[Rendering, ...]:
        """The requests that bring ``ref`` up to date (empty: nothing to send)."""
        ...


#: Compares what a target holds for one rendering (at the remote URL the ledger recorded)
#: with the rendering: None when they agree, else what differs.
ReadBack = Callable[["Rendering", str | None], Awaitable[str | None]]


@runtime_checkable
class Target(Protocol):
    """Somewhere publish delivers documents to: a registry or a CLR/OB host.

    ``render_document`` reads the catalog and must not change anything remotely; ``apply``
    performs the remote call, including any signing, and raises :class:`TargetFailure`.
    """

    @property
    def name(self) -> str:
        """A stable name, unique per deployment; the ledger keys entries by it."""
        ...

    @property
    def limits(self) -> TargetLimits:
        """Concurrency and rate limits to hold this target to."""
        ...

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """The kinds of document this target holds."""
        ...

    async def render_document(self, ref: DocumentRef) -> Sequence[Rendering]:
        """The requests that bring the target's copy of ``ref`` up to the catalog's current
        state, in the order to send them; empty when there is nothing to send.

        Raises :class:`~cayg_publish.domain.projection.Waiting` when an input is missing, and
        :class:`TargetFailure` (or ``ValueError``) when the data cannot be rendered.
        """
        ...

    async def apply(self, rendering: Rendering, idempotency_key: str) -> Applied:
        """Send ``rendering`` to the target, carrying ``idempotency_key``."""
        ...


# --------------------------------------------------------------------------------------
# The catalog: reference data the renderers need


class CatalogStatus(StrEnum):
    """The state of an entity as the catalog last heard of it."""

    CURRENT = "current"
    DELETED = "deleted"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One entity snapshot: the newest state publish has seen of it."""

    tenant: str
    entity_type: EntityType
    source_id: str
    #: The member of a multi-entity record ("" for none).
    part: str
    version: Version
    status: CatalogStatus
    #: The entity (None only for a delete or revoke of something never seen).
    entity: Entity | None
    #: For definitions and organizations: their CTID (lookups by CTID).
    ctid: str | None = None
    #: For awards: whom they were awarded to (see :func:`learner_key`).
    learner_key: str | None = None


def learner_key(learner: LearnerRef) -> str:
    """A stable, non-identifying key grouping one learner's awards.

    The SIS person reference when there is one (an opaque id), else a sha256 of the
    inline identifier, so that no raw identifier is ever a database key.
    """
    if learner.person_ref is not None:
        return f"person:{learner.person_ref}"
    secret = learner.institution_id or learner.email
    assert secret is not None  # LearnerRef guarantees one of the three
    digest = hashlib.sha256(secret.get_secret_value().encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def catalog_rows(change: Change) -> tuple[CatalogRow, ...]:
    """The catalog rows an upsert or delete writes (record-level revokes: see below).

    A revoke of one award (``entity_key.part`` set, or the revoked award carried along)
    gives that award's row with status REVOKED; a record-level revoke without an award
    gives no rows here — the adapter revokes the stored parts of the record except
    ``retain_parts`` (:func:`revoke_transition`).
    """
    key = change.entity_key
    entity = change.entity
    if change.operation is ChangeOperation.REVOKE and entity is None and key.part is None:
        return ()
    status = {
        ChangeOperation.UPSERT: CatalogStatus.CURRENT,
        ChangeOperation.DELETE: CatalogStatus.DELETED,
        ChangeOperation.REVOKE: CatalogStatus.REVOKED,
    }[change.operation]
    ctid = entity.ctid if isinstance(entity, CredentialDefinition | Organization) else None
    learner = learner_key(entity.learner) if isinstance(entity, CredentialAward) else None
    return (
        CatalogRow(
            tenant=change.tenant,
            entity_type=key.entity_type,
            source_id=key.source_id,
            part=key.part or "",
            version=change.source_version,
            status=status,
            entity=entity,
            ctid=ctid,
            learner_key=learner,
        ),
    )


def catalog_transition(existing: CatalogRow | None, incoming: CatalogRow) -> CatalogRow | None:
    """The row to store, or None to keep ``existing`` (it is newer).

    A delete or a revoke without the entity keeps the last known entity (and its CTID and
    learner), so a deleted definition can still be republished as deprecated.
    """
    if existing is not None and compare_versions(incoming.version, existing.version) < 0:
        return None
    if incoming.entity is None and existing is not None:
        return replace(
            incoming,
            entity=existing.entity,
            ctid=existing.ctid,
            learner_key=existing.learner_key,
        )
    return incoming


def revoke_transition(existing: CatalogRow, change: Change) -> CatalogRow | None:
    """A stored award part after a record-level revoke (None: untouched)."""
    retained = change.retain_parts or ()
    if existing.part in retained or existing.status is not CatalogStatus.CURRENT:
        return None
    if compare_versions(change.source_version, existing.version) < 0:
        return None
    return replace(existing, status=CatalogStatus.REVOKED, version=change.source_version)


@dataclass(frozen=True, slots=True)
class HeldAward:
    """A current award of a learner, with the entity key it was delivered under."""

    key: str
    award: CredentialAward

    @staticmethod
    def of(row: CatalogRow) -> HeldAward | None:
        """The held award of a catalog row (None if the row is not a stored award)."""
        if not isinstance(row.entity, CredentialAward):
            return None
        key = EntityKey(
            tenant=row.tenant,
            entity_type=row.entity_type,
            source_id=row.source_id,
            part=row.part or None,
        )
        return HeldAward(key=str(key), award=row.entity)


class Catalog(Protocol):
    """Reference data: the newest definitions, organizations, learner identities and
    awards publish has seen, so an award can be rendered with its definition and its
    learner's identifiers, and a deleted definition republished as deprecated."""

    async def remember(self, change: Change) -> None:
        """Record what ``change`` says (never replacing a newer snapshot)."""
        ...

    async def definition(self, tenant: str, ctid: str) -> CredentialDefinition | None:
        """The last known definition with ``ctid`` (also if since deleted)."""
        ...

    async def definition_row(self, tenant: str, ctid: str) -> CatalogRow | None:
        """The newest catalog row of the definition with ``ctid``."""
        ...

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> CatalogRow | None:
        """The catalog row of one entity, whatever its status (None: never heard of)."""
        ...

    async def award_rows_of(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Every award row of a learner: current, revoked and deleted."""
        ...

    async def programs(self, tenant: str) -> list[CatalogRow]:
        """The tenant's current programs (stacking is derived from them)."""
        ...

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        """A definition row by CTID, else by SIS id (an imported CTID)."""
        ...

    async def definition_by_source(
        self, tenant: str, source_id: str
    ) -> CredentialDefinition | None:
        """The last known definition with SIS id ``source_id`` (also if since deleted)."""
        ...

    async def learner(self, tenant: str, person_ref: str) -> LearnerIdentity | None:
        """The current identity of the learner with SIS person id ``person_ref``."""
        ...

    async def awards_of(self, tenant: str, learner: str) -> tuple[HeldAward, ...]:
        """The current (not revoked, not deleted) awards of the learner with key ``learner``."""
        ...

    async def last_award_change(self, tenant: str, learner: str) -> datetime | None:
        """The source time of the newest change to any award of the learner, revoked and
        deleted ones included (None if there is none): a learner's record rendered now must
        be newer than every record rendered before it, whatever order changes arrived in."""
        ...
