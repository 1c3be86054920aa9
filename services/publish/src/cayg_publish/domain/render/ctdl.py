"""Render schema entities as Credential Engine Registry Assistant requests (CTDL).

Property names and shapes follow the Assistant's documented input format as the
conformance samples show it: ``ceterms:name`` / ``ceterms:description`` as language maps,
references as ``{"CTID": …}``, credit as a ``Requires`` condition profile carrying a
``CreditValue`` list of value profiles, connections (``IsPreparationFor``…) as condition
profiles naming their ``TargetCredential``. Transfer values are published on their own
(``transfervalue/publish``), in the sample's flat format (plain ``Name``/``Description``,
``OwnedBy`` as CTIDs).

The pure functions raise ``ValueError`` for a definition the registry would refuse
(missing webpage, description under 15 characters), so the failure is reported before a
call is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from cayg_publish.domain.catalog import Catalog, CatalogStatus, Rendering
from cayg_publish.domain.catalog import Operation as RenderOperation
from cayg_publish.domain.idempotency import content_hash
from cayg_publish.domain.projection import (
    DocumentKind,
    DocumentRef,
    linked_definition,
    resolved_organizations,
)
from cayg_shared.ids import ctid as derive_ctid
from cayg_shared.schema import (
    CredentialDefinition,
    CredentialRef,
    CredentialStatus,
    CreditValue,
    EntityKey,
    EntityType,
    Organization,
    OrganizationRef,
    OrganizationRole,
    TransferValue,
)

PUBLISH_CREDENTIAL: Final = "credential/publish"
DELETE_CREDENTIAL: Final = "credential/delete"
PUBLISH_ORGANIZATION: Final = "organization/publish"
PUBLISH_TRANSFER_VALUE: Final = "transfervalue/publish"
#: The registry refuses shorter descriptions.
MIN_DESCRIPTION: Final = 15

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How one tenant publishes to its registry account."""

    #: The CTID of the organization the account publishes for.
    publish_for_organization: str
    default_language: str = "en-US"
    #: What an SIS delete of a definition does: republish as deprecated, or delete.
    on_delete: Literal["deprecate", "delete"] = "deprecate"


def language_map(language: str, text: str) -> dict[str, str]:
    """``{language: text}``: a CTDL language map with one entry."""
    return {language: text}


def organization_reference(
    ref: OrganizationRef, language: str, *, quality_assurance: bool = False
) -> JsonObject:
    """``{"CTID": …}`` for a registered organization, else an inline description."""
    if ref.ctid is not None:
        return {"CTID": ref.ctid}
    if ref.name is None or ref.webpage is None:
        # OrganizationRef guarantees this; kept explicit for the type checker.
        raise ValueError("an organization without a CTID needs a name and a webpage")
    return {
        "Type": "QACredentialOrganization" if quality_assurance else "CredentialOrganization",
        "ceterms:name": language_map(language, ref.name),
        "SubjectWebpage": ref.webpage,
    }


def credential_reference(ref: CredentialRef) -> JsonObject:
    """``{"CTID": …}``."""
    return {"CTID": ref.ctid}


def value_profile(credit: CreditValue, language: str) -> JsonObject:
    """A ``ValueProfile`` inside a credential's condition profile (sample shape)."""
    profile: JsonObject = {"CreditUnitType": [credit.unit.value.removeprefix("creditUnit:")]}
    if credit.description is not None:
        profile["ceterms:description"] = language_map(language, credit.description)
    if credit.value is not None:
        profile["Value"] = credit.value
    else:
        profile["MinValue"] = credit.min_value
        profile["MaxValue"] = credit.max_value
    return profile


def _connection(description: str, targets: Sequence[CredentialRef], language: str) -> JsonObject:
    return {
        "ceterms:description": language_map(language, description),
        "TargetCredential": [credential_reference(t) for t in targets],
    }


def _required_text(definition: CredentialDefinition) -> tuple[str, str]:
    if definition.webpage is None:
        raise ValueError(
            f"the registry requires a SubjectWebpage: definition {definition.source_id!r} "
            "has no webpage"
        )
    description = (definition.description or "").strip()
    if len(description) < MIN_DESCRIPTION:
        raise ValueError(
            f"the registry requires a description of at least {MIN_DESCRIPTION} characters: "
            f"definition {definition.source_id!r} has {len(description)}"
        )
    return definition.webpage, description


