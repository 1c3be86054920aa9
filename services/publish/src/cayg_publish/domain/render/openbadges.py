"""Render awards as Open Badges 3.0 ``AchievementCredential``s and a learner's awards as a
CLR 2.0 ``ClrCredential`` (unsigned; :func:`sign_for_upload` signs them for a host).

Learners are identified only by salted sha256 hashes (OB ``IdentityObject`` with
``hashed: true``): ``identityHash = "sha256$" + hex(sha256(value + salt))``. Salts are
derived with HMAC-SHA256 from a per-tenant secret and the credential id, so a rendering is
deterministic (same content → same hash → the ledger can skip it) while the same learner
gets different hashes in different credentials.

Ids are stable: an award's credential id is a UUIDv5 of tenant and award key, a learner's
CLR id a UUIDv5 of tenant and learner key, so every upload replaces the previous one
(1EdTech: same ``issuer.id`` and ``id`` = the same credential).

Status: with a :class:`~cayg_publish.domain.status.StatusAllocator` in the options, every
credential carries a ``credentialStatus`` (``BitstringStatusListEntry``, purpose
``revocation``); rendering a credential that is no longer live marks its entry revoked, so
copies already exported read as revoked once the list is republished.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any, Final, Literal

from pydantic import SecretStr

from cayg_publish.domain.catalog import (
    Catalog,
    CatalogRow,
    CatalogStatus,
    Rendering,
)
from cayg_publish.domain.catalog import Operation as RenderOperation
from cayg_publish.domain.idempotency import content_hash
from cayg_publish.domain.projection import (
    DocumentKind,
    DocumentRef,
    Waiting,
    linked_definition,
    parse_award_subject,
)
from cayg_publish.domain.status import (
    StatusAllocator,
    StatusKind,
    StatusRequest,
    credential_status,
)
from cayg_shared.ids import derived_id
from cayg_shared.schema import (
    AwardStatus,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    EntityKey,
    EntityType,
    LearnerIdentity,
    LearnerRef,
    Result,
    SourceVersion,
)

VC_CONTEXT: Final = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT: Final = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CLR_CONTEXT: Final = "https://purl.imsglobal.org/spec/clr/v2p0/context-2.0.1.json"
#: Defines ``1EdTechJsonSchemaValidator2019`` (the ``credentialSchema`` type), which the
#: OB and CLR contexts do not: without it that value would not be covered by the proof.
EXTENSIONS_CONTEXT: Final = "https://purl.imsglobal.org/spec/ob/v3p0/extensions.json"
OB_SCHEMA: Final = (
    "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_achievementcredential_schema.json"
)
CLR_SCHEMA: Final = (
    "https://purl.imsglobal.org/spec/clr/v2p0/schema/json/clr_v2p0_clrcredential_schema.json"
)
SCHEMA_VALIDATOR: Final = "1EdTechJsonSchemaValidator2019"
UPSERT_CREDENTIAL: Final = "credentials"

JsonObject = dict[str, Any]


def image(url: str) -> JsonObject:
    """An OB ``Image`` (an https URL or a ``data:`` URI)."""
    return {"id": url, "type": "Image"}


@dataclass(frozen=True, slots=True)
class Issuer:
    """The issuing organization's OB ``Profile``."""

    id: str
    name: str
    url: str | None = None
    email: str | None = None
    #: A logo (https URL or ``data:`` URI) wallets show beside the institution's name.
    image: str | None = None

    def profile(self) -> JsonObject:
        """The ``Profile`` object."""
        profile: JsonObject = {"id": self.id, "type": ["Profile"], "name": self.name}
        if self.url:
            profile["url"] = self.url
        if self.email:
            profile["email"] = self.email
        if self.image:
            profile["image"] = image(self.image)
        return profile


