"""The Registry Assistant stand-in over real HTTP: auth, rules, ownership, read-back."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cayg_standins.__main__ import main as cli_main
from integration.standins.standins_support import (
    ADMIN_TOKEN,
    API_KEY,
    ORG,
    OTHER_KEY,
    OTHER_ORG,
    LiveServer,
)

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
PUBLISH = "/assistant/credential/publish"
SAMPLES = Path("credential-engine/samples")
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$", re.IGNORECASE)


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"ApiToken {key}"}


def new_ctid() -> str:
    return f"ce-{uuid.uuid4()}"


def credential_request(ctid: str, org: str = ORG, **changes: Any) -> dict[str, Any]:
    """A valid Assistant credential request; ``changes`` replace (or, as None, drop) fields."""
    credential: dict[str, Any] = {
        "CTID": ctid,
        "CredentialType": "ceterms:Certificate",
        "Name": "Welding Fundamentals Certificate",
        "Description": "Awarded after completing the four welding fundamentals courses.",
        "SubjectWebpage": "https://college.example.edu/programs/welding/",
        "InLanguage": ["en-US"],
        "OwnedBy": [{"CTID": org}],
        "CredentialStatusType": "Active",
    }
    for key, value in changes.items():
        if value is None:
            credential.pop(key, None)
        else:
            credential[key] = value
    return {
        "PublishForOrganizationIdentifier": org,
        "DefaultLanguage": "en-US",
        "Credential": credential,
    }


def publish(client: httpx.Client, body: Any, key: str = API_KEY) -> dict[str, Any]:
    response = client.post(PUBLISH, json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def shape(value: Any) -> Any:
    """The structure of CTDL JSON-LD: keys and kinds of values, not the values."""
    if isinstance(value, dict):
        if value and all(_LANGUAGE_TAG.match(k) for k in value):
            return ("language-map", frozenset(shape(v) for v in value.values()))
        return ("object", tuple(sorted((k, shape(v)) for k, v in value.items() if k != "@id")))
    if isinstance(value, list):
        return ("list", frozenset(shape(v) for v in value))
    if isinstance(value, str):
        if value.startswith("_:"):
            return "blank-node"
        return "url" if value.startswith(("http://", "https://")) else "text"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def graph_shape(graph: dict[str, Any]) -> list[Any]:
    return sorted((shape(node) for node in graph["@graph"]), key=repr)


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": f"Bearer {API_KEY}"}, id="wrong-scheme"),
        pytest.param({"Authorization": f"ApiToken {uuid.uuid4()}"}, id="unknown-key"),
        pytest.param({"Authorization": "ApiToken short"}, id="not-36-chars"),
    ],
)
def test_publish_without_a_valid_api_key_is_401(
    registry: LiveServer, headers: dict[str, str]
) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        response = client.post(PUBLISH, json=credential_request(ctid), headers=headers)
        assert response.status_code == 401
        assert response.json()["Successful"] is False
        assert client.get(f"/resources/{ctid}").status_code == 404


def test_a_key_may_publish_only_for_its_organizations(registry: LiveServer) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        result = publish(client, credential_request(ctid, org=OTHER_ORG), key=API_KEY)
        assert result["Successful"] is False
        assert any(OTHER_ORG in m for m in result["Messages"])
        assert client.get(f"/resources/{ctid}").status_code == 404


# -- validation rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        pytest.param({"CTID": "CE-2DC6873F-1E94-4146-BB2B-FCEBEED10C08"}, "CTID", id="ctid-upper"),
        pytest.param({"CTID": "2dc6873f-1e94-4146-bb2b-fcebeed10c08"}, "CTID", id="ctid-no-ce"),
        pytest.param({"CredentialType": "ceterms:Credential"}, "too generic", id="generic"),
        pytest.param({"CredentialType": "ceterms:Degree"}, "too generic", id="generic-degree"),
        pytest.param({"CredentialType": "ceterms:Diplomat"}, "CredentialType", id="unknown-type"),
        pytest.param({"CredentialType": None}, "CredentialType", id="no-type"),
        pytest.param({"Name": None}, "Name", id="no-name"),
        pytest.param({"Description": None}, "Description", id="no-description"),
        pytest.param({"Description": "Too short."}, "at least 15", id="short-description"),
        pytest.param(
            {"Description": {"en-US": "Long enough description here.", "es": "Corta"}},
            "at least 15",
            id="short-description-in-one-language",
        ),
        pytest.param({"InLanguage": None}, "InLanguage", id="no-language"),
        pytest.param({"InLanguage": []}, "InLanguage", id="empty-language"),
        pytest.param({"OwnedBy": None}, "OwnedBy", id="no-owner"),
        pytest.param({"OwnedBy": [{"CTID": "ce-bad"}]}, "CTID", id="bad-owner-ctid"),
        pytest.param({"SubjectWebpage": "college.example.edu"}, "SubjectWebpage", id="bad-url"),
        pytest.param({"SubjectWebpage": None}, "SubjectWebpage", id="no-url"),
        pytest.param(
            {"CredentialStatusType": "credentialStat:Retired"},
            "CredentialStatusType",
            id="unknown-status",
        ),
        pytest.param(
            {"IsPreparationFor": [{"CTID": "ce-2dc6873f-1e94-4146-bb2b-fcebeed10c08"}]},
            "TargetCredential",
            id="connection-given-as-bare-reference",
        ),
    ],
)
def test_each_documented_rule_rejects_with_a_message(
    registry: LiveServer, changes: dict[str, Any], fragment: str
) -> None:
    ctid = "ce-2dc6873f-1e94-4146-bb2b-fcebeed10c08" if "CTID" in changes else new_ctid()
    body = credential_request(ctid, **changes)
    with registry.client() as client:
        result = publish(client, body)
        assert result["Successful"] is False
        assert result["WasChanged"] is False
        assert any(fragment in message for message in result["Messages"]), result["Messages"]
        formatted = client.post("/assistant/credential/format", json=body, headers=auth()).json()
        assert formatted["Successful"] is False
        assert client.get(f"/resources/{ctid}").status_code == 404


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"OwnedBy": None, "OfferedBy": [{"CTID": ORG}]}, id="offered-only"),
        pytest.param(
            {"Name": None, "ceterms:name": {"en-US": "Welding", "es": "Soldadura"}},
            id="language-map-name",
        ),
        pytest.param({"CredentialType": "MicroCredential"}, id="type-without-prefix"),
        pytest.param({"CredentialStatusType": "credentialStat:TeachOut"}, id="teach-out"),
        pytest.param({"CredentialStatusType": None}, id="status-defaults-to-active"),
    ],
)
def test_valid_variants_are_accepted(registry: LiveServer, changes: dict[str, Any]) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        result = publish(client, credential_request(ctid, **changes))
        assert result["Successful"] is True, result["Messages"]
        assert client.get(f"/resources/{ctid}").status_code == 200


def test_missing_status_is_stored_as_active(registry: LiveServer) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        publish(client, credential_request(ctid, CredentialStatusType=None))
        node = client.get(f"/resources/{ctid}").json()
    assert node["ceterms:credentialStatusType"]["ceterms:targetNode"] == "credentialStat:Active"


# -- publish, republish, read-back --------------------------------------------------------


def test_publish_read_back_and_identical_republish(registry: LiveServer) -> None:
    ctid = new_ctid()
    body = credential_request(ctid)
    with registry.client() as client:
        first = publish(client, body)
        assert first["Successful"] is True
        assert first["WasChanged"] is True
        assert first["CTID"] == ctid
        assert first["GraphUrl"].endswith(f"/graph/{ctid}")
        assert first["RegistryEnvelopeIdentifier"] in first["EnvelopeUrl"]
        payload = json.loads(first["Payload"])
        resource = client.get(f"/resources/{ctid}").json()
        assert resource["ceterms:ctid"] == ctid
        assert resource["@type"] == "ceterms:Certificate"
        assert resource["ceterms:name"] == {"en-us": "Welding Fundamentals Certificate"}
        assert resource["ceterms:subjectWebpage"] == "https://college.example.edu/programs/welding"
        assert resource["ceterms:ownedBy"] == [f"{registry.base_url}/resources/{ORG}"]
        assert client.get(f"/graph/{ctid}").json() == payload
        assert client.get(first["EnvelopeUrl"]).json()["decoded_resource"] == payload

        again = publish(client, body)
        assert again["Successful"] is True
        assert again["WasChanged"] is False
        assert again["RegistryEnvelopeIdentifier"] == first["RegistryEnvelopeIdentifier"]

        body["Credential"]["Description"] = "Now awarded after five welding fundamentals courses."
        changed = publish(client, body)
        assert changed["WasChanged"] is True
        assert json.loads(changed["Payload"])["@graph"][0]["ceterms:description"] == {
            "en-us": "Now awarded after five welding fundamentals courses."
        }

        stats = client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json()
    assert stats["credential/publish"] == {"applied": 2, "unchanged": 1}
    assert stats["total"] == 3


def test_format_validates_and_renders_but_stores_nothing(registry: LiveServer) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        response = client.post(
            "/assistant/credential/format", json=credential_request(ctid), headers=auth()
        )
        result = response.json()
        assert result["Successful"] is True
        assert json.loads(result["Payload"])["@graph"][0]["ceterms:ctid"] == ctid
        assert client.get(f"/resources/{ctid}").status_code == 404
        first_publish = publish(client, credential_request(ctid))
    assert first_publish["WasChanged"] is True


def test_only_the_first_publisher_may_change_or_delete(registry: LiveServer) -> None:
    ctid = new_ctid()
    with registry.client() as client:
        assert publish(client, credential_request(ctid))["Successful"] is True
        before = client.get(f"/graph/{ctid}").json()
        hijack = credential_request(ctid, org=OTHER_ORG, Name="Someone else's certificate")
        result = publish(client, hijack, key=OTHER_KEY)
        assert result["Successful"] is False
        assert any("only that organization" in m for m in result["Messages"])
        deleted = client.request(
            "DELETE",
            "/assistant/credential/delete",
            json={"CTID": ctid, "PublishForOrganizationIdentifier": OTHER_ORG},
            headers=auth(OTHER_KEY),
        ).json()
        assert deleted["Successful"] is False
        assert client.get(f"/graph/{ctid}").json() == before


def test_delete_leaves_a_tombstone(registry: LiveServer) -> None:
    ctid = new_ctid()
    keep = new_ctid()
    delete_body = {"CTID": ctid, "PublishForOrganizationIdentifier": ORG}
    with registry.client() as client:
        publish(client, credential_request(ctid))
        publish(client, credential_request(keep))
        listed = client.get(f"/organizations/{ORG}/credentials").json()
        assert {ctid, keep} <= {item["ctid"] for item in listed["credentials"]}

        result = client.request(
            "DELETE", "/assistant/credential/delete", json=delete_body, headers=auth()
        ).json()
        assert result["Successful"] is True

        gone = client.get(f"/resources/{ctid}")
        assert gone.status_code == 404
        assert gone.json()["deletedAt"]
        assert client.get(f"/graph/{ctid}").status_code == 404
        listed = client.get(f"/organizations/{ORG}/credentials").json()
        assert ctid not in {item["ctid"] for item in listed["credentials"]}
        assert keep in {item["ctid"] for item in listed["credentials"]}

        twice = client.request(
            "DELETE", "/assistant/credential/delete", json=delete_body, headers=auth()
        ).json()
        assert twice["Successful"] is False
        assert any("already been deleted" in m for m in twice["Messages"])
        stats = client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json()
    assert stats["credential/delete"] == {"deleted": 1, "rejected": 1}


def test_read_back_of_unknown_things_is_404(registry: LiveServer) -> None:
    with registry.client() as client:
        assert client.get(f"/resources/{new_ctid()}").status_code == 404
        assert client.get(f"/graph/{new_ctid()}").status_code == 404
        assert client.get(f"/organizations/{new_ctid()}/credentials").status_code == 404
        assert client.get(f"/envelopes/{uuid.uuid4()}").status_code == 404


# -- the real Credential Engine samples ---------------------------------------------------


def test_real_publish_sample_is_accepted_with_the_documented_shape(
    registry: LiveServer, conformance_dir: Path
) -> None:
    samples = conformance_dir / SAMPLES
    body = json.loads((samples / "assistant_credential_publish_request.json").read_text())
    expected = json.loads((samples / "assistant_credential_publish_output.json").read_text())
    ctid = body["Credential"]["CTID"]
    with registry.client() as client:
        result = publish(client, body)
        assert result["Successful"] is True, result["Messages"]
        stored = client.get(f"/graph/{ctid}").json()
    assert stored == json.loads(result["Payload"])
    assert stored["@context"] == expected["@context"]
    assert stored["@graph"][0]["@type"] == expected["@graph"][0]["@type"]
    assert graph_shape(stored) == graph_shape(expected)
    assert stored["@graph"][0]["ceterms:name"] == expected["@graph"][0]["ceterms:name"]


def test_real_publish_graph_sample_with_bom_is_accepted(
    registry: LiveServer, conformance_dir: Path
) -> None:
    raw = (
        conformance_dir / SAMPLES / "assistant_credential_publishgraph_request.json"
    ).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    graph_input = json.loads(raw.decode("utf-8-sig"))["GraphInput"]
    ctid = graph_input["@graph"][0]["ceterms:ctid"]
    with registry.client() as client:
        response = client.post(
            "/assistant/credential/publishGraph",
            content=raw,
            headers={**auth(), "Content-Type": "application/json"},
        )
        result = response.json()
        assert result["Successful"] is True, result["Messages"]
        assert client.get(f"/graph/{ctid}").json()["@graph"] == graph_input["@graph"]
        assert client.get(f"/resources/{ctid}").json()["ceterms:ctid"] == ctid


def test_publish_graph_applies_the_same_rules(registry: LiveServer, conformance_dir: Path) -> None:
    raw = (
        conformance_dir / SAMPLES / "assistant_credential_publishgraph_request.json"
    ).read_bytes()
    body = json.loads(raw.decode("utf-8-sig"))
    main = body["GraphInput"]["@graph"][0]
    main["ceterms:description"] = {"en-US": "Too short"}
    del main["ceterms:inLanguage"]
    with registry.client() as client:
        result = client.post("/assistant/credential/publishGraph", json=body, headers=auth()).json()
        assert result["Successful"] is False
        assert any("at least 15" in m for m in result["Messages"])
        assert any("InLanguage" in m for m in result["Messages"])
        assert client.get(f"/resources/{main['ceterms:ctid']}").status_code == 404


def test_organization_and_transfer_value_publish(
    registry: LiveServer, conformance_dir: Path
) -> None:
    organization = {
        "PublishForOrganizationIdentifier": ORG,
        "Organization": {
            "Type": "ceterms:CredentialOrganization",
            "CTID": ORG,
            "Name": "Example Community College",
            "Description": "A public two-year college offering stackable credentials.",
            "SubjectWebpage": "https://college.example.edu",
            "AgentType": ["orgType:Postsecondary"],
        },
    }
    profile = json.loads(
        (conformance_dir / SAMPLES / "assistant_transfervalueprofile.json").read_text()
    )
    profile["CTID"] = new_ctid()
    profile["OwnedBy"] = [ORG]
    transfer = {"PublishForOrganizationIdentifier": ORG, "TransferValueProfile": profile}
    with registry.client() as client:
        org_result = client.post(
            "/assistant/organization/publish", json=organization, headers=auth()
        ).json()
        assert org_result["Successful"] is True, org_result["Messages"]
        node = client.get(f"/resources/{ORG}").json()
        assert node["@type"] == "ceterms:CredentialOrganization"

        wrong_type = json.loads(json.dumps(organization))
        wrong_type["Organization"]["Type"] = "ceterms:Certificate"
        rejected = client.post(
            "/assistant/organization/publish", json=wrong_type, headers=auth()
        ).json()
        assert rejected["Successful"] is False

        # Credential Engine's own sample has no Description: a transfer value profile's
        # minimum data does not demand one (see the stand-in's render_transfer_value).
        no_description = client.post(
            "/assistant/transfervalue/publish", json=transfer, headers=auth()
        ).json()
        assert no_description["Successful"] is True, no_description["Messages"]

        # One that is given is held to the registry's 15 characters.
        profile["Description"] = "Too short."
        short = client.post(
            "/assistant/transfervalue/publish", json=transfer, headers=auth()
        ).json()
        assert short["Successful"] is False
        assert any("at least 15" in m for m in short["Messages"])

        profile["Description"] = "Credit recommended for a passing score on the CLEP exam."
        accepted = client.post(
            "/assistant/transfervalue/publish", json=transfer, headers=auth()
        ).json()
        assert accepted["Successful"] is True, accepted["Messages"]
        stored = client.get(f"/resources/{profile['CTID']}").json()
    assert stored["@type"] == "ceterms:TransferValueProfile"
    assert stored["ceterms:transferValue"][0]["schema:value"] == 3


# -- HTTP edges ---------------------------------------------------------------------------


def test_body_limit_content_type_and_unknown_routes(
    start_registry: Callable[..., LiveServer],
) -> None:
    server = start_registry(max_body_bytes=4096)
    with server.client() as client:
        big = credential_request(new_ctid(), Description="x" * 5000)
        assert client.post(PUBLISH, json=big, headers=auth()).status_code == 413
        wrong_type = client.post(
            PUBLISH, content=b"{}", headers={**auth(), "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        not_json = client.post(
            PUBLISH, content=b"{nope", headers={**auth(), "Content-Type": "application/json"}
        )
        assert not_json.status_code == 400
        assert client.get(PUBLISH).status_code == 405
        assert client.get("/assistant/nothing/here").status_code == 404


def test_admin_endpoints_need_the_admin_token(registry: LiveServer) -> None:
    with registry.client() as client:
        assert client.get("/_admin/stats").status_code == 401
        assert client.get("/_admin/stats", headers={"X-Admin-Token": "nope"}).status_code == 403
        assert client.post("/_admin/reset").status_code == 401
        assert client.get("/_admin/stats", headers=ADMIN).status_code == 200


# -- persistence --------------------------------------------------------------------------


def test_state_survives_a_restart_and_reset_clears_it(
    start_registry: Callable[..., LiveServer], registry_config: Any
) -> None:
    ctid = new_ctid()
    # Resource URLs are part of the stored content: keep them stable across the restart
    # (a restarted server gets a new port).
    stable = "https://registry.standin.example"
    first = start_registry(public_base_url=stable)
    with first.client() as client:
        assert publish(client, credential_request(ctid))["WasChanged"] is True
    first.stop()

    second = start_registry(public_base_url=stable)
    with second.client() as client:
        assert client.get(f"/resources/{ctid}").status_code == 200
        assert publish(client, credential_request(ctid))["WasChanged"] is False
        assert client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json()["total"] == 2
    second.stop()

    assert cli_main(["reset", "--data-dir", str(registry_config.data_dir)]) == 0
    third = start_registry(public_base_url=stable)
    with third.client() as client:
        assert client.get(f"/resources/{ctid}").status_code == 404
        assert client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json() == {"total": 0}


# -- organization references ----------------------------------------------------------------


def test_an_organization_reference_must_name_a_registered_organization(
    start_registry: Callable[..., LiveServer],
) -> None:
    """Issue 9: a ``{"CTID": …}`` naming an organization nobody registered dangles, so the
    stand-in refuses it (as the registry's validation would); an account's own organization,
    a published organization, one configured as registered elsewhere and an inline
    description are all accepted."""
    unknown, elsewhere, partner = new_ctid(), new_ctid(), new_ctid()
    registry = start_registry(registered_elsewhere=frozenset({elsewhere}))
    with registry.client() as client:
        dangling = publish(client, credential_request(new_ctid(), RecognizedBy=[{"CTID": unknown}]))
        assert dangling["Successful"] is False
        assert any(
            "Credential.RecognizedBy[0].CTID" in m and unknown in m and "inline" in m
            for m in dangling["Messages"]
        ), dangling["Messages"]
        bare = publish(client, credential_request(new_ctid(), OfferedBy=[unknown]))
        assert bare["Successful"] is False, "a bare CTID string is a reference too"

        # Another account's organization (the registry knows its accounts' organizations).
        ok = publish(client, credential_request(new_ctid(), OfferedBy=[{"CTID": OTHER_ORG}]))
        assert ok["Successful"] is True, ok["Messages"]
        ok = publish(client, credential_request(new_ctid(), AccreditedBy=[{"CTID": elsewhere}]))
        assert ok["Successful"] is True, ok["Messages"]
        inline = {
            "Type": "ceterms:CredentialOrganization",
            "Name": "Harbor Welding Guild",
            "SubjectWebpage": "https://guild.example/",
        }
        ok = publish(client, credential_request(new_ctid(), RecognizedBy=[inline]))
        assert ok["Successful"] is True, ok["Messages"]

        # Once the partner is published as an organization, references to it resolve.
        ctid = new_ctid()
        refused = publish(client, credential_request(ctid, RecognizedBy=[{"CTID": partner}]))
        assert refused["Successful"] is False
        organization = {
            "PublishForOrganizationIdentifier": ORG,
            "Organization": {
                "Type": "ceterms:CredentialOrganization",
                "CTID": partner,
                "Name": "Harbor Welding Guild",
                "Description": "A guild of welders that recognises our certificates.",
                "SubjectWebpage": "https://guild.example/",
                "AgentType": ["orgType:Business"],
            },
        }
        published = client.post(
            "/assistant/organization/publish", json=organization, headers=auth()
        ).json()
        assert published["Successful"] is True, published["Messages"]
        accepted = publish(client, credential_request(ctid, RecognizedBy=[{"CTID": partner}]))
        assert accepted["Successful"] is True, accepted["Messages"]
