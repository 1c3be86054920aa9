"""Delivering awards to the CLR 2.0 host stand-in over real HTTP.

The host checks every upload against the 1EdTech schema and verifies the proofs (outer
and embedded). Every scenario ends with the host holding the learner's record exactly
once, carrying the latest state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from cayg_publish.adapters.factory import create_target
from cayg_publish.adapters.ledger import Ledger, LedgerError, SqliteLedger
from cayg_publish.config import ClrTargetConfig, HttpTimeouts, IssuerProfile, SecretRef
from cayg_publish.domain.catalog import Target
from cayg_publish.domain.projection import DocumentState
from cayg_publish.domain.retry import RetryPolicy
from cayg_shared.schema import AwardStatus, Change, Operation
from cayg_signing import SigningKey
from cayg_standins import ClrConfig, FaultPlan, OAuthClient, create_clr_app
from integration.publish.publish_support import (
    Delivered,
    SleepRecorder,
    deliver_change,
    serve_asgi,
)
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.integration

ISSUER_ID = "https://www.northfield.example/issuers/1"
VERIFICATION_METHOD = f"{ISSUER_ID}#key-1"
CLIENT_ID, CLIENT_SECRET = "cayg-northfield", "clr-client-secret-1"
ADMIN = "admin-token"
TARGET = "clr"
SCOPE_BASE = "https://purl.imsglobal.org/spec/clr/v2p0/scope"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_in_process_wait=10)
ENVIRON = {"CLR_SECRET": CLIENT_SECRET, "IDENTITY_SALT": "northfield-identity-salt"}


@dataclass
class Host:
    """A running CLR host stand-in."""

    base: str

    def credentials(self) -> list[dict[str, Any]]:
        """What the host holds for our client (read with a read-only token)."""
        token = httpx.post(
            f"{self.base}/oauth/token",
            data={"grant_type": "client_credentials", "scope": f"{SCOPE_BASE}/credential.readonly"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=10,
        ).json()["access_token"]
        response = httpx.get(
            f"{self.base}/ims/clr/v2p0/credentials",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        assert response.headers["X-Total-Count"] == str(len(response.json()["credential"]))
        held: list[dict[str, Any]] = response.json()["credential"]
        return held

    def upserts(self) -> dict[str, int]:
        """Upload outcomes counted by the host (created, replaced, unchanged, rejected…)."""
        stats = httpx.get(
            f"{self.base}/_admin/stats", headers={"X-Admin-Token": ADMIN}, timeout=10
        ).json()
        totals: dict[str, int] = {}
        for entry in stats["upserts"]:
            for outcome, n in entry.items():
                if isinstance(n, int) and n and outcome != "total":
                    totals[outcome] = totals.get(outcome, 0) + n
        return totals

    def advance_clock(self, seconds: float) -> None:
        httpx.post(
            f"{self.base}/_admin/clock",
            json={"advance_s": seconds},
            headers={"X-Admin-Token": ADMIN},
            timeout=10,
        ).raise_for_status()


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(VERIFICATION_METHOD)


@pytest.fixture
def start_host(tmp_path: Path, conformance_dir: Path, signing_key: SigningKey) -> Iterator[Any]:
    """Start a CLR host stand-in with a given fault plan."""
    started: list[Any] = []

    def start(faults: FaultPlan | None = None) -> Host:
        app = create_clr_app(
            ClrConfig(
                data_dir=tmp_path / f"clr-{len(started)}",
                clients={
                    CLIENT_ID: OAuthClient(
                        CLIENT_ID,
                        CLIENT_SECRET,
                        frozenset(
                            {f"{SCOPE_BASE}/credential.upsert", f"{SCOPE_BASE}/credential.readonly"}
                        ),
                    )
                },
                conformance_dir=conformance_dir,
                trusted_keys={VERIFICATION_METHOD: signing_key.public_key},
                admin_token=ADMIN,
                faults=faults or FaultPlan(),
            )
        )
        server = serve_asgi(app)
        base = server.__enter__()
        started.append(server)
        return Host(base)

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.migrate()
    yield ledger
    await ledger.close()


def clr_target(
    host: Host,
    ledger: Ledger,
    key: SigningKey,
    tmp_path: Path,
    conformance_dir: Path,
    *,
    read_timeout: float = 10.0,
) -> Target:
    key_file = tmp_path / f"issuer-key-{id(key)}.json"
    if not key_file.exists():
        key.write(key_file)
    config = ClrTargetConfig(
        name=TARGET,
        base_url=f"{host.base}/ims/clr/v2p0",  # type: ignore[arg-type]
        client_id=CLIENT_ID,
        client_secret=SecretRef(env="CLR_SECRET"),
        issuer=IssuerProfile(id=ISSUER_ID, name="Northfield Community College"),
        signing_key_file=key_file,
        contexts_dir=conformance_dir / "1edtech" / "contexts",
        identity_salt=SecretRef(env="IDENTITY_SALT"),
        timeouts=HttpTimeouts(read=read_timeout),
    )
    return create_target(config, ledger.catalog, environ=ENVIRON)


async def send(
    item: Change, target: Target, ledger: Ledger, sleep: SleepRecorder | None = None
) -> Delivered:
    return await deliver_change(
        item, target, ledger, policy=POLICY, sleep=sleep or SleepRecorder(asyncio.sleep)
    )


async def prepare(target: Target, ledger: Ledger) -> None:
    """The definitions and the learner's identity arrive first (not for the CLR host)."""
    for item in (
        definition(),
        definition("MC-PY", name="Microcredential in Python"),
        learner_identity(),
    ):
        report = await send(change(item), target, ledger)
        # The learner's record is marked, but without awards it renders to nothing.
        assert all(d.state is DocumentState.CLEAN for d in report.documents)