@dataclass(frozen=True, slots=True)
class OpenBadgesOptions:
    """What the renderers need besides the data: who issues, how learners are hashed,
    which public ids and images achievements get, and where status entries come from."""

    issuer: Issuer
    #: Secret the per-credential salts are derived from. Never rendered.
    identity_salt: SecretStr
    #: ``Achievement.id`` = this + CTID when set, else a ``urn:uuid`` derived from the CTID.
    achievement_id_base: str | None = None
    #: ``Achievement.id`` from a pattern with ``{ctid}``, ``{code}`` or ``{source_id}``
    #: (e.g. the registry's resource URL); takes precedence over ``achievement_id_base``.
    achievement_id_pattern: str | None = None
    #: The image of every achievement without one of its own (https URL or data URI).
    achievement_image: str | None = None
    #: Images of single definitions, by SIS id, code or CTID.
    achievement_images: Mapping[str, str] | None = None
    #: Hands out ``credentialStatus`` entries; None: credentials carry no status.
    status: StatusAllocator | None = None
    #: The verification method that will sign (part of the content hash, so a rotated key
    #: re-signs what a reconcile re-renders).
    signer: str | None = None


@dataclass(frozen=True, slots=True)
class LearnerIdentifierValue:
    """One identifier of a learner, in the OB identity type vocabulary."""

    identity_type: str
    value: SecretStr


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _start_of(day: date) -> str:
    return _timestamp(datetime.combine(day, time(0, 0), tzinfo=UTC))


def _end_of(day: date) -> str:
    return _timestamp(datetime.combine(day, time(23, 59, 59), tzinfo=UTC))


def credential_id(tenant: str, award_key: str) -> str:
    """The stable id of an award's ``AchievementCredential``."""
    return f"urn:uuid:{derived_id('achievement-credential', tenant, award_key)}"


def clr_id(tenant: str, learner: str) -> str:
    """The stable id of a learner's ``ClrCredential``."""
    return f"urn:uuid:{derived_id('clr-credential', tenant, learner)}"


def achievement_id(definition: CredentialDefinition, options: OpenBadgesOptions) -> str:
    """The ``Achievement.id`` of a definition."""
    if options.achievement_id_pattern:
        # Plain substitution (no str.format): a definition's code cannot reach attributes.
        return (
            options.achievement_id_pattern.replace("{ctid}", definition.ctid)
            .replace("{code}", definition.code or definition.source_id)
            .replace("{source_id}", definition.source_id)
        )
    if options.achievement_id_base:
        return f"{options.achievement_id_base}{definition.ctid}"
    return f"urn:uuid:{derived_id('achievement', definition.ctid)}"


def learner_identifiers(
    learner: LearnerRef, identity: LearnerIdentity | None
) -> tuple[LearnerIdentifierValue, ...]:
    """Every identifier known for a learner: inline ones first, then the SIS identity's."""
    found: list[LearnerIdentifierValue] = []
    if learner.institution_id is not None:
        found.append(LearnerIdentifierValue("sisSourcedId", learner.institution_id))
    if learner.email is not None:
        found.append(LearnerIdentifierValue("emailAddress", learner.email))
    if identity is not None:
        found.extend(
            LearnerIdentifierValue("sisSourcedId", i.value) for i in identity.institution_ids
        )
        found.extend(LearnerIdentifierValue("emailAddress", e) for e in identity.emails)
    unique: dict[tuple[str, str], LearnerIdentifierValue] = {}
    for item in found:
        unique.setdefault((item.identity_type, item.value.get_secret_value()), item)
    return tuple(unique.values())


def hashed_identities(
    identifiers: Sequence[LearnerIdentifierValue], credential: str, secret: SecretStr
) -> list[JsonObject]:
    """OB ``IdentityObject``s with salted sha256 hashes; raw values never leave here."""
    objects: list[JsonObject] = []
    key = secret.get_secret_value().encode("utf-8")
    for index, item in enumerate(identifiers):
        material = f"{credential}\x1f{item.identity_type}\x1f{index}".encode()
        salt = hmac.new(key, material, hashlib.sha256).hexdigest()[:32]
        digest = hashlib.sha256((item.value.get_secret_value() + salt).encode("utf-8")).hexdigest()
        objects.append(
            {
                "type": "IdentityObject",
                "identityHash": f"sha256${digest}",
                "identityType": item.identity_type,
                "hashed": True,
                "salt": salt,
            }
        )
    return objects


