"""Golden files: realistic SIS inputs and the exact normalized output they must produce.

Each input under ``inputs/`` (and each example under ``shared/cloudevents/examples/``) goes
through ``admit`` and ``normalize`` as the services run them; the result — the envelope
and the changes as their Kafka key and value, or the rejection / mapping error — must
equal the file of the same name under ``expected/``.

To regenerate after an intended mapping change::

    CAYG_REGENERATE_GOLDEN=1 uv run pytest tests/golden
    git diff tests/golden/expected   # review every change before committing

An input file is ``{"about"?: str, "topic": str, "headers": {name: value}, "value": <JSON>}``
(``value_text`` instead of ``value`` for a payload that is not JSON).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, Rejection, admit
from cayg_normalize.domain import MappingError, normalize
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.schema import Change
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parent
REPO = GOLDEN.parent.parent
INPUTS = GOLDEN / "inputs"
EXPECTED = GOLDEN / "expected"
EXAMPLES = REPO / "shared" / "cloudevents" / "examples"
CLOUDEVENT_TOPIC = "sis.events.harbor-tech"
RECEIVED_AT = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)
REGENERATE = os.environ.get("CAYG_REGENERATE_GOLDEN") == "1"


def _cases() -> list[tuple[str, Path]]:
    cases = [(str(p.relative_to(INPUTS).with_suffix("")), p) for p in INPUTS.rglob("*.json")]
    cases += [(f"cloudevents/{p.parent.name}/{p.stem}", p) for p in EXAMPLES.rglob("*.json")]
    return sorted(cases)


CASES = _cases()


def _message(case: dict[str, Any], topic: str) -> InboundMessage:
    if "value_text" in case:
        value = case["value_text"].encode("utf-8")
    else:
        value = json.dumps(case["value"], ensure_ascii=False).encode("utf-8")
    headers = tuple((k, v.encode("utf-8")) for k, v in case.get("headers", {}).items())
    return InboundMessage(
        topic=topic,
        partition=3,
        offset=1207,
        timestamp_ms=1754049600000,
        key=b"sis-key",
        value=value,
        headers=headers,
    )


def run_case(path: Path, tenants: TenantRegistry) -> dict[str, Any]:
    """What the pipeline makes of one golden input."""
    case = json.loads(path.read_text(encoding="utf-8"))
    if path.parent == EXAMPLES / "structured":
        # A structured example is the event itself, sent as the record value.
        case = {"headers": {"content-type": "application/cloudevents+json"}, "value": case}
    topic = case.get("topic", CLOUDEVENT_TOPIC)
    try:
        envelope = admit(_message(case, topic), tenants, IngestLimits(), received_at=RECEIVED_AT)
    except Rejection as rejection:
        return {
            "rejection": {
                "reason": rejection.reason,
                "detail": rejection.detail,
                "field_path": rejection.field_path,
            },
        }
    result: dict[str, Any] = {"envelope": envelope.model_dump(mode="json")}
    profile = tenants.get(envelope.tenant)
    assert profile is not None
    try:
        changes = normalize(envelope, profile)
    except MappingError as error:
        result["mapping_error"] = {
            "reason": error.reason,
            "detail": error.detail,
            "field_path": error.field_path,
        }
        return result
    result["changes"] = [
        {"kafka_key": change.kafka_key(), "value": json.loads(change.to_kafka_value())}
        for change in changes
    ]
    return result


@pytest.fixture(scope="module")
def tenants() -> TenantRegistry:
    return TenantRegistry.load(GOLDEN / "tenants.json")


@pytest.mark.parametrize(("name", "path"), CASES, ids=[name for name, _ in CASES])
def test_golden_output(name: str, path: Path, tenants: TenantRegistry) -> None:
    actual = run_case(path, tenants)
    expected_path = EXPECTED / f"{name}.json"
    if REGENERATE:
        expected_path.parent.mkdir(parents=True, exist_ok=True)
        expected_path.write_text(
            json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    assert expected_path.is_file(), "no expected output: run with CAYG_REGENERATE_GOLDEN=1"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert actual == expected


def test_every_expected_file_has_an_input() -> None:
    names = {name for name, _ in CASES}
    orphans = [
        str(p.relative_to(EXPECTED))
        for p in EXPECTED.rglob("*.json")
        if str(p.relative_to(EXPECTED).with_suffix("")) not in names
    ]
    assert orphans == []


def test_the_golden_set_covers_every_format_and_resource() -> None:
    names = {name for name, _ in CASES}
    for resource in (
        "academic-credentials",
        "student-academic-credentials",
        "academic-programs",
        "educational-institutions",
        "persons",
    ):
        for operation in ("created", "replaced", "deleted"):
            assert f"ethos/{resource}/{operation}" in names
    for mode in ("binary", "structured"):
        assert sum(n.startswith(f"cloudevents/{mode}/") for n in names) == 5
    assert any(n.startswith("backfill/") for n in names)


def test_inputs_are_normalized_in_a_stable_order(tenants: TenantRegistry) -> None:
    # Running the same input twice gives identical output: ids, order and all.
    path = INPUTS / "ethos" / "student-academic-credentials" / "replaced.json"
    assert run_case(path, tenants) == run_case(path, tenants)


def test_stored_messages_stay_readable() -> None:
    # Compatibility at the data level: every envelope and change ever pinned here must be
    # readable by the current models, whatever else changed.
    checked = 0
    for path in EXPECTED.rglob("*.json"):
        stored = json.loads(path.read_text(encoding="utf-8"))
        if "envelope" in stored:
            IngestEnvelope.model_validate(stored["envelope"])
            checked += 1
        for change in stored.get("changes", []):
            decoded = Change.from_kafka_value(json.dumps(change["value"]))
            assert decoded.kafka_key() == change["kafka_key"]
            checked += 1
    assert checked > 40
