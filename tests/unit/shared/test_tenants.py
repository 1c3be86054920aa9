"""The tenant registry: the sample file, ownership rules, imported CTIDs and policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from cayg_shared.ids import ctid
from cayg_shared.schema import CtdlCredentialType
from cayg_shared.tenants import TenantRegistry, UnknownTypePolicy, normalize_code

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "deploy" / "config" / "tenants.json"


def _registry(tenants: dict[str, Any]) -> TenantRegistry:
    return TenantRegistry.model_validate({"tenants": tenants})


def _tenant(**fields: Any) -> dict[str, Any]:
    return {"display_name": "X College", "webpage": "https://x.example/"} | fields


def test_the_sample_file_describes_three_institutions() -> None:
    registry = TenantRegistry.load(SAMPLE)
    assert sorted(registry.tenants) == ["harbor-tech", "lakeshore-univ", "northfield-cc"]
    northfield = registry.get("northfield-cc")
    assert northfield is not None
    assert northfield.mapping.zone.key == "America/Chicago"
    assert northfield.mapping.unknown_credential_type is UnknownTypePolicy.REJECT
    assert registry.owner_of_ethos_publisher("6F1C2B7E-0D8A-4C41-9A55-2F3E7B1D9C04") == (
        "northfield-cc"
    )
    assert registry.owner_of_cloudevent_source("https://sis.harbortech.example/awards") == (
        "harbor-tech"
    )
    assert registry.owner_of_cloudevent_source("https://sis.harbortech.example.evil/") is None
    assert "lakeshore-univ" in registry
    assert registry.get("nowhere") is None


def test_the_registry_round_trips_through_its_file_format() -> None:
    registry = TenantRegistry.load(SAMPLE)
    assert TenantRegistry.from_json(registry.to_json()) == registry
    assert "tenant_id" not in json.loads(registry.to_json())["tenants"]["harbor-tech"]


def test_an_ethos_publisher_belongs_to_one_tenant_only() -> None:
    publisher = [{"id": "6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04"}]
    with pytest.raises(ValidationError, match="publisher"):
        _registry(
            {
                "a-college": _tenant(ethos_publishers=publisher),
                "b-college": _tenant(ethos_publishers=[{"id": publisher[0]["id"].upper()}]),
            }
        )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://sis.example/*", "https://sis.example/awards"),
        ("https://sis.example/awards", "https://sis.example/*"),
        ("https://sis.example/*", "https://sis.example/a/*"),
        ("urn:sis:x", "urn:sis:x"),
    ],
)
def test_cloudevent_sources_of_two_tenants_must_not_overlap(a: str, b: str) -> None:
    with pytest.raises(ValidationError, match="overlaps"):
        _registry(
            {
                "a-college": _tenant(cloudevent_sources=[a]),
                "b-college": _tenant(cloudevent_sources=[b]),
            }
        )


def test_the_key_is_the_tenant_id() -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        _registry({"a-college": _tenant(tenant_id="b-college")})
    with pytest.raises(ValidationError):
        _registry({"Not A Tenant": _tenant()})


def test_mapping_policy_rules() -> None:
    with pytest.raises(ValidationError, match="default_credential_type"):
        _registry({"a-college": _tenant(mapping={"unknown_credential_type": "use-default"})})
    with pytest.raises(ValidationError, match="national identifiers"):
        _registry({"a-college": _tenant(mapping={"learner_id_types": ["bannerId", "ssn"]})})
    with pytest.raises(ValidationError, match="time zone"):
        _registry({"a-college": _tenant(mapping={"time_zone": "Mars/Olympus"})})
    registry = _registry(
        {
            "a-college": _tenant(
                mapping={
                    "credential_type_overrides": {"c.p.t.": "ceterms:Certification"},
                    "microcredential_prefixes": ["mc-"],
                }
            )
        }
    )
    profile = registry.get("a-college")
    assert profile is not None
    assert profile.mapping.credential_type_overrides == {"CPT": CtdlCredentialType.CERTIFICATION}
    assert profile.mapping.microcredential_prefixes == ("MC-",)


def test_organization_ctids_are_imported_or_derived_never_both() -> None:
    imported = "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"
    registry = _registry(
        {
            "a-college": _tenant(
                organization_ctid=imported.upper().replace("CE-", "ce-"),
                ethos_home_institution_id="home-guid",
                organization_ctids={"HLC": "ce-9d3e1b75-4c2a-4f86-a0b9-6e1f8c2d7a43"},
            ),
            "b-college": _tenant(),
        }
    )
    a, b = registry.get("a-college"), registry.get("b-college")
    assert a is not None
    assert b is not None
    assert a.org_ctid == imported
    assert a.organization_ctid_for("home-guid") == (imported, True)
    assert a.organization_ctid_for("a-college") == (imported, True)
    assert a.organization_ctid_for("HLC") == ("ce-9d3e1b75-4c2a-4f86-a0b9-6e1f8c2d7a43", True)
    assert a.organization_ctid_for("ORG-PFA") == (
        ctid("a-college", "organization", "ORG-PFA"),
        False,
    )
    assert b.org_ctid == ctid("b-college", "organization", "b-college")
    assert b.organization_ref().ctid == b.org_ctid


def test_definition_ctids_are_imported_by_sis_id_or_code_else_derived() -> None:
    registry = _registry(
        {
            "a-college": _tenant(
                definition_ctids={
                    "guid-1": "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63",
                    "aas-nurs": "ce-2b7d9f41-6e3a-4c85-b0d2-8a1f5c7e3b96",
                }
            )
        }
    )
    profile = registry.get("a-college")
    assert profile is not None
    assert profile.definition_ctid("guid-1") == ("ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63", True)
    assert profile.definition_ctid("guid-2", "AAS-NURS") == (
        "ce-2b7d9f41-6e3a-4c85-b0d2-8a1f5c7e3b96",
        True,
    )
    assert profile.definition_ctid("guid-3", "BS") == (
        ctid("a-college", "credential-definition", "guid-3"),
        False,
    )


def test_codes_compare_without_dots_spaces_or_case() -> None:
    assert normalize_code(" a.a.s. ") == normalize_code("AAS") == "AAS"
    assert normalize_code("MC-SQL") == "MC-SQL"


def test_the_sample_file_validates_against_the_published_schema() -> None:
    schema = json.loads((REPO / "shared" / "schemas" / "tenant-registry.json").read_text())
    document = json.loads(SAMPLE.read_text())
    assert list(Draft202012Validator(schema).iter_errors(document)) == []
    document["tenants"]["harbor-tech"]["mapping"]["unknown_credential_type"] = "guess"
    assert not Draft202012Validator(schema).is_valid(document)