def result_description_id(achievement: str, result: Result) -> str:
    """A stable id for the ``ResultDescription`` of one kind of result of an achievement."""
    kind = result.result_type.value
    return f"urn:uuid:{derived_id('result-description', achievement, result.name, kind)}"


def result_descriptions(achievement: str, results: Sequence[Result]) -> list[JsonObject]:
    """OB ``ResultDescription``s of the kinds of result given (one per name and type)."""
    seen: dict[str, JsonObject] = {}
    for result in results:
        identifier = result_description_id(achievement, result)
        seen.setdefault(
            identifier,
            {
                "id": identifier,
                "type": ["ResultDescription"],
                "name": result.name,
                "resultType": result.result_type.value,
            },
        )
    return [seen[k] for k in sorted(seen)]


def achievement_image(definition: CredentialDefinition, options: OpenBadgesOptions) -> str | None:
    """The image of a definition's achievement: its own (by SIS id, code or CTID), else
    the tenant's default."""
    images = options.achievement_images or {}
    for key in (definition.source_id, definition.code, definition.ctid):
        if key and key in images:
            return images[key]
    return options.achievement_image


def achievement(
    definition: CredentialDefinition,
    options: OpenBadgesOptions,
    results: Sequence[Result] = (),
) -> JsonObject:
    """The OB ``Achievement`` of a definition, describing the kinds of ``results`` its
    awards report (OB 3.0 ``resultDescription``; each ``Result`` links to one)."""
    criteria: JsonObject = (
        {"id": definition.webpage}
        if definition.webpage
        else {
            "narrative": f"Awarded by {options.issuer.name} to learners who complete "
            f"the requirements of {definition.name}."
        }
    )
    body: JsonObject = {
        "id": achievement_id(definition, options),
        "type": ["Achievement"],
        "achievementType": definition.achievement_type,
        "name": definition.name,
        "description": definition.description or definition.name,
        "criteria": criteria,
        "creator": options.issuer.profile(),
        "inLanguage": definition.language,
    }
    if definition.code:
        body["humanCode"] = definition.code
    picture = achievement_image(definition, options)
    if picture:
        body["image"] = image(picture)
    if definition.credit_value is not None and definition.credit_value.value is not None:
        body["creditsAvailable"] = definition.credit_value.value
    alignments = [
        {
            "type": ["Alignment"],
            "targetName": c.name,
            "targetUrl": c.url or f"https://credentialengineregistry.org/resources/{c.ctid}",
            "targetType": "ceasn:Competency",
            **({"targetDescription": c.description} if c.description else {}),
            **({"targetFramework": c.framework_name} if c.framework_name else {}),
            **({"targetCode": c.code} if c.code else {}),
        }
        for c in definition.competencies
        if c.url or c.ctid
    ]
    if alignments:
        body["alignment"] = alignments
    if results:
        body["resultDescription"] = result_descriptions(body["id"], results)
    return body


