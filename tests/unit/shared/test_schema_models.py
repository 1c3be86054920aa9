"""The shared schema's rules: what each model accepts, refuses, hides and orders."""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from cayg_shared.envelope import InputFormat
from cayg_shared.schema import (
    MASKED,
    OB_ACHIEVEMENT_TYPE_FOR,
    OB_ACHIEVEMENT_TYPES,
    Approach,
    AwardStatus,
    Change,
    CredentialAward,
    CredentialDefinition,
    CredentialRef,
    CreditUnit,
    CreditValue,
    CtdlCredentialType,
    EntityKey,
    EntityType,
    LearnerIdentity,
    LearnerRef,
    Operation,
    Organization,
    OrganizationRef,
    OrganizationRole,
    SourceVersion,
    TypeBasis,
    parse_sis_date,
    parse_sis_datetime,
)

pytestmark = pytest.mark.unit

TENANT = "northfield-cc"
CTID_A = "ce-11111111-2222-4333-8444-555555555555"
CTID_B = "ce-66666666-7777-4888-9999-000000000000"
EMAIL = "jnunez@students.northfield.example"
STUDENT_ID = "0412277"
T0 = datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)


def _definition(**overrides: Any) -> CredentialDefinition:
    fields: dict[str, Any] = {
        "source_id": "MC-SQL",
        "ctid": CTID_A,
        "credential_type": CtdlCredentialType.MICRO_CREDENTIAL,
        "type_basis": TypeBasis.EXPLICIT,
        "achievement_type": "MicroCredential",
        "name": "SQL for Analysts",
        "language": "en-US",
        "owned_by": (OrganizationRef(ctid=CTID_B),),
    }
    return CredentialDefinition(**(fields | overrides))


def _award(**overrides: Any) -> CredentialAward:
    fields: dict[str, Any] = {
        "award_id": "AWD-1",
        "learner": LearnerRef(institution_id=SecretStr(STUDENT_ID), email=SecretStr(EMAIL)),
        "definition": CredentialRef(ctid=CTID_A, source_id="MC-SQL"),
        "awarded_on": date(2025, 5, 16),
    }
    return CredentialAward(**(fields | overrides))


def _key(entity_type: EntityType, source_id: str, part: str | None = None) -> EntityKey:
    return EntityKey(tenant=TENANT, entity_type=entity_type, source_id=source_id, part=part)


def _change(operation: Operation, key: EntityKey, entity: Any = None, **extra: Any) -> Change:
    return Change(
        event_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        correlation_id="corr-1",
        tenant=key.tenant,
        operation=operation,
        entity_key=key,
        entity=entity,
        source_version=SourceVersion(stream="ethos:p", sequence=7, time=T0),
        source_format=InputFormat.ETHOS_CHANGE_NOTIFICATION,
        subject_type="student-academic-credentials",
        **extra,
    )


# --------------------------------------------------------------------------- vocabularies


