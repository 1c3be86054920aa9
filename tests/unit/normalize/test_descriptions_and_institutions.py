"""Real SIS data: definitions without descriptions, institutions of other tenants, long text.

* every input format that can lack a description (Ethos ``academic-credentials``, the
  ``definition.upserted`` CloudEvent, its backfill row) gets the tenant's fallback, or
  ``missing-description`` under the ``refuse`` policy;
* one institution rule for every resource that names one: another tenant's home
  institution may not act for a record (``tenant-mismatch``); the tenant's own and
  external institutions are legal, and so are partners that are another tenant;
* a 200 KB description, legal within the message limit, is mapped whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cayg_normalize.domain import MappingError, normalize
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.schema import Change, CredentialDefinition, Organization, Program
from cayg_shared.tenants import TenantProfile, TenantRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "shared" / "cloudevents" / "examples" / "structured"
NORTHFIELD = "sis.events.northfield-cc"
LAKESHORE = "sis.events.lakeshore-univ"
HARBOR = "sis.events.harbor-tech"
#: Northfield's Ethos home institution (``ethos_home_institution_id``).
NORTHFIELD_HOME = "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645"
#: Lakeshore's imported organization CTID.
LAKESHORE_CTID = "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"
LAKESHORE_PUBLISHER = {
    "id": "d3a9e0c4-77b1-4e2f-b5d6-0a8c1f4e6b93",
    "applicationName": "Banner Student API",
}
EXTERNAL_GUID = "77aa0c3e-5b1d-4e0f-9a26-3c4d5e6f7a80"

Run = Callable[..., list[Change]]
Golden = Callable[[str], tuple[str, dict[str, Any]]]
EnvelopeOf = Callable[..., IngestEnvelope]


def _error(run: Run, value: dict[str, Any], topic: str) -> MappingError:
    with pytest.raises(MappingError) as caught:
        run(value, topic)
    return caught.value


def _definition(changes: list[Change]) -> CredentialDefinition:
    (change,) = changes
    assert isinstance(change.entity, CredentialDefinition)
    return change.entity


def _event(event_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return copy.deepcopy(loaded)


def _with_mapping(tenants: TenantRegistry, tenant: str, **mapping: Any) -> TenantProfile:
    """The tenant's profile, re-loaded in a registry with its mapping changed."""
    document = json.loads(tenants.to_json())
    document["tenants"][tenant]["mapping"] |= mapping
    profile = TenantRegistry.model_validate(document).get(tenant)
    assert profile is not None
    return profile


# --------------------------------------------------------------------------- descriptions