def achievement_credential(
    tenant: str,
    award_key: str,
    award: CredentialAward,
    *,
    definition: CredentialDefinition,
    identifiers: Sequence[LearnerIdentifierValue],
    options: OpenBadgesOptions,
    revoked_at: datetime | None = None,
    status: JsonObject | None = None,
) -> JsonObject:
    """The unsigned OB 3.0 ``AchievementCredential`` of one award.

    A revoked award (``revoked_at``) is rendered valid only until its revocation, besides
    its ``credentialStatus`` (``status``) reading revoked: a host that keeps only the newest
    copy and a verifier holding an older one both learn it no longer holds.
    """
    if not identifiers:
        raise ValueError("the award's learner has no identifier to address a CLR with")
    credential = credential_id(tenant, award_key)
    subject: JsonObject = {
        "type": ["AchievementSubject"],
        "identifier": hashed_identities(identifiers, credential, options.identity_salt),
        "achievement": achievement(definition, options, award.results),
    }
    if award.credits_earned is not None and award.credits_earned.value is not None:
        subject["creditsEarned"] = award.credits_earned.value
    if award.results:
        achieved = subject["achievement"]["id"]
        subject["result"] = [
            {
                "type": ["Result"],
                "resultDescription": result_description_id(achieved, r),
                "value": r.value,
            }
            for r in award.results
        ]
    valid_from = _timestamp(award.valid_from) if award.valid_from else _start_of(award.awarded_on)
    body: JsonObject = {
        "@context": [VC_CONTEXT, OB_CONTEXT, EXTENSIONS_CONTEXT],
        "id": credential,
        "type": ["VerifiableCredential", "AchievementCredential"],
        "name": definition.name,
        "issuer": options.issuer.profile(),
        "validFrom": valid_from,
        "awardedDate": _start_of(award.awarded_on),
        "credentialSubject": subject,
        "credentialSchema": [{"id": OB_SCHEMA, "type": SCHEMA_VALIDATOR}],
    }
    if status is not None:
        body["credentialStatus"] = status
    if revoked_at is not None:
        body["validUntil"] = _timestamp(revoked_at)
    elif award.valid_until is not None:
        body["validUntil"] = _end_of(award.valid_until)
    evidence = [_evidence(e) for e in award.evidence]
    if evidence:
        body["evidence"] = evidence
    return body


def _evidence(item: Any) -> JsonObject:
    out: JsonObject = {"type": ["Evidence"]}
    for source, target in (
        ("url", "id"),
        ("name", "name"),
        ("description", "description"),
        ("narrative", "narrative"),
        ("genre", "genre"),
    ):
        value = getattr(item, source)
        if value:
            out[target] = value
    return out


def stacking_associations(
    definitions: Sequence[CredentialDefinition], options: OpenBadgesOptions
) -> list[JsonObject]:
    """``isParentOf``/``isChildOf`` associations between the learner's achievements.

    A stacking link counts when either side declares it (``hasPart`` on the parent or
    ``isPartOf`` on the child) and both achievements are in the record.
    """
    by_ctid = {d.ctid: d for d in definitions}
    pairs: set[tuple[str, str]] = set()
    for d in definitions:
        pairs.update((d.ctid, part.ctid) for part in d.has_part if part.ctid in by_ctid)
        pairs.update((whole.ctid, d.ctid) for whole in d.is_part_of if whole.ctid in by_ctid)
    associations: list[JsonObject] = []
    for parent, child in sorted(pairs):
        parent_id = achievement_id(by_ctid[parent], options)
        child_id = achievement_id(by_ctid[child], options)
        associations.append(
            {
                "type": "Association",
                "associationType": "isParentOf",
                "sourceId": parent_id,
                "targetId": child_id,
            }
        )
        associations.append(
            {
                "type": "Association",
                "associationType": "isChildOf",
                "sourceId": child_id,
                "targetId": parent_id,
            }
        )
    return associations