def _descendants(tree: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for name, children in tree.items():
        found.add(name)
        found |= _descendants(children)
    return found


def test_credential_types_are_exactly_the_registrys_concrete_subclasses(
    conformance_dir: Path,
) -> None:
    tree = json.loads((conformance_dir / "credential-engine" / "subclasses_map.json").read_text())
    concrete = _descendants(tree["ceterms:Credential"]) - {"ceterms:Degree"}
    assert {t.value for t in CtdlCredentialType} == concrete
    assert "ceterms:Credential" not in concrete


def test_every_credential_type_has_an_open_badges_achievement_type(conformance_dir: Path) -> None:
    schema = json.loads(
        (conformance_dir / "1edtech/schemas/ob_v3p0_achievementcredential_schema.json").read_text()
    )
    ob_enum = set(
        schema["$defs"]["Achievement"]["properties"]["achievementType"]["oneOf"][0]["enum"]
    )
    assert ob_enum == OB_ACHIEVEMENT_TYPES
    assert set(OB_ACHIEVEMENT_TYPE_FOR) == set(CtdlCredentialType)
    assert set(OB_ACHIEVEMENT_TYPE_FOR.values()) <= ob_enum


def test_credential_types_parse_with_or_without_prefix() -> None:
    assert CtdlCredentialType.parse("BachelorDegree") is CtdlCredentialType.BACHELOR_DEGREE
    assert CtdlCredentialType.parse(" ceterms:microcredential ") is (
        CtdlCredentialType.MICRO_CREDENTIAL
    )
    for abstract in ("Credential", "ceterms:Degree", "Diplomas", ""):
        with pytest.raises(ValueError, match="not a concrete"):
            CtdlCredentialType.parse(abstract)


# --------------------------------------------------------------------------- definitions


def test_achievement_type_must_match_the_credential_type_or_be_an_extension() -> None:
    with pytest.raises(ValidationError, match="does not match"):
        _definition(achievement_type="BachelorDegree")
    with pytest.raises(ValidationError, match=r"not an OB 3\.0"):
        _definition(achievement_type="Nanodegree")
    assert _definition(achievement_type="ext:Nanocredential").achievement_type == (
        "ext:Nanocredential"
    )


def test_generic_credential_types_are_refused() -> None:
    with pytest.raises(ValidationError):
        _definition(credential_type="ceterms:Degree")


def test_a_definition_cannot_link_to_itself() -> None:
    with pytest.raises(ValidationError, match="itself"):
        _definition(is_part_of=(CredentialRef(ctid=CTID_A),))


def test_approaches_are_a_sorted_set() -> None:
    definition = _definition(approaches=["stack", "learn", "stack", "retro-award"])
    assert definition.approaches == (Approach.LEARN, Approach.RETRO_AWARD, Approach.STACK)


def test_ctids_are_lower_cased_and_checked() -> None:
    assert _definition(ctid=CTID_A.upper().replace("CE-", "ce-")).ctid == CTID_A
    for bad in ("11111111-2222-4333-8444-555555555555", "ce-123", "ce-" + "g" * 36):
        with pytest.raises(ValidationError):
            _definition(ctid=bad)


def test_names_are_nfc_normalized_single_lines_in_any_script() -> None:
    decomposed = unicodedata.normalize("NFD", "Técnico en Soldadura: 焊接")
    definition = _definition(name=decomposed)
    assert definition.name == unicodedata.normalize("NFC", decomposed)
    assert definition == _definition(name=unicodedata.normalize("NFC", decomposed))
    with pytest.raises(ValidationError):
        _definition(name="two\nlines")
    with pytest.raises(ValidationError):
        _definition(name="bell\x07")


def test_models_are_frozen_and_refuse_unknown_fields() -> None:
    definition = _definition()
    with pytest.raises(ValidationError):
        definition.name = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        _definition(colour="blue")


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"value": 12}, True),
        ({"min_value": 3, "max_value": 6}, True),
        ({"min_value": 6, "max_value": 3}, False),
        ({"value": 3, "max_value": 6}, False),
        ({"min_value": 3}, False),
        ({}, False),
        ({"value": -1}, False),
        ({"value": float("inf")}, False),
    ],
)
def test_credit_value_is_a_value_or_a_range(fields: dict[str, float], ok: bool) -> None:
    if ok:
        credit = CreditValue.model_validate({"unit": "creditUnit:SemesterHour", **fields})
        assert credit.unit is CreditUnit.SEMESTER_HOUR
    else:
        with pytest.raises(ValidationError):
            CreditValue.model_validate({"unit": "creditUnit:SemesterHour", **fields})


def test_an_organization_reference_needs_a_ctid_or_name_and_webpage() -> None:
    assert OrganizationRef(name="HLC", webpage="https://www.hlcommission.org/").ctid is None
    with pytest.raises(ValidationError):
        OrganizationRef(name="HLC")
    with pytest.raises(ValidationError):
        OrganizationRef(name="HLC", webpage="ftp://hlc.example/")


def test_accreditors_are_quality_assurance_organizations() -> None:
    fields: dict[str, Any] = {
        "tenant": TENANT,
        "source_id": "HLC",
        "name": "Higher Learning Commission",
        "ctid": CTID_B,
        "webpage": "https://www.hlcommission.org/",
    }
    accreditor = Organization(**fields, roles=(OrganizationRole.ACCREDITOR,))
    issuer = Organization(**fields, roles=(OrganizationRole.ISSUER,))
    assert accreditor.ctdl_type == "ceterms:QACredentialOrganization"
    assert issuer.ctdl_type == "ceterms:CredentialOrganization"
    with pytest.raises(ValidationError):
        Organization(**fields, roles=())


# --------------------------------------------------------------------------- learner secrets


def test_learner_identifiers_never_show_in_repr_str_or_ordinary_dumps() -> None:
    award = _award()
    change = _change(Operation.UPSERT, _key(EntityType.CREDENTIAL_AWARD, "AWD-1"), award)
    for text in (
        repr(award),
        str(award),
        repr(change),
        award.model_dump_json(),
        json.dumps(change.model_dump(mode="json")),
        json.dumps(change.to_jsonable()),
    ):
        assert EMAIL not in text
        assert STUDENT_ID not in text
    assert MASKED in award.model_dump_json()


