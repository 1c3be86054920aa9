"""Fixtures shared by every test tier.

Reference material (1EdTech schemas, contexts, signed vectors; Credential Engine samples)
lives beside the checkout in ``../shared/conformance``. Tests that need it fail, never skip,
when it is missing: a missing vector must not read as a pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
