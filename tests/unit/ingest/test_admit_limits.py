"""Size and shape limits, hostile JSON and XML, and what rejections may say."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cayg_ingest.domain import IngestLimits, Rejection
from cayg_shared.envelope import IngestEnvelope

pytestmark = pytest.mark.unit

Admit = Callable[..., IngestEnvelope]
HARBOR = "sis.events.harbor-tech"


def _rejected(admit_one: Admit, value: Any, **kwargs: Any) -> Rejection:
    with pytest.raises(Rejection) as caught:
        admit_one(value, **kwargs)
    return caught.value


def _padded(ethos: dict[str, Any], size: int) -> bytes:
    ethos["content"]["description"] = ""
    base = len(json.dumps(ethos).encode())
    ethos["content"]["description"] = "x" * (size - base)
    raw = json.dumps(ethos).encode()
    assert len(raw) == size
    return raw


def test_the_size_limit_is_exact(admit_one: Admit, ethos: dict[str, Any]) -> None:
    limits = IngestLimits(max_message_bytes=4096)
    assert admit_one(_padded(ethos, 4096), limits=limits).tenant == "northfield-cc"
    rejection = _rejected(admit_one, _padded(ethos, 4097), limits=limits)
    assert rejection.reason == "too-large"
    assert "4097" in rejection.detail


def test_a_tenant_override_replaces_the_size_limit(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    # Harbor Tech may send 2 MiB; the default is 1 MiB.
    cloudevent["data"]["evidence"] = [{"narrative": "n" * 15_000} for _ in range(100)]
    raw = json.dumps(cloudevent).encode()
    assert 1_048_576 < len(raw) < 2_097_152
    assert admit_one(raw, topic=HARBOR).tenant == "harbor-tech"
    with pytest.raises(Rejection, match="too-large"):
        admit_one(raw, topic="sis.events.northfield-cc")


@pytest.mark.parametrize("value", [None, b"", b"   \n\t"])
def test_empty_records_are_refused(admit_one: Admit, value: bytes | None) -> None:
    assert _rejected(admit_one, value).reason == "empty"


def test_header_and_key_limits(admit_one: Admit, ethos: dict[str, Any]) -> None:
    many = [(f"h{i}", b"v") for i in range(65)]
    assert _rejected(admit_one, ethos, headers=many).reason == "too-large"
    big = [("note", b"x" * 8193)]
    assert _rejected(admit_one, ethos, headers=big).field_path == "note"
    assert _rejected(admit_one, ethos, key=b"k" * 1025).field_path == "key"
    assert admit_one(ethos, headers=[("note", b"\xff")], key=b"k" * 1024).tenant


def test_nesting_deeper_than_the_limit_is_refused(admit_one: Admit, ethos: dict[str, Any]) -> None:
    limits = IngestLimits(max_json_depth=8)
    nested: Any = "leaf"
    for _ in range(6):
        nested = {"n": nested}
    # notification (1) > content (2) > six nested objects (3-8): exactly the limit
    ethos["content"]["metadata"] = nested
    assert admit_one(ethos, limits=limits).tenant == "northfield-cc"
    ethos["content"]["metadata"] = {"n": nested}
    assert _rejected(admit_one, ethos, limits=limits).reason == "too-deep"


def test_pathological_nesting_cannot_exhaust_the_stack(admit_one: Admit) -> None:
    for payload in (b"[" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        assert _rejected(admit_one, payload).reason == "too-deep"


def test_too_many_values_or_too_long_strings(admit_one: Admit, ethos: dict[str, Any]) -> None:
    limits = IngestLimits(max_json_nodes=100, max_string_chars=1000)
    ethos["content"]["list"] = list(range(100))
    assert _rejected(admit_one, ethos, limits=limits).reason == "too-complex"
    del ethos["content"]["list"]
    ethos["content"]["description"] = "d" * 1001
    assert _rejected(admit_one, ethos, limits=limits).reason == "too-complex"
    ethos["content"]["description"] = "ok"
    ethos["content"]["k" * 1001] = 1
    assert _rejected(admit_one, ethos, limits=limits).reason == "too-complex"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "1", "id": "2"}',
        b'{"id": NaN}',
        b'{"id": 1e999}',
        b'{"id": -Infinity}',
        b'{"id": "\xff\xfe"}',
        b'{"id": 1',
        b"\x00\x01\x02",
        b'{"id": ' + b"9" * 5000 + b"}",
    ],
)
def test_ambiguous_or_broken_json_is_refused(admit_one: Admit, payload: bytes) -> None:
    assert _rejected(admit_one, payload).reason == "not-json"


def test_a_utf8_byte_order_mark_is_tolerated(admit_one: Admit, ethos: dict[str, Any]) -> None:
    assert admit_one(b"\xef\xbb\xbf" + json.dumps(ethos).encode()).tenant == "northfield-cc"


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<lolz>&lol3;</lolz>"
)


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        (BILLION_LAUGHS, {}),
        (b"\xef\xbb\xbf  \n<award/>", {}),
        (b'{"looks": "like json"}', {"content-type": "application/xml"}),
        (b"<a/>", {"content-type": "application/vnd.hedtech+xml"}),
        (b"<a/>", {"content-type": "text/xml; charset=utf-8"}),
    ],
)
def test_xml_is_refused_without_parsing(
    admit_one: Admit, payload: bytes, headers: dict[str, str]
) -> None:
    assert _rejected(admit_one, payload, headers=headers).reason == "xml-not-supported"


def test_other_content_types_are_refused(admit_one: Admit, ethos: dict[str, Any]) -> None:
    rejection = _rejected(admit_one, ethos, headers={"content-type": "text/csv"})
    assert rejection.reason == "unsupported-content-type"
    assert admit_one(ethos, headers={"content-type": "application/json"}).tenant


def test_rejections_never_echo_learner_identifiers(
    admit_one: Admit, cloudevent: dict[str, Any], backfill: dict[str, Any]
) -> None:
    secrets = ("H00418822", "c.okafor@students.harbortech.example", "0412277")
    cloudevent["source"] = "https://elsewhere.example/"
    backfill["recordedAt"] = "not a date"
    backfill["tenant"] = "Not A Tenant"
    for value, topic in ((cloudevent, HARBOR), (backfill, "sis.events.northfield-cc")):
        rejection = _rejected(admit_one, value, topic=topic)
        for secret in secrets:
            assert secret not in rejection.detail
            assert secret not in str(rejection)
