"""Fault injection on a live stand-in: determinism, scripts, outages, timeout after write."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cayg_standins import FaultPlan
from integration.standins.standins_support import ADMIN_TOKEN, API_KEY, ORG, LiveServer

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
AUTH = {"Authorization": f"ApiToken {API_KEY}"}


def credential_request(ctid: str) -> dict[str, Any]:
    return {
        "PublishForOrganizationIdentifier": ORG,
        "Credential": {
            "CTID": ctid,
            "CredentialType": "ceterms:DigitalBadge",
            "Name": "Forklift Safety Badge",
            "Description": "Shows the holder completed forklift safety training.",
            "SubjectWebpage": "https://college.example.edu/badges/forklift",
            "InLanguage": ["en-US"],
            "OwnedBy": [{"CTID": ORG}],
        },
    }


def statuses(client: httpx.Client, count: int) -> list[int]:
    return [client.get("/healthz").status_code for _ in range(count)]


def install(client: httpx.Client, plan: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_admin/faults", json=plan, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_same_seed_same_faults(start_registry: Callable[..., LiveServer]) -> None:
    plan = {"seed": 7, "error_rates": {"503": 0.3, "500": 0.2}}
    sequences = []
    for _ in range(2):
        server = start_registry()
        with server.client() as client:
            install(client, plan)
            sequences.append(statuses(client, 40))
    assert sequences[0] == sequences[1]
    assert {200, 500, 503} == set(sequences[0])

    with server.client() as client:
        install(client, {**plan, "seed": 8})
        other_seed = statuses(client, 40)
        install(client, plan)  # re-installing restarts the sequence from the seed
        again = statuses(client, 40)
        snapshot = client.get("/_admin/faults", headers=ADMIN).json()
    assert other_seed != sequences[0]
    assert again == sequences[0]
    assert snapshot["injected"] == {
        "500": sequences[0].count(500),
        "503": sequences[0].count(503),
    }


def test_faults_given_at_start_up(start_registry: Callable[..., LiveServer]) -> None:
    server = start_registry(faults=FaultPlan(script=("503", "500")))
    with server.client() as client:
        assert statuses(client, 3) == [503, 500, 200]


def test_scripted_outcomes_and_retry_after(registry: LiveServer) -> None:
    with registry.client() as client:
        install(client, {"script": ["503", "429", "pass", "502"], "retry_after_s": 7})
        first = client.get("/healthz")
        second = client.get("/healthz")
        assert (first.status_code, second.status_code) == (503, 429)
        assert first.json()["Successful"] is False
        assert second.headers["Retry-After"] == "7"
        assert statuses(client, 3) == [200, 502, 200]


def test_outage_window_spares_admin_and_can_be_cleared(registry: LiveServer) -> None:
    ctid = f"ce-{uuid.uuid4()}"
    with registry.client() as client:
        install(client, {"outage_s": 600})
        down = client.post(
            "/assistant/credential/publish", json=credential_request(ctid), headers=AUTH
        )
        assert down.status_code == 503
        assert int(down.headers["Retry-After"]) > 0
        assert statuses(client, 3) == [503, 503, 503]
        assert client.get("/_admin/faults", headers=ADMIN).status_code == 200
        assert client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json() == {"total": 0}
        assert client.delete("/_admin/faults", headers=ADMIN).status_code == 200
        assert statuses(client, 2) == [200, 200]


def test_path_prefix_scopes_the_faults(registry: LiveServer) -> None:
    with registry.client() as client:
        install(client, {"error_rates": {"503": 1.0}, "path_prefix": "/assistant/"})
        assert statuses(client, 2) == [200, 200]
        response = client.post(
            "/assistant/credential/publish",
            json=credential_request(f"ce-{uuid.uuid4()}"),
            headers=AUTH,
        )
        assert response.status_code == 503


def test_invalid_fault_plans_are_refused(registry: LiveServer) -> None:
    with registry.client() as client:
        for plan in (
            {"error_rates": {"503": 1.5}},
            {"error_rates": {"503": 0.6, "500": 0.6}},
            {"error_rates": {"200": 0.1}},
            {"script": ["explode"]},
            {"surprise": True},
        ):
            response = client.post("/_admin/faults", json=plan, headers=ADMIN)
            assert response.status_code == 400, plan
        assert client.post("/_admin/faults", json={"outage_s": 5}).status_code == 401


def test_timeout_after_write_really_stores_the_write(registry: LiveServer) -> None:
    ctid = f"ce-{uuid.uuid4()}"
    body = credential_request(ctid)
    with registry.client() as admin:
        install(admin, {"script": ["timeout_after_write"], "timeout_after_write_delay_s": 120})
    with registry.client(timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/assistant/credential/publish", json=body, headers=AUTH)
    with registry.client() as client:
        assert client.get(f"/resources/{ctid}").status_code == 200
        retry = client.post("/assistant/credential/publish", json=body, headers=AUTH).json()
        assert retry["Successful"] is True
        assert retry["WasChanged"] is False
        stats = client.get(f"/_admin/stats/{ctid}", headers=ADMIN).json()
        faults = client.get("/_admin/faults", headers=ADMIN).json()
    assert stats["credential/publish"] == {"applied": 1, "unchanged": 1}
    assert faults["injected"] == {"timeout_after_write": 1}
