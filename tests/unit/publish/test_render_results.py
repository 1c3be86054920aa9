"""Results keep their meaning: each award's ``Result`` links to a ``ResultDescription`` of
its achievement (name and result type), in the credential and in the learner's record,
and what is rendered passes the official 1EdTech schemas and signs and verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr

from cayg_publish.adapters.ledger import InMemoryLedger
from cayg_publish.domain.projection import DocumentKind, DocumentRef
from cayg_publish.domain.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    sign_for_upload,
)
from cayg_shared.schema import Result
from cayg_shared.schema.vocab import ResultType
from cayg_signing import ContextLoader, SigningKey, sign_credential, verify_credential
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.unit

GRADE = Result(name="Final grade", result_type=ResultType.LETTER_GRADE, value="A")
STATUS = Result(name="Status", result_type=ResultType.STATUS, value="Passed")
KEY = SigningKey.from_seed(b"r" * 32)


async def _record(*awards: Any) -> dict[str, Any]:
    ledger = InMemoryLedger()
    await ledger.catalog.remember(change(definition(), seq=1))
    await ledger.catalog.remember(change(learner_identity(), seq=2))
    for n, item in enumerate(awards):
        await ledger.catalog.remember(change(item, seq=3 + n))
    renderer = OpenBadgesRenderer(
        OpenBadgesOptions(
            issuer=Issuer(id=KEY.verification_method.split("#")[0], name="Northfield College"),
            identity_salt=SecretStr("salt"),
        ),
        ledger.catalog,
    )
    [rendering] = await renderer.document(
        DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, "person:person-1")
    )
    return dict(rendering.body)


async def test_every_result_links_to_a_description_of_its_achievement() -> None:
    record = await _record(award("AW-1", results=(GRADE, STATUS)))

    [credential] = record["credentialSubject"]["verifiableCredential"]
    subject = credential["credentialSubject"]
    described = {d["id"]: d for d in subject["achievement"]["resultDescription"]}
    assert {(d["name"], d["resultType"]) for d in described.values()} == {
        ("Final grade", "LetterGrade"),
        ("Status", "Status"),
    }
    for result in subject["result"]:
        linked = described[result["resultDescription"]]
        assert result["value"] == {"Final grade": "A", "Status": "Passed"}[linked["name"]]
    # The record's own achievement describes the same results, once each.
    [top] = record["credentialSubject"]["achievement"]
    assert {d["id"] for d in top["resultDescription"]} == set(described)


async def test_a_record_merges_the_result_kinds_of_several_awards_of_one_achievement() -> None:
    record = await _record(award("AW-1", results=(GRADE,)), award("AW-2", results=(STATUS,)))

    [top] = record["credentialSubject"]["achievement"]
    assert sorted(d["name"] for d in top["resultDescription"]) == ["Final grade", "Status"]


async def test_results_pass_the_schemas_and_sign(conformance_dir: Path) -> None:
    record = await _record(award("AW-1", results=(GRADE, STATUS)))
    schemas = conformance_dir / "1edtech" / "schemas"
    loader = ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")

    signed = sign_for_upload(record, lambda doc: sign_credential(doc, KEY, loader))

    jsonschema.validate(
        signed, json.loads((schemas / "clr_v2p0_clrcredential_schema.json").read_text())
    )
    inner = signed["credentialSubject"]["verifiableCredential"][0]
    jsonschema.validate(
        inner, json.loads((schemas / "ob_v3p0_achievementcredential_schema.json").read_text())
    )
    verify_credential(signed, loader)
    verify_credential(inner, loader)
