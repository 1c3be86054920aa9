"""Locating the reference conformance data the stand-ins validate against.

The stand-ins never ship copies of the 1EdTech schemas or the Credential Engine vocabulary:
they read them at start-up from a conformance directory (a setting). By default that is
``<repo>/../shared/conformance``, found relative to this file inside the checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "ConformanceDataMissingError",
    "default_conformance_dir",
    "load_json",
    "resolve_conformance_dir",
]


class ConformanceDataMissingError(FileNotFoundError):
    """The conformance directory (or a file the stand-in needs from it) is not there."""


def default_conformance_dir() -> Path:
    """``<repo>/../shared/conformance``, where ``<repo>`` holds ``deploy/standins/src/...``."""
    # parents: [0] cayg_standins, [1] src, [2] standins, [3] deploy, [4] the checkout
    return Path(__file__).resolve().parents[4].parent / "shared" / "conformance"


def resolve_conformance_dir(path: Path | None) -> Path:
    """Return ``path`` (or the default) resolved, failing clearly when it is incomplete."""
    candidate = (path if path is not None else default_conformance_dir()).resolve()
    missing = [
        sub
        for sub in ("1edtech/schemas", "1edtech/contexts", "credential-engine")
        if not (candidate / sub).is_dir()
    ]
    if missing:
        raise ConformanceDataMissingError(
            f"conformance data not found at {candidate} (missing {', '.join(missing)}); "
            "pass --conformance-dir (or conformance_dir=...) pointing at shared/conformance",
        )
    return candidate


def load_json(path: Path) -> Any:
    """Load a JSON file, tolerating a UTF-8 byte order mark; fail clearly when absent."""
    if not path.is_file():
        raise ConformanceDataMissingError(f"conformance file not found: {path}")
    with path.open(encoding="utf-8-sig") as handle:
        return json.load(handle)
