"""The Registry Assistant client against respx-mocked HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from cayg_publish.adapters.credential_engine import (
    CredentialEngineClient,
    classify_registry_messages,
)
from cayg_publish.config import CredentialEngineTargetConfig, HttpTimeouts, SecretRef
from cayg_publish.domain.catalog import TargetFailure
from cayg_publish.domain.retry import FailureKind

pytestmark = pytest.mark.unit

BASE = "https://assistant.test/assistant/"
KEY = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
ORG = "ce-a588a18b-2616-4c74-bdcd-6507c0693d0e"
CTID = "ce-cef8a76d-f168-0513-8fac-0b8dc60ef853"


def client() -> CredentialEngineClient:
    http = httpx.AsyncClient(base_url=BASE, timeout=httpx.Timeout(2.0))
    return CredentialEngineClient(http, SecretStr(KEY))


def ok(**extra: Any) -> dict[str, Any]:
    return {
        "Successful": True,
        "WasChanged": True,
        "Messages": [],
        "CTID": CTID,
        "EnvelopeUrl": f"https://sandbox.credentialengineregistry.org/envelopes/{CTID}",
        "GraphUrl": f"https://sandbox.credentialengineregistry.org/graph/{CTID}",
        "RegistryEnvelopeIdentifier": "b1c2",
        **extra,
    }


@respx.mock
async def test_publish_sends_api_token_idempotency_key_and_body() -> None:
    route = respx.post(f"{BASE}credential/publish").respond(200, json=ok())

    result = await client().publish_credential({"Credential": {"CTID": CTID}}, "idem-1")

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"ApiToken {KEY}"
    assert request.headers["Idempotency-Key"] == "idem-1"
    assert json.loads(request.content) == {"Credential": {"CTID": CTID}}
    assert result.successful
    assert result.was_changed is True
    assert result.ctid == CTID
    assert result.envelope_url is not None
    assert result.registry_envelope_identifier == "b1c2"


@respx.mock
async def test_validation_failure_is_permanent_with_the_messages() -> None:
    messages = ["Description must be at least 15 characters.", "SubjectWebpage is required."]
    respx.post(f"{BASE}credential/publish").respond(
        200, json={"Successful": False, "Messages": messages}
    )

    with pytest.raises(TargetFailure) as raised:
        await client().publish_credential({}, "idem")

    failure = raised.value.failure
    assert failure.kind is FailureKind.PERMANENT
    assert failure.reason == "validation"
    assert failure.messages == tuple(messages)
    assert failure.status == 200
    assert failure.response is not None


@respx.mock
async def test_transient_server_messages_are_retryable() -> None:
    respx.post(f"{BASE}credential/publish").respond(
        200,
        json={"Successful": False, "Messages": ["Error communicating with the registry: timeout"]},
    )

    with pytest.raises(TargetFailure) as raised:
        await client().publish_credential({}, "idem")

    assert raised.value.failure.kind is FailureKind.RETRYABLE
    assert raised.value.failure.reason == "registry-transient"


def test_a_single_validation_message_makes_a_mixed_answer_permanent() -> None:
    assert classify_registry_messages(("timeout", "Name is required")) is FailureKind.PERMANENT
    assert classify_registry_messages(()) is FailureKind.PERMANENT
    assert classify_registry_messages(("Please try again later",)) is FailureKind.RETRYABLE


@respx.mock
async def test_5xx_with_retry_after_is_retryable() -> None:
    respx.post(f"{BASE}organization/publish").respond(
        503, headers={"Retry-After": "12"}, text="maintenance"
    )

    with pytest.raises(TargetFailure) as raised:
        await client().publish_organization({}, "idem")

    failure = raised.value.failure
    assert failure.kind is FailureKind.RETRYABLE
    assert failure.reason == "http-503"
    assert failure.retry_after == 12.0


@respx.mock
async def test_a_bad_api_key_is_permanent_and_never_echoed() -> None:
    respx.post(f"{BASE}credential/publish").respond(401, json={"Message": "Invalid API key"})

    with pytest.raises(TargetFailure) as raised:
        await client().publish_credential({}, "idem")

    failure = raised.value.failure
    assert failure.kind is FailureKind.PERMANENT
    assert failure.reason == "http-401"
    assert failure.messages == ("Invalid API key",)
    assert KEY not in repr(failure)
    assert KEY not in repr(client())


@respx.mock
async def test_timeouts_and_connection_errors_are_retryable() -> None:
    route = respx.post(f"{BASE}credential/publish")
    route.side_effect = httpx.ReadTimeout("slow")
    with pytest.raises(TargetFailure) as timed_out:
        await client().publish_credential({}, "idem")
    route.side_effect = httpx.ConnectError("refused")
    with pytest.raises(TargetFailure) as refused:
        await client().publish_credential({}, "idem")

    assert timed_out.value.failure.reason == "timeout"
    assert timed_out.value.failure.retryable
    assert refused.value.failure.reason == "connect"
    assert refused.value.failure.retryable


@respx.mock
async def test_a_2xx_that_is_not_an_assistant_answer_is_retryable() -> None:
    respx.post(f"{BASE}credential/publish").respond(200, html="<html>proxy</html>")

    with pytest.raises(TargetFailure) as raised:
        await client().publish_credential({}, "idem")

    assert raised.value.failure.retryable
    assert raised.value.failure.reason == "protocol"


@respx.mock
async def test_delete_sends_a_json_body() -> None:
    route = respx.delete(f"{BASE}credential/delete").respond(
        200, json={"Successful": True, "Messages": []}
    )

    result = await client().delete_credential(CTID, ORG, "idem")

    assert json.loads(route.calls.last.request.content) == {
        "CTID": CTID,
        "PublishForOrganizationIdentifier": ORG,
    }
    assert result.successful


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, text="not here"),
        httpx.Response(200, json={"Successful": False, "Messages": ["Record was not found"]}),
    ],
)
async def test_deleting_what_is_not_there_succeeds(answer: httpx.Response) -> None:
    respx.delete(f"{BASE}credential/delete").mock(return_value=answer)

    result = await client().delete_credential(CTID, ORG, "idem")

    assert result.successful
    assert result.was_changed is False


@respx.mock
async def test_from_config_resolves_the_key_from_the_environment() -> None:
    route = respx.post(f"{BASE}transfervalue/publish").respond(200, json=ok())
    config = CredentialEngineTargetConfig(
        name="registry",
        base_url=BASE,  # type: ignore[arg-type]
        api_key=SecretRef(env="CE_KEY"),
        publish_for_organization=ORG,
        timeouts=HttpTimeouts(read=3),
    )

    built = CredentialEngineClient.from_config(config, environ={"CE_KEY": KEY})
    await built.publish_transfer_value({}, "idem")

    assert route.calls.last.request.headers["Authorization"] == f"ApiToken {KEY}"
    await built.aclose()
