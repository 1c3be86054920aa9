"""The CLR 2.0 / OB 3.0 client: discovery, OAuth tokens, upserts, errors (respx)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from cayg_publish.adapters.clr import ClrClient, endpoints_from_discovery, imsx_messages
from cayg_publish.domain.catalog import TargetFailure
from cayg_publish.domain.retry import FailureKind

pytestmark = pytest.mark.unit

BASE = "https://clr.test/ims/clr/v2p0/"
TOKEN_URL = "https://clr.test/oauth/token"
SCOPE = "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.upsert"
SECRET = "s3cr3t-client-secret"
DISCOVERY = {
    "openapi": "3.0.1",
    "components": {
        "securitySchemes": {
            "OAuth2ACG": {
                "type": "oauth2",
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": "/oauth/authorize",
                        "tokenUrl": "/oauth/token",
                        "refreshUrl": "/oauth/token",
                        "scopes": {SCOPE: "upsert"},
                    }
                },
            }
        }
    },
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make(clock: Clock | None = None, *, token_url: str | None = None) -> ClrClient:
    return ClrClient(
        httpx.AsyncClient(base_url=BASE, timeout=httpx.Timeout(2.0)),
        client_id="cayg",
        client_secret=SecretStr(SECRET),
        scopes=(SCOPE,),
        token_url=token_url,
        refresh_margin=timedelta(seconds=60),
        clock=clock or Clock(),
    )


def token(access: str, *, expires_in: int = 3600, refresh: str | None = "r1") -> httpx.Response:
    body: dict[str, object] = {"access_token": access, "token_type": "Bearer"}
    body["expires_in"] = expires_in
    if refresh:
        body["refresh_token"] = refresh
    return httpx.Response(200, json=body)


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def test_discovery_resolves_relative_urls_and_prefers_client_credentials() -> None:
    found = endpoints_from_discovery(DISCOVERY, "https://clr.test/ims/clr/v2p0/discovery")
    assert found is not None
    assert found.token_url == TOKEN_URL
    assert found.refresh_url == TOKEN_URL
    assert found.scopes == (SCOPE,)

    both = {
        "components": {
            "securitySchemes": {
                "a": DISCOVERY["components"]["securitySchemes"]["OAuth2ACG"],  # type: ignore[index]
                "b": {
                    "type": "oauth2",
                    "flows": {"clientCredentials": {"tokenUrl": "https://as.test/token"}},
                },
            }
        }
    }
    preferred = endpoints_from_discovery(both, "https://clr.test/discovery")
    assert preferred is not None
    assert preferred.token_url == "https://as.test/token"
    assert endpoints_from_discovery({"openapi": "3"}, "https://x/") is None


@respx.mock
async def test_upsert_discovers_gets_a_token_and_posts_with_bearer_and_key() -> None:
    respx.get(f"{BASE}discovery").respond(200, json=DISCOVERY)
    token_route = respx.post(TOKEN_URL).mock(return_value=token("t1"))
    upsert = respx.post(f"{BASE}credentials").respond(201, json={"id": "urn:uuid:1"})

    result = await make().upsert_credential({"id": "urn:uuid:1"}, "idem-1")

    assert result.created
    assert result.status == 201
    grant = token_route.calls.last.request
    assert form(grant) == {"grant_type": ["client_credentials"], "scope": [SCOPE]}
    expected = base64.b64encode(f"cayg:{SECRET}".encode()).decode()
    assert grant.headers["Authorization"] == f"Basic {expected}"
    sent = upsert.calls.last.request
    assert sent.headers["Authorization"] == "Bearer t1"
    assert sent.headers["Idempotency-Key"] == "idem-1"


@respx.mock
async def test_tokens_are_cached_then_refreshed_before_expiry() -> None:
    clock = Clock()
    respx.get(f"{BASE}discovery").respond(200, json=DISCOVERY)
    token_route = respx.post(TOKEN_URL).mock(side_effect=[token("t1"), token("t2", refresh="r2")])
    upsert = respx.post(f"{BASE}credentials").respond(200, json={})
    client = make(clock)

    await client.upsert_credential({}, "a")
    await client.upsert_credential({}, "b")
    assert token_route.call_count == 1
    clock.now += timedelta(seconds=3600 - 59)  # inside the refresh margin
    await client.upsert_credential({}, "c")

    assert token_route.call_count == 2
    assert form(token_route.calls.last.request) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["r1"],
    }
    assert upsert.calls.last.request.headers["Authorization"] == "Bearer t2"


@respx.mock
async def test_a_refused_refresh_falls_back_to_client_credentials() -> None:
    clock = Clock()
    respx.get(f"{BASE}discovery").respond(200, json=DISCOVERY)
    token_route = respx.post(TOKEN_URL).mock(
        side_effect=[
            token("t1", expires_in=120),
            httpx.Response(400, json={"error": "invalid_grant"}),
            token("t3"),
        ]
    )
    upsert = respx.post(f"{BASE}credentials").respond(200, json={})
    client = make(clock)
    await client.upsert_credential({}, "a")
    clock.now += timedelta(seconds=100)

    await client.upsert_credential({}, "b")

    grants = [form(c.request)["grant_type"][0] for c in token_route.calls]
    assert grants == ["client_credentials", "refresh_token", "client_credentials"]
    assert upsert.calls.last.request.headers["Authorization"] == "Bearer t3"


@respx.mock
async def test_a_401_is_retried_once_with_a_new_token() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=[token("old"), token("new")])
    upsert = respx.post(f"{BASE}credentials").mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={})]
    )

    result = await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    assert result.status == 200
    assert token_route.call_count == 2
    assert form(token_route.calls.last.request)["grant_type"] == ["client_credentials"]
    assert [c.request.headers["Authorization"] for c in upsert.calls] == [
        "Bearer old",
        "Bearer new",
    ]
    assert {c.request.headers["Idempotency-Key"] for c in upsert.calls} == {"idem"}


@respx.mock
async def test_a_second_401_is_permanent() -> None:
    respx.post(TOKEN_URL).mock(side_effect=[token("a"), token("b")])
    respx.post(f"{BASE}credentials").respond(401)

    with pytest.raises(TargetFailure) as raised:
        await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    assert raised.value.failure.kind is FailureKind.PERMANENT
    assert raised.value.failure.reason == "unauthorized"


@respx.mock
async def test_imsx_errors_become_messages() -> None:
    respx.post(TOKEN_URL).mock(return_value=token("t"))
    respx.post(f"{BASE}credentials").respond(
        400,
        json={
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": "The credential failed schema validation",
            "imsx_codeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": "invaliddata",
                    }
                ]
            },
        },
    )

    with pytest.raises(TargetFailure) as raised:
        await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    failure = raised.value.failure
    assert failure.kind is FailureKind.PERMANENT
    assert failure.messages == (
        "The credential failed schema validation",
        "TargetEndSystem: invaliddata",
    )


@respx.mock
async def test_busy_host_is_retryable_with_its_retry_after() -> None:
    respx.post(TOKEN_URL).mock(return_value=token("t"))
    respx.post(f"{BASE}credentials").respond(
        429,
        headers={"Retry-After": "30"},
        json={"imsx_codeMajor": "failure", "imsx_severity": "error"},
    )

    with pytest.raises(TargetFailure) as raised:
        await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    assert raised.value.failure.retryable
    assert raised.value.failure.retry_after == 30.0
    assert raised.value.failure.messages == ("imsx_codeMajor: failure",)


@respx.mock
async def test_a_rejected_client_is_permanent_and_the_secret_stays_hidden() -> None:
    respx.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})

    with pytest.raises(TargetFailure) as raised:
        await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    failure = raised.value.failure
    assert failure.kind is FailureKind.PERMANENT
    assert failure.reason == "oauth-invalid_client"
    assert SECRET not in repr(failure)
    assert SECRET not in repr(make())


@respx.mock
async def test_token_endpoint_outage_is_retryable() -> None:
    respx.post(TOKEN_URL).respond(503)

    with pytest.raises(TargetFailure) as raised:
        await make(token_url=TOKEN_URL).upsert_credential({}, "idem")

    assert raised.value.failure.retryable


@respx.mock
async def test_discovery_without_oauth_is_permanent() -> None:
    respx.get(f"{BASE}discovery").respond(200, json={"openapi": "3.0.1"})

    with pytest.raises(TargetFailure) as raised:
        await make().upsert_credential({}, "idem")

    assert raised.value.failure.reason == "discovery-invalid"


def test_imsx_messages_accept_single_fields_and_language_maps() -> None:
    body = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": {"en": "Bad"},
        "imsx_codeMinor": {
            "imsx_codeMinorField": {
                "imsx_codeMinorFieldName": "x",
                "imsx_codeMinorFieldValue": "forbidden",
            }
        },
    }

    assert imsx_messages(body) == ("Bad", "x: forbidden")
    assert imsx_messages("not json") == ()