def test_only_the_kafka_encoding_keeps_learner_identifiers_and_it_round_trips() -> None:
    change = _change(Operation.UPSERT, _key(EntityType.CREDENTIAL_AWARD, "AWD-1"), _award())
    value = change.to_kafka_value()
    assert EMAIL.encode() in value
    assert STUDENT_ID.encode() in value
    decoded = Change.from_kafka_value(value)
    assert decoded == change
    assert isinstance(decoded.entity, CredentialAward)
    assert decoded.entity.learner.email is not None
    assert decoded.entity.learner.email.get_secret_value() == EMAIL


def test_a_masked_dump_cannot_be_read_back_as_if_it_were_data() -> None:
    change = _change(Operation.UPSERT, _key(EntityType.CREDENTIAL_AWARD, "AWD-1"), _award())
    with pytest.raises(ValidationError, match="masked learner identifier"):
        Change.model_validate_json(change.model_dump_json())


def test_validation_errors_do_not_echo_learner_identifiers() -> None:
    with pytest.raises(ValidationError) as caught:
        LearnerRef(email=SecretStr("not-an-email-but-secret-0412277"))
    assert "0412277" not in str(caught.value)


def test_emails_are_lower_cased_and_learners_need_some_identifier() -> None:
    learner = LearnerRef(email=SecretStr("  JNunez@Students.Northfield.Example "))
    assert learner.email is not None
    assert learner.email.get_secret_value() == EMAIL
    with pytest.raises(ValidationError):
        LearnerRef()
    with pytest.raises(ValidationError):
        LearnerIdentity(person_ref="p-1")


# --------------------------------------------------------------------------- awards


def test_award_rules() -> None:
    with pytest.raises(ValidationError, match="valid_until"):
        _award(valid_until=date(2025, 1, 1))
    with pytest.raises(ValidationError, match="exact value"):
        _award(credits_earned=CreditValue(min_value=1, max_value=2, unit=CreditUnit.CLOCK_HOUR))
    with pytest.raises(ValidationError, match="revocation_reason"):
        _award(revocation_reason="entered in error")
    with pytest.raises(ValidationError, match="itself"):
        _award(supersedes="AWD-1")
    assert _award(status=AwardStatus.REVOKED, revocation_reason="entered in error").status is (
        AwardStatus.REVOKED
    )


# --------------------------------------------------------------------------- keys and changes


def test_the_kafka_key_groups_every_part_of_a_record() -> None:
    whole = _key(EntityType.CREDENTIAL_AWARD, "rec/1")
    part = _key(EntityType.CREDENTIAL_AWARD, "rec/1", part="cred-9")
    assert whole.kafka_key() == part.kafka_key() == "northfield-cc/credential-award/rec/1"
    assert part.kafka_key_bytes() == b"northfield-cc/credential-award/rec/1"
    assert str(part) == "northfield-cc/credential-award/rec/1#cred-9"
    assert str(whole) != str(part)
    assert part.record_key() == whole
    assert EntityKey.parse_kafka_key(part.kafka_key_bytes()) == whole


def test_change_invariants() -> None:
    award_key = _key(EntityType.CREDENTIAL_AWARD, "AWD-1")
    definition_key = _key(EntityType.CREDENTIAL_DEFINITION, "MC-SQL")
    with pytest.raises(ValidationError, match="carries the entity"):
        _change(Operation.UPSERT, award_key)
    with pytest.raises(ValidationError, match="carries no entity"):
        _change(Operation.DELETE, award_key, _award())
    with pytest.raises(ValidationError, match="only awards"):
        _change(Operation.REVOKE, definition_key)
    with pytest.raises(ValidationError, match="status revoked"):
        _change(Operation.REVOKE, award_key, _award())
    with pytest.raises(ValidationError, match="does not match"):
        _change(Operation.UPSERT, definition_key, _award())
    with pytest.raises(ValidationError, match="own SIS id"):
        _change(Operation.UPSERT, _key(EntityType.CREDENTIAL_AWARD, "AWD-2"), _award())
    with pytest.raises(ValidationError, match="retain_parts"):
        _change(Operation.DELETE, award_key, retain_parts=())
    with pytest.raises(ValidationError, match="definition's SIS id"):
        _change(Operation.UPSERT, _key(EntityType.CREDENTIAL_AWARD, "AWD-1", "OTHER"), _award())
    other_tenant = EntityKey(
        tenant="lakeshore-univ", entity_type=EntityType.CREDENTIAL_AWARD, source_id="AWD-1"
    )
    with pytest.raises(ValidationError, match="tenant"):
        Change(**(_change(Operation.REVOKE, award_key).model_dump() | {"entity_key": other_tenant}))
    revoke_all = _change(Operation.REVOKE, award_key, retain_parts=())
    assert revoke_all.retain_parts == ()
    assert revoke_all.kafka_key() == award_key.kafka_key()
    assert revoke_all.source_time == T0


