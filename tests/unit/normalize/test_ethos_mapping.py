"""Ethos resources → changes: the decisions each mapping documents, one by one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cayg_normalize.domain import MappingError, normalize
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.ids import ctid
from cayg_shared.schema import (
    Approach,
    Change,
    CredentialAward,
    CredentialDefinition,
    EntityType,
    LearnerIdentity,
    Operation,
    Organization,
    Program,
    ProgramStatus,
)
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

Run = Callable[..., list[Change]]
Golden = Callable[[str], tuple[str, dict[str, Any]]]


def _error(
    run: Run, value: dict[str, Any], topic: str = "sis.events.northfield-cc"
) -> MappingError:
    with pytest.raises(MappingError) as caught:
        run(value, topic)
    return caught.value


# --------------------------------------------------------------------------- common


def test_the_envelope_and_the_profile_must_be_the_same_tenant(
    tenants: TenantRegistry, envelope_of: Callable[..., IngestEnvelope], golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    envelope = envelope_of(value, topic)
    other = tenants.get("lakeshore-univ")
    assert other is not None
    with pytest.raises(MappingError) as caught:
        normalize(envelope, other)
    assert caught.value.reason == "tenant-mismatch"


def test_changes_carry_the_envelopes_ids_and_ethos_ordering(
    envelope_of: Callable[..., IngestEnvelope], tenants: TenantRegistry, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/academic-credentials/created")
    traceparent = "00-5e1a0c6f2b3d4e8f9a7b6c5d4e3f2a1b-1a2b3c4d5e6f7081-01"
    envelope = envelope_of(value, topic, headers={"traceparent": traceparent})
    profile = tenants.get("northfield-cc")
    assert profile is not None
    (change,) = normalize(envelope, profile)
    assert change.causation_id == envelope.event_id
    assert change.correlation_id == envelope.correlation_id
    assert change.traceparent == traceparent
    assert change.source_version.stream == "ethos:6f1c2b7e-0d8a-4c41-9a55-2f3e7b1d9c04"
    assert change.source_version.sequence == 104233
    assert change.source_time == datetime(2025, 2, 3, 14, 5, 11, 482913, tzinfo=UTC)
    assert normalize(envelope, profile) == [change], "deterministic"


@pytest.mark.parametrize(
    ("resource", "version"),
    [
        ("academic-credentials", "application/vnd.hedtech.integration.v7+json"),
        ("academic-programs", "application/vnd.hedtech.integration.v10+json"),
        ("persons", "application/json"),
    ],
)
def test_unknown_major_versions_are_refused(
    run: Run, golden_value: Golden, resource: str, version: str
) -> None:
    _, value = golden_value(f"ethos/{resource}/replaced")
    value["resource"]["version"] = version
    error = _error(run, value)
    assert (error.reason, error.field_path) == ("unsupported-version", "$.resource.version")


def test_minor_versions_are_understood(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/persons/replaced")
    value["resource"]["version"] = "application/vnd.hedtech.integration.v12.6.0+json"
    assert run(value)[0].operation is Operation.UPSERT


def test_content_must_be_about_the_notified_resource(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/academic-credentials/created")
    value["content"]["id"] = "00000000-0000-4000-8000-000000000001"
    error = _error(run, value)
    assert (error.reason, error.field_path) == ("inconsistent-id", "$.content.id")


@pytest.mark.parametrize(
    ("name", "mutate", "path"),
    [
        ("ethos/academic-credentials/created", lambda c: c.pop("title"), "$.content.title"),
        ("ethos/academic-credentials/created", lambda c: c.update(title="  "), "$.content.title"),
        (
            "ethos/student-academic-credentials/created",
            lambda c: c.pop("student"),
            "$.content.student",
        ),
        (
            "ethos/student-academic-credentials/created",
            lambda c: c["credentials"][0]["credential"].pop("id"),
            "$.content.credentials[0].credential.id",
        ),
        (
            "ethos/educational-institutions/created",
            lambda c: c.pop("homeInstitution"),
            "$.content.homeInstitution",
        ),
        (
            "ethos/academic-programs/created",
            lambda c: c.update(status="closed"),
            "$.content.status",
        ),
    ],
)
def test_field_problems_point_at_the_ethos_field(
    run: Run, golden_value: Golden, name: str, mutate: Callable[[dict[str, Any]], object], path: str
) -> None:
    topic, value = golden_value(name)
    mutate(value["content"])
    error = _error(run, value, topic)
    assert error.field_path == path
    assert error.reason in {"missing-field", "invalid-field"}


def test_created_without_content_is_missing_content(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/academic-credentials/created")
    value["content"] = {}
    assert _error(run, value).field_path == "$.content"


# --------------------------------------------------------------------------- definitions


def test_a_definition_gets_the_tenants_organization_and_defaults(
    run: Run, golden_value: Golden
) -> None:
    _, value = golden_value("ethos/academic-credentials/replaced")
    (change,) = run(value)
    definition = change.entity
    assert isinstance(definition, CredentialDefinition)
    assert definition.ctid == ctid(
        "northfield-cc", "credential-definition", "3f9a1c6e-7b20-4d58-9e43-c1a8f5d0b726"
    )
    assert definition.owned_by[0].ctid == ctid("northfield-cc", "organization", "northfield-cc")
    assert definition.language == "en-US"
    assert definition.achievement_type == "AssociateDegree"
    assert change.entity_key.source_id == "3f9a1c6e-7b20-4d58-9e43-c1a8f5d0b726"


def test_an_imported_ctid_is_used_not_reminted(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/academic-credentials/replaced")
    value["content"]["abbreviation"] = "AAS-NURS"
    (change,) = run(value)
    assert isinstance(change.entity, CredentialDefinition)
    assert change.entity.ctid == "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63"
    assert change.entity.ctid_imported


def test_the_unknown_type_policy_decides_ambiguous_degrees(run: Run, golden_value: Golden) -> None:
    topic, value = golden_value("ethos/academic-credentials/replaced-ambiguous-degree-rejected")
    error = _error(run, value, topic)
    assert (error.reason, error.field_path) == ("unknown-credential-type", "$.content.type")
    topic, value = golden_value("ethos/academic-credentials/created-ambiguous-degree-default")
    (change,) = run(value, topic)
    assert isinstance(change.entity, CredentialDefinition)
    assert change.entity.type_basis == "tenant-default"


def test_a_deleted_definition_is_a_delete(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/academic-credentials/deleted")
    (change,) = run(value)
    assert change.operation is Operation.DELETE
    assert change.entity is None
    assert change.entity_key.entity_type is EntityType.CREDENTIAL_DEFINITION


# --------------------------------------------------------------------------- awards


def _awards(changes: list[Change]) -> dict[str, CredentialAward]:
    return {
        c.entity_key.part or "": c.entity for c in changes if isinstance(c.entity, CredentialAward)
    }


def test_a_record_with_several_credentials_is_several_awards_and_a_revoke(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/student-academic-credentials/replaced")
    changes = run(value, topic)
    assert [c.operation for c in changes] == [Operation.UPSERT] * 3 + [Operation.REVOKE]
    assert len({c.kafka_key() for c in changes}) == 1, "one record, one partition"
    assert len({str(c.entity_key) for c in changes}) == 4
    revoke = changes[-1]
    assert revoke.entity_key.part is None
    assert revoke.retain_parts == tuple(sorted(_awards(changes)))
    assert len({c.event_id for c in changes}) == 4


def test_created_records_need_no_revoke(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/student-academic-credentials/created")
    assert [c.operation for c in run(value)] == [Operation.UPSERT]


def test_a_dropped_credential_is_revoked_by_the_record_level_revoke(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/student-academic-credentials/replaced")
    value["content"]["credentials"] = value["content"]["credentials"][:1]
    changes = run(value, topic)
    assert changes[-1].retain_parts == ("5e8b2a17-9d4c-4e30-8f61-3b7a0c9e2d45",)
    value["content"]["credentials"] = []
    (only,) = run(value, topic)
    assert (only.operation, only.retain_parts) == (Operation.REVOKE, ())


def test_a_deleted_record_revokes_everything(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/student-academic-credentials/deleted")
    (change,) = run(value)
    assert (change.operation, change.retain_parts, change.entity) == (Operation.REVOKE, (), None)


def test_award_dates_fall_back_to_graduation_and_duplicates_keep_the_latest(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/student-academic-credentials/replaced")
    credentials = value["content"]["credentials"]
    credentials.append(
        {"credential": {"id": credentials[1]["credential"]["id"].upper()}, "earnedOn": "2023-01-20"}
    )
    awards = _awards(run(value, topic))
    assert len(awards) == 3
    assert str(awards["a3c9e1f7-2b6d-4d08-9e4a-7c1b5f3d8e20"].awarded_on) == "2023-01-20"
    assert str(awards["c5d0b8e2-6f3a-4c19-8b7e-0d2a9f6c1e53"].awarded_on) == "2024-12-14"
    del value["content"]["graduatedOn"]
    error = _error(run, value, topic)
    assert (error.reason, error.field_path) == (
        "missing-field",
        "$.content.credentials[2].earnedOn",
    )


@pytest.mark.parametrize(("earned", "retro"), [("2023-09-25", True), ("2023-09-26", False)])
def test_retro_awards_are_inferred_at_the_tenants_threshold(
    run: Run, golden_value: Golden, earned: str, retro: bool
) -> None:
    # Lakeshore: 540 days; the notification was published 2025-03-18.
    topic, value = golden_value("ethos/student-academic-credentials/replaced")
    value["content"]["credentials"] = [value["content"]["credentials"][0] | {"earnedOn": earned}]
    (award,) = _awards(run(value, topic)).values()
    assert (award.approach is Approach.RETRO_AWARD) is retro


def test_the_learner_is_the_student_person_reference(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/student-academic-credentials/created")
    value["content"]["student"]["id"] = value["content"]["student"]["id"].upper()
    (award,) = _awards(run(value)).values()
    assert award.learner.person_ref == "71f0b3d8-2e6c-4a19-9d45-8c3e0a7b5f12"
    assert award.learner.email is None


# --------------------------------------------------------------------------- programs


def test_programs_reference_their_credentials_by_ctid(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/academic-programs/created")
    (change,) = run(value)
    program = change.entity
    assert isinstance(program, Program)
    assert [c.ctid for c in program.credentials] == [
        ctid("northfield-cc", "credential-definition", "3f9a1c6e-7b20-4d58-9e43-c1a8f5d0b726"),
        ctid("northfield-cc", "credential-definition", "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58"),
    ]
    assert program.credential_type_hint == "ceterms:AssociateDegree"
    assert program.status is ProgramStatus.ACTIVE


def test_a_program_without_status_is_inactive_iff_it_has_ended(
    run: Run, golden_value: Golden
) -> None:
    _, value = golden_value("ethos/academic-programs/replaced")
    (change,) = run(value)
    assert isinstance(change.entity, Program)
    assert change.entity.status is ProgramStatus.INACTIVE
    del value["content"]["endOn"]
    (change,) = run(value)
    assert isinstance(change.entity, Program)
    assert change.entity.status is ProgramStatus.ACTIVE


# --------------------------------------------------------------------------- institutions


def test_only_the_home_institution_becomes_an_organization(run: Run, golden_value: Golden) -> None:
    _, home = golden_value("ethos/educational-institutions/created")
    (change,) = run(home)
    assert isinstance(change.entity, Organization)
    assert change.entity.ctid == ctid("northfield-cc", "organization", "northfield-cc")
    assert change.entity.webpage == "https://www.northfield.example/"
    _, external = golden_value("ethos/educational-institutions/replaced")
    assert run(external) == []
    _, deleted = golden_value("ethos/educational-institutions/deleted")
    assert run(deleted) == []


# --------------------------------------------------------------------------- persons


def test_persons_yield_only_identifiers_never_national_ids_or_names(
    run: Run, golden_value: Golden
) -> None:
    topic, value = golden_value("ethos/persons/created")
    (change,) = run(value, topic)
    identity = change.entity
    assert isinstance(identity, LearnerIdentity)
    assert [(i.type, i.value.get_secret_value()) for i in identity.institution_ids] == [
        ("bannerId", "L00987654"),
        ("bannerUserName", "mnguyen42"),
    ]
    assert [e.get_secret_value() for e in identity.emails] == [
        "mnguyen42@lakeshore.example",
        "minh.khai.nguyen@mail.example",
    ]
    assert identity.privacy_restricted
    wire = change.to_kafka_value().decode()
    for absent in ("123-45-6789", "Nguyễn", "Minh Khai", "2001-09-02", "not-an-address"):
        assert absent not in wire


def test_a_person_without_usable_identifiers_is_refused(run: Run, golden_value: Golden) -> None:
    topic, value = golden_value("ethos/persons/created")
    value["content"]["credentials"] = [{"type": "ssn", "value": "123-45-6789"}]
    value["content"]["emails"] = [{"type": {"emailType": "personal"}, "address": "nope"}]
    error = _error(run, value, topic)
    assert error.reason == "no-learner-identifier"
    assert "123-45-6789" not in error.detail


def test_a_deleted_person_is_forgotten(run: Run, golden_value: Golden) -> None:
    _, value = golden_value("ethos/persons/deleted")
    (change,) = run(value)
    assert (change.operation, change.entity_key.entity_type) == (
        Operation.DELETE,
        EntityType.LEARNER_IDENTITY,
    )
