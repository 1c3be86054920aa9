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
from cayg_shared.tenants import (
    DEFAULT_DESCRIPTION_TEMPLATE,
    MappingDefaults,
    MissingDescriptionPolicy,
    TenantRegistry,
    UnknownTypePolicy,
    normalize_code,
    type_label,
)

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


# --------------------------------------------------------------------------- descriptions


def test_the_default_template_yields_a_registry_acceptable_description_for_every_type() -> None:
    mapping = MappingDefaults()
    assert mapping.missing_description is MissingDescriptionPolicy.TEMPLATE
    assert mapping.description_template == DEFAULT_DESCRIPTION_TEMPLATE
    for credential_type in CtdlCredentialType:
        text = mapping.fallback_description(credential_type, "Q", "X")
        assert text is not None
        assert len(text) >= 15, text
        assert text.endswith(": Q.")


def test_type_labels_read_as_words() -> None:
    assert type_label(CtdlCredentialType.ASSOCIATE_OF_APPLIED_SCIENCE_DEGREE) == (
        "Associate of applied science degree"
    )
    assert type_label(CtdlCredentialType.MICRO_CREDENTIAL) == "Microcredential"
    assert type_label(CtdlCredentialType.BACHELOR_DEGREE) == "Bachelor's degree"
    assert type_label(CtdlCredentialType.LICENSE) == "License"


def test_a_template_renders_its_placeholders_and_nothing_else() -> None:
    mapping = MappingDefaults(description_template="{name} ({type_label}) from {institution}")
    text = mapping.fallback_description(CtdlCredentialType.CERTIFICATE, "Welding {x}", "Harbor")
    assert text == "Welding {x} (Certificate) from Harbor"
    refuse = MappingDefaults(missing_description=MissingDescriptionPolicy.REFUSE)
    assert refuse.fallback_description(CtdlCredentialType.CERTIFICATE, "Welding", "Harbor") is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{name} offered by {college}", "unknown placeholder"),
        ("A credential of {institution} and more", "must contain {name}"),
        ("{name} ({type_label})", "under the registry's 15 characters"),
        ("{name!r} is a credential of {institution}", "format or conversion"),
        ("{name:>30} is a credential of {institution}", "format or conversion"),
        ("{name} is a credential of {institution", "not a description template"),
    ],
)
def test_templates_that_could_break_the_registry_are_refused_at_load(
    template: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        _registry({"a-college": _tenant(mapping={"description_template": template})})


# --------------------------------------------------------------------------- limits


def test_limits_are_per_tenant_and_the_message_limit_has_one_value() -> None:
    registry = _registry(
        {
            "a-college": _tenant(limits={"max_message_bytes": 4096, "max_json_depth": 12}),
            "b-college": _tenant(max_message_bytes=8192),
            "c-college": _tenant(),
        }
    )
    a, b, c = (registry.get(t) for t in ("a-college", "b-college", "c-college"))
    assert a is not None
    assert b is not None
    assert c is not None
    assert (a.max_message_bytes, a.limits.max_message_bytes, a.limits.max_json_depth) == (
        4096,
        4096,
        12,
    )
    assert (b.max_message_bytes, b.limits.max_message_bytes) == (8192, 8192)
    assert c.limits.max_message_bytes is None
    assert TenantRegistry.from_json(registry.to_json()) == registry


def test_conflicting_or_unsafe_limits_are_refused() -> None:
    with pytest.raises(ValidationError, match="differ"):
        _registry({"a": _tenant(max_message_bytes=4096, limits={"max_message_bytes": 8192})})
    for limits in (
        {"max_message_bytes": 32 * 1024 * 1024},
        {"max_json_depth": 1000},
        {"max_string_chars": 10},
        {"max_headers": 0},
        {"max_string_length": 100},
    ):
        with pytest.raises(ValidationError):
            _registry({"a-college": _tenant(limits=limits)})


# --------------------------------------------------------------------------- institutions


def test_each_tenant_knows_the_other_tenants_home_institutions() -> None:
    lakeshore_ctid = "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"
    guid = "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645"
    registry = _registry(
        {
            "north-cc": _tenant(ethos_home_institution_id=guid),
            "lake-univ": _tenant(organization_ctid=lakeshore_ctid),
        }
    )
    north, lake = registry.get("north-cc"), registry.get("lake-univ")
    assert north is not None
    assert lake is not None
    assert lake.other_tenant_of(source_id=guid.upper()) == "north-cc"
    assert lake.other_tenant_of(ctid=north.org_ctid) == "north-cc"
    assert north.other_tenant_of(ctid=lakeshore_ctid.upper()) == "lake-univ"
    assert north.other_tenant_of(source_id=guid, ctid=north.org_ctid) is None
    assert north.other_tenant_of(source_id="ORG-PFA") is None
    # A reference to another tenant's institution resolves to its CTID, never a new one.
    assert lake.organization_ctid_for(guid) == (north.org_ctid, True)


def test_two_tenants_cannot_share_a_home_institution() -> None:
    guid = "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645"
    with pytest.raises(ValidationError, match="home of"):
        _registry(
            {
                "a-college": _tenant(ethos_home_institution_id=guid),
                "b-college": _tenant(ethos_home_institution_id=guid.upper()),
            }
        )


def test_a_profile_reused_in_another_registry_keeps_what_its_own_registry_said() -> None:
    guid = "1b6d9f30-4e7a-4c52-8a13-d0f2b9e7c645"
    both = _registry({"north-cc": _tenant(ethos_home_institution_id=guid), "lake-univ": _tenant()})
    lake = both.get("lake-univ")
    assert lake is not None
    alone = TenantRegistry(tenants={"lake-univ": lake})
    assert lake.other_tenant_of(source_id=guid) == "north-cc"
    alone_lake = alone.get("lake-univ")
    assert alone_lake is not None
    assert alone_lake.other_tenant_of(source_id=guid) is None