def clr_credential(
    tenant: str,
    learner: str,
    credentials: Sequence[tuple[JsonObject, CredentialDefinition]],
    identifiers: Sequence[LearnerIdentifierValue],
    options: OpenBadgesOptions,
    *,
    changed_at: datetime | None = None,
    withdrawn_at: datetime | None = None,
    status: JsonObject | None = None,
) -> JsonObject:
    """The learner's ``ClrCredential`` holding ``credentials`` (AchievementCredentials with
    their definitions), their achievements and the stacking associations between them.

    ``withdrawn_at`` marks a record whose every award has been revoked: CLR 2.0 needs at
    least one credential, so the record keeps the revoked ones (each valid only until its
    revocation) and is itself valid only until ``withdrawn_at``. The host replaces its copy
    with this one (newer ``validFrom``) and any verifier sees an expired record.

    ``validFrom`` is ``changed_at`` (the newest change to any of the learner's awards; the
    latest credential's date without it): a host keeps the newer ``validFrom`` of two
    credentials with the same id, so every re-issued record must be at least as new as the
    one before it, whatever dates its awards carry.
    The embedded credentials may be unsigned here; :func:`sign_for_upload` signs them
    before the CLR itself.
    """
    if not credentials:
        raise ValueError("a ClrCredential holds at least one credential")
    identifier = clr_id(tenant, learner)
    definitions = [d for _, d in credentials]
    # The record's validFrom is its change time (the newest change to any of the learner's
    # awards), not the awards' own dates: those can move backwards when an SIS corrects an
    # award date, and a host keeps the newer validFrom of two copies of one record.
    starts = [c["validFrom"] for c, _ in credentials]
    valid_from = _timestamp(changed_at) if changed_at is not None else max(starts)
    subject: JsonObject = {
        "type": ["ClrSubject"],
        "identifier": hashed_identities(identifiers, identifier, options.identity_salt),
        "verifiableCredential": [c for c, _ in credentials],
        "achievement": _record_achievements(credentials),
    }
    associations = stacking_associations(definitions, options)
    if associations:
        subject["association"] = associations
    record: JsonObject = {
        "@context": [VC_CONTEXT, CLR_CONTEXT, OB_CONTEXT, EXTENSIONS_CONTEXT],
        "id": identifier,
        "type": ["VerifiableCredential", "ClrCredential"],
        "name": f"{options.issuer.name} Comprehensive Learner Record",
        "issuer": options.issuer.profile(),
        "validFrom": valid_from,
        "credentialSubject": subject,
        "credentialSchema": [{"id": CLR_SCHEMA, "type": SCHEMA_VALIDATOR}],
    }
    if status is not None:
        record["credentialStatus"] = status
    if withdrawn_at is not None:
        record["validUntil"] = max(valid_from, _timestamp(withdrawn_at))
    return record


def _record_achievements(
    credentials: Sequence[tuple[JsonObject, CredentialDefinition]],
) -> list[JsonObject]:
    """The record's achievements, one per definition, each describing every kind of result
    the learner's credentials of it report."""
    by_id: dict[str, JsonObject] = {}
    for credential, _ in credentials:
        embedded = credential["credentialSubject"]["achievement"]
        known = by_id.get(embedded["id"])
        if known is None:
            by_id[embedded["id"]] = embedded
            continue
        merged = {d["id"]: d for d in known.get("resultDescription", [])}
        merged |= {d["id"]: d for d in embedded.get("resultDescription", [])}
        if merged:
            by_id[embedded["id"]] = {
                **known,
                "resultDescription": [merged[k] for k in sorted(merged)],
            }
    return list(by_id.values())


#: Signs one credential document (``sign_credential`` bound to a key and contexts).
SignOne = Callable[[Mapping[str, Any]], dict[str, Any]]


def sign_for_upload(body: Mapping[str, Any], sign: SignOne) -> dict[str, Any]:
    """Sign an AchievementCredential, or a ClrCredential after each credential inside it."""
    types = body.get("type") or []
    if "ClrCredential" not in types:
        return sign(body)
    subject = dict(body["credentialSubject"])
    subject["verifiableCredential"] = [
        c if "proof" in c else sign(c) for c in subject["verifiableCredential"]
    ]
    return sign({**body, "credentialSubject": subject})


