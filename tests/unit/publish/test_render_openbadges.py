"""OB 3.0 / CLR 2.0 rendering, signed and checked against the 1EdTech JSON Schemas."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from pydantic import SecretStr

from cayg_publish.adapters.ledger import InMemoryCatalog
from cayg_publish.domain.catalog import learner_key
from cayg_publish.domain.projection import DocumentKind, DocumentRef, Waiting
from cayg_publish.domain.render.openbadges import (
    CLR_CONTEXT,
    EXTENSIONS_CONTEXT,
    OB_CONTEXT,
    OB_SCHEMA,
    VC_CONTEXT,
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    achievement_credential,
    clr_credential,
    learner_identifiers,
    sign_for_upload,
)
from cayg_shared.schema import (
    AwardStatus,
    CredentialRef,
    EntityType,
    Evidence,
    LearnerRef,
    Operation,
    OrganizationRef,
    Program,
    ProgramStatus,
    Result,
    ResultType,
)
from cayg_shared.schema.vocab import CtdlCredentialType
from cayg_signing import ContextLoader, SigningKey, sign_credential, verify_credential
from unit.publish.publish_factories import (
    ORG_CTID,
    TENANT,
    award,
    change,
    definition,
    learner_identity,
)

pytestmark = pytest.mark.unit

ISSUER_ID = "https://www.northfield.example/issuers/1"
OPTIONS = OpenBadgesOptions(
    issuer=Issuer(id=ISSUER_ID, name="Northfield Community College", url="https://nf.example/"),
    identity_salt=SecretStr("tenant-salt-secret"),
)
RAW_IDS = ("0012345", "ada.learner@student.northfield.example")
CREATED = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def loader(conformance_dir: Path) -> ContextLoader:
    return ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(f"{ISSUER_ID}#key-1")


def validator(conformance_dir: Path, name: str) -> Draft201909Validator:
    schema = json.loads((conformance_dir / "1edtech" / "schemas" / name).read_text())
    return Draft201909Validator(schema)


def errors(validator_: Draft201909Validator, document: Any) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in validator_.iter_errors(document)]


def signer(key: SigningKey, loader: ContextLoader) -> Any:
    return lambda document: sign_credential(document, key, loader, created=CREATED)


def rendered_award(**changes: Any) -> dict[str, Any]:
    defined = definition()
    given = award(
        results=(Result(name="Final grade", result_type=ResultType.LETTER_GRADE, value="A"),),
        evidence=(Evidence(url="https://portfolio.example/ada", name="Portfolio"),),
        **changes,
    )
    return achievement_credential(
        TENANT,
        f"{TENANT}/credential-award/AW-1",
        given,
        definition=defined,
        identifiers=learner_identifiers(given.learner, learner_identity()),
        options=OPTIONS,
    )


def test_achievement_credential_is_valid_signed_and_verifiable(
    conformance_dir: Path, loader: ContextLoader, key: SigningKey
) -> None:
    unsigned = rendered_award()

    signed = sign_for_upload(unsigned, signer(key, loader))

    assert (
        errors(validator(conformance_dir, "ob_v3p0_achievementcredential_schema.json"), signed)
        == []
    )
    verify_credential(signed, loader, trusted_keys={key.verification_method: key.public_key})
    assert signed["@context"] == [VC_CONTEXT, OB_CONTEXT, EXTENSIONS_CONTEXT]
    assert signed["credentialSchema"] == [
        {"id": OB_SCHEMA, "type": "1EdTechJsonSchemaValidator2019"}
    ]
    achievement = signed["credentialSubject"]["achievement"]
    assert achievement["achievementType"] == "MicroCredential"
    assert achievement["creditsAvailable"] == 3
    assert signed["validFrom"] == "2026-01-15T00:00:00Z"


def test_learners_appear_only_as_salted_hashes() -> None:
    unsigned = rendered_award()

    identities = unsigned["credentialSubject"]["identifier"]
    text = json.dumps(unsigned)

    assert all(raw not in text for raw in RAW_IDS)
    assert "id" not in unsigned["credentialSubject"]
    assert {i["identityType"] for i in identities} == {"sisSourcedId", "emailAddress"}
    for identity in identities:
        assert identity["hashed"] is True
        assert identity["identityHash"].startswith("sha256$")
        assert len(identity["salt"]) == 32
    assert len({i["salt"] for i in identities}) == len(identities)


def test_renderings_are_deterministic() -> None:
    assert json.dumps(rendered_award()) == json.dumps(rendered_award())


def test_a_hash_is_the_sha256_of_value_and_salt() -> None:
    identity = rendered_award()["credentialSubject"]["identifier"][0]
    expected = hashlib.sha256((RAW_IDS[0] + identity["salt"]).encode()).hexdigest()

    assert identity["identityHash"] == f"sha256${expected}"


def test_undefined_terms_would_fail_signing(loader: ContextLoader, key: SigningKey) -> None:
    unsigned = rendered_award()
    unsigned["credentialSubject"]["notAnObTerm"] = "x"

    with pytest.raises(ValueError, match="notAnObTerm"):
        sign_for_upload(unsigned, signer(key, loader))


def test_clr_holds_signed_credentials_and_stacking_associations(
    conformance_dir: Path, loader: ContextLoader, key: SigningKey
) -> None:
    certificate = definition("CERT-PC", name="Certificate in Patient Care")
    degree = definition(
        "AAS-NURS",
        name="Associate of Applied Science in Nursing",
        has_part=(CredentialRef(ctid=certificate.ctid),),
    )
    learner = learner_identity()
    entries = []
    for award_id, defined in (("AW-1", certificate), ("AW-2", degree)):
        given = award(award_id, of=defined)
        entries.append(
            (
                achievement_credential(
                    TENANT,
                    f"{TENANT}/credential-award/{award_id}",
                    given,
                    definition=defined,
                    identifiers=learner_identifiers(given.learner, learner),
                    options=OPTIONS,
                ),
                defined,
            )
        )
    identifiers = learner_identifiers(LearnerRef(person_ref="person-1"), learner)

    unsigned = clr_credential(TENANT, "person:person-1", entries, identifiers, OPTIONS)
    signed = sign_for_upload(unsigned, signer(key, loader))

    assert errors(validator(conformance_dir, "clr_v2p0_clrcredential_schema.json"), signed) == []
    ob_schema = validator(conformance_dir, "ob_v3p0_achievementcredential_schema.json")
    trusted = {key.verification_method: key.public_key}
    verify_credential(signed, loader, trusted_keys=trusted)
    inner = signed["credentialSubject"]["verifiableCredential"]
    assert len(inner) == 2
    for credential in inner:
        verify_credential(credential, loader, trusted_keys=trusted)
        assert errors(ob_schema, credential) == []
    assert signed["@context"][:3] == [VC_CONTEXT, CLR_CONTEXT, OB_CONTEXT]
    ids = {a["name"]: a["id"] for a in signed["credentialSubject"]["achievement"]}
    parent, child = ids[degree.name], ids[certificate.name]
    assert sorted(
        (a["associationType"], a["sourceId"], a["targetId"])
        for a in signed["credentialSubject"]["association"]
    ) == sorted([("isParentOf", parent, child), ("isChildOf", child, parent)])
    assert all(raw not in json.dumps(signed) for raw in RAW_IDS)


RECORD = DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, "person:person-1")


def _award_ref(award_id: str = "AW-1") -> DocumentRef:
    return DocumentRef(TENANT, DocumentKind.AWARD_CREDENTIAL, f"{award_id}\n")


async def _two_awards() -> tuple[InMemoryCatalog, Any, Any]:
    catalog = InMemoryCatalog()
    first_def, second_def = definition(), definition("MC-PY", name="Microcredential in Python")
    for item in (first_def, second_def, learner_identity()):
        await catalog.remember(change(item))
    first, second = award("AW-1", of=first_def), award("AW-2", of=second_def)
    await catalog.remember(change(first))
    await catalog.remember(change(second))
    return catalog, first, second


async def test_renderer_builds_the_learners_whole_clr() -> None:
    catalog, _, _ = await _two_awards()

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    body = rendering.body
    assert body["type"] == ["VerifiableCredential", "ClrCredential"]
    assert len(body["credentialSubject"]["verifiableCredential"]) == 2
    assert rendering.remote_id == body["id"]
    assert body["id"].startswith("urn:uuid:")
    assert rendering.subject == f"clr-record|{TENANT}|person:person-1"
    assert not rendering.replaces_only


async def test_a_revoked_award_leaves_the_clr() -> None:
    catalog, first, _ = await _two_awards()
    revoked = change(
        first.model_copy(update={"status": AwardStatus.REVOKED}), seq=2, operation=Operation.REVOKE
    )
    await catalog.remember(revoked)

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    held = rendering.body["credentialSubject"]["verifiableCredential"]
    assert [c["name"] for c in held] == ["Microcredential in Python"]


async def test_a_record_level_revoke_after_delivery_leaves_the_clr() -> None:
    catalog, _, _ = await _two_awards()
    # An Ethos record emptied or deleted: a revoke of the whole record, no award body.
    await catalog.remember(
        change(
            None,
            entity_type=EntityType.CREDENTIAL_AWARD,
            source_id="AW-1",
            seq=5,
            operation=Operation.REVOKE,
        )
    )

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    held = rendering.body["credentialSubject"]["verifiableCredential"]
    assert [c["name"] for c in held] == ["Microcredential in Python"]
    assert rendering.body["validFrom"] == "2026-01-01T00:00:05Z"  # as new as the revoke


async def test_when_every_award_is_revoked_the_record_is_withdrawn() -> None:
    catalog, first, second = await _two_awards()
    for n, item in enumerate((first, second)):
        await catalog.remember(
            change(
                item.model_copy(update={"status": AwardStatus.REVOKED}),
                seq=10 + n,
                operation=Operation.REVOKE,
            )
        )

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    assert rendering.replaces_only  # never sent for a record the host never had
    assert rendering.body["validUntil"] == "2026-01-01T00:00:11Z"
    [kept] = rendering.body["credentialSubject"]["verifiableCredential"]
    assert kept["validUntil"] == "2026-01-01T00:00:11Z"


async def test_ob_api_renders_one_credential_and_expires_a_revoked_one() -> None:
    catalog = InMemoryCatalog()
    for item in (definition(), learner_identity()):
        await catalog.remember(change(item))
    given = award()
    renderer = OpenBadgesRenderer(OPTIONS, catalog, api="ob")
    await catalog.remember(change(given))

    [issued] = await renderer.document(_award_ref())
    await catalog.remember(
        change(
            given.model_copy(update={"status": AwardStatus.REVOKED}),
            seq=9,
            operation=Operation.REVOKE,
        )
    )
    [revoked] = await renderer.document(_award_ref())

    assert issued.body["type"] == ["VerifiableCredential", "AchievementCredential"]
    assert "validUntil" not in issued.body
    assert revoked.body["id"] == issued.body["id"]
    assert revoked.body["validUntil"] == "2026-01-01T00:00:09Z"


@pytest.mark.parametrize("missing", ["definition", "learner"])
async def test_missing_reference_data_makes_the_document_wait(missing: str) -> None:
    catalog = InMemoryCatalog()
    if missing != "definition":
        await catalog.remember(change(definition()))
    if missing != "learner":
        await catalog.remember(change(learner_identity()))
    await catalog.remember(change(award()))

    with pytest.raises(Waiting) as raised:
        await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    assert raised.value.reason == f"{missing}-unknown"


async def test_inline_identifiers_need_no_identity_record() -> None:
    catalog = InMemoryCatalog()
    await catalog.remember(change(definition()))
    inline = LearnerRef(institution_id=SecretStr("S-99"))
    await catalog.remember(change(award(learner=inline)))

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog, api="ob").document(_award_ref())

    identities = rendering.body["credentialSubject"]["identifier"]
    assert [i["identityType"] for i in identities] == ["sisSourcedId"]
    assert "S-99" not in json.dumps(rendering.body)
    assert learner_key(inline).startswith("sha256:")


async def test_a_learner_without_awards_has_no_record_and_a_host_serves_its_kind_only() -> None:
    catalog = InMemoryCatalog()
    await catalog.remember(change(learner_identity()))
    clr = OpenBadgesRenderer(OPTIONS, catalog)

    assert await clr.document(RECORD) == ()
    assert clr.document_kinds == frozenset({DocumentKind.LEARNER_RECORD})
    assert OpenBadgesRenderer(OPTIONS, catalog, api="ob").document_kinds == frozenset(
        {DocumentKind.AWARD_CREDENTIAL}
    )
    assert await clr.document(DocumentRef(TENANT, DocumentKind.CREDENTIAL, "MC-SQL")) == ()


def test_valid_until_is_the_end_of_the_last_valid_day() -> None:
    body = rendered_award(valid_until=date(2027, 1, 31))

    assert body["validUntil"] == "2027-01-31T23:59:59Z"


async def test_a_records_version_never_goes_back_when_an_award_is_revoked() -> None:
    # Found by the messy-stream test: a revoked award's definition was renamed later than
    # the revocation; leaving that definition out of the record's version made the re-issued
    # record look older than the one the host held, and it was skipped as stale.
    catalog, _, second = await _two_awards()
    python = definition("MC-PY", name="Microcredential in Python")
    await catalog.remember(change(python.model_copy(update={"name": "Python, renamed"}), seq=20))
    [before] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)
    await catalog.remember(
        change(
            second.model_copy(update={"status": AwardStatus.REVOKED}),
            seq=15,
            operation=Operation.REVOKE,
        )
    )

    [after] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    assert before.subject_version is not None
    assert after.subject_version is not None
    assert after.subject_version.compare(before.subject_version) >= 0
    assert after.content_hash != before.content_hash
    held = after.body["credentialSubject"]["verifiableCredential"]
    assert [c["name"] for c in held] == ["Microcredential in SQL Databases"]


class _CountingCatalog(InMemoryCatalog):
    """The in-memory catalog, counting the lookups a rendering makes."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    async def definition_row(self, tenant: str, ctid: str) -> Any:
        self.asked["definition_row"] += 1
        return await super().definition_row(tenant, ctid)

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> Any:
        self.asked[f"row {entity_type.value}"] += 1
        return await super().row(tenant, entity_type, source_id, part)

    async def programs(self, tenant: str) -> Any:
        self.asked["programs"] += 1
        return await super().programs(tenant)


