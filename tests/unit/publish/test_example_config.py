"""The example targets file in deploy/config is valid and says what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from cayg_publish.config import (
    ClrTargetConfig,
    CredentialEngineTargetConfig,
    PublishTargetsConfig,
    SqliteLedgerConfig,
)

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "config" / "publish.toml"


def test_example_targets_file_loads_without_any_secret_in_it() -> None:
    config = PublishTargetsConfig.load(EXAMPLE)
    registry, clr = config.targets_for("northfield-cc")
    assert isinstance(config.ledger, SqliteLedgerConfig)
    assert isinstance(registry, CredentialEngineTargetConfig)
    assert isinstance(clr, ClrTargetConfig)
    assert registry.api_key.env == "NORTHFIELD_CE_API_KEY"
    assert registry.api_key.file is None
    assert str(registry.base_url).startswith("https://sandbox.credentialengine.org/")
    assert clr.client_secret.file is not None
    assert clr.effective_scopes == (
        "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.upsert",
    )
