"""Fixtures of the signing tests: the official 1EdTech vectors, contexts and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cayg_signing import ContextLoader, SigningKey

Json = dict[str, Any]


@pytest.fixture(scope="session")
def edtech(conformance_dir: Path) -> Path:
    return conformance_dir / "1edtech"


@pytest.fixture(scope="session")
def loader(edtech: Path) -> ContextLoader:
    return ContextLoader.from_directory(edtech / "contexts")


@pytest.fixture(scope="session")
def keys_json(edtech: Path) -> Json:
    data: Json = json.loads((edtech / "vectors" / "keys.json").read_text("utf-8"))
    return data


@pytest.fixture(scope="session")
def vector_key(keys_json: Json) -> SigningKey:
    pair = keys_json["keyPair"]
    return SigningKey.from_json(
        {
            "publicKeyMultibase": pair["publicKeyMultibase"],
            "secretKeyMultibase": pair["secretKeyMultibase"],
            "verificationMethod": pair["verificationMethod"],
        }
    )


@pytest.fixture(scope="session")
def trusted(vector_key: SigningKey) -> dict[str, bytes]:
    return {vector_key.verification_method: vector_key.public_key}
