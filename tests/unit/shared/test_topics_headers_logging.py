"""Topic naming, trace headers, deterministic ids and log redaction."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import structlog

from cayg_shared import headers, ids, topics
from cayg_shared.logging import REDACTED, configure_logging, get_logger

pytestmark = pytest.mark.unit


def test_tenant_comes_only_from_a_well_formed_sis_topic() -> None:
    assert topics.tenant_from_topic("sis.events.northfield-cc") == "northfield-cc"
    for bad in (
        "sis.events.",
        "sis.events.Upper",
        "other.northfield",
        "sis.events.a.b",
        "sis.events.-x",
    ):
        with pytest.raises(topics.TopicError):
            topics.tenant_from_topic(bad)


def test_prefixed_topics_strip_back_to_the_contract_names() -> None:
    names = topics.Topics("staging.")
    assert names.ingested == "staging.cayg.ingested.v1"
    assert names.sis("lakeshore") == "staging.sis.events.lakeshore"
    assert names.unprefixed(names.sis("lakeshore")) == "sis.events.lakeshore"
    with pytest.raises(topics.TopicError):
        topics.Topics("bad prefix!")


def test_child_traceparent_keeps_the_trace_and_makes_a_new_span() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    child = headers.child_traceparent(parent)
    assert headers.trace_id(child) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child != parent
    assert headers.trace_id(headers.child_traceparent("garbage")) is not None
    zero = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"
    assert headers.trace_id(headers.child_traceparent(zero)) != "0" * 32


def test_new_traceparents_are_well_formed_and_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    made = {headers.new_traceparent() for _ in range(1000)}
    assert len(made) == 1000
    for value in made:
        assert headers.trace_id(value) is not None, value
        assert value.endswith("-01")
    # A generator that yields zero still gives valid (non-zero) ids.
    monkeypatch.setattr("random.getrandbits", lambda _bits: 0)
    zero = headers.new_traceparent()
    assert headers.trace_id(zero) == "0" * 31 + "1"
    assert zero.split("-")[2] == "0" * 15 + "1"


def test_decode_headers_skips_undecodable_values() -> None:
    decoded = headers.decode_headers([("a", b"1"), ("b", b"\xff\xfe"), ("c", None), ("a", b"2")])
    assert decoded == {"a": "2"}


def test_ids_are_deterministic_and_well_formed() -> None:
    first = ids.event_id("lakeshore", "ethos", "104233")
    assert first == ids.event_id("lakeshore", "ethos", "104233")
    assert first != ids.event_id("northfield", "ethos", "104233")
    ctid = ids.ctid("lakeshore", "definition", " MC-SQL ")
    assert ctid == ids.ctid("lakeshore", "definition", "mc-sql")
    assert ctid.startswith("ce-")
    uuid.UUID(ctid[3:])
    assert ctid == ctid.lower()


def test_logs_are_json_lines_without_secrets_or_learner_identifiers() -> None:
    out = io.StringIO()
    configure_logging("test-service", stream=out)
    log = get_logger("cayg.test")
    structlog.contextvars.bind_contextvars(topic="sis.events.x", offset=7)
    log.info(
        "award seen",
        learner_email="ana@example.edu",
        api_key="k" * 36,
        nested={"Authorization": "ApiToken abc", "tenant": "lakeshore"},
    )
    structlog.contextvars.clear_contextvars()
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["service"] == "test-service"
    assert line["message"] == "award seen"
    assert line["topic"] == "sis.events.x"
    assert line["offset"] == 7
    assert line["learner_email"] == REDACTED
    assert line["api_key"] == REDACTED
    assert line["nested"] == {"Authorization": REDACTED, "tenant": "lakeshore"}
    assert "ana@example.edu" not in out.getvalue()
    assert "ApiToken abc" not in out.getvalue()
