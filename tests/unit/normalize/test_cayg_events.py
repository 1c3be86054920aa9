"""cayg CloudEvents and backfill records → changes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cayg_normalize.domain import MappingError
from cayg_shared.ids import ctid
from cayg_shared.schema import (
    Approach,
    Change,
    CredentialAward,
    CredentialDefinition,
    CtdlCredentialType,
    Operation,
    Organization,
    TypeBasis,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "shared" / "cloudevents" / "examples" / "structured"
HARBOR = "sis.events.harbor-tech"
Run = Callable[..., list[Change]]
Golden = Callable[[str], tuple[str, dict[str, Any]]]


def _event(event_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return copy.deepcopy(loaded)


def _definition_event() -> dict[str, Any]:
    return _event("org.caygsync.definition.upserted.v1")


def _award_event() -> dict[str, Any]:
    return _event("org.caygsync.award.issued.v1")


def _error(run: Run, value: dict[str, Any], topic: str = HARBOR) -> MappingError:
    with pytest.raises(MappingError) as caught:
        run(value, topic)
    return caught.value


def test_a_definition_event_maps_every_relation(run: Run) -> None:
    (change,) = run(_definition_event(), HARBOR)
    definition = change.entity
    assert isinstance(definition, CredentialDefinition)
    assert definition.credential_type is CtdlCredentialType.MICRO_CREDENTIAL
    assert definition.type_basis is TypeBasis.EXPLICIT
    assert definition.ctid == ctid("harbor-tech", "credential-definition", "WELD-MC1")
    assert definition.is_part_of[0].ctid == ctid(
        "harbor-tech", "credential-definition", "WELD-CERT"
    )
    assert definition.is_preparation_for[0].ctid == "ce-3a8c5e21-7f4b-4d90-b1e6-0c2d9f7a5b18"
    assert definition.partner_organizations[0].ctid == ctid(
        "harbor-tech", "organization", "ORG-PFA"
    )
    assert (
        definition.transfer_values[0].accepted_by.ctid == "ce-5c2a9e17-8b4d-4f03-a6e2-1d9b7c3f5e80"
    )
    assert definition.credit_value is not None
    assert definition.credit_value.unit == "creditUnit:QuarterHour"
    assert definition.offered_by == definition.owned_by
    assert change.source_version.sequence == 12
    assert change.source_version.stream == "sis-row-version"


def test_an_organization_and_references_to_it_agree_on_its_ctid(run: Run) -> None:
    (change,) = run(_event("org.caygsync.organization.upserted.v1"), HARBOR)
    assert isinstance(change.entity, Organization)
    (definition_change,) = run(_definition_event(), HARBOR)
    assert isinstance(definition_change.entity, CredentialDefinition)
    assert definition_change.entity.partner_organizations[0].ctid == change.entity.ctid


def test_an_imported_organization_ctid_is_used_for_the_organization_and_references(
    run: Run,
) -> None:
    event = _event("org.caygsync.organization.upserted.v1")
    event["data"] |= {"sourceId": "ORG-NWAC", "ctid": "ce-9d3e1b75-4c2a-4f86-a0b9-6e1f8c2d7a43"}
    (change,) = run(event, HARBOR)
    assert isinstance(change.entity, Organization)
    assert change.entity.ctid_imported
    definition = _definition_event()
    definition["data"]["accreditedBy"] = [{"sourceId": "ORG-NWAC"}]
    (definition_change,) = run(definition, HARBOR)
    assert isinstance(definition_change.entity, CredentialDefinition)
    assert definition_change.entity.accredited_by[0].ctid == change.entity.ctid


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (
            {
                "type": "org.caygsync.definition.upserted.v1",
                "data": {"ctid": "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63"},
            },
            "$.data.ctid",
        ),
        (
            {
                "type": "org.caygsync.organization.upserted.v1",
                "data": {"ctid": "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63"},
            },
            "$.data.ctid",
        ),
    ],
)
def test_a_stated_ctid_that_differs_from_the_tenants_is_a_conflict(
    run: Run, event: dict[str, Any], path: str
) -> None:
    value = _event(event["type"])
    value["data"] |= event["data"]
    error = _error(run, value)
    assert (error.reason, error.field_path) == ("ctid-conflict", path)


def test_a_stated_ctid_equal_to_the_derived_one_is_fine(run: Run) -> None:
    value = _definition_event()
    value["data"]["ctid"] = (
        ctid("harbor-tech", "credential-definition", "WELD-MC1").upper().replace("CE-", "ce-")
    )
    assert run(value, HARBOR)[0].operation is Operation.UPSERT


@pytest.mark.parametrize("credential_type", ["Degree", "ceterms:Credential", "Nanodegree"])
def test_generic_or_unknown_types_follow_the_tenant_policy(run: Run, credential_type: str) -> None:
    value = _definition_event()
    value["data"]["credentialType"] = credential_type
    error = _error(run, value)
    assert (error.reason, error.field_path) == ("unknown-credential-type", "$.data.credentialType")
    # Lakeshore's policy is use-default (Certificate).
    value["source"] = "https://badges.lakeshore.example/events"
    (change,) = run(value, "sis.events.lakeshore-univ")
    assert isinstance(change.entity, CredentialDefinition)
    assert (change.entity.credential_type, change.entity.type_basis) == (
        CtdlCredentialType.CERTIFICATE,
        TypeBasis.TENANT_DEFAULT,
    )


def test_an_omitted_type_is_inferred_from_code_and_name(run: Run) -> None:
    value = _definition_event()
    del value["data"]["credentialType"]
    (change,) = run(value, HARBOR)
    assert isinstance(change.entity, CredentialDefinition)
    assert change.entity.credential_type is CtdlCredentialType.MICRO_CREDENTIAL
    assert change.entity.type_basis is TypeBasis.ABBREVIATION


def test_event_data_problems_point_into_data(run: Run) -> None:
    value = _award_event()
    value["data"]["learner"] = {}
    error = _error(run, value)
    assert error.field_path == "$.data.learner"
    value = _award_event()
    value["data"]["awardedOn"] = "30/05/2025"
    assert _error(run, value).field_path == "$.data.awardedOn"


def test_credits_earned_must_be_exact(run: Run) -> None:
    value = _award_event()
    value["data"]["creditsEarned"] = {"minValue": 1, "maxValue": 6, "unit": "QuarterHour"}
    assert _error(run, value).reason == "invalid-entity"


def test_learner_identifiers_never_reach_mapping_errors(run: Run) -> None:
    value = _award_event()
    value["data"]["learner"]["email"] = "H00418822-is-not-an-email"
    error = _error(run, value)
    assert "H00418822" not in error.detail
    assert "H00418822" not in str(error)


def test_a_revoke_event_is_a_revoke_of_that_award(run: Run) -> None:
    (change,) = run(_event("org.caygsync.award.revoked.v1"), HARBOR)
    assert (change.operation, change.entity, change.retain_parts) == (Operation.REVOKE, None, None)
    assert change.entity_key.source_id == "AWD-2024-000093"


def test_live_events_infer_retro_awards_backfill_never_does(run: Run, golden_value: Golden) -> None:
    value = _award_event()
    value["data"]["awardedOn"] = "2016-05-13"
    (change,) = run(value, HARBOR)
    assert isinstance(change.entity, CredentialAward)
    assert change.entity.approach is None, "Harbor Tech switched the inference off"
    value["source"] = "https://badges.lakeshore.example/events"
    (change,) = run(value, "sis.events.lakeshore-univ")
    assert isinstance(change.entity, CredentialAward)
    assert change.entity.approach is Approach.RETRO_AWARD
    topic, record = golden_value("backfill/award-without-approach")
    (change,) = run(record, topic)
    assert isinstance(change.entity, CredentialAward)
    assert change.entity.approach is None


def test_backfill_rows_are_ordered_by_recorded_at_and_row_version(
    run: Run, golden_value: Golden
) -> None:
    topic, record = golden_value("backfill/award")
    (change,) = run(record, topic)
    assert change.source_version.sequence == 5
    assert change.source_version.time.isoformat() == "2025-01-15T09:30:00+00:00"
    assert isinstance(change.entity, CredentialAward)
    assert change.entity.learner.person_ref == "71f0b3d8-2e6c-4a19-9d45-8c3e0a7b5f12"
    record["data"]["definition"] = {
        "sourceId": "GENED-MS",
        "ctid": "ce-2b7d9f41-6e3a-4c85-b0d2-8a1f5c7e3b96",
    }
    assert _error(run, record, topic).reason == "ctid-conflict"