def assert_holds_once(host: Host, names: list[str]) -> None:
    held = host.credentials()
    assert len(held) == 1
    clr = held[0]
    assert clr["type"] == ["VerifiableCredential", "ClrCredential"]
    inner = clr["credentialSubject"]["verifiableCredential"]
    assert sorted(c["name"] for c in inner) == sorted(names)
    assert "0012345" not in str(clr)


@pytest.fixture
def paths(tmp_path: Path, conformance_dir: Path, signing_key: SigningKey) -> Any:
    return lambda host, ledger, **kw: clr_target(
        host, ledger, signing_key, tmp_path, conformance_dir, **kw
    )


async def test_happy_path_and_a_second_award(start_host: Any, ledger: Ledger, paths: Any) -> None:
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)

    first = await send(change(award("AW-1")), target, ledger)
    second = await send(
        change(award("AW-2", of=definition("MC-PY", name="Microcredential in Python"))),
        target,
        ledger,
    )
    again = await send(
        change(award("AW-2", of=definition("MC-PY", name="Microcredential in Python"))),
        target,
        ledger,
    )

    assert first.state is second.state is again.state is DocumentState.CLEAN
    # The repeated award changed nothing: the same record was not sent again.
    assert host.upserts() == {"created": 1, "replaced": 1}
    assert_holds_once(host, ["Microcredential in SQL Databases", "Microcredential in Python"])


async def test_a_5xx_burst_then_success(start_host: Any, ledger: Ledger, paths: Any) -> None:
    host = start_host(FaultPlan(script=("503", "500"), path_prefix="/ims/clr/v2p0/credentials"))
    target = paths(host, ledger)
    await prepare(target, ledger)

    report = await send(change(award()), target, ledger)

    assert report.state is DocumentState.CLEAN
    assert host.upserts() == {"created": 1}
    assert_holds_once(host, ["Microcredential in SQL Databases"])


async def test_429_retry_after_is_honoured(start_host: Any, ledger: Ledger, paths: Any) -> None:
    host = start_host(
        FaultPlan(script=("429",), retry_after_s=1, path_prefix="/ims/clr/v2p0/credentials")
    )
    target = paths(host, ledger)
    await prepare(target, ledger)
    sleeps = SleepRecorder(asyncio.sleep)

    report = await send(change(award()), target, ledger, sleeps)

    assert report.state is DocumentState.CLEAN
    assert sleeps.delays
    assert sleeps.delays[0] >= 1.0
    assert_holds_once(host, ["Microcredential in SQL Databases"])


