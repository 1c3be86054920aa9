"""CTDL rendering held against the Registry Assistant samples and the registry schema."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cayg_publish.adapters.ledger import InMemoryCatalog
from cayg_publish.domain.catalog import Operation as RenderOperation
from cayg_publish.domain.projection import DocumentKind, DocumentRef, Waiting
from cayg_publish.domain.render.ctdl import (
    PUBLISH_CREDENTIAL,
    PUBLISH_TRANSFER_VALUE,
    RegistryOptions,
    RegistryRenderer,
    credential_request,
    organization_request,
    transfer_value_request,
)
from cayg_shared.schema import (
    AudienceLevel,
    CredentialRef,
    CredentialStatus,
    CreditUnit,
    CreditValue,
    EntityType,
    Operation,
    OrganizationRef,
    OrganizationRole,
    TransferValue,
)
from unit.publish.publish_factories import (
    ORG_CTID,
    TENANT,
    award,
    change,
    definition,
    organization,
)

pytestmark = pytest.mark.unit

OPTIONS = RegistryOptions(publish_for_organization=ORG_CTID)
PARTNER = OrganizationRef(name="Midwest Health Partners", webpage="https://mhp.example/")
ACCREDITOR = OrganizationRef(name="Nursing Accreditation Board", webpage="https://nab.example/")
OTHER_CTID = "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"
STACK_CTID = "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63"


def rich_definition() -> Any:
    return definition(
        audience_level=AudienceLevel.LOWER_DIVISION,
        offered_by=(OrganizationRef(ctid=ORG_CTID),),
        is_part_of=(CredentialRef(ctid=STACK_CTID),),
        has_part=(CredentialRef(ctid=OTHER_CTID),),
        is_preparation_for=(CredentialRef(ctid=STACK_CTID),),
        is_advanced_standing_for=(CredentialRef(ctid=STACK_CTID),),
        partner_organizations=(PARTNER,),
        approved_by=(OrganizationRef(ctid=OTHER_CTID),),
        accredited_by=(ACCREDITOR,),
        transfer_values=(
            TransferValue(
                name="Transfer credit toward AAS Nursing",
                credit_value=CreditValue(value=3, unit=CreditUnit.SEMESTER_HOUR),
                accepted_by=OrganizationRef(ctid=OTHER_CTID),
                counts_towards=CredentialRef(ctid=STACK_CTID),
                start_date=date(2026, 1, 1),
            ),
        ),
    )


def shape(value: Any) -> Any:
    """The structure of a JSON value: key names and value kinds, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_same_shapes(ours: Any, sample: Any, path: str = "$") -> None:
    """Every property present in both has the same shape, recursively."""
    if isinstance(sample, dict):
        assert isinstance(ours, dict), f"{path}: expected an object"
        for key in ours.keys() & sample.keys():
            assert_same_shapes(ours[key], sample[key], f"{path}.{key}")
    elif isinstance(sample, list):
        assert isinstance(ours, list), f"{path}: expected a list"
        if ours and sample:
            assert_same_shapes(ours[0], sample[0], f"{path}[0]")
    else:
        assert shape(ours) == shape(sample), f"{path}: {shape(ours)} vs {shape(sample)}"


def load(conformance_dir: Path, name: str) -> Any:
    path = conformance_dir / "credential-engine" / "samples" / name
    return json.loads(path.read_text(encoding="utf-8-sig"))


#: Assistant credential properties we render that this sample happens not to use; each is
#: a documented property of the Assistant's Credential input class.
DOCUMENTED_ELSEWHERE = {
    "CredentialStatusType",
    "OfferedBy",
    "AudienceLevelType",
    "HasPart",
    "IsPartOf",
    "IsPreparationFor",
    "IsAdvancedStandingFor",
    "ApprovedBy",
    "RecognizedBy",
}


