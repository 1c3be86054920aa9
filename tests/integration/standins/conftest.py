"""Real uvicorn servers on loopback for the stand-in tests, and shared constants."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from cayg_standins import (
    ClrConfig,
    OAuthClient,
    RegistryConfig,
    create_clr_app,
    create_registry_app,
)
from integration.standins.standins_support import (
    ADMIN_TOKEN,
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    CLR_SCOPE,
    OB_SCOPE,
    ORG,
    OTHER_KEY,
    OTHER_ORG,
    READONLY_CLIENT,
    READONLY_SECRET,
    LiveServer,
)


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], LiveServer]]:
    """Start apps as live servers; every server started is stopped after the test."""
    started: list[LiveServer] = []

    def start(app: Starlette) -> LiveServer:
        server = LiveServer(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def registry_config(tmp_path: Path, conformance_dir: Path) -> RegistryConfig:
    """Two API keys (one per organization), an admin token, a fresh data directory."""
    return RegistryConfig(
        data_dir=tmp_path / "registry",
        api_keys={API_KEY: frozenset({ORG}), OTHER_KEY: frozenset({OTHER_ORG})},
        conformance_dir=conformance_dir,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def registry(
    serve: Callable[[Starlette], LiveServer], registry_config: RegistryConfig
) -> LiveServer:
    """A live registry stand-in."""
    return serve(create_registry_app(registry_config))


@pytest.fixture
def start_registry(
    serve: Callable[[Starlette], LiveServer], registry_config: RegistryConfig
) -> Callable[..., LiveServer]:
    """Start a registry stand-in with some settings changed (same data directory)."""

    def start(**changes: Any) -> LiveServer:
        return serve(create_registry_app(replace(registry_config, **changes)))

    return start


@pytest.fixture
def trusted_keys(conformance_dir: Path) -> dict[str, bytes]:
    """The 1EdTech test key, trusted for its https verification method."""
    pair = json.loads((conformance_dir / "1edtech/vectors/keys.json").read_text())["keyPair"]
    return {pair["verificationMethod"]: bytes.fromhex(pair["publicKeyHex"])}


@pytest.fixture
def clr_config(tmp_path: Path, conformance_dir: Path, trusted_keys: dict[str, bytes]) -> ClrConfig:
    """One full client, one read-only client, the test key trusted, a fresh data dir."""
    readonly = frozenset({f"{CLR_SCOPE}/credential.readonly", f"{OB_SCOPE}/credential.readonly"})
    return ClrConfig(
        data_dir=tmp_path / "clr",
        clients={
            CLIENT_ID: OAuthClient(CLIENT_ID, CLIENT_SECRET),
            READONLY_CLIENT: OAuthClient(READONLY_CLIENT, READONLY_SECRET, readonly),
        },
        conformance_dir=conformance_dir,
        trusted_keys=trusted_keys,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def clr(serve: Callable[[Starlette], LiveServer], clr_config: ClrConfig) -> LiveServer:
    """A live CLR/OB host stand-in."""
    return serve(create_clr_app(clr_config))


@pytest.fixture
def start_clr(
    serve: Callable[[Starlette], LiveServer], clr_config: ClrConfig
) -> Callable[..., LiveServer]:
    """Start a CLR stand-in with some settings changed (same data directory)."""

    def start(**changes: Any) -> LiveServer:
        return serve(create_clr_app(replace(clr_config, **changes)))

    return start