def test_readers_accept_any_minor_version_of_schema_1() -> None:
    change = _change(Operation.REVOKE, _key(EntityType.CREDENTIAL_AWARD, "AWD-1"))
    data = json.loads(change.to_kafka_value())
    assert Change.model_validate(data | {"schema_version": "1.7"}).schema_version == "1.7"
    with pytest.raises(ValidationError):
        Change.model_validate(data | {"schema_version": "2.0"})


def test_change_ids_are_deterministic() -> None:
    cause = uuid.UUID("3777ada6-2704-5ba6-8567-b90ccab5f86c")
    key = _key(EntityType.CREDENTIAL_AWARD, "AWD-1", "MC-SQL")
    first = Change.derive_event_id(cause, key, Operation.UPSERT)
    assert first == Change.derive_event_id(cause, key, Operation.UPSERT)
    assert first != Change.derive_event_id(cause, key.record_key(), Operation.UPSERT)
    assert first != Change.derive_event_id(cause, key, Operation.REVOKE)
    assert first != Change.derive_event_id(uuid.uuid4(), key, Operation.UPSERT)


# --------------------------------------------------------------------------- versions


def test_sequences_order_changes_within_a_stream_even_against_the_clock() -> None:
    later_clock = SourceVersion(stream="ethos:p", sequence=10, time=T0 + timedelta(seconds=5))
    higher_sequence = SourceVersion(stream="ethos:p", sequence=11, time=T0)
    assert higher_sequence.is_newer_than(later_clock)
    assert not later_clock.is_newer_than(higher_sequence)


def test_times_order_changes_across_streams_or_without_sequences() -> None:
    ethos = SourceVersion(stream="ethos:p", sequence=999, time=T0)
    backfill = SourceVersion(stream="sis-row-version", sequence=1, time=T0 - timedelta(days=90))
    assert ethos.is_newer_than(backfill)
    assert backfill.compare(ethos) == -1
    undated = SourceVersion(stream="ethos:p", time=T0 + timedelta(microseconds=1))
    assert undated.is_newer_than(ethos)
    same = SourceVersion(stream="x", time=T0)
    assert same.compare(SourceVersion(stream="y", time=T0)) == 0


_versions = st.builds(
    SourceVersion,
    stream=st.sampled_from(["ethos:a", "ethos:b", "sis-row-version"]),
    sequence=st.none() | st.integers(0, 5),
    time=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2020, 1, 2), timezones=st.just(UTC)
    ),
)


@given(_versions, _versions)
def test_version_comparison_is_antisymmetric(a: SourceVersion, b: SourceVersion) -> None:
    assert a.compare(b) == -b.compare(a)
    assert a.compare(a) == 0


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-12-12 22:37:44.242116+00", datetime(2017, 12, 12, 22, 37, 44, 242116, tzinfo=UTC)),
        ("2025-02-03T14:05:11Z", datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)),
        ("2025-02-03T14:05:11.4829132Z", datetime(2025, 2, 3, 14, 5, 11, 482913, tzinfo=UTC)),
        ("2025-02-03T08:05:11-06:00", datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)),
        ("2025-02-03T19:35:11+0530", datetime(2025, 2, 3, 14, 5, 11, tzinfo=UTC)),
        ("2025-02-03", datetime(2025, 2, 3, tzinfo=UTC)),
    ],
)
def test_sis_timestamps_in_the_formats_sis_send(text: str, expected: datetime) -> None:
    parsed = parse_sis_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_timestamps_without_zone_are_read_in_the_tenants_zone() -> None:
    chicago_winter = timezone(timedelta(hours=-6))
    assert parse_sis_datetime("2025-02-03 08:05:11", default_tz=chicago_winter) == datetime(
        2025, 2, 3, 14, 5, 11, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "bad", ["", "yesterday", "03/02/2025", "0001-01-01T00:00:00+01:00", "9" * 80]
)
def test_unreadable_timestamps_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"date|year"):
        parse_sis_datetime(bad)


def test_award_dates_keep_their_local_calendar_day() -> None:
    assert parse_sis_date("2024-12-14") == date(2024, 12, 14)
    assert parse_sis_date("2024-12-14T23:30:00-06:00") == date(2024, 12, 14)
    with pytest.raises(ValueError, match="date"):
        parse_sis_date("14.12.2024")
