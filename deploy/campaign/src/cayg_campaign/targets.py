"""What the targets hold, read through their public APIs, compared with an expectation.

* The CLR host stand-in: ``GET /ims/clr/v2p0/credentials`` with an OAuth 2.0
  client-credentials token of each tenant's client (a host lists the records of the
  client asking, as a learner's wallet or an auditor would read them back).
* The registry stand-in: ``GET /resources/{ctid}`` per definition, and
  ``GET /organizations/{org}/credentials`` for what an organization has published (to find
  resources nobody expected).

:func:`mismatches` lists every entity that differs from :class:`cayg_campaign.stream.Expected`,
each on its own line, so one assertion shows all of them.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from cayg_campaign.stream import Expected
from cayg_ops import kafka_view
from cayg_ops.demo import Ports, TenantSecrets
from cayg_shared.envelope import DeadLetter, Stage
from cayg_shared.topics import Topics

_CLR_READ: Final = "https://purl.imsglobal.org/spec/clr/v2p0/scope/credential.readonly"
_PAGE: Final = 500


class Targets:
    """Read access to the two stand-ins of one test stack."""

    def __init__(self, ports: Ports, tenants: Sequence[TenantSecrets]) -> None:
        self.ports = ports
        self.tenants = {t.tenant: t for t in tenants}

    def _token(self, tenant: str) -> str:
        secrets = self.tenants[tenant]
        response = httpx.post(
            f"{self.ports.clr_url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": _CLR_READ},
            auth=(secrets.client_id, secrets.client_secret_file.read_text().strip()),
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def clr_records(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Every ClrCredential the host holds for ``tenant``'s client, by credential id."""
        headers = {"Authorization": f"Bearer {self._token(tenant)}"}
        records: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            response = httpx.get(
                f"{self.ports.clr_url}/ims/clr/v2p0/credentials",
                params={"limit": _PAGE, "offset": offset},
                headers=headers,
                timeout=30,
            )
            response.raise_for_status()
            page = response.json()["credential"]
            for record in page:
                records[str(record["id"])] = record
            offset += len(page)
            if not page or offset >= int(response.headers["X-Total-Count"]):
                return records

    def registry_resource(self, ctid: str) -> dict[str, Any] | None:
        """The live resource of ``ctid``, or None when it is unknown or deleted."""
        response = httpx.get(f"{self.ports.registry_url}/resources/{ctid}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        resource: dict[str, Any] = response.json()
        return resource

    def registry_partners(self, ctid: str) -> list[str]:
        """What the resource's ``recognizedBy`` names, as ``name:<name>`` (an organization
        described inline) or ``ctid:<CTID>`` (a reference), sorted."""
        response = httpx.get(f"{self.ports.registry_url}/graph/{ctid}", timeout=10)
        response.raise_for_status()
        nodes = {str(n.get("@id")): n for n in response.json().get("@graph", [])}
        main = next(n for n in nodes.values() if n.get("ceterms:ctid") == ctid)
        named: list[str] = []
        for ref in main.get("ceterms:recognizedBy", []):
            if str(ref).startswith("_:"):
                named.append(f"name:{_text(nodes.get(str(ref), {}).get('ceterms:name'))}")
            else:
                named.append(f"ctid:{str(ref).rstrip('/').rsplit('/', 1)[-1]}")
        return sorted(named)

    def published_ctids(self, tenant: str) -> set[str]:
        """CTIDs of the credentials the tenant's organization has published."""
        org = self.tenants[tenant].org_ctid
        response = httpx.get(
            f"{self.ports.registry_url}/organizations/{org}/credentials", timeout=10
        )
        if response.status_code == 404:
            return set()
        response.raise_for_status()
        return {str(item["ctid"]) for item in response.json()["credentials"]}


def _text(value: Any) -> str | None:
    """A CTDL language map's text (one language here), or a plain string."""
    if isinstance(value, dict):
        return next((str(v) for v in value.values()), None)
    return None if value is None else str(value)


def _status(resource: dict[str, Any]) -> str | None:
    term = (resource.get("ceterms:credentialStatusType") or {}).get("ceterms:targetNode")
    return None if term is None else str(term).rsplit(":", 1)[-1]


def definition_mismatches(expected: Expected, targets: Targets) -> list[str]:
    """Each registry resource that is missing, misnamed, in the wrong status or unexpected."""
    problems: list[str] = []
    for ctid, want in sorted(expected.definitions.items(), key=lambda i: (i[1].tenant, i[0])):
        got = targets.registry_resource(ctid)
        where = f"registry {ctid} [{want.origin}]"
        if got is None:
            problems.append(f"{where}: missing (expected {want.status} {want.name!r})")
            continue
        name, status = _text(got.get("ceterms:name")), _status(got)
        if name != want.name:
            problems.append(f"{where}: name {name!r}, expected {want.name!r}")
        if status != want.status:
            problems.append(f"{where}: status {status}, expected {want.status}")
        partners = targets.registry_partners(ctid)
        if partners != list(want.partners):
            problems.append(f"{where}: recognizedBy {partners}, expected {list(want.partners)}")
    tenants = {d.tenant for d in expected.definitions.values()}
    for tenant in sorted(tenants):
        for ctid in sorted(targets.published_ctids(tenant) - set(expected.definitions)):
            problems.append(f"registry {ctid} [{tenant}]: published, but nothing expected it")
    return problems


def record_mismatches(expected: Expected, targets: Targets) -> list[str]:
    """Each learner whose record at the CLR host differs from the expectation, and each
    record the host holds that no learner of the stream explains."""
    problems: list[str] = []
    now = datetime.now(UTC)
    tenants = sorted({r.tenant for r in expected.records.values()})
    held = {tenant: targets.clr_records(tenant) for tenant in tenants}
    for record_id, want in sorted(expected.records.items(), key=lambda i: (i[1].tenant, i[0])):
        got = held[want.tenant].get(record_id)
        where = f"CLR {record_id} [{want.tenant} {want.origin}]"
        if want.state == "none":
            if got is not None:
                problems.append(f"{where}: the host holds a record, expected none")
            continue
        if got is None:
            problems.append(f"{where}: no record at the host, expected {want.state}")
            continue
        valid_until = got.get("validUntil")
        if want.state == "withdrawn":
            if valid_until is None:
                problems.append(f"{where}: not withdrawn (no validUntil)")
            elif datetime.fromisoformat(str(valid_until).replace("Z", "+00:00")) > now:
                problems.append(f"{where}: withdrawn only from {valid_until}, expected expired")
            continue
        if valid_until is not None:
            problems.append(f"{where}: withdrawn (validUntil {valid_until}), expected live")
        credentials = {
            str(c["id"]): c
            for c in got.get("credentialSubject", {}).get("verifiableCredential", [])
        }
        missing = sorted(set(want.awards) - set(credentials))
        extra = sorted(set(credentials) - set(want.awards))
        if missing:
            problems.append(f"{where}: live awards missing {missing}")
        if extra:
            problems.append(f"{where}: awards that are not live {extra}")
        for award_id, day in sorted(want.awards.items()):
            if award_id in credentials:
                awarded = str(credentials[award_id].get("awardedDate", ""))[:10]
                if awarded != day:
                    problems.append(f"{where}: award {award_id} dated {awarded}, expected {day}")
    for tenant in tenants:
        for record_id in sorted(set(held[tenant]) - set(expected.records)):
            problems.append(f"CLR {record_id} [{tenant}]: held, but no learner explains it")
    return problems


def parked_mismatches(expected: Expected, parked: dict[str, list[str]]) -> list[str]:
    """Each (stage, reason) whose count of parked messages differs from the expectation;
    ``parked`` is every parked message's reason, per stage."""
    got: Counter[tuple[str, str]] = Counter(
        (stage, reason) for stage, reasons in parked.items() for reason in reasons
    )
    problems = []
    for stage, reason in sorted(set(got) | set(expected.parked)):
        want, have = expected.parked[stage, reason], got[stage, reason]
        if want != have:
            problems.append(f"{stage} DLQ, reason {reason}: {have} parked, expected {want}")
    return problems


def _sis_record(letter: DeadLetter) -> tuple[str, int, int]:
    """Where the SIS record behind a dead letter sits: the letter's own source for ingest,
    the parked ingest envelope's source for normalize (when the envelope still decodes)."""
    source = letter.source
    if letter.stage is Stage.NORMALIZE:
        try:
            envelope = json.loads(base64.b64decode(letter.value_b64))
            inner = envelope.get("source") if isinstance(envelope, dict) else None
            if isinstance(inner, dict):
                return (str(inner["topic"]), int(inner["partition"]), int(inner["offset"]))
        except (ValueError, KeyError, TypeError):
            pass
    return (source.topic, source.partition, source.offset)


async def parked_reasons(bootstrap: str, topics: Topics) -> dict[str, list[str]]:
    """The reason of every input parked on each stage's DLQ (once per source record)."""
    found: dict[str, list[str]] = {}
    for stage, topic in (
        ("ingest", topics.ingest_dlq),
        ("normalize", topics.normalize_dlq),
        ("publish", topics.publish_dlq),
    ):
        items = await kafka_view.read_parked(bootstrap, topic, limit=100_000)
        # At least once: a record read again after a crash or rebalance may be parked
        # twice, and one SIS record that ingest forwarded twice (a crash between its output
        # and its commit) reaches normalize as two records. One SIS record is one rejected
        # input, so letters count once per SIS record (exact re-sends by the SIS are other
        # SIS records, and count again).
        seen: set[tuple[str, int, int]] = set()
        reasons: list[str] = []
        for item in items:
            if item.letter is None:
                reasons.append("<undecodable>")
                continue
            where = _sis_record(item.letter)
            if where in seen:
                continue
            seen.add(where)
            reasons.append(item.letter.reason)
        found[stage] = reasons
    return found
