"""Fixtures for normalize's domain tests: tenants, and envelopes made the way ingest makes them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, admit
from cayg_normalize.domain import normalize
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.schema import Change
from cayg_shared.tenants import TenantRegistry

REPO = Path(__file__).resolve().parents[3]
GOLDEN_INPUTS = REPO / "tests" / "golden" / "inputs"
RECEIVED_AT = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def tenants() -> TenantRegistry:
    return TenantRegistry.load(REPO / "tests" / "golden" / "tenants.json")


@pytest.fixture
def golden_value() -> Callable[[str], tuple[str, dict[str, Any]]]:
    """(topic, fresh value) of a golden input, e.g. ``ethos/persons/created``."""

    def load(name: str) -> tuple[str, dict[str, Any]]:
        case = json.loads((GOLDEN_INPUTS / f"{name}.json").read_text(encoding="utf-8"))
        return case["topic"], copy.deepcopy(case["value"])

    return load


@pytest.fixture
def envelope_of(tenants: TenantRegistry) -> Callable[..., IngestEnvelope]:
    """The envelope ingest makes of a value on a topic."""

    def make(
        value: dict[str, Any],
        topic: str = "sis.events.northfield-cc",
        headers: dict[str, str] | None = None,
        received_at: datetime = RECEIVED_AT,
    ) -> IngestEnvelope:
        message = InboundMessage(
            topic=topic,
            partition=1,
            offset=7,
            timestamp_ms=None,
            key=None,
            value=json.dumps(value, ensure_ascii=False).encode(),
            headers=tuple((k, v.encode()) for k, v in (headers or {}).items()),
        )
        return admit(message, tenants, IngestLimits(), received_at=received_at)

    return make


@pytest.fixture
def run(
    tenants: TenantRegistry, envelope_of: Callable[..., IngestEnvelope]
) -> Callable[..., list[Change]]:
    """Admit and normalize a value."""

    def go(
        value: dict[str, Any], topic: str = "sis.events.northfield-cc", **kw: Any
    ) -> list[Change]:
        envelope = envelope_of(value, topic, **kw)
        profile = tenants.get(envelope.tenant)
        assert profile is not None
        return normalize(envelope, profile)

    return go