async def test_timeout_after_the_write_resends_the_same_bytes(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    host = start_host(
        FaultPlan(
            script=("timeout_after_write",),
            timeout_after_write_delay_s=60,
            path_prefix="/ims/clr/v2p0/credentials",
        )
    )
    target = paths(host, ledger, read_timeout=0.5)
    await prepare(target, ledger)

    report = await send(change(award()), target, ledger)

    assert report.state is DocumentState.CLEAN
    # Applied by the first request; the retry carried the same signed body.
    assert host.upserts() == {"created": 1, "unchanged": 1}
    assert_holds_once(host, ["Microcredential in SQL Databases"])


async def test_a_refused_credential_is_permanent_until_fixed(
    start_host: Any, ledger: Ledger, tmp_path: Path, conformance_dir: Path, signing_key: SigningKey
) -> None:
    host = start_host()
    untrusted = SigningKey.generate(VERIFICATION_METHOD)  # not the key the host trusts
    target = clr_target(host, ledger, untrusted, tmp_path, conformance_dir)
    await prepare(target, ledger)
    item = change(award())

    refused = await send(item, target, ledger)

    [document] = refused.documents
    assert document.state is DocumentState.REJECTED
    assert document.last_error is not None
    assert document.last_error.startswith("http-400")
    assert "proof" in document.last_error  # the host's own message, kept
    assert host.credentials() == []

    fixed = clr_target(host, ledger, signing_key, tmp_path, conformance_dir)
    await ledger.reconcile(TENANT, {TARGET: fixed.document_kinds})
    replayed = await send(item, fixed, ledger)

    assert replayed.state is DocumentState.CLEAN
    assert_holds_once(host, ["Microcredential in SQL Databases"])


class CrashingLedger(SqliteLedger):
    """A ledger whose success record is lost, as if the process died right after the call."""

    async def record_success(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerError("simulated crash between the remote call and the ledger write")


async def test_a_crash_between_call_and_ledger_write(
    start_host: Any, tmp_path: Path, paths: Any
) -> None:
    host = start_host()
    path = tmp_path / "crash.sqlite3"
    crashing = CrashingLedger(path)
    await crashing.migrate()
    await prepare(paths(host, crashing), crashing)
    item = change(award())

    crashed = await send(item, paths(host, crashing), crashing)
    await crashing.close()
    assert crashed.state is DocumentState.FAILING  # never settled as delivered

    restarted = SqliteLedger(path)
    await restarted.migrate()
    await asyncio.sleep(0.1)  # the failing document is due again (tests retry quickly)
    report = await send(item, paths(host, restarted), restarted)
    await restarted.close()

    assert report.state is DocumentState.CLEAN
    assert host.upserts()["created"] == 1
    assert_holds_once(host, ["Microcredential in SQL Databases"])


async def test_an_expired_token_is_replaced_once(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)
    await send(change(award("AW-1")), target, ledger)
    host.advance_clock(3600)  # the host now sees our cached token as expired

    report = await send(
        change(award("AW-2", of=definition("MC-PY", name="Microcredential in Python"))),
        target,
        ledger,
    )

    assert report.state is DocumentState.CLEAN
    assert_holds_once(host, ["Microcredential in SQL Databases", "Microcredential in Python"])


async def test_a_revoked_award_leaves_the_record(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)
    python = definition("MC-PY", name="Microcredential in Python")
    await send(change(award("AW-1"), seq=1), target, ledger)
    await send(change(award("AW-2", of=python), seq=2), target, ledger)

    revoked = award("AW-1").model_copy(update={"status": AwardStatus.REVOKED})
    report = await send(change(revoked, seq=3, operation=Operation.REVOKE), target, ledger)

    assert report.state is DocumentState.CLEAN
    assert_holds_once(host, ["Microcredential in Python"])


async def test_revoking_the_last_award_withdraws_the_record_by_expiry(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)
    await send(change(award("AW-1"), seq=1), target, ledger)

    revoked = award("AW-1").model_copy(update={"status": AwardStatus.REVOKED})
    report = await send(change(revoked, seq=2, operation=Operation.REVOKE), target, ledger)

    assert report.state is DocumentState.CLEAN
    assert host.upserts() == {"created": 1, "replaced": 1}
    held = host.credentials()
    assert len(held) == 1
    record = held[0]
    inner = record["credentialSubject"]["verifiableCredential"]
    assert len(inner) == 1
    # The host accepted it (schema + proofs), and a verifier sees it expired at revocation.
    assert "validUntil" in record
    assert inner[0]["validUntil"] <= record["validUntil"]
    assert record["validFrom"] <= record["validUntil"]


async def test_awards_arriving_out_of_order_still_end_in_the_full_record(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    # Two awards of one learner travel on different partitions: the later one may be
    # delivered first. The record built second must still be the newer one at the host.
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)
    python = definition("MC-PY", name="Microcredential in Python")

    # Awarded well before the SIS reported them, so the change times decide validFrom.
    earned = date(2025, 5, 2)
    later = await send(change(award("AW-2", of=python, awarded_on=earned), seq=9), target, ledger)
    earlier = await send(change(award("AW-1", awarded_on=earned), seq=4), target, ledger)

    assert later.state is earlier.state is DocumentState.CLEAN
    assert host.upserts() == {"created": 1, "replaced": 1}
    assert_holds_once(host, ["Microcredential in SQL Databases", "Microcredential in Python"])


async def test_a_corrected_award_date_still_replaces_the_record(
    start_host: Any, ledger: Ledger, paths: Any
) -> None:
    # The SIS first reports a later award date, then corrects it to an earlier one: the
    # corrected record must replace the first at the host, not be ignored as older.
    host = start_host()
    target = paths(host, ledger)
    await prepare(target, ledger)
    await send(change(award("AW-1", awarded_on=date(2026, 3, 1)), seq=1), target, ledger)
    corrected = await send(
        change(award("AW-1", awarded_on=date(2026, 1, 10)), seq=2), target, ledger
    )

    assert corrected.state is DocumentState.CLEAN
    assert host.upserts() == {"created": 1, "replaced": 1}
    inner = host.credentials()[0]["credentialSubject"]["verifiableCredential"]
    assert [c["validFrom"][:10] for c in inner] == ["2026-01-10"]
