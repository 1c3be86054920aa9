"""Status entries from allocation to the signed list: the permutation, rendering with a
status (OB / CLR schemas still pass, the proof verifies), revocation through the renderers,
the list credential's bits decoded back, images and achievement ids, and the
configuration's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from pydantic import SecretStr, ValidationError

from cayg_publish.adapters.ledger import InMemoryLedger
from cayg_publish.adapters.ledger.status_store import StatusScope
from cayg_publish.adapters.status import LedgerStatusAllocator, StatusListTarget, served_list
from cayg_publish.config import ClrTargetConfig, IssuerProfile, PublishedKeyConfig
from cayg_publish.domain.catalog import learner_key
from cayg_publish.domain.projection import DocumentKind, DocumentRef, DocumentState
from cayg_publish.domain.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    OpenBadgesRenderer,
    sign_for_upload,
)
from cayg_publish.domain.status import (
    LIST_ENTRIES,
    IndexPermutation,
    StatusWindow,
)
from cayg_shared.schema import EntityType, Operation
from cayg_signing import (
    ContextLoader,
    SigningKey,
    decode_status_list,
    sign_credential,
    status_bit,
    verify_credential,
)
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.unit

ISSUER = "did:web:northfield.example"
BASE = "https://northfield.example/credentials/status/"
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
PNG = "data:image/png;base64,iVBORw0KGgo="


def test_the_permutation_hands_out_every_index_once_out_of_order() -> None:
    small = IndexPermutation(b"k" * 16, size=1024)
    positions = [small.position(n) for n in range(1024)]
    assert sorted(positions) == list(range(1024))
    assert positions[:20] != sorted(positions[:20])
    # Another key, another order; the full-size list stays in range.
    assert [IndexPermutation(b"j" * 16, 1024).position(n) for n in range(20)] != positions[:20]
    full = IndexPermutation(b"k" * 16)
    assert all(0 <= full.position(n) < LIST_ENTRIES for n in range(0, LIST_ENTRIES, 4099))
    with pytest.raises(ValueError, match="power of two"):
        IndexPermutation(b"k" * 16, size=1000)


class _Setup:
    def __init__(self, key: SigningKey, loader: ContextLoader, **options: Any) -> None:
        self.ledger = InMemoryLedger()
        self.scope = StatusScope(TENANT, ISSUER)
        self.allocator = LedgerStatusAllocator(
            self.ledger.status,
            self.scope,
            list_base_url=BASE,
            status_target="northfield-cc-clr#status",
            min_interval=timedelta(seconds=30),
        )
        self.options = OpenBadgesOptions(
            issuer=Issuer(id=ISSUER, name="Northfield Community College", image=PNG),
            identity_salt=SecretStr("salt"),
            status=self.allocator,
            signer=key.verification_method,
            **options,
        )
        self.key = key
        self.loader = loader
        self.lists = StatusListTarget(
            self.allocator,
            self.ledger.status,
            owner="northfield-cc-clr",
            issuer=ISSUER,
            window=StatusWindow(refresh=timedelta(hours=1)),
            signer=lambda body: sign_credential(body, key, loader),
            signer_id=key.verification_method,
            clock=lambda: NOW,
        )

    async def record(self, *items: Any) -> None:
        for seq, item in enumerate(items, start=1):
            self.ledger.catalog.write(
                item if hasattr(item, "entity_key") else change(item, seq=seq)
            )

    def renderer(self, api: str = "clr") -> OpenBadgesRenderer:
        return OpenBadgesRenderer(self.options, self.ledger.catalog, api=api)  # type: ignore[arg-type]

    async def publish_lists(self) -> list[dict[str, Any]]:
        published = []
        for row in await self.ledger.status.lists(self.scope):
            ref = DocumentRef(TENANT, DocumentKind.STATUS_LIST, row.list_id)
            (rendering,) = await self.lists.render_document(ref)
            await self.lists.apply(rendering, "key")
            served = await served_list(self.ledger.status, row.list_id, if_none_match=None)
            published.append(json.loads(served.body))
        return published


@pytest.fixture(scope="module")
def loader(conformance_dir: Path) -> ContextLoader:
    return ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(f"{ISSUER}#key-1")


def _schema(conformance_dir: Path, name: str) -> Draft201909Validator:
    path = conformance_dir / "1edtech" / "schemas" / name
    return Draft201909Validator(json.loads(path.read_text()))


async def test_records_and_awards_carry_status_and_pass_the_schemas(
    conformance_dir: Path, key: SigningKey, loader: ContextLoader
) -> None:
    setup = _Setup(
        key,
        loader,
        achievement_id_pattern="https://credentialengineregistry.org/resources/{ctid}",
        achievement_images={"MC-SQL": "https://northfield.example/badges/sql.png"},
    )
    await setup.record(definition(), learner_identity(), award())
    learner = learner_key(award().learner)
    (record,) = await setup.renderer().document(
        DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, learner)
    )
    (single,) = await setup.renderer("ob").document(
        DocumentRef(TENANT, DocumentKind.AWARD_CREDENTIAL, "AW-1\n")
    )
    body = dict(record.body)
    inner = body["credentialSubject"]["verifiableCredential"][0]
    for credential in (body, inner, single.body):
        status = credential["credentialStatus"]
        assert status["type"] == "BitstringStatusListEntry"
        assert status["statusPurpose"] == "revocation"
        assert status["statusListCredential"].startswith(BASE)
        assert status["id"] == f"{status['statusListCredential']}#{status['statusListIndex']}"
    # The award's credential is one credential: the same entry in the record and alone.
    assert inner["credentialStatus"] == single.body["credentialStatus"]
    assert body["credentialStatus"] != inner["credentialStatus"]
    achievement = inner["credentialSubject"]["achievement"]
    assert (
        achievement["id"] == f"https://credentialengineregistry.org/resources/{definition().ctid}"
    )
    assert achievement["image"] == {
        "id": "https://northfield.example/badges/sql.png",
        "type": "Image",
    }
    assert body["issuer"]["image"] == {"id": PNG, "type": "Image"}

    signed = sign_for_upload(body, lambda d: sign_credential(d, key, loader))
    trusted = {key.verification_method: key.public_key}
    verify_credential(signed, loader, trusted_keys=trusted)
    assert not list(
        _schema(conformance_dir, "clr_v2p0_clrcredential_schema.json").iter_errors(signed)
    )
    alone = sign_credential(dict(single.body), key, loader)
    schema = _schema(conformance_dir, "ob_v3p0_achievementcredential_schema.json")
    assert not list(schema.iter_errors(alone))
    # Rendering again hands out nothing new.
    (again,) = await setup.renderer().document(
        DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, learner)
    )
    assert again.content_hash == record.content_hash
    assert (await setup.ledger.status.lists(setup.scope))[0].allocated == 2


async def test_a_revocation_sets_the_bit_of_the_award_and_of_the_withdrawn_record(
    key: SigningKey, loader: ContextLoader
) -> None:
    setup = _Setup(key, loader)
    await setup.record(definition(), learner_identity(), award())
    learner = learner_key(award().learner)
    ref = DocumentRef(TENANT, DocumentKind.LEARNER_RECORD, learner)
    (before,) = await setup.renderer().document(ref)
    (listed,) = await setup.publish_lists()
    verify_credential(listed, loader, trusted_keys={key.verification_method: key.public_key})
    assert listed["validFrom"] == "2026-03-01T12:00:00Z"  # the refresh period's start
    assert listed["validUntil"] == "2026-03-01T14:00:00Z"  # two periods
    bits = decode_status_list(listed["credentialSubject"]["encodedList"])
    assert len(bits) * 8 == LIST_ENTRIES
    assert not any(bits)

    setup.ledger.catalog.write(
        change(
            None,
            seq=9,
            operation=Operation.REVOKE,
            entity_type=EntityType.CREDENTIAL_AWARD,
            source_id="AW-1",
        )
    )
    (withdrawn,) = await setup.renderer().document(ref)
    assert withdrawn.replaces_only
    # The list's document is due, no earlier than the coalescing interval after publication.
    (due,) = await setup.ledger.documents(target="northfield-cc-clr#status")
    assert due.state is DocumentState.DIRTY
    (listed,) = await setup.publish_lists()
    bits = decode_status_list(listed["credentialSubject"]["encodedList"])
    award_index = int(
        before.body["credentialSubject"]["verifiableCredential"][0]["credentialStatus"][
            "statusListIndex"
        ]
    )
    record_index = int(before.body["credentialStatus"]["statusListIndex"])
    assert status_bit(bits, award_index)
    assert status_bit(bits, record_index)
    assert sum(bin(b).count("1") for b in bits) == 2

    # The SIS reinstates the award: the re-issued credentials get fresh entries, the copies
    # issued before stay revoked.
    setup.ledger.catalog.write(change(award(), seq=12))
    (reissued,) = await setup.renderer().document(ref)
    fresh = reissued.body["credentialSubject"]["verifiableCredential"][0]["credentialStatus"]
    assert int(fresh["statusListIndex"]) not in (award_index, record_index)
    (listed,) = await setup.publish_lists()
    bits = decode_status_list(listed["credentialSubject"]["encodedList"])
    assert status_bit(bits, award_index)
    assert not status_bit(bits, int(fresh["statusListIndex"]))


def _clr(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "northfield-cc-clr",
        "base_url": "https://clr.example.org/ims/clr/v2p0",
        "client_id": "c",
        "client_secret": {"env": "S"},
        "identity_salt": {"env": "T"},
        "signing_key_file": "/k.json",
        "contexts_dir": "/c",
        "issuer": {"id": ISSUER, "name": "Northfield"},
    }
    return values | changes


def test_configuration_limits_images_keys_and_loopback_urls() -> None:
    assert ClrTargetConfig.model_validate(_clr(achievement_image=PNG)).achievement_image == PNG
    too_big = "data:image/png;base64," + "A" * 200_000
    with pytest.raises(ValidationError, match="over the 131072 limit"):
        ClrTargetConfig.model_validate(_clr(achievement_image=too_big))
    with pytest.raises(ValidationError, match="https URL"):
        ClrTargetConfig.model_validate(_clr(achievement_image="http://northfield.example/a.png"))
    with pytest.raises(ValidationError, match="loopback"):
        ClrTargetConfig.model_validate(
            _clr(status_lists={"base_url": "http://127.0.0.1:8084/status-lists/"})
        )
    with pytest.raises(ValidationError, match="loopback"):
        ClrTargetConfig.model_validate(_clr(achievement_id_base="http://localhost:18001/r/"))
    demo = _clr(
        achievement_id_base="http://127.0.0.1:18001/resources/",
        allow_loopback_urls=True,
    )
    assert ClrTargetConfig.model_validate(demo).allow_loopback_urls
    with pytest.raises(ValidationError, match=r"is not <did:web:northfield\.example>"):
        IssuerProfile(
            id=ISSUER,
            name="N",
            previous_keys=(
                PublishedKeyConfig(
                    id="did:web:other.example#k",
                    public_key_multibase=SigningKey.generate().public_key_multibase,
                ),
            ),
        )
