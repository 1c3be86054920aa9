"""Revocation a verifier can see, on real parts: publish as an OS process on a real broker,
the CLR host stand-in, the institution's domain on a static web stand-in, and an
independent verifier that resolves everything on loopback.

Issue → the learner's exported record verifies (did:web issuer, not revoked) → publish is
SIGKILLed and the same changes replayed (nothing changes: no new upload, the same list) →
the SIS revokes the award → within the coalescing interval the list flips and the
*previously exported copy* reads revoked, the list credential itself verifying → another
kill and replay change nothing again.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from cayg_ops.issuer import export_issuers
from cayg_ops.stack import Component, Stack
from cayg_publish.config import PublishTargetsConfig
from cayg_shared.schema import Change, EntityType, Operation
from cayg_shared.topics import Topics
from cayg_signing import ContextLoader, CredentialVerifier, SigningKey, Verdict, fetch_json
from support.kafka import free_port
from support.processes import ServiceProcess, service_env
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.integration

DOMAIN = "northfield.example"
ISSUER = f"did:web:{DOMAIN}"
STATUS_BASE = f"https://{DOMAIN}/credentials/status/"
CLIENT_ID, CLIENT_SECRET, ADMIN = "cayg-northfield", "clr-secret-for-status-lists", "admin-tok"
READ_SCOPE = "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.readonly"
#: Revocations coalesce for this long before a list is re-published.
MIN_INTERVAL_S = 1.0


class Stand:
    """The stand-ins and publish of one test."""

    def __init__(self, base: Path, bootstrap: str, prefix: str, conformance: Path) -> None:
        self.base = base
        self.web_port, self.clr_port = free_port(), free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.clr = f"http://127.0.0.1:{self.clr_port}"
        self.bootstrap = bootstrap
        self.topics = Topics(prefix)
        secrets = base / "secrets"
        secrets.mkdir()
        (secrets / "clr").write_text(CLIENT_SECRET)
        (secrets / "salt").write_text("status-list-identity-salt")
        (secrets / "admin").write_text(ADMIN)
        SigningKey.generate(f"{ISSUER}#key-2026").write(secrets / "issuer-key.json")
        self.targets = base / "publish.json"
        self.targets.write_text(
            json.dumps(
                {
                    "ledger": {"kind": "sqlite", "path": str(base / "ledger.sqlite3")},
                    "tenants": {
                        TENANT: {
                            "targets": [
                                {
                                    "kind": "clr",
                                    "name": "northfield-cc-clr",
                                    "base_url": f"{self.clr}/ims/clr/v2p0",
                                    "client_id": CLIENT_ID,
                                    "client_secret": {"file": str(secrets / "clr")},
                                    "identity_salt": {"file": str(secrets / "salt")},
                                    "signing_key_file": str(secrets / "issuer-key.json"),
                                    "contexts_dir": str(conformance / "1edtech" / "contexts"),
                                    "issuer": {
                                        "id": ISSUER,
                                        "name": "Northfield Community College",
                                        "url": f"https://www.{DOMAIN}/",
                                        "image": "data:image/png;base64,iVBORw0KGgo=",
                                    },
                                    "achievement_id_pattern": (
                                        "https://credentialengineregistry.org/resources/{ctid}"
                                    ),
                                    "status_lists": {
                                        "base_url": STATUS_BASE,
                                        "min_interval_s": MIN_INTERVAL_S,
                                    },
                                }
                            ]
                        }
                    },
                }
            )
        )
        export_issuers(PublishTargetsConfig.load(self.targets), TENANT, base / "web")
        self.stack = Stack(base)
        python = sys.executable
        self.stack.start(
            Component(
                "web",
                [
                    *(python, "-m", "cayg_standins", "static"),
                    *("--port", str(self.web_port), "--root", str(base / "web")),
                ],
                f"{self.web}/{DOMAIN}/.well-known/did.json",
            )
        )
        self.stack.start(
            Component(
                "clr",
                [
                    *(python, "-m", "cayg_standins", "clr", "--port", str(self.clr_port)),
                    *("--data-dir", str(base / "clr")),
                    *("--admin-token-file", str(secrets / "admin")),
                    *("--conformance-dir", str(conformance)),
                    f"--rewrite=https://{DOMAIN}/={self.web}/{DOMAIN}/",
                ],
                f"{self.clr}/ims/clr/v2p0/discovery",
                env={"CAYG_STANDINS_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}"},
            )
        )
        env = service_env(
            "publish",
            bootstrap,
            prefix,
            Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json",
            TARGETS_FILE=str(self.targets),
            POLL_S="0.2",
            LEASE_TTL_S="6",
            RETRY_FIRST_S="1",
            RETRY_MAX_S="2",
            SIGNING_WORKERS="0",
        )
        self.publish = ServiceProcess("publish", env=env, log_dir=base)

    def verifier(self, loader: ContextLoader) -> CredentialVerifier:
        """A verifier that knows nothing but the public URLs, served here on loopback."""
        rewrite = {
            STATUS_BASE: f"{self.publish.url}/status-lists/",
            f"https://{DOMAIN}/": f"{self.web}/{DOMAIN}/",
        }
        return CredentialVerifier(loader, lambda url: fetch_json(url, rewrite=rewrite))

    async def send(self, changes: list[Change]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for item in changes:
                await producer.send_and_wait(
                    self.topics.normalized, item.to_kafka_value(), key=item.kafka_key().encode()
                )
        finally:
            await producer.stop()

    def records(self) -> list[dict[str, Any]]:
        token = httpx.post(
            f"{self.clr}/oauth/token",
            data={"grant_type": "client_credentials", "scope": READ_SCOPE},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=10,
        ).json()["access_token"]
        response = httpx.get(
            f"{self.clr}/ims/clr/v2p0/credentials",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        held: list[dict[str, Any]] = response.json()["credential"]
        return held

    def served(self, list_url: str, etag: str | None = None) -> httpx.Response:
        """``GET`` a status list from publish, as a verifier's cache would."""
        list_id = list_url.removeprefix(STATUS_BASE)
        headers = {"If-None-Match": etag} if etag else {}
        return httpx.get(f"{self.publish.url}/status-lists/{list_id}", headers=headers)

    def upserts(self) -> int:
        stats = httpx.get(
            f"{self.clr}/_admin/stats", headers={"X-Admin-Token": ADMIN}, timeout=10
        ).json()
        return sum(int(row.get("total", 0)) for row in stats["upserts"])

    def close(self) -> None:
        self.publish.kill()
        for name in ("clr", "web"):
            self.stack.stop(name)