def test_an_ethos_credential_without_description_gets_the_default_template(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    del value["content"]["description"]
    definition = _definition(run(value, topic))
    assert definition.description == (
        "Microcredential awarded by Northfield Community College: "
        "Microcredential: SQL for Analysts."
    )
    assert definition.description_generated is True


def test_the_sis_description_is_kept_when_the_registry_can_take_it(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    definition = _definition(run(value, topic))
    assert definition.description == "Stacks into the Business Data Analytics certificate."
    assert definition.description_generated is False


@pytest.mark.parametrize("given", ["", "   ", "SQL course", "x" * 14])
def test_a_blank_or_too_short_description_is_replaced(
    run: Run, golden_value: Golden, given: str
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    value["content"]["description"] = given
    definition = _definition(run(value, topic))
    assert definition.description_generated is True
    assert definition.description is not None
    assert definition.description.startswith("Microcredential awarded by")


def test_a_one_letter_name_still_gets_a_registry_acceptable_description(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    del value["content"]["description"]
    value["content"]["title"] = "Q"
    value["content"]["abbreviation"] = "CNA"  # a License: the shortest kind of label here
    definition = _definition(run(value, topic))
    assert definition.description is not None
    assert len(definition.description) >= 15
    assert definition.description == "License awarded by Northfield Community College: Q."


def test_a_tenant_template_is_rendered_with_type_name_and_institution(
    tenants: TenantRegistry, envelope_of: EnvelopeOf, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    del value["content"]["description"]
    profile = _with_mapping(
        tenants,
        "northfield-cc",
        description_template="{name} — a {type_label} of {institution}",
    )
    definition = _definition(normalize(envelope_of(value, topic), profile))
    assert definition.description == (
        "Microcredential: SQL for Analysts — a Microcredential of Northfield Community College"
    )


def test_under_the_refuse_policy_a_missing_description_is_dead_lettered(
    tenants: TenantRegistry, envelope_of: EnvelopeOf, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    del value["content"]["description"]
    profile = _with_mapping(tenants, "northfield-cc", missing_description="refuse")
    with pytest.raises(MappingError) as caught:
        normalize(envelope_of(value, topic), profile)
    assert caught.value.reason == "missing-description"
    assert caught.value.field_path == "$.content.description"
    assert "refuse" in caught.value.detail
    # A description the registry can take passes under refuse too.
    _, complete = golden_value("ethos/academic-credentials/created")
    assert _definition(normalize(envelope_of(complete, topic), profile)).description


def test_a_cloudevent_definition_without_description_gets_the_fallback(run: Run) -> None:
    event = _event("org.caygsync.definition.upserted.v1")
    del event["data"]["description"]
    definition = _definition(run(event, HARBOR))
    assert definition.description == (
        "Microcredential awarded by Harbor Technical Institute: Structural Welding Fundamentals."
    )
    assert definition.description_generated is True


def test_a_backfill_definition_without_description_gets_the_fallback(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("backfill/definition")
    del value["data"]["description"]
    definition = _definition(run(value, topic))
    assert definition.description == (
        "Certificate of completion awarded by Northfield Community College: "
        "General Education Core Milestone."
    )
    assert definition.description_generated is True


def test_a_backfill_definition_under_refuse_is_dead_lettered(
    tenants: TenantRegistry, envelope_of: EnvelopeOf, golden_value: Golden
) -> None:
    topic, value = golden_value("backfill/definition")
    value["data"]["description"] = "Short."
    profile = _with_mapping(tenants, "northfield-cc", missing_description="refuse")
    with pytest.raises(MappingError) as caught:
        normalize(envelope_of(value, topic), profile)
    assert caught.value.reason == "missing-description"
    assert caught.value.field_path == "$.data.description"


# --------------------------------------------------------------------------- institutions


def _lakeshore_institution(home: str, guid: str) -> dict[str, Any]:
    return {
        "id": "77001",
        "published": "2025-03-01 10:00:00+00",
        "publisher": LAKESHORE_PUBLISHER,
        "resource": {
            "name": "educational-institutions",
            "id": guid,
            "version": "application/vnd.hedtech.integration.v6+json",
        },
        "operation": "replaced",
        "content": {"id": guid, "title": "Northfield Community College", "homeInstitution": home},
    }


def test_an_institution_record_claiming_another_tenants_home_is_refused(run: Run) -> None:
    # Lakeshore configures no home institution id: the rule still holds.
    error = _error(run, _lakeshore_institution("home", NORTHFIELD_HOME.upper()), LAKESHORE)
    assert error.reason == "tenant-mismatch"
    assert "northfield-cc" in error.detail


def test_another_tenants_institution_as_external_is_legal(run: Run) -> None:
    assert run(_lakeshore_institution("external", NORTHFIELD_HOME), LAKESHORE) == []


def test_an_unconfigured_tenants_own_home_institution_is_accepted(run: Run) -> None:
    (change,) = run(_lakeshore_institution("home", EXTERNAL_GUID), LAKESHORE)
    assert isinstance(change.entity, Organization)
    assert change.entity.ctid == LAKESHORE_CTID


def _program(run: Run, golden_value: Golden, authorizer: str | None) -> list[Change]:
    _, value = golden_value("ethos/academic-programs/created")
    value["publisher"] = LAKESHORE_PUBLISHER
    if authorizer is None:
        del value["content"]["authorizing"]
    else:
        value["content"]["authorizing"] = {"institution": {"id": authorizer}}
    return run(value, LAKESHORE)


def test_a_program_authorized_by_another_tenants_institution_is_refused(
    run: Run, golden_value: Golden
) -> None:
    with pytest.raises(MappingError) as caught:
        _program(run, golden_value, NORTHFIELD_HOME)
    assert caught.value.reason == "tenant-mismatch"
    assert caught.value.field_path == "$.content.authorizing.institution.id"


@pytest.mark.parametrize("authorizer", [EXTERNAL_GUID, None])
def test_a_program_authorized_externally_or_by_nobody_is_legal(
    run: Run, golden_value: Golden, authorizer: str | None
) -> None:
    (change,) = _program(run, golden_value, authorizer)
    assert isinstance(change.entity, Program)
    assert change.entity.owned_by.ctid == LAKESHORE_CTID


def test_a_program_authorized_by_its_own_institution_is_legal(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-programs/created")
    assert value["content"]["authorizing"]["institution"]["id"] == NORTHFIELD_HOME
    (change,) = run(value, topic)
    assert isinstance(change.entity, Program)


@pytest.mark.parametrize(
    "offerer",
    [
        {"ctid": LAKESHORE_CTID},
        {"sourceId": NORTHFIELD_HOME, "name": "Northfield Community College"},
    ],
)
def test_a_cloudevent_definition_offered_by_another_tenant_is_refused(
    run: Run, offerer: dict[str, Any]
) -> None:
    event = _event("org.caygsync.definition.upserted.v1")
    event["data"]["offeredBy"] = [offerer]
    error = _error(run, event, HARBOR)
    assert error.reason == "tenant-mismatch"
    assert error.field_path == "$.data.offeredBy[0]"


def test_a_backfill_definition_offered_by_another_tenant_is_refused(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("backfill/definition")
    value["data"]["offeredBy"] = [{"ctid": LAKESHORE_CTID}]
    error = _error(run, value, topic)
    assert error.reason == "tenant-mismatch"


def test_partners_and_external_offerers_stay_legal_and_resolve_to_their_ctid(
    run: Run, tenants: TenantRegistry
) -> None:
    northfield = tenants.get("northfield-cc")
    assert northfield is not None
    event = _event("org.caygsync.definition.upserted.v1")
    event["data"]["offeredBy"] = [
        {"sourceId": "ORG-PFA", "name": "Pacific Fabrication Alliance"},
    ]
    event["data"]["partnerOrganizations"] = [
        {"ctid": LAKESHORE_CTID},
        {"sourceId": NORTHFIELD_HOME, "name": "Northfield Community College"},
    ]
    event["data"]["accreditedBy"] = [{"ctid": LAKESHORE_CTID}]
    definition = _definition(run(event, HARBOR))
    assert [p.ctid for p in definition.partner_organizations] == [
        LAKESHORE_CTID,
        northfield.org_ctid,
    ]
    assert [a.ctid for a in definition.accredited_by] == [LAKESHORE_CTID]


@pytest.mark.parametrize(
    "claim",
    [{"sourceId": "LSU", "ctid": LAKESHORE_CTID}, {"sourceId": NORTHFIELD_HOME}],
)
def test_an_organization_event_describing_another_tenant_is_refused(
    run: Run, claim: dict[str, Any]
) -> None:
    event = _event("org.caygsync.organization.upserted.v1")
    event["data"] |= claim
    if "ctid" not in claim:
        event["data"].pop("ctid", None)
    error = _error(run, event, HARBOR)
    assert error.reason == "tenant-mismatch"


def test_a_backfill_organization_describing_another_tenant_is_refused(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("backfill/organization")
    value["data"]["ctid"] = LAKESHORE_CTID
    assert _error(run, value, topic).reason == "tenant-mismatch"


def test_an_external_organization_event_is_legal(run: Run, golden_value: Golden) -> None:
    topic, value = golden_value("backfill/organization")
    (change,) = run(value, topic)
    assert isinstance(change.entity, Organization)
    assert change.entity.name == "Higher Learning Commission"


# --------------------------------------------------------------------------- long text


def test_a_200_kb_program_description_is_mapped_whole(run: Run, golden_value: Golden) -> None:
    topic, value = golden_value("ethos/academic-programs/created")
    paragraph = "Learners analyse data with SQL, Python and spreadsheets. "
    description = (paragraph * (200_000 // len(paragraph) + 1))[:200_000].strip()
    value["content"]["description"] = description
    (change,) = run(value, topic)
    assert isinstance(change.entity, Program)
    assert change.entity.description == description