def credential_request(
    definition: CredentialDefinition,
    options: RegistryOptions,
    *,
    status: CredentialStatus | None = None,
) -> JsonObject:
    """The ``credential/publish`` request of ``definition`` (``status`` overrides its own)."""
    webpage, description = _required_text(definition)
    lang = definition.language
    credential: JsonObject = {
        "Type": "Credential",
        "CredentialType": definition.credential_type.value,
        "ceterms:name": language_map(lang, definition.name),
        "ceterms:description": language_map(lang, description),
        "CTID": definition.ctid,
        "SubjectWebpage": webpage,
        "CredentialStatusType": (status or definition.status).ctdl_term,
        "InLanguage": [lang],
        "OwnedBy": [organization_reference(o, lang) for o in definition.owned_by],
    }
    optional: dict[str, Any] = {
        "OfferedBy": [organization_reference(o, lang) for o in definition.offered_by],
        "AudienceLevelType": (
            [definition.audience_level.value] if definition.audience_level is not None else []
        ),
        "HasPart": [credential_reference(r) for r in definition.has_part],
        "IsPartOf": [credential_reference(r) for r in definition.is_part_of],
        "IsPreparationFor": (
            [
                _connection(
                    "Earning this credential prepares the holder for these credentials.",
                    definition.is_preparation_for,
                    lang,
                )
            ]
            if definition.is_preparation_for
            else []
        ),
        "IsAdvancedStandingFor": (
            [
                _connection(
                    "Holders of this credential receive advanced standing toward these "
                    "credentials.",
                    definition.is_advanced_standing_for,
                    lang,
                )
            ]
            if definition.is_advanced_standing_for
            else []
        ),
        "Requires": (
            [
                {
                    "ceterms:description": language_map(
                        lang, "To earn this credential, the following credit must be completed."
                    ),
                    "CreditValue": [value_profile(definition.credit_value, lang)],
                }
            ]
            if definition.credit_value is not None
            else []
        ),
        "ApprovedBy": [organization_reference(o, lang) for o in definition.approved_by],
        "AccreditedBy": [
            organization_reference(o, lang, quality_assurance=True)
            for o in definition.accredited_by
        ],
        # Industry partners that co-designed or recognise the credential (partner as you go).
        "RecognizedBy": [organization_reference(o, lang) for o in definition.partner_organizations],
    }
    credential.update({key: value for key, value in optional.items() if value})
    return {
        "Credential": credential,
        "DefaultLanguage": options.default_language,
        "PublishForOrganizationIdentifier": options.publish_for_organization,
        # The institution is the authoritative source of its own credentials.
        "IsPrimarySourceRecord": True,
    }


def delete_request(ctid: str, options: RegistryOptions) -> JsonObject:
    """The ``credential/delete`` body."""
    return {"CTID": ctid, "PublishForOrganizationIdentifier": options.publish_for_organization}


def organization_request(organization: Organization, options: RegistryOptions) -> JsonObject:
    """The ``organization/publish`` request of ``organization``."""
    description = (organization.description or "").strip()
    if len(description) < MIN_DESCRIPTION:
        raise ValueError(
            f"the registry requires a description of at least {MIN_DESCRIPTION} characters: "
            f"organization {organization.source_id!r} has {len(description)}"
        )
    lang = options.default_language
    body: JsonObject = {
        "Type": organization.ctdl_type,
        "ceterms:name": language_map(lang, organization.name),
        "ceterms:description": language_map(lang, description),
        "CTID": organization.ctid,
        "SubjectWebpage": organization.webpage,
    }
    if organization.email:
        body["Email"] = [organization.email]
    return {
        "Organization": body,
        "DefaultLanguage": lang,
        "PublishForOrganizationIdentifier": options.publish_for_organization,
    }


def transfer_value_ctid(tenant: str, definition: CredentialDefinition, value: TransferValue) -> str:
    """The transfer value's CTID: its own, or one fixed by tenant, definition and name."""
    if value.ctid is not None:
        return value.ctid
    return derive_ctid(tenant, "transfer-value", f"{definition.source_id}\x1f{value.name}")


def transfer_value_request(
    tenant: str,
    definition: CredentialDefinition,
    value: TransferValue,
    options: RegistryOptions,
) -> JsonObject:
    """The ``transfervalue/publish`` request of one transfer value of ``definition``."""
    webpage, _ = _required_text(definition)
    credit = value.credit_value
    transfer: JsonObject = {"Type": "ceterms:ValueProfile", "CreditUnitType": [credit.unit.value]}
    if credit.value is not None:
        transfer["Value"] = credit.value
    else:
        transfer["MinValue"] = credit.min_value
        transfer["MaxValue"] = credit.max_value
    if credit.description is not None:
        transfer["Description"] = credit.description
    owner = value.accepted_by
    description = value.description or (
        f"Credit granted for the {definition.name} credential"
        + (f" by {owner.name}." if owner.name else ".")
    )
    profile: JsonObject = {
        "Type": "ceterms:TransferValueProfile",
        "Name": value.name,
        "Description": description,
        "CTID": transfer_value_ctid(tenant, definition, value),
        "SubjectWebpage": webpage,
        "OwnedBy": [
            owner.ctid
            if owner.ctid is not None
            else {
                "Type": "ceterms:CredentialOrganization",
                "Name": owner.name,
                "SubjectWebpage": owner.webpage,
            }
        ],
        "TransferValue": [transfer],
        "TransferValueFrom": [{"CTID": definition.ctid}],
    }
    if value.counts_towards is not None:
        profile["TransferValueFor"] = [credential_reference(value.counts_towards)]
    if value.start_date is not None:
        profile["StartDate"] = value.start_date.isoformat()
    if value.end_date is not None:
        profile["EndDate"] = value.end_date.isoformat()
    return {
        "TransferValueProfile": profile,
        "DefaultLanguage": options.default_language,
        "PublishForOrganizationIdentifier": options.publish_for_organization,
    }