def _until(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.3)


@pytest.fixture
def stand(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, conformance_dir: Path
) -> Iterator[Stand]:
    running = Stand(tmp_path, kafka_bootstrap, topic_prefix, conformance_dir)
    try:
        yield running
    finally:
        running.close()


def _status_url(credential: dict[str, Any]) -> str:
    url: str = credential["credentialStatus"]["statusListCredential"]
    return url


async def test_a_revocation_reaches_the_copy_a_learner_already_exported(
    stand: Stand, conformance_dir: Path
) -> None:
    loader = ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")
    verifier = stand.verifier(loader)
    sql = definition("MC-SQL")
    issued = [change(sql, seq=1), change(learner_identity(), seq=2)]
    issued.append(change(award("AW-1", of=sql), seq=3))
    await asyncio.to_thread(stand.publish.start)
    await stand.send(issued)

    (exported,) = _until("the record at the host", stand.records)
    inner = exported["credentialSubject"]["verifiableCredential"][0]
    assert exported["issuer"]["id"] == ISSUER
    assert exported["issuer"]["image"] == {
        "id": "data:image/png;base64,iVBORw0KGgo=",
        "type": "Image",
    }
    assert inner["credentialSubject"]["achievement"]["id"] == (
        f"https://credentialengineregistry.org/resources/{sql.ctid}"
    )
    assert _status_url(exported).startswith(STATUS_BASE)
    assert _status_url(inner) == _status_url(exported)
    assert (
        inner["credentialStatus"]["statusListIndex"]
        != exported["credentialStatus"]["statusListIndex"]
    )

    def verdict() -> Verdict | None:
        found = verifier.check(exported)
        return found if found.verified else None

    before = _until("the exported record verifies", verdict, timeout_s=30)
    assert before.valid, before.all_problems
    assert not before.revoked
    assert len(before.embedded) == 1
    assert before.embedded[0].statuses[0].purpose == "revocation"

    served = stand.served(_status_url(exported))
    assert served.status_code == 200
    assert "max-age=" in served.headers["cache-control"]
    assert stand.served(_status_url(exported), served.headers["etag"]).status_code == 304

    # A crash and a replay of everything: no new upload, the same list.
    uploads = stand.upserts()
    stand.publish.kill()
    await asyncio.to_thread(stand.publish.start)
    await stand.send(issued)
    await asyncio.sleep(3)
    assert stand.upserts() == uploads
    assert stand.served(_status_url(exported)).headers["etag"] == served.headers["etag"]

    # The registrar revokes the award in the SIS.
    revoked_at = time.monotonic()
    await stand.send(
        [
            change(
                None,
                seq=4,
                operation=Operation.REVOKE,
                entity_type=EntityType.CREDENTIAL_AWARD,
                source_id="AW-1",
            )
        ]
    )

    def revoked() -> Verdict | None:
        # Both bits: the award's and the withdrawn record's own. They are set in one
        # rendering but may reach the served list in two publications (coalesced), so
        # waiting for the first would race the second.
        found = verifier.check(exported)
        both = found.statuses and found.statuses[0].set and found.embedded
        return found if both and found.embedded[0].revoked else None

    after = _until("the exported copy reads revoked", revoked, timeout_s=30)
    took = time.monotonic() - revoked_at
    assert after.verified, after.all_problems  # the list credential itself verifies
    assert after.embedded[0].revoked
    # Every award revoked: the record itself is withdrawn, and reads revoked too.
    assert after.statuses[0].set
    print(f"revocation visible to the verifier after {took:.1f} s")

    # A crash and a replay after the revocation change nothing either.
    flipped = stand.served(_status_url(exported)).headers["etag"]
    uploads = stand.upserts()
    stand.publish.kill()
    await asyncio.to_thread(stand.publish.start)
    await stand.send([*issued])
    await asyncio.sleep(3)
    assert stand.upserts() == uploads
    assert stand.served(_status_url(exported)).headers["etag"] == flipped
    assert verifier.check(exported).revoked