def test_credential_request_matches_the_sample(conformance_dir: Path) -> None:
    sample = load(conformance_dir, "assistant_credential_publish_request.json")

    ours = credential_request(rich_definition(), OPTIONS)

    assert set(ours) == set(sample)
    unknown = set(ours["Credential"]) - set(sample["Credential"]) - DOCUMENTED_ELSEWHERE
    assert unknown == set()
    assert_same_shapes(ours, sample)
    # The sample's own shapes of the parts we mirror most closely:
    assert shape(ours["Credential"]["OwnedBy"]) == shape(sample["Credential"]["OwnedBy"])
    credit = ours["Credential"]["Requires"][0]["CreditValue"][0]
    assert set(credit) <= {"CreditUnitType", "ceterms:description", "Value"}
    assert credit == {"CreditUnitType": ["SemesterHour"], "Value": 3.0}
    accredited = ours["Credential"]["AccreditedBy"][0]
    assert set(accredited) == set(sample["Credential"]["AccreditedBy"][0])


def test_credential_request_has_the_registrys_required_properties(conformance_dir: Path) -> None:
    schema = json.loads(
        (conformance_dir / "credential-engine" / "schemas" / "credential.json").read_text()
    )
    required = set(schema["definitions"]["ceterms:MicroCredential"]["required"])
    # Assistant property carrying each required CTDL term (@id is the registry's to mint).
    carried_by = {
        "@type": "CredentialType",
        "ceterms:ctid": "CTID",
        "ceterms:name": "ceterms:name",
        "ceterms:description": "ceterms:description",
        "ceterms:subjectWebpage": "SubjectWebpage",
        "ceterms:credentialStatusType": "CredentialStatusType",
    }
    assert required - {"@id"} == set(carried_by)

    credential = credential_request(definition(), OPTIONS)["Credential"]

    for term, prop in carried_by.items():
        assert credential.get(prop), f"{prop} ({term}) missing"
    assert credential["CredentialType"] == "ceterms:MicroCredential"
    assert credential["CredentialStatusType"] == "credentialStat:Active"
    assert credential["ceterms:name"] == {"en-US": "Microcredential in SQL Databases"}
    assert credential["InLanguage"] == ["en-US"]
    assert credential["OwnedBy"] == [{"CTID": ORG_CTID}]


def test_links_partners_and_connections() -> None:
    credential = credential_request(rich_definition(), OPTIONS)["Credential"]

    assert credential["HasPart"] == [{"CTID": OTHER_CTID}]
    assert credential["IsPartOf"] == [{"CTID": STACK_CTID}]
    assert credential["IsPreparationFor"][0]["TargetCredential"] == [{"CTID": STACK_CTID}]
    assert credential["IsAdvancedStandingFor"][0]["TargetCredential"] == [{"CTID": STACK_CTID}]
    assert credential["RecognizedBy"] == [
        {
            "Type": "CredentialOrganization",
            "ceterms:name": {"en-US": "Midwest Health Partners"},
            "SubjectWebpage": "https://mhp.example/",
        }
    ]
    assert credential["AccreditedBy"][0]["Type"] == "QACredentialOrganization"
    assert credential["ApprovedBy"] == [{"CTID": OTHER_CTID}]
    assert credential["AudienceLevelType"] == ["audLevel:LowerDivisionLevel"]