def rendering(
    action: str,
    body: Mapping[str, Any],
    remote_id: str,
    *,
    operation: RenderOperation = RenderOperation.UPSERT,
    part: str | None = None,
) -> Rendering:
    """A :class:`Rendering` whose content hash covers action, operation and body."""
    digest = content_hash({"action": action, "operation": operation.value, "body": body})
    return Rendering(
        action=action,
        operation=operation,
        body=body,
        remote_id=remote_id,
        content_hash=digest,
        part=part,
    )


def definition_renderings(
    tenant: str, definition: CredentialDefinition, options: RegistryOptions
) -> tuple[Rendering, ...]:
    """The credential, then each of its transfer values."""
    main = rendering(PUBLISH_CREDENTIAL, credential_request(definition, options), definition.ctid)
    values = []
    for value in definition.transfer_values:
        value_ctid = transfer_value_ctid(tenant, definition, value)
        values.append(
            rendering(
                PUBLISH_TRANSFER_VALUE,
                transfer_value_request(tenant, definition, value, options),
                value_ctid,
                part=f"transfer-value:{value_ctid}",
            )
        )
    return (main, *values)


class RegistryRenderer:
    """Renders changes for one registry account (the ``CredentialEngineTarget`` renderer).

    * definition upsert: ``credential/publish`` plus ``transfervalue/publish`` per transfer
      value (deprecated/suspended definitions carry their status);
    * definition delete: republish the last known definition as ``credentialStat:Deprecated``
      (default: holders keep a resolvable credential) or ``credential/delete``; a definition
      publish never saw needs nothing;
    * organization upsert: ``organization/publish``, only for the account's own organization
      (others are referenced inline from credentials, never published under this account);
    * awards, learner identities and programs: not for the registry.
    """

    def __init__(self, options: RegistryOptions, catalog: Catalog) -> None:
        self._options = options
        self._catalog = catalog

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """What a registry account holds: credentials and the tenant's organization."""
        return frozenset({DocumentKind.CREDENTIAL, DocumentKind.ORGANIZATION})

    async def document(self, ref: DocumentRef) -> tuple[Rendering, ...]:
        """Render ``ref`` from the catalog as it is now (none: nothing to send).

        Each request is keyed in the ledger by the entity key (plus the part of a transfer
        value) and versioned by the catalog row, so an older state never overwrites a
        newer one and the same content is never sent twice.
        """
        if ref.kind is DocumentKind.CREDENTIAL:
            entity_type = EntityType.CREDENTIAL_DEFINITION
        elif ref.kind is DocumentKind.ORGANIZATION:
            entity_type = EntityType.ORGANIZATION
        else:
            return ()
        row = await self._catalog.row(ref.tenant, entity_type, ref.subject)
        if row is None or row.entity is None:
            return ()
        key = str(EntityKey(tenant=ref.tenant, entity_type=entity_type, source_id=ref.subject))
        entity = row.entity
        renderings: tuple[Rendering, ...] = ()
        if isinstance(entity, CredentialDefinition):
            current = row.status is CatalogStatus.CURRENT
            entity = await resolved_organizations(ref.tenant, entity, self._catalog, wait=current)
            if current:
                linked = await linked_definition(ref.tenant, entity, self._catalog)
                renderings = definition_renderings(ref.tenant, linked, self._options)
            else:
                renderings = self._retired(entity)
        elif (
            isinstance(entity, Organization)
            and row.status is CatalogStatus.CURRENT
            and entity.ctid == self._options.publish_for_organization
            and OrganizationRole.ISSUER in entity.roles
        ):
            body = organization_request(entity, self._options)
            renderings = (rendering(PUBLISH_ORGANIZATION, body, entity.ctid),)
        return tuple(
            replace(r, subject=r.ledger_key(key), subject_version=row.version) for r in renderings
        )

    def _retired(self, known: CredentialDefinition) -> tuple[Rendering, ...]:
        """A deleted definition: deprecated (default) or deleted at the registry."""
        if self._options.on_delete == "delete":
            body = delete_request(known.ctid, self._options)
            return (
                rendering(DELETE_CREDENTIAL, body, known.ctid, operation=RenderOperation.DELETE),
            )
        body = credential_request(known, self._options, status=CredentialStatus.DEPRECATED)
        return (rendering(PUBLISH_CREDENTIAL, body, known.ctid),)
