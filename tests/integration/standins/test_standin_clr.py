"""The CLR 2.0 / OB 3.0 host stand-in over real HTTP: OAuth, upserts, checks, paging."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft201909Validator

from cayg_signing import ContextLoader, SigningKey, sign_credential
from cayg_standins.clr.checks import SchemaCheck
from integration.standins.standins_support import (
    ADMIN_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    CLR_SCOPE,
    OB_SCOPE,
    READONLY_CLIENT,
    READONLY_SECRET,
    LiveServer,
)

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
CLR_CREDENTIALS = "/ims/clr/v2p0/credentials"
OB_CREDENTIALS = "/ims/ob/v3p0/credentials"

Signer = Callable[[dict[str, Any]], dict[str, Any]]


def vector(conformance_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((conformance_dir / "1edtech/vectors" / name).read_text())
    return data


def schema(conformance_dir: Path, name: str) -> Draft201909Validator:
    return Draft201909Validator(
        json.loads((conformance_dir / "1edtech/schemas" / name).read_text())
    )


@pytest.fixture
def sign(conformance_dir: Path) -> Signer:
    """Re-sign a credential with the 1EdTech test key (its https verification method)."""
    pair = vector(conformance_dir, "keys.json")["keyPair"]
    key = SigningKey.from_seed(
        bytes.fromhex(pair["privateKeyHex"][:64]), pair["verificationMethod"]
    )
    loader = ContextLoader.from_directory(conformance_dir / "1edtech/contexts")

    def signer(credential: dict[str, Any]) -> dict[str, Any]:
        unsigned = {k: v for k, v in credential.items() if k != "proof"}
        return sign_credential(unsigned, key, loader)

    return signer


def token(
    client: httpx.Client,
    scope: str | None = None,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
) -> dict[str, Any]:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    response = client.post("/oauth/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    result: dict[str, Any] = response.json()
    return result


def bearer(grant: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {grant['access_token']}"}


def assert_imsx(
    response: httpx.Response, status: int, minor: str, conformance_dir: Path
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    schema(conformance_dir, "clr_v2p0_imsx_statusinfo_schema.json").validate(body)
    assert body["imsx_codeMajor"] in ("failure", "unsupported")
    assert body["imsx_severity"] == "error"
    field = body["imsx_codeMinor"]["imsx_codeMinorField"][0]
    assert field["imsx_codeMinorFieldName"] == "TargetEndSystem"
    assert field["imsx_codeMinorFieldValue"] == minor
    return body


# -- discovery and OAuth ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "scope"), [("/ims/clr/v2p0", CLR_SCOPE), ("/ims/ob/v3p0", OB_SCOPE)]
)
def test_discovery_is_open_and_names_endpoints_and_scopes(
    clr: LiveServer, base: str, scope: str
) -> None:
    with clr.client() as client:
        document = client.get(f"{base}/discovery").json()
    assert document["openapi"].startswith("3.")
    assert {"/credentials", "/profile", "/discovery"} <= set(document["paths"])
    assert document["servers"][0]["url"] == f"{clr.base_url}{base}"
    schemes = document["components"]["securitySchemes"]
    flow = schemes["OAuth2ACG"]["flows"]["authorizationCode"]
    assert flow["tokenUrl"] == f"{clr.base_url}/oauth/token"
    assert flow["authorizationUrl"] == f"{clr.base_url}/oauth/authorize"
    assert set(flow["scopes"]) == {
        f"{scope}/credential.readonly",
        f"{scope}/credential.upsert",
        f"{scope}/profile.readonly",
        f"{scope}/profile.update",
    }
    assert schemes["OAuth2CC"]["flows"]["clientCredentials"]["tokenUrl"] == flow["tokenUrl"]


def test_token_endpoint_client_authentication(clr: LiveServer) -> None:
    grant = {"grant_type": "client_credentials"}
    with clr.client() as client:
        basic = client.post("/oauth/token", data=grant, auth=(CLIENT_ID, CLIENT_SECRET))
        assert basic.status_code == 200
        assert basic.json()["token_type"] == "Bearer"
        assert basic.json()["expires_in"] == 300
        form = client.post(
            "/oauth/token",
            data={**grant, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        assert form.status_code == 200
        wrong = client.post("/oauth/token", data=grant, auth=(CLIENT_ID, "wrong"))
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")
        both = client.post(
            "/oauth/token",
            data={**grant, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert both.status_code == 400
        password = client.post(
            "/oauth/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET)
        )
        assert password.json()["error"] == "unsupported_grant_type"
        as_json = client.post("/oauth/token", json=grant, auth=(CLIENT_ID, CLIENT_SECRET))
        assert as_json.json()["error"] == "invalid_request"
        too_much = client.post(
            "/oauth/token",
            data={**grant, "scope": f"{CLR_SCOPE}/credential.upsert"},
            auth=(READONLY_CLIENT, READONLY_SECRET),
        )
        assert too_much.status_code == 400
        assert too_much.json()["error"] == "invalid_scope"


def test_bearer_tokens_are_required(clr: LiveServer, conformance_dir: Path) -> None:
    with clr.client() as client:
        missing = client.get(CLR_CREDENTIALS)
        assert_imsx(missing, 401, "unauthorizedrequest", conformance_dir)
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        forged = client.get(CLR_CREDENTIALS, headers={"Authorization": "Bearer forged"})
        assert_imsx(forged, 401, "unauthorizedrequest", conformance_dir)
        assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]


def test_scopes_are_enforced_per_endpoint(clr: LiveServer, conformance_dir: Path) -> None:
    signed = vector(conformance_dir, "clr_signed.json")
    with clr.client() as client:
        readonly = bearer(token(client, f"{CLR_SCOPE}/credential.readonly"))
        upsert_only = bearer(token(client, f"{CLR_SCOPE}/credential.upsert"))
        ob_only = bearer(token(client, f"{OB_SCOPE}/credential.upsert"))
        denied = client.post(CLR_CREDENTIALS, json=signed, headers=readonly)
        body = assert_imsx(denied, 403, "forbidden", conformance_dir)
        assert "credential.upsert" in body["imsx_description"]
        assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]
        assert_imsx(
            client.get(CLR_CREDENTIALS, headers=upsert_only), 403, "forbidden", conformance_dir
        )
        assert_imsx(
            client.post(CLR_CREDENTIALS, json=signed, headers=ob_only),
            403,
            "forbidden",
            conformance_dir,
        )
        assert_imsx(
            client.get("/ims/clr/v2p0/profile", headers=upsert_only),
            403,
            "forbidden",
            conformance_dir,
        )
        assert client.get(CLR_CREDENTIALS, headers=readonly).status_code == 200
        assert client.post(CLR_CREDENTIALS, json=signed, headers=upsert_only).status_code == 201


def test_tokens_expire_and_refresh_tokens_rotate(clr: LiveServer, conformance_dir: Path) -> None:
    with clr.client() as client:
        first = token(client)
        assert client.get(CLR_CREDENTIALS, headers=bearer(first)).status_code == 200
        moved = client.post("/_admin/clock", json={"advance_s": 301}, headers=ADMIN)
        assert moved.status_code == 200
        expired = client.get(CLR_CREDENTIALS, headers=bearer(first))
        assert_imsx(expired, 401, "unauthorizedrequest", conformance_dir)

        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        stolen = client.post("/oauth/token", data=refresh, auth=(READONLY_CLIENT, READONLY_SECRET))
        assert stolen.json()["error"] == "invalid_grant"
        narrowed = {**refresh, "scope": f"{CLR_SCOPE}/credential.readonly"}
        renewed = client.post("/oauth/token", data=narrowed, auth=(CLIENT_ID, CLIENT_SECRET))
        assert renewed.status_code == 200, renewed.text
        second = renewed.json()
        assert second["scope"] == f"{CLR_SCOPE}/credential.readonly"
        assert client.get(CLR_CREDENTIALS, headers=bearer(second)).status_code == 200
        assert client.post(CLR_CREDENTIALS, json={}, headers=bearer(second)).status_code == 403

        reused = client.post("/oauth/token", data=refresh, auth=(CLIENT_ID, CLIENT_SECRET))
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"


# -- upserts ------------------------------------------------------------------------------


def test_upsert_created_then_unchanged_then_replaced(
    clr: LiveServer, conformance_dir: Path, sign: Signer
) -> None:
    signed = vector(conformance_dir, "clr_signed.json")
    newer = sign({**signed, "validFrom": "2011-01-01T00:00:00Z"})
    with clr.client() as client:
        headers = bearer(token(client))
        created = client.post(CLR_CREDENTIALS, json=signed, headers=headers)
        assert created.status_code == 201
        assert created.json() == signed
        same = client.post(CLR_CREDENTIALS, json=signed, headers=headers)
        assert same.status_code == 200
        assert same.headers["X-Upsert-Outcome"] == "unchanged"
        replaced = client.post(CLR_CREDENTIALS, json=newer, headers=headers)
        assert replaced.status_code == 200
        assert replaced.headers["X-Upsert-Outcome"] == "replaced"
        listed = client.get(CLR_CREDENTIALS, headers=headers).json()["credential"]
        stats = client.get(
            "/_admin/stats", params={"credential_id": signed["id"]}, headers=ADMIN
        ).json()
    assert listed == [newer]
    assert stats["upserts"][0]["created"] == 1
    assert stats["upserts"][0]["unchanged"] == 1
    assert stats["upserts"][0]["replaced"] == 1


def test_an_older_valid_from_is_not_applied(
    clr: LiveServer, conformance_dir: Path, sign: Signer
) -> None:
    original = vector(conformance_dir, "clr_signed.json")
    newer = sign({**original, "validFrom": "2012-06-01T00:00:00Z", "name": "Transcript v2"})
    with clr.client() as client:
        headers = bearer(token(client))
        assert client.post(CLR_CREDENTIALS, json=newer, headers=headers).status_code == 201
        stale = client.post(CLR_CREDENTIALS, json=original, headers=headers)
        assert stale.status_code == 200
        assert stale.headers["X-Upsert-Outcome"] == "stale_ignored"
        assert stale.json() == newer
        listed = client.get(CLR_CREDENTIALS, headers=headers).json()["credential"]
        stats = client.get("/_admin/stats", headers=ADMIN).json()["upserts"]
    assert listed == [newer]
    assert [(s["created"], s["stale_ignored"]) for s in stats] == [(1, 1)]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("clr_signed_neg_name_removed.json", "'name' is a required property"),
        ("clr_signed_neg_association_tampered.json", "association"),
    ],
)
def test_conformance_negatives_are_rejected(
    clr: LiveServer, conformance_dir: Path, name: str, fragment: str
) -> None:
    with clr.client() as client:
        response = client.post(
            CLR_CREDENTIALS, json=vector(conformance_dir, name), headers=bearer(token(client))
        )
        body = assert_imsx(response, 400, "invalid_data", conformance_dir)
        assert fragment in body["imsx_description"]
        assert "proof verification failed" in body["imsx_description"]
        listed = client.get(CLR_CREDENTIALS, headers=bearer(token(client))).json()
    assert listed["credential"] == []


def test_a_schema_valid_but_tampered_credential_fails_its_proof(
    clr: LiveServer, conformance_dir: Path
) -> None:
    tampered = vector(conformance_dir, "clr_signed.json")
    tampered["name"] = "Sample Transcript (edited after signing)"
    with clr.client() as client:
        response = client.post(CLR_CREDENTIALS, json=tampered, headers=bearer(token(client)))
    body = assert_imsx(response, 400, "invalid_data", conformance_dir)
    assert body["imsx_description"].startswith("credential: proof verification failed")


def test_embedded_achievement_credentials_are_verified_too(
    clr: LiveServer, conformance_dir: Path, sign: Signer
) -> None:
    clr_doc = copy.deepcopy(vector(conformance_dir, "clr_signed.json"))
    clr_doc["credentialSubject"]["verifiableCredential"][0]["name"] = "Forged Degree"
    resigned_outer = sign(clr_doc)  # the outer proof is valid, the embedded one is not
    with clr.client() as client:
        response = client.post(CLR_CREDENTIALS, json=resigned_outer, headers=bearer(token(client)))
    body = assert_imsx(response, 400, "invalid_data", conformance_dir)
    assert "verifiableCredential[0]: proof verification failed" in body["imsx_description"]
    assert not body["imsx_description"].startswith("credential:")


def test_verified_proofs_are_remembered_but_never_for_a_tampered_copy(
    clr: LiveServer, conformance_dir: Path, sign: Signer
) -> None:
    genuine = vector(conformance_dir, "clr_signed.json")
    # The same CLR with its embedded credential changed and the outer proof made again:
    # the embedded proof no longer covers it, although the genuine one is remembered.
    forged = copy.deepcopy(genuine)
    forged["credentialSubject"]["verifiableCredential"][0]["name"] = "Forged Degree"
    forged = sign({**forged, "validFrom": "2011-01-01T00:00:00Z"})
    edited = {**genuine, "name": "Sample Transcript (edited after signing)"}
    with clr.client() as client:
        headers = bearer(token(client))
        assert client.post(CLR_CREDENTIALS, json=genuine, headers=headers).status_code == 201
        for _ in range(2):
            again = client.post(CLR_CREDENTIALS, json=genuine, headers=headers)
            assert again.headers["X-Upsert-Outcome"] == "unchanged"
        for tampered in (forged, edited, forged):
            response = client.post(CLR_CREDENTIALS, json=tampered, headers=headers)
            assert_imsx(response, 400, "invalid_data", conformance_dir)
        listed = client.get(CLR_CREDENTIALS, headers=headers).json()["credential"]
    assert listed == [genuine]


def test_compact_jws_and_other_media_types_are_refused(
    clr: LiveServer, conformance_dir: Path
) -> None:
    with clr.client() as client:
        headers = bearer(token(client))
        jws = client.post(
            CLR_CREDENTIALS,
            content=b"eyJhbGciOiJFZERTQSJ9.eyJ2YyI6e319.c2ln",
            headers={**headers, "Content-Type": "text/plain"},
        )
        body = assert_imsx(jws, 415, "invalid_data", conformance_dir)
        assert body["imsx_codeMajor"] == "unsupported"
        assert "JWS" in body["imsx_description"]
        xml = client.post(
            CLR_CREDENTIALS, content=b"<x/>", headers={**headers, "Content-Type": "text/xml"}
        )
        assert_imsx(xml, 415, "invalid_data", conformance_dir)
        assert_imsx(
            client.delete(CLR_CREDENTIALS, headers=headers), 405, "not_allowed", conformance_dir
        )
        assert_imsx(client.get("/ims/clr/v2p0/nothing"), 404, "not_found", conformance_dir)


def test_the_ob_api_takes_achievement_credentials_only(
    clr: LiveServer, conformance_dir: Path
) -> None:
    with clr.client() as client:
        headers = bearer(token(client))
        badge = client.post(
            OB_CREDENTIALS, json=vector(conformance_dir, "ob_signed.json"), headers=headers
        )
        assert badge.status_code == 201
        wrong = client.post(
            OB_CREDENTIALS, json=vector(conformance_dir, "clr_signed.json"), headers=headers
        )
        assert_imsx(wrong, 400, "invalid_data", conformance_dir)
        ob_list = client.get(OB_CREDENTIALS, headers=headers).json()
        clr_list = client.get(CLR_CREDENTIALS, headers=headers).json()
    assert [c["id"] for c in ob_list["credential"]] == ["http://example.com/credentials/3527"]
    assert clr_list["credential"] == []


# -- paging -------------------------------------------------------------------------------


def _links(response: httpx.Response) -> dict[str, str]:
    links = {}
    for part in response.headers["Link"].split(","):
        url, rel = part.split(";")
        links[rel.strip().removeprefix('rel="').removesuffix('"')] = url.strip()[1:-1]
    return links


def test_paging_headers_and_since(clr: LiveServer, conformance_dir: Path, sign: Signer) -> None:
    template = vector(conformance_dir, "ob_signed.json")
    badges = [
        sign(
            {
                **template,
                "id": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "validFrom": f"2020-01-0{i}T00:00:00Z",
            }
        )
        for i in range(1, 6)
    ]
    response_schema = schema(conformance_dir, "ob_v3p0_getopenbadgecredentialsresponse_schema.json")
    with clr.client() as client:
        headers = bearer(token(client))
        for badge in badges:
            assert client.post(OB_CREDENTIALS, json=badge, headers=headers).status_code == 201
        first = client.get(OB_CREDENTIALS, params={"limit": 2}, headers=headers)
        middle = client.get(OB_CREDENTIALS, params={"limit": 2, "offset": 2}, headers=headers)
        last = client.get(OB_CREDENTIALS, params={"limit": 2, "offset": 4}, headers=headers)
        since = client.get(
            OB_CREDENTIALS, params={"since": "2020-01-03T00:00:00Z"}, headers=headers
        )
        bad = client.get(OB_CREDENTIALS, params={"limit": 0}, headers=headers)
        bad_since = client.get(OB_CREDENTIALS, params={"since": "yesterday"}, headers=headers)
    for page in (first, middle, last, since):
        assert page.status_code == 200
        response_schema.validate(page.json())
    assert first.headers["X-Total-Count"] == "5"
    assert [c["id"] for c in first.json()["credential"]] == [b["id"] for b in badges[:2]]
    assert [c["id"] for c in middle.json()["credential"]] == [b["id"] for b in badges[2:4]]
    assert [c["id"] for c in last.json()["credential"]] == [badges[4]["id"]]
    first_links, middle_links, last_links = _links(first), _links(middle), _links(last)
    assert set(first_links) == {"next", "last", "first"}
    assert first_links["next"].endswith("/ims/ob/v3p0/credentials?limit=2&offset=2")
    assert first_links["last"].endswith("limit=2&offset=4")
    assert set(middle_links) == {"next", "last", "first", "prev"}
    assert middle_links["prev"].endswith("limit=2&offset=0")
    assert set(last_links) == {"last", "first", "prev"}
    assert since.headers["X-Total-Count"] == "2"
    assert [c["id"] for c in since.json()["credential"]] == [b["id"] for b in badges[3:]]
    assert_imsx(bad, 400, "invalid_query_parameter", conformance_dir)
    assert_imsx(bad_since, 400, "invalid_query_parameter", conformance_dir)


def test_clr_list_matches_its_schema(clr: LiveServer, conformance_dir: Path) -> None:
    with clr.client() as client:
        headers = bearer(token(client))
        client.post(
            CLR_CREDENTIALS, json=vector(conformance_dir, "clr_signed.json"), headers=headers
        )
        listed = client.get(CLR_CREDENTIALS, headers=headers)
    schema(conformance_dir, "clr_v2p0_getclrcredentialsresponse_schema.json").validate(
        listed.json()
    )
    assert listed.headers["X-Total-Count"] == "1"


# -- profile ------------------------------------------------------------------------------


def test_profile_get_and_put(clr: LiveServer, conformance_dir: Path) -> None:
    profile = {
        "@context": ["https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"],
        "id": "https://college.example.edu/issuers/1",
        "type": "Profile",
        "name": "Example Community College",
    }
    with clr.client() as client:
        headers = bearer(token(client))
        assert_imsx(
            client.get("/ims/clr/v2p0/profile", headers=headers), 404, "not_found", conformance_dir
        )
        assert client.put("/ims/clr/v2p0/profile", json=profile, headers=headers).json() == profile
        assert client.get("/ims/clr/v2p0/profile", headers=headers).json() == profile
        invalid = client.put(
            "/ims/clr/v2p0/profile",
            json={k: v for k, v in profile.items() if k != "id"},
            headers=headers,
        )
        assert_imsx(invalid, 400, "invalid_data", conformance_dir)
        assert client.get("/ims/clr/v2p0/profile", headers=headers).json() == profile


# -- persistence and faults ---------------------------------------------------------------


def test_credentials_and_tokens_survive_a_restart(
    start_clr: Callable[..., LiveServer], conformance_dir: Path
) -> None:
    first = start_clr()
    with first.client() as client:
        grant = token(client)
        signed = vector(conformance_dir, "clr_signed.json")
        assert client.post(CLR_CREDENTIALS, json=signed, headers=bearer(grant)).status_code == 201
    first.stop()
    second = start_clr()
    with second.client() as client:
        listed = client.get(CLR_CREDENTIALS, headers=bearer(grant))
        assert listed.status_code == 200
        assert listed.json()["credential"] == [signed]
        again = client.post(CLR_CREDENTIALS, json=signed, headers=bearer(grant))
        assert again.headers["X-Upsert-Outcome"] == "unchanged"


def test_injected_faults_speak_imsx(clr: LiveServer, conformance_dir: Path) -> None:
    with clr.client() as client:
        headers = bearer(token(client))
        plan = {"script": ["503", "429", "500"], "retry_after_s": 3}
        assert client.post("/_admin/faults", json=plan, headers=ADMIN).status_code == 200
        busy = client.get(CLR_CREDENTIALS, headers=headers)
        assert_imsx(busy, 503, "server_busy", conformance_dir)
        limited = client.get(CLR_CREDENTIALS, headers=headers)
        assert_imsx(limited, 429, "server_busy", conformance_dir)
        assert limited.headers["Retry-After"] == "3"
        assert_imsx(
            client.get(CLR_CREDENTIALS, headers=headers),
            500,
            "internal_server_error",
            conformance_dir,
        )
        assert client.get(CLR_CREDENTIALS, headers=headers).status_code == 200


def test_embedded_credentials_are_schema_checked_once_per_content(conformance_dir: Path) -> None:
    """The CLR schema check splits embedded credentials off (checked once per distinct
    content): it still finds exactly what the whole schema finds, cache or not."""
    path = conformance_dir / "1edtech/schemas/clr_v2p0_clrcredential_schema.json"
    split = SchemaCheck(path)
    whole = schema(conformance_dir, "clr_v2p0_clrcredential_schema.json")
    clr = json.loads((conformance_dir / "1edtech/vectors/clr_signed.json").read_text())
    assert split.errors(clr) == []
    assert split.errors(clr) == [], "again, from the cache"

    broken = copy.deepcopy(clr)
    embedded = broken["credentialSubject"]["verifiableCredential"]
    embedded[0]["validFrom"] = "yesterday"
    del embedded[0]["type"]
    errors = split.errors(broken)
    assert any(e.startswith("/credentialSubject/verifiableCredential/0") for e in errors), errors
    assert any("'type' is a required property" in e for e in errors), errors
    assert not whole.is_valid(broken)

    single = copy.deepcopy(clr)
    single["credentialSubject"]["verifiableCredential"] = embedded[0]
    assert any("credentialSubject/verifiableCredential" in e for e in split.errors(single))
    assert not whole.is_valid(single)
    empty = copy.deepcopy(clr)
    empty["credentialSubject"]["verifiableCredential"] = []
    assert split.errors(empty) != [], "minItems still holds"
    assert not whole.is_valid(empty)


def test_the_store_finds_the_next_seq_and_latest_write_by_index(tmp_path: Path) -> None:
    # A scan of every stored credential per upsert made a 100,000-award backfill slow down
    # as it went (the stand-in, not cayg-sync, set the pace).
    import sqlite3

    from cayg_standins.clr.store import ClrStore

    ClrStore(tmp_path)
    conn = sqlite3.connect(tmp_path / "clr.sqlite3")
    try:
        plans = [
            " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
            for query in (
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM credentials",
                "SELECT COUNT(*), MAX(updated_at) FROM credentials WHERE api = 'clr'",
            )
        ]
    finally:
        conn.close()
    assert "credentials_seq" in plans[0]
    assert "credentials_updated" in plans[1]