class OpenBadgesRenderer:
    """Renders documents for one CLR 2.0 (``api="clr"``) or OB 3.0 (``api="ob"``) host,
    from the catalog as it is when asked.

    * ``ob``: the award's ``AchievementCredential`` (a revoked award: valid until revoked);
    * ``clr``: the learner's whole ``ClrCredential`` — every current award, revoked ones
      left out — so the host's copy is replaced by the complete, current record; when the
      last award is revoked, the record is withdrawn by expiry (see :func:`clr_credential`).

    Definitions and learner identities come from the catalog; while one has not arrived the
    document is *waiting* (:class:`~cayg_publish.domain.projection.Waiting`), and it becomes dirty
    again when the input arrives. An award revoked before its learner's record was ever
    delivered sends nothing (``replaces_only``).
    """

    def __init__(
        self,
        options: OpenBadgesOptions,
        catalog: Catalog,
        *,
        api: Literal["clr", "ob"] = "clr",
    ) -> None:
        self._options = options
        self._catalog = catalog
        self._api = api

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """What this host holds: learners' records (CLR) or awards' credentials (OB)."""
        if self._api == "ob":
            return frozenset({DocumentKind.AWARD_CREDENTIAL})
        return frozenset({DocumentKind.LEARNER_RECORD})

    async def document(self, ref: DocumentRef) -> tuple[Rendering, ...]:
        """Render ``ref`` from the catalog as it is now (none: nothing to send).

        Raises :class:`~cayg_publish.domain.projection.Waiting` when a definition or the learner's
        identity has not arrived.
        """
        # One rendering reads each input once: a record's awards name their definitions
        # twice (for its version and its entries), and every definition reads the
        # tenant's programs and their members for stacking links.
        catalog = _RenderReads(self._catalog)
        if ref.kind is DocumentKind.LEARNER_RECORD:
            return await self._learner_record(catalog, ref.tenant, ref.subject)
        if ref.kind is DocumentKind.AWARD_CREDENTIAL:
            return await self._award_credential(catalog, ref.tenant, ref.subject)
        return ()

    async def _award_credential(
        self, catalog: _RenderReads, tenant: str, subject: str
    ) -> tuple[Rendering, ...]:
        source_id, part = parse_award_subject(subject)
        row = await catalog.row(tenant, EntityType.CREDENTIAL_AWARD, source_id, part)
        if row is None or not isinstance(row.entity, CredentialAward):
            return ()
        award = row.entity
        revoked = row.status is not CatalogStatus.CURRENT or award.status is not AwardStatus.AWARDED
        identity = await self._identity_of(catalog, tenant, [award])
        definition, _definition_row = await self._definition_and_row(
            catalog, tenant, award.definition
        )
        key = _award_entity_key(row)
        status = await self._status(
            tenant, credential_id(tenant, key), StatusKind.AWARD, key, live=not revoked
        )
        body = achievement_credential(
            tenant,
            key,
            award,
            definition=definition,
            identifiers=learner_identifiers(award.learner, identity),
            options=self._options,
            revoked_at=row.version.time if revoked else None,
            status=status,
        )
        return (
            replace(
                self._rendering(body),
                subject=key,
                subject_version=row.version,
                replaces_only=revoked,
            ),
        )

    async def _learner_record(
        self, catalog: _RenderReads, tenant: str, learner: str
    ) -> tuple[Rendering, ...]:
        rows = [
            r
            for r in await catalog.award_rows_of(tenant, learner)
            if isinstance(r.entity, CredentialAward)
        ]
        if not rows:
            return ()
        current = [r for r in rows if r.status is CatalogStatus.CURRENT]
        awards = [r.entity for r in (current or rows) if isinstance(r.entity, CredentialAward)]
        identity = await self._identity_of(catalog, tenant, awards)
        identifiers: list[LearnerIdentifierValue] = []
        for award in awards:
            identifiers.extend(learner_identifiers(award.learner, identity))
        identifiers = list(
            {(i.identity_type, i.value.get_secret_value()): i for i in identifiers}.values()
        )
        # The record's version is the newest time among *all* its inputs — every award row
        # (revoked ones included) and every definition any of them names — so it never
        # goes back when an award is revoked: a revoked award's renamed definition would
        # otherwise drop out of the maximum and the re-issued record look older than the
        # one the host holds (and be skipped as stale).
        times = [r.version.time for r in rows]
        for award_row in rows:
            assert isinstance(award_row.entity, CredentialAward)
            named = await catalog.definition_named(tenant, award_row.entity.definition)
            if named is not None:
                times.append(named.version.time)
        entries: list[tuple[JsonObject, CredentialDefinition]] = []
        withdrawn_at: datetime | None = None
        chosen = current
        if not current:
            # Every award revoked: withdraw the record by expiry, keeping the newest
            # revoked award (valid until its revocation) as its one entry.
            newest = max(rows, key=lambda r: r.version.time)
            withdrawn_at = newest.version.time
            chosen = [newest]
        # Every input first (a missing definition makes the record wait before any status
        # entry is handed out), then all status entries at once.
        resolved: list[tuple[CredentialAward, str, CredentialDefinition]] = []
        for row in chosen:
            assert isinstance(row.entity, CredentialAward)
            definition, definition_row = await self._definition_and_row(
                catalog, tenant, row.entity.definition
            )
            times.append(definition_row.version.time)
            resolved.append((row.entity, _award_entity_key(row), definition))
        live = withdrawn_at is None
        requests = [
            StatusRequest(credential_id(tenant, key), StatusKind.AWARD, key, live)
            for _, key, _ in resolved
        ]
        # Awards no longer in the record: their copies out there must read revoked.
        requests += [
            StatusRequest(credential_id(tenant, key), StatusKind.AWARD, key, live=False)
            for key in (
                _award_entity_key(row)
                for row in rows
                if row not in chosen and row.status is not CatalogStatus.CURRENT
            )
        ]
        requests.append(StatusRequest(clr_id(tenant, learner), StatusKind.RECORD, learner, live))
        statuses = await self._statuses(tenant, requests)
        for (award, key, definition), status in zip(resolved, statuses, strict=False):
            entries.append(
                (
                    achievement_credential(
                        tenant,
                        key,
                        award,
                        definition=definition,
                        identifiers=identifiers,
                        options=self._options,
                        revoked_at=withdrawn_at,
                        status=status,
                    ),
                    definition,
                )
            )
        if identity is not None and learner.startswith("person:"):
            identity_row = await catalog.row(
                tenant, EntityType.LEARNER_IDENTITY, learner.removeprefix("person:")
            )
            if identity_row is not None:
                times.append(identity_row.version.time)
        # The record is as new as its newest input: a host keeps the newer validFrom of
        # two copies, and the inputs' times only ever grow (the catalog never goes back).
        changed_at = max(times)
        record_status = statuses[-1]
        body = clr_credential(
            tenant,
            learner,
            entries,
            identifiers,
            self._options,
            changed_at=changed_at,
            withdrawn_at=withdrawn_at,
            status=record_status,
        )
        return (
            replace(
                self._rendering(body),
                subject=f"clr-record|{tenant}|{learner}",
                subject_version=SourceVersion(stream="clr-record", time=changed_at),
                replaces_only=withdrawn_at is not None,
            ),
        )

    async def _status(
        self, tenant: str, credential: str, kind: StatusKind, subject: str, *, live: bool
    ) -> JsonObject | None:
        """The ``credentialStatus`` of a credential as issued now (None without status
        lists, or for a credential that is not live and never had an entry)."""
        allocator = self._options.status
        if allocator is None:
            return None
        entry = await allocator.entry(tenant, credential, kind=kind, subject=subject, live=live)
        return None if entry is None else credential_status(entry)

    async def _statuses(
        self, tenant: str, requests: Sequence[StatusRequest]
    ) -> list[JsonObject | None]:
        """:meth:`_status` of several credentials, in order (one ledger transaction)."""
        allocator = self._options.status
        if allocator is None:
            return [None] * len(requests)
        found = await allocator.entries(tenant, requests)
        return [None if entry is None else credential_status(entry) for entry in found]

    def _rendering(self, body: JsonObject) -> Rendering:
        rendering = _rendering(body)
        if self._options.signer is None:
            return rendering
        # The signing key is part of what the host holds: a rotated key makes it different.
        keyed = {"action": UPSERT_CREDENTIAL, "body": body, "signer": self._options.signer}
        return replace(rendering, content_hash=content_hash(keyed))

    async def _identity_of(
        self, catalog: _RenderReads, tenant: str, awards: Sequence[CredentialAward]
    ) -> LearnerIdentity | None:
        """The learner's SIS identity; waiting for it when no award names the learner
        inline (then nothing could address the record)."""
        person = next((a.learner.person_ref for a in awards if a.learner.person_ref), None)
        if person is None:
            return None
        identity = await catalog.learner(tenant, person)
        inline = any(a.learner.institution_id or a.learner.email for a in awards)
        if identity is None and not inline:
            raise Waiting("learner-unknown", f"person:{person}")
        return identity

    async def _definition_and_row(
        self, catalog: _RenderReads, tenant: str, ref: CredentialRef
    ) -> tuple[CredentialDefinition, CatalogRow]:
        # An award names its credential by SIS id too; the CTID it derived may differ from
        # the definition's when the tenant imported that CTID by SIS code.
        row = await catalog.definition_named(tenant, ref)
        if row is None or not isinstance(row.entity, CredentialDefinition):
            raise Waiting("definition-unknown", ref.source_id or ref.ctid)
        # Stacking links its programs imply become associations between the learner's
        # achievements.
        return await linked_definition(tenant, row.entity, catalog), row