def test_statuses_map_to_ctdl_terms() -> None:
    for status, term in [
        (CredentialStatus.ACTIVE, "credentialStat:Active"),
        (CredentialStatus.DEPRECATED, "credentialStat:Deprecated"),
        (CredentialStatus.SUSPENDED, "credentialStat:Suspended"),
    ]:
        request = credential_request(definition(status=status), OPTIONS)
        assert request["Credential"]["CredentialStatusType"] == term


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"webpage": None}, "SubjectWebpage"), ({"description": "Too short"}, "15 characters")],
)
def test_what_the_registry_would_refuse_is_refused_up_front(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        credential_request(definition(**changes), OPTIONS)


def test_transfer_value_request_matches_the_sample(conformance_dir: Path) -> None:
    sample = load(conformance_dir, "assistant_transfervalueprofile.json")
    defined = rich_definition()

    ours = transfer_value_request(TENANT, defined, defined.transfer_values[0], OPTIONS)

    profile = ours["TransferValueProfile"]
    # The sample has no Description and no target credential; both are documented
    # TransferValueProfile properties (the registry requires a description).
    assert set(profile) - set(sample) == {"Description", "TransferValueFor"}
    assert_same_shapes({k: v for k, v in profile.items() if k != "TransferValueFrom"}, sample)
    assert profile["OwnedBy"] == [OTHER_CTID]
    assert profile["TransferValue"] == [
        {"Type": "ceterms:ValueProfile", "CreditUnitType": ["creditUnit:SemesterHour"], "Value": 3}
    ]
    assert profile["TransferValueFrom"] == [{"CTID": defined.ctid}]
    assert profile["CTID"].startswith("ce-")
    assert ours["PublishForOrganizationIdentifier"] == ORG_CTID


def test_organization_request() -> None:
    request = organization_request(organization(), OPTIONS)

    assert request["Organization"]["Type"] == "ceterms:CredentialOrganization"
    assert request["Organization"]["CTID"] == ORG_CTID
    assert request["Organization"]["ceterms:name"] == {"en-US": "Northfield Community College"}


def _ref(kind: DocumentKind, subject: str) -> DocumentRef:
    return DocumentRef(TENANT, kind, subject)


async def test_renderer_publishes_a_definition_and_its_transfer_values() -> None:
    catalog = InMemoryCatalog()
    renderer = RegistryRenderer(OPTIONS, catalog)
    await catalog.remember(change(rich_definition()))
    ref = _ref(DocumentKind.CREDENTIAL, rich_definition().source_id)

    renderings = await renderer.document(ref)

    assert [r.action for r in renderings] == [PUBLISH_CREDENTIAL, PUBLISH_TRANSFER_VALUE]
    assert renderings[0].part is None
    assert renderings[1].part is not None
    assert renderings[1].part.startswith("transfer-value:ce-")
    # Ledger subjects: the entity key, and the entity key with the part.
    assert renderings[0].subject is not None
    assert renderings[0].subject.endswith(f"/credential-definition/{ref.subject}")
    assert renderings[1].subject == f"{renderings[0].subject}|{renderings[1].part}"
    await catalog.remember(change(rich_definition(), seq=2))
    again = await renderer.document(ref)
    assert [r.content_hash for r in again] == [r.content_hash for r in renderings]
    assert again[0].subject_version is not None
    assert again[0].subject_version.sequence == 2


async def test_a_deleted_definition_is_deprecated_or_deleted() -> None:
    catalog = InMemoryCatalog()
    defined = definition()
    await catalog.remember(change(defined, seq=1))
    deleted = change(
        None,
        seq=2,
        operation=Operation.DELETE,
        entity_type=EntityType.CREDENTIAL_DEFINITION,
        source_id=defined.source_id,
    )
    await catalog.remember(deleted)
    ref = _ref(DocumentKind.CREDENTIAL, defined.source_id)

    [deprecated] = await RegistryRenderer(OPTIONS, catalog).document(ref)
    delete_options = RegistryOptions(publish_for_organization=ORG_CTID, on_delete="delete")
    [removed] = await RegistryRenderer(delete_options, catalog).document(ref)
    never_seen = await RegistryRenderer(OPTIONS, InMemoryCatalog()).document(ref)

    assert deprecated.action == PUBLISH_CREDENTIAL
    assert deprecated.body["Credential"]["CredentialStatusType"] == "credentialStat:Deprecated"
    assert removed.operation is RenderOperation.DELETE
    assert removed.body == {"CTID": defined.ctid, "PublishForOrganizationIdentifier": ORG_CTID}
    assert never_seen == ()


async def test_only_the_accounts_own_organization_is_published() -> None:
    catalog = InMemoryCatalog()
    renderer = RegistryRenderer(OPTIONS, catalog)
    await catalog.remember(change(organization()))
    await catalog.remember(
        change(organization(ctid=OTHER_CTID, source_id="partner", name="Partner"))
    )

    own = await renderer.document(_ref(DocumentKind.ORGANIZATION, organization().source_id))
    other = await renderer.document(_ref(DocumentKind.ORGANIZATION, "partner"))

    assert [r.action for r in own] == ["organization/publish"]
    assert other == ()


async def test_learner_documents_are_not_for_the_registry() -> None:
    catalog = InMemoryCatalog()
    await catalog.remember(change(award()))
    renderer = RegistryRenderer(OPTIONS, catalog)

    assert DocumentKind.LEARNER_RECORD not in renderer.document_kinds
    assert await renderer.document(_ref(DocumentKind.LEARNER_RECORD, "person:person-1")) == ()


async def test_a_partner_known_only_by_sis_id_is_described_inline_or_waited_for() -> None:
    """Issue 9: a derived partner CTID exists nowhere, so it is never sent as a reference."""
    catalog = InMemoryCatalog()
    renderer = RegistryRenderer(OPTIONS, catalog)
    derived = OrganizationRef(ctid=OTHER_CTID, source_id="GUILD")
    described = OrganizationRef(
        ctid=STACK_CTID, source_id="BOARD", name="State Board", webpage="https://board.example/"
    )
    defined = definition(partner_organizations=(derived,), approved_by=(described,))
    await catalog.remember(change(defined, seq=1))
    ref = _ref(DocumentKind.CREDENTIAL, defined.source_id)

    with pytest.raises(Waiting) as waiting:
        await renderer.document(ref)
    assert waiting.value.missing == "organization-unknown: organization:GUILD"

    guild = organization(
        source_id="GUILD",
        ctid=OTHER_CTID,
        name="Harbor Welding Guild",
        webpage="https://guild.example/",
        roles=(OrganizationRole.INDUSTRY_PARTNER,),
    )
    await catalog.remember(change(guild, seq=2))
    [credential, *_] = await renderer.document(ref)
    body = credential.body["Credential"]
    assert body["RecognizedBy"] == [
        {
            "Type": "CredentialOrganization",
            "ceterms:name": {"en-US": "Harbor Welding Guild"},
            "SubjectWebpage": "https://guild.example/",
        }
    ]
    assert body["ApprovedBy"][0]["ceterms:name"] == {"en-US": "State Board"}
    assert OTHER_CTID not in json.dumps(body)
    assert STACK_CTID not in json.dumps(body)
    assert body["OwnedBy"] == [{"CTID": ORG_CTID}], "the account's own organization stays"

    # A partner whose CTID was imported (registered elsewhere) is referenced by CTID.
    await catalog.remember(change(guild.model_copy(update={"ctid_imported": True}), seq=3))
    [credential, *_] = await renderer.document(ref)
    assert credential.body["Credential"]["RecognizedBy"] == [{"CTID": OTHER_CTID}]


async def test_a_retired_definition_never_waits_for_a_partner() -> None:
    catalog = InMemoryCatalog()
    renderer = RegistryRenderer(OPTIONS, catalog)
    defined = definition(
        partner_organizations=(OrganizationRef(ctid=OTHER_CTID, source_id="GUILD"),)
    )
    await catalog.remember(change(defined, seq=1))
    deleted = change(
        None,
        seq=2,
        operation=Operation.DELETE,
        entity_type=EntityType.CREDENTIAL_DEFINITION,
        source_id=defined.source_id,
    )
    await catalog.remember(deleted)

    [deprecated] = await renderer.document(_ref(DocumentKind.CREDENTIAL, defined.source_id))

    assert "RecognizedBy" not in deprecated.body["Credential"]
    assert deprecated.body["Credential"]["CredentialStatusType"] == "credentialStat:Deprecated"
