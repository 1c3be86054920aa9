"""Size and shape limits (service and per tenant), hostile JSON, HTML and XML, and what
rejections may say."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, Rejection, admit
from cayg_shared.envelope import IngestEnvelope
from cayg_shared.tenants import TenantLimits, TenantRegistry

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


PROXY_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>\n"
    b"</html>\n"
)


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        (PROXY_ERROR_PAGE, {}),
        (PROXY_ERROR_PAGE, {"content-type": "application/json"}),
        (b"\xef\xbb\xbf\r\n  <HTML><BODY>Service Unavailable</BODY></HTML>", {}),
        (b"<!-- generated by the gateway -->\n<!doctype HTML><title>403</title>", {}),
        (b"<head><meta http-equiv='refresh' content='0'></head>", {}),
        (b'{"looks": "like json"}', {"content-type": "text/html; charset=utf-8"}),
    ],
)
def test_an_html_page_is_named_as_such_and_never_parsed(
    admit_one: Admit, payload: bytes, headers: dict[str, str]
) -> None:
    rejection = _rejected(admit_one, payload, headers=headers)
    assert rejection.reason == "html-not-supported"
    assert "HTML page" in rejection.detail


def test_an_html_page_in_place_of_binary_cloudevent_data_is_html(
    admit_one: Admit, cloudevent: dict[str, Any]
) -> None:
    headers = {f"ce_{k}": v for k, v in cloudevent.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = "application/json"
    rejection = _rejected(admit_one, PROXY_ERROR_PAGE, topic=HARBOR, headers=headers)
    assert rejection.reason == "html-not-supported"
    xml = _rejected(admit_one, b"<?xml version='1.0'?><award/>", topic=HARBOR, headers=headers)
    assert xml.reason == "xml-not-supported"


def test_xhtml_is_an_html_page_other_xml_stays_xml(admit_one: Admit) -> None:
    page = b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"/>'
    assert _rejected(admit_one, page).reason == "html-not-supported"
    headers = {"content-type": "application/xhtml+xml"}
    assert _rejected(admit_one, b"<a/>", headers=headers).reason == "html-not-supported"
    award = b'<?xml version="1.0"?>\n<!-- export --><award><html>no</html></award>'
    assert _rejected(admit_one, award).reason == "xml-not-supported"


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


# --------------------------------------------------------------------------- coherence


def test_a_200_kb_description_within_the_message_limit_is_admitted(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    # Refused as "too-complex: a string is too long" while the per-string limit
    # (100,000 characters) was below the message limit (1 MiB).
    ethos["content"]["description"] = "Data analytics. " * 12_500
    assert len(ethos["content"]["description"]) == 200_000
    envelope = admit_one(ethos)
    assert envelope.payload["content"] == ethos["content"]


def test_one_string_filling_the_whole_message_limit_is_never_too_long(
    admit_one: Admit, ethos: dict[str, Any]
) -> None:
    limits = IngestLimits(max_message_bytes=4096)
    assert limits.string_limit == 4096
    # A string as long as the message allows: only the message size can refuse it.
    assert admit_one(_padded(ethos, 4096), limits=limits).tenant == "northfield-cc"
    assert _rejected(admit_one, _padded(ethos, 4097), limits=limits).reason == "too-large"


def test_a_flat_array_filling_the_message_is_not_too_complex(admit_one: Admit) -> None:
    limits = IngestLimits(max_message_bytes=4096)
    # As many JSON values as 4 KiB can hold: only the message size binds by default.
    values = b"[" + b",".join([b"0"] * 2047) + b"]"
    assert len(values) < 4096
    assert _rejected(admit_one, values, limits=limits).reason == "not-object"


def test_tenant_limits_replace_the_services() -> None:
    service = IngestLimits()
    tenant = TenantLimits(max_json_depth=6, max_string_chars=500, max_message_bytes=8192)
    merged = service.for_tenant(tenant)
    assert (merged.max_json_depth, merged.max_string_chars, merged.max_message_bytes) == (
        6,
        500,
        8192,
    )
    assert (merged.max_headers, merged.max_key_bytes) == (service.max_headers, 1024)
    assert service.for_tenant(TenantLimits()) == service


def _registry_with_limits(tenants: TenantRegistry, **limits: int) -> TenantRegistry:
    document = json.loads(tenants.to_json())
    document["tenants"]["northfield-cc"]["limits"] = limits
    return TenantRegistry.model_validate(document)


def _admit_raw(registry: TenantRegistry, value: dict[str, Any], topic: str) -> IngestEnvelope:
    message = InboundMessage(
        topic=topic,
        partition=0,
        offset=1,
        timestamp_ms=None,
        key=None,
        value=json.dumps(value).encode(),
        headers=(),
    )
    return admit(message, registry, IngestLimits(), received_at=datetime(2025, 8, 1, tzinfo=UTC))


def test_a_tenants_limits_apply_to_that_tenant_only(
    tenants: TenantRegistry, ethos: dict[str, Any], cloudevent: dict[str, Any]
) -> None:
    strict = _registry_with_limits(tenants, max_string_chars=1000, max_json_depth=4)
    ethos["content"]["description"] = "d" * 1001
    with pytest.raises(Rejection) as caught:
        _admit_raw(strict, ethos, "sis.events.northfield-cc")
    assert caught.value.reason == "too-complex"
    ethos["content"]["description"] = "d" * 1000
    ethos["content"]["metadata"] = {"a": {"b": "c"}}  # depth 4: notification > content > a > b
    assert _admit_raw(strict, ethos, "sis.events.northfield-cc").tenant == "northfield-cc"
    ethos["content"]["metadata"] = {"a": {"b": {"c": "d"}}}
    with pytest.raises(Rejection) as caught:
        _admit_raw(strict, ethos, "sis.events.northfield-cc")
    assert caught.value.reason == "too-deep"
    # Harbor Tech keeps the service's limits.
    cloudevent["data"]["evidence"] = [{"narrative": "n" * 5000, "description": "x"}]
    assert _admit_raw(strict, cloudevent, HARBOR).tenant == "harbor-tech"


def test_a_tenants_message_limit_in_the_limits_block(
    tenants: TenantRegistry, ethos: dict[str, Any]
) -> None:
    raised = _registry_with_limits(tenants, max_message_bytes=3 * 1_048_576)
    ethos["content"]["description"] = "d" * 2_000_000
    assert _admit_raw(raised, ethos, "sis.events.northfield-cc").tenant == "northfield-cc"
    with pytest.raises(Rejection) as caught:
        _admit_raw(tenants, ethos, "sis.events.northfield-cc")
    assert caught.value.reason == "too-large"