async def test_a_rendering_asks_the_catalog_each_question_once() -> None:
    catalog = _CountingCatalog()
    defs = [definition(f"MC-{n}", name=f"Microcredential {n}") for n in range(3)]
    defs.append(
        definition(
            "CERT-DA",
            name="Certificate in Data Analytics",
            credential_type=CtdlCredentialType.CERTIFICATE,
        )
    )
    program = Program(
        source_id="prog-1",
        name="Data Analytics",
        status=ProgramStatus.ACTIVE,
        owned_by=OrganizationRef(ctid=ORG_CTID),
        credentials=tuple(CredentialRef(ctid=d.ctid) for d in defs),
    )
    for item in (*defs, program, learner_identity()):
        await catalog.remember(change(item))
    for n, defined in enumerate(defs):
        await catalog.remember(change(award(f"AW-{n}", of=defined)))
    catalog.asked.clear()

    [rendering] = await OpenBadgesRenderer(OPTIONS, catalog).document(RECORD)

    assert len(rendering.body["credentialSubject"]["verifiableCredential"]) == 4
    # Four awards, each naming its definition (needed twice) and each definition's
    # stacking links reading the program and its four members: once per distinct question.
    assert catalog.asked == Counter({"definition_row": 4, "programs": 1, "row learner-identity": 1})
    # The stacking links are still there.
    assert rendering.body["credentialSubject"]["association"]
