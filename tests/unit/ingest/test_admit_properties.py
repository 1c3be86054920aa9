"""Property tests: whatever arrives, ``admit`` ends in an envelope or a reasoned rejection.

Random bytes, random headers and topics, and mutations of every golden input (fields
deleted, replaced by random JSON, retyped, added) must never raise anything but
:class:`Rejection`; a rejection must make a valid dead letter; an envelope must survive
the JSON round trip the handler makes.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cayg_ingest.domain import InboundMessage, IngestLimits, Reason, Rejection, admit
from cayg_shared.envelope import DeadLetter, IngestEnvelope, SourceCoordinates, Stage
from cayg_shared.tenants import TenantRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TENANTS = TenantRegistry.load(REPO / "tests" / "golden" / "tenants.json")
REASONS = {v for k, v in vars(Reason).items() if k.isupper()}
NOW = datetime(2025, 8, 1, tzinfo=UTC)
PROPERTY_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _golden_cases() -> list[tuple[str, dict[str, str], Any]]:
    cases: list[tuple[str, dict[str, str], Any]] = []
    for path in sorted((REPO / "tests" / "golden" / "inputs").rglob("*.json")):
        case = json.loads(path.read_text())
        if "value" in case:
            cases.append((case["topic"], case["headers"], case["value"]))
    examples = REPO / "shared" / "cloudevents" / "examples"
    for path in sorted((examples / "structured").glob("*.json")):
        cases.append(
            (
                "sis.events.harbor-tech",
                {"content-type": "application/cloudevents+json"},
                json.loads(path.read_text()),
            )
        )
    for path in sorted((examples / "binary").glob("*.json")):
        example = json.loads(path.read_text())
        cases.append(("sis.events.harbor-tech", example["headers"], example["value"]))
    return cases


GOLDEN_CASES = _golden_cases()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(
    [
        "sis.events.northfield-cc",
        "sis.events.lakeshore-univ",
        "sis.events.harbor-tech",
        "sis.events.unknown-college",
    ]
) | st.text(max_size=40)
header_names = st.sampled_from(
    [
        "content-type",
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_Bad",
        "traceparent",
        "cayg_correlation_id",
    ]
) | st.text(max_size=20)
header_values = st.sampled_from(
    [
        b"1.0",
        b"application/json",
        b"application/cloudevents+json",
        b"application/cloudevents-batch+json",
        b"application/xml",
        b"https://sis.harbortech.example/awards",
        b"org.caygsync.award.issued.v1",
        b"2025-06-02T17:45:12Z",
    ]
) | st.binary(max_size=40)
headers = st.lists(st.tuples(header_names, header_values), max_size=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutations(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one to four random edits."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        operation = draw(st.sampled_from(["delete", "replace", "retype", "insert"]))
        if not path:
            doc = draw(json_values) if operation == "replace" else doc
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = draw(json_values)
        elif operation == "retype":
            value = parent[last]
            parent[last] = (
                str(value) if not isinstance(value, str) else draw(st.sampled_from([[value], 1]))
            )
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=10))] = draw(json_values)
        else:
            parent[last] = {"v": parent[last]}
    return doc


@st.composite
def mutated_golden(draw: st.DrawFn) -> tuple[str, list[tuple[str, bytes]], bytes]:
    topic, header_map, value = draw(st.sampled_from(GOLDEN_CASES))
    if draw(st.booleans()):
        header_map = draw(mutations(header_map))
        if not isinstance(header_map, dict):
            header_map = {}
    header_list = [(str(k), json.dumps(v).strip('"').encode()) for k, v in header_map.items()]
    encoded = json.dumps(draw(mutations(value)), ensure_ascii=draw(st.booleans())).encode()
    return topic, header_list, encoded


def _check_outcome(message: InboundMessage) -> IngestEnvelope | Rejection:
    outcome: IngestEnvelope | Rejection
    try:
        outcome = admit(message, TENANTS, IngestLimits(), received_at=NOW)
    except Rejection as rejection:
        outcome = rejection
    if isinstance(outcome, Rejection):
        assert outcome.reason in REASONS
        assert outcome.detail
        DeadLetter(
            stage=Stage.INGEST,
            reason=outcome.reason,
            detail=outcome.detail,
            field_path=outcome.field_path,
            tenant=outcome.tenant,
            source=SourceCoordinates(topic=message.topic, partition=0, offset=0),
            failed_at=NOW,
            value_b64=DeadLetter.encode(message.value) or "",
        )
        return outcome
    assert IngestEnvelope.model_validate_json(outcome.model_dump_json()) == outcome
    assert outcome.tenant == message.topic.removeprefix("sis.events.")
    return outcome


def _message(
    topic: str, header_list: list[tuple[str, bytes]], value: bytes | None
) -> InboundMessage:
    return InboundMessage(
        topic=topic,
        partition=0,
        offset=0,
        timestamp_ms=None,
        key=None,
        value=value,
        headers=tuple(header_list),
    )


@PROPERTY_SETTINGS
@given(topic=topics, header_list=headers, value=st.none() | st.binary(max_size=300))
def test_random_records_end_in_an_envelope_or_a_rejection(
    topic: str, header_list: list[tuple[str, bytes]], value: bytes | None
) -> None:
    _check_outcome(_message(topic, header_list, value))


@PROPERTY_SETTINGS
@given(topic=topics, header_list=headers, value=json_values)
def test_random_json_ends_in_an_envelope_or_a_rejection(
    topic: str, header_list: list[tuple[str, bytes]], value: Any
) -> None:
    _check_outcome(_message(topic, header_list, json.dumps(value).encode()))


@PROPERTY_SETTINGS
@given(mutated_golden())
def test_mutated_golden_inputs_end_in_an_envelope_or_a_rejection(
    case: tuple[str, list[tuple[str, bytes]], bytes],
) -> None:
    _check_outcome(_message(*case))


def test_the_unmutated_golden_inputs_are_not_all_rejected() -> None:
    # The mutation test is only meaningful if its seeds mostly pass admission.
    outcomes = [
        _check_outcome(
            _message(t, [(k, v.encode()) for k, v in h.items()], json.dumps(v_).encode())
        )
        for t, h, v_ in GOLDEN_CASES
    ]
    admitted = sum(isinstance(o, IngestEnvelope) for o in outcomes)
    assert admitted >= len(outcomes) - 5
