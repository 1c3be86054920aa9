"""Records that fail by themselves (issue 10): each ends as a dead letter with a reason,
is committed past, and never holds up the records behind it; none vanishes.
"""

from __future__ import annotations

import pytest

from cayg_shared import headers as h
from cayg_shared.envelope import DeadLetter, IngestEnvelope, Stage
from cayg_shared.schema import Change
from support.batches import Harness
from support.sis import HARBOR, NORTHFIELD, academic_credential_created, encode, harbor_award
from support.sis import structured_headers as structured

pytestmark = pytest.mark.component


def _letters(stage: Harness, topic: str) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(sent.value) for sent in stage.outbox.on(topic)]


def lone_surrogate_award(n: int) -> bytes:
    """A structured CloudEvent whose JSON is valid but names ``"\\ud800"``: a lone surrogate,
    which no UTF-8 output can carry."""
    event = harbor_award(n)
    event["data"]["definition"]["sourceId"] = "WELD-\ud800"
    value = encode(event)
    assert b"\\ud800" in value, "json.dumps escapes it: the input is plain ASCII JSON"
    return value


async def test_a_lone_surrogate_is_dead_lettered_and_the_next_record_flows(
    ingest: Harness,
) -> None:
    poison = lone_surrogate_award(1)
    await ingest.broker.publish(
        poison, topic=ingest.topics.sis(HARBOR), key=b"poison", headers=structured()
    )
    await ingest.broker.publish(
        encode(harbor_award(2)), topic=ingest.topics.sis(HARBOR), key=b"good", headers=structured()
    )

    [letter] = _letters(ingest, ingest.topics.ingest_dlq)
    assert (letter.stage, letter.reason, letter.tenant) == (
        Stage.INGEST,
        "unencodable-text",
        HARBOR,
    )
    assert letter.original_value() == poison, "parked as read, for replay after a fix"
    assert letter.source.offset == 0
    [forwarded] = ingest.outbox.on(ingest.topics.ingested)
    assert IngestEnvelope.model_validate_json(forwarded.value).subject_id == "AWD-T-00002"
    # Both records are settled: committed past, nothing rewound.
    assert ingest.broker.committed == {(ingest.topics.sis(HARBOR), 0): 2}
    assert ingest.broker.rewound == {}
    assert ingest.count("cayg_ingest_rejected", reason="unencodable-text") == 1


async def test_a_header_that_is_not_utf8_is_dead_lettered_not_dropped(ingest: Harness) -> None:
    value = encode(academic_credential_created(104_900, 3))
    await ingest.broker.publish(
        value,
        topic=ingest.topics.sis(NORTHFIELD),
        key=b"k",
        headers={h.TRACEPARENT: b"\xff\xfe not text", "x-note": "fine"},
    )

    assert ingest.outbox.on(ingest.topics.ingested) == []
    [letter] = _letters(ingest, ingest.topics.ingest_dlq)
    assert (letter.reason, letter.field_path, letter.tenant) == (
        "bad-header",
        h.TRACEPARENT,
        NORTHFIELD,
    )
    assert letter.original_value() == value
    # The undecodable header is kept, escaped, instead of silently dropped.
    assert letter.original_headers[h.TRACEPARENT] == "\\xff\\xfe not text"
    assert letter.original_headers["x-note"] == "fine"
    assert ingest.broker.committed == {(ingest.topics.sis(NORTHFIELD), 0): 1}


async def test_a_bad_cloudevent_header_is_a_bad_header_too(ingest: Harness) -> None:
    event = harbor_award(4)
    await ingest.broker.publish(
        encode(event["data"]),
        topic=ingest.topics.sis(HARBOR),
        headers={h.CE_SPECVERSION: "1.0", h.CE_ID: b"\xc3\x28", h.CONTENT_TYPE: "application/json"},
    )

    [letter] = _letters(ingest, ingest.topics.ingest_dlq)
    assert (letter.reason, letter.field_path) == ("bad-header", h.CE_ID)


async def test_normalize_ignores_an_undecodable_header_and_maps_the_envelope(
    ingest: Harness, normalize: Harness
) -> None:
    # An envelope as ingest writes it, re-sent with a broken trace header: the envelope in
    # the value is the contract, so it is mapped (with a fresh trace), not dropped.
    await ingest.broker.publish(
        encode(harbor_award(5)), topic=ingest.topics.sis(HARBOR), headers=structured()
    )
    [envelope] = ingest.outbox.on(ingest.topics.ingested)
    await normalize.broker.publish(
        envelope.value,
        topic=normalize.topics.ingested,
        key=envelope.key,
        headers={h.TRACEPARENT: b"\x80\x81", h.CONTENT_TYPE: "application/json"},
    )

    [sent] = normalize.outbox.on(normalize.topics.normalized)
    change = Change.from_kafka_value(sent.value)
    assert change.entity_key.source_id == "AWD-T-00005"
    assert len(sent.headers[h.TRACEPARENT].split("-")[1]) == 32, "a new, valid trace"
    assert normalize.outbox.on(normalize.topics.normalize_dlq) == []
    assert normalize.broker.committed == {(normalize.topics.ingested, 0): 1}


async def test_normalize_parks_an_envelope_its_parser_refuses(normalize: Harness) -> None:
    # The lone surrogate again, now inside an envelope written by someone else than ingest.
    value = b'{"schema_version": "1.0", "payload": {"x": "\\ud800"}}'
    await normalize.broker.publish(value, topic=normalize.topics.ingested, key=b"k")

    [letter] = _letters(normalize, normalize.topics.normalize_dlq)
    assert letter.reason == "bad-envelope"
    assert letter.original_value() == value
    assert normalize.broker.committed == {(normalize.topics.ingested, 0): 1}
