"""Fixtures shared by every test tier.

Reference material (1EdTech schemas, contexts, signed vectors; Credential Engine samples)
lives beside the checkout in ``../shared/conformance``. Tests that need it fail, never skip,
when it is missing: a missing vector must not read as a pass.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Test support modules (tests/support) import as ``support.*``.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The benchmark harness (bench/cayg_bench) imports as ``cayg_bench``, as bench/run.sh has it.
sys.path.insert(0, str(REPO_ROOT / "bench"))


def _conformance_dir() -> Path:
    configured = os.environ.get("CAYG_CONFORMANCE_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "conformance"
    return path.resolve()


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The reference conformance data; the test fails when it is not there."""
    path = _conformance_dir()
    if not (path / "1edtech").is_dir() or not (path / "credential-engine").is_dir():
        pytest.fail(
            f"conformance data not found at {path}: put ../shared beside the checkout "
            "or set CAYG_CONFORMANCE_DIR",
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for this test session."""
    from support.kafka import kafka_broker

    with kafka_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace per test, so tests sharing a broker never see each other."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a real PostgreSQL server for this session (fails when there is none)."""
    from support.postgres import postgres_server

    yield from postgres_server()