class _RenderReads:
    """The catalog lookups of one rendering, each asked of the catalog once.

    Within one rendering an input read twice must read the same (two reads were never one
    snapshot anyway: a change arriving in between makes the document dirty again), so
    remembering the first answer changes nothing but the number of queries.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._rows: dict[tuple[str, EntityType, str, str], CatalogRow | None] = {}
        self._by_ctid: dict[tuple[str, str], CatalogRow | None] = {}
        self._programs: dict[str, list[CatalogRow]] = {}

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> CatalogRow | None:
        key = (tenant, entity_type, source_id, part)
        if key not in self._rows:
            self._rows[key] = await self._catalog.row(tenant, entity_type, source_id, part)
        return self._rows[key]

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        # As the catalog answers it (by CTID, else by SIS id), from remembered parts: an
        # award names its definition by both, a program by CTID only.
        key = (tenant, ref.ctid)
        if key not in self._by_ctid:
            self._by_ctid[key] = await self._catalog.definition_row(tenant, ref.ctid)
        row = self._by_ctid[key]
        if row is None and ref.source_id is not None:
            row = await self.row(tenant, EntityType.CREDENTIAL_DEFINITION, ref.source_id)
        return row

    async def programs(self, tenant: str) -> list[CatalogRow]:
        if tenant not in self._programs:
            self._programs[tenant] = await self._catalog.programs(tenant)
        return self._programs[tenant]

    async def award_rows_of(self, tenant: str, learner: str) -> list[CatalogRow]:
        return await self._catalog.award_rows_of(tenant, learner)

    async def learner(self, tenant: str, person_ref: str) -> LearnerIdentity | None:
        return await self._catalog.learner(tenant, person_ref)


def _award_entity_key(row: CatalogRow) -> str:
    """The award's entity key as text, as the ledger and credential ids have always used."""
    key = EntityKey(
        tenant=row.tenant,
        entity_type=row.entity_type,
        source_id=row.source_id,
        part=row.part or None,
    )
    return str(key)


def _rendering(body: JsonObject) -> Rendering:
    return Rendering(
        action=UPSERT_CREDENTIAL,
        operation=RenderOperation.UPSERT,
        body=body,
        remote_id=body["id"],
        content_hash=content_hash({"action": UPSERT_CREDENTIAL, "body": body}),
    )
