"""``cayg issuer export`` and ``cayg issuer revoke-all`` on a real targets file and ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cayg_ops.cli import main
from cayg_ops.demo import TENANTS_FILE, publish_config, tenant_secrets
from cayg_publish.adapters.factory import create_ledger
from cayg_publish.adapters.ledger import StatusScope
from cayg_publish.config import PublishTargetsConfig
from cayg_publish.domain.projection import DocumentState
from cayg_publish.domain.status import StatusKind
from cayg_shared.tenants import TenantRegistry
from cayg_signing import SigningKey, key_in_document

pytestmark = pytest.mark.integration

TENANT = "northfield-cc"


@pytest.fixture
def targets_file(tmp_path: Path) -> Path:
    registry = TenantRegistry.load(TENANTS_FILE)
    return publish_config(tmp_path, tenant_secrets(tmp_path, registry), registry)


def _issuer(targets_file: Path) -> tuple[str, Path]:
    document = json.loads(targets_file.read_text())
    target = document["tenants"][TENANT]["targets"][1]
    return target["issuer"]["id"], Path(target["signing_key_file"])


def test_export_writes_the_did_document_with_current_and_previous_keys(
    targets_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer, key_file = _issuer(targets_file)
    key = SigningKey.from_file(key_file)
    retired = SigningKey.generate(f"{issuer}#key-0")
    document = json.loads(targets_file.read_text())
    document["tenants"][TENANT]["targets"][1]["issuer"]["previous_keys"] = [
        {"id": retired.verification_method, "public_key_multibase": retired.public_key_multibase}
    ]
    targets_file.write_text(json.dumps(document))
    out = tmp_path / "hosted"

    args = ["issuer", "export", "--tenant", TENANT, "--targets-file", str(targets_file)]
    assert main([*args, "--out", str(out)]) == 0

    domain = issuer.removeprefix("did:web:")
    did = json.loads((out / domain / ".well-known" / "did.json").read_text())
    for signer in (key, retired):
        resolved = key_in_document(did, signer.verification_method)
        assert resolved.public_key == signer.public_key
    profile = json.loads((out / domain / ".well-known" / "issuer-profile.json").read_text())
    assert profile["id"] == issuer
    assert profile["name"] == "Northfield Community College"
    printed = capsys.readouterr().out
    assert f"https://{domain}/.well-known/did.json" in printed
    assert "secretKeyMultibase" not in json.dumps(did)


def test_export_refuses_a_key_of_another_issuer(targets_file: Path, tmp_path: Path) -> None:
    document = json.loads(targets_file.read_text())
    stray = tmp_path / "stray-key.json"
    SigningKey.generate("did:web:elsewhere.example#key-1").write(stray)
    document["tenants"][TENANT]["targets"][1]["signing_key_file"] = str(stray)
    targets_file.write_text(json.dumps(document))
    args = ["issuer", "export", "--tenant", TENANT, "--targets-file", str(targets_file)]
    assert main([*args, "--out", str(tmp_path / "x")]) == 1


def test_revoke_all_sets_every_bit_and_makes_the_lists_due(targets_file: Path) -> None:
    issuer, _ = _issuer(targets_file)
    config = PublishTargetsConfig.load(targets_file)
    scope = StatusScope(TENANT, issuer)

    async def allocate() -> str:
        ledger = create_ledger(config.ledger)
        await ledger.migrate()
        try:
            for n in range(3):
                got = await ledger.status.allocate(
                    scope,
                    f"urn:uuid:{n}",
                    kind=StatusKind.AWARD,
                    subject=str(n),
                    replacing=None,
                    now_ms=1,
                )
            return got.entry.list_id
        finally:
            await ledger.close()

    list_id = asyncio.run(allocate())
    args = ["issuer", "revoke-all", "--tenant", TENANT, "--targets-file", str(targets_file)]
    assert main(args) == 1  # not without --yes
    assert main([*args, "--yes"]) == 0

    async def look() -> tuple[int, list[DocumentState]]:
        ledger = create_ledger(config.ledger)
        try:
            revoked = await ledger.status.revoked_indexes(list_id)
            rows = await ledger.documents(target=f"{TENANT}-clr#status")
            return len(revoked), [r.state for r in rows]
        finally:
            await ledger.close()

    assert asyncio.run(look()) == (3, [DocumentState.DIRTY])
