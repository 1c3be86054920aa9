"""cayg's CloudEvent contract: published schemas, examples, and what the pipeline does.

Every example in ``shared/cloudevents/examples`` validates against its published JSON
Schema and is admitted and normalized; invalid variants fail the schema. (The exact
output of each example is pinned by the golden tests.)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from cayg_ingest.domain import InboundMessage, IngestLimits, admit
from cayg_normalize.domain import normalize
from cayg_shared.envelope import InputFormat
from cayg_shared.schema import CaygEventType
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
CLOUDEVENTS = REPO / "shared" / "cloudevents"
TOPIC = "sis.events.harbor-tech"
TYPES = [t.value for t in CaygEventType]


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _validator(event_type: str) -> Draft202012Validator:
    schema = _load(CLOUDEVENTS / "schemas" / f"{event_type}.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _data_validator(event_type: str) -> Draft202012Validator:
    schema = _load(CLOUDEVENTS / "schemas" / f"{event_type}.json")
    data_schema = {"$defs": schema["$defs"], "$ref": schema["properties"]["data"]["$ref"]}
    return Draft202012Validator(data_schema, format_checker=FormatChecker())


@pytest.fixture(scope="module")
def tenants() -> TenantRegistry:
    return TenantRegistry.load(REPO / "tests" / "golden" / "tenants.json")


def _admit_and_normalize(
    value: bytes, headers: dict[str, str], tenants: TenantRegistry
) -> tuple[Any, list[Any]]:
    message = InboundMessage(
        topic=TOPIC,
        partition=0,
        offset=0,
        timestamp_ms=None,
        key=None,
        value=value,
        headers=tuple((k, v.encode()) for k, v in headers.items()),
    )
    envelope = admit(message, tenants, IngestLimits(), received_at=datetime.now(UTC))
    profile = tenants.get(envelope.tenant)
    assert profile is not None
    return envelope, normalize(envelope, profile)


@pytest.mark.parametrize("event_type", TYPES)
def test_the_structured_example_validates_and_goes_through(
    event_type: str, tenants: TenantRegistry
) -> None:
    event = _load(CLOUDEVENTS / "examples" / "structured" / f"{event_type}.json")
    assert event["type"] == event_type
    _validator(event_type).validate(event)
    envelope, changes = _admit_and_normalize(
        json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}, tenants
    )
    assert envelope.format is InputFormat.CLOUDEVENT_STRUCTURED
    assert envelope.subject_type == event_type
    assert len(changes) == 1


@pytest.mark.parametrize("event_type", TYPES)
def test_the_binary_example_validates_and_goes_through(
    event_type: str, tenants: TenantRegistry
) -> None:
    example = _load(CLOUDEVENTS / "examples" / "binary" / f"{event_type}.json")
    assert example["headers"]["ce_type"] == event_type
    _data_validator(event_type).validate(example["value"])
    envelope, changes = _admit_and_normalize(
        json.dumps(example["value"], ensure_ascii=False).encode(), example["headers"], tenants
    )
    assert envelope.format is InputFormat.CLOUDEVENT_BINARY
    assert len(changes) == 1


def test_the_schemas_refuse_what_normalize_refuses() -> None:
    event = _load(CLOUDEVENTS / "examples" / "structured" / "org.caygsync.award.issued.v1.json")
    validator = _validator(event["type"])
    bad_variants = []
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda e: e["data"].pop("awardId"),
        lambda e: e["data"].update({"colour": "blue"}),
        lambda e: e["data"]["learner"].clear(),
        lambda e: e["data"].update({"approach": "speedrun"}),
        lambda e: e.update({"type": "org.caygsync.award.issued.v2"}),
        lambda e: e.update({"specversion": "0.3"}),
        lambda e: e["data"]["creditsEarned"].update({"unit": "Fortnight"}),
        lambda e: e["data"]["creditsEarned"].pop("value"),
        lambda e: e["data"]["definition"].pop("sourceId"),
        lambda e: e["data"]["learner"].update({"email": None, "institutionId": None}),
    ]
    for mutate in mutations:
        variant = copy.deepcopy(event)
        mutate(variant)
        bad_variants.append(variant)
    for variant in bad_variants:
        assert not validator.is_valid(variant)


def test_the_vendor_readme_names_every_type() -> None:
    readme = (CLOUDEVENTS / "README.md").read_text(encoding="utf-8")
    for event_type in TYPES:
        assert event_type in readme
