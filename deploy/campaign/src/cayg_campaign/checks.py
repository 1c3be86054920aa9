"""What a campaign checks once the faults have stopped and the stack is idle.

Each check returns plain figures and the lines that explain every non-zero one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from cayg_campaign.stack import READ_TIMEOUT_S, CampaignStack
from cayg_campaign.stream import Expected
from cayg_campaign.targets import (
    Targets,
    definition_mismatches,
    parked_mismatches,
    record_mismatches,
)
from cayg_ops import kafka_view
from cayg_ops.demo import TenantSecrets
from cayg_ops.feed import FeedMessage
from cayg_shared.envelope import DeadLetter, IngestEnvelope

# -- the end state --------------------------------------------------------------------------


@dataclass
class EndState:
    lost: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)


def end_state(stack: CampaignStack, expected: Expected, parked: dict[str, list[str]]) -> EndState:
    """Every registry resource and CLR against the model: missing ones are lost, wrong
    ones stale, extra ones unexplained; DLQ reasons against the model too."""
    targets = Targets(stack.ports, stack.tenants)
    found = EndState(parked=parked_mismatches(expected, parked))
    for line in [*definition_mismatches(expected, targets), *record_mismatches(expected, targets)]:
        if ": missing" in line or "no record at the host" in line or "live awards missing" in line:
            found.lost.append(line)
        elif "nothing expected it" in line or "no learner explains it" in line:
            found.unexplained.append(line)
        else:
            found.stale.append(line)
    return found


# -- remote writes --------------------------------------------------------------------------


@dataclass
class Writes:
    """Remote writes seen by the recording proxies."""

    total: int = 0
    applied: int = 0
    #: The same content written again to a resource after the target had confirmed it.
    duplicates: list[str] = field(default_factory=list)
    #: The same content sent again after publish could not know whether the first one
    #: was applied (it timed out after the target wrote it): at-least-once, by design.
    unknown_outcome_resends: int = 0
    #: The same content sent again by another instance (or the restarted one) after the
    #: sender was SIGKILLed between the target's answer and recording it in the ledger:
    #: the ledger cannot know the write landed. Counted apart, listed, and explained.
    crash_window_resends: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    cross_tenant: list[str] = field(default_factory=list)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _is_effect(path: str) -> bool:
    """Writes that change something (not the registry's format preview, not OAuth)."""
    return not (path.endswith("/format") or "oauth" in path or "token" in path)


def writes(stack: CampaignStack, expected: Expected, killed_at: dict[str, list[float]]) -> Writes:
    """The proxies' records of this run, tallied by :func:`tally_writes`."""
    return tally_writes(
        {
            target: [
                {**entry, "sender": sender}
                for sender, proxy in by_sender.items()
                for entry in _records(proxy.record)
            ]
            for target, by_sender in stack.proxies.items()
        },
        owners={ctid: d.tenant for ctid, d in expected.definitions.items()},
        senders=_api_key_tenants(stack.tenants, stack.seen_credentials),
        # Less a margin: the proxy's clock starts a little after publish's.
        late_after_s=READ_TIMEOUT_S - 0.3,
        killed_at=killed_at,
    )


def tally_writes(
    records: dict[str, list[dict[str, Any]]],
    *,
    owners: dict[str, str],
    senders: dict[str, str],
    late_after_s: float | None = None,
    killed_at: dict[str, list[float]] | None = None,
) -> Writes:
    """Per target and resource, in time order: an applied write whose content equals the
    previous applied one is a duplicate effect, unless the previous one's outcome was
    unknown to publish: ``client-gone`` (publish gave up before the answer came), or an
    answer that took ``late_after_s`` or longer (publish's read timeout: it gave up as the
    answer arrived), or its sender was SIGKILLed between the two writes (``killed_at``:
    sender -> kill times): then the re-send is a crash-window re-send, listed apart.
    ``owners``: registry CTID -> tenant; ``senders``: credential hash -> tenant."""
    kills = killed_at or {}
    found = Writes()
    for target, entries in records.items():
        last: dict[str, dict[str, Any]] = {}
        for entry in sorted(entries, key=lambda e: float(e["t"])):
            if not _is_effect(entry["path"]):
                continue
            found.total += 1
            status = entry["status"]
            applied = entry["outcome"] == "client-gone" or (
                entry["outcome"] == "answered" and status is not None and status < 300
            )
            if not applied:
                found.refused[f"{target}:{status or entry['outcome']}"] += 1
                continue
            found.applied += 1
            resource = entry["resource"]
            previous = last.get(resource)
            if previous is not None and previous["body"] == entry["body"]:
                if previous["outcome"] == "client-gone" or (
                    late_after_s is not None and float(previous.get("elapsed_s", 0)) >= late_after_s
                ):
                    found.unknown_outcome_resends += 1
                else:
                    who = f"{previous.get('sender', '?')} then {entry.get('sender', '?')}"
                    gap = float(entry["t"]) - float(previous["t"])
                    crashed = any(
                        float(previous["t"]) <= k <= float(entry["t"])
                        for k in kills.get(str(previous.get("sender")), [])
                    )
                    if crashed:
                        found.crash_window_resends.append(
                            f"{target} {resource}: {who}, {gap:.1f} s apart, the first sender "
                            "SIGKILLed in between"
                        )
                        last[resource] = entry
                        continue
                    found.duplicates.append(
                        f"{target} {entry['method']} {entry['path']} {resource}: the same "
                        f"content again {float(entry['t']) - float(previous['t']):.1f} s after "
                        f"the target had confirmed it ({who})"
                    )
            last[resource] = entry
            owner = owners.get(resource) if target == "registry" else None
            sender = senders.get(entry.get("credential") or "")
            if owner is not None and sender is not None and owner != sender:
                found.cross_tenant.append(f"registry {resource} of {owner} by {sender}")
    return found


def _api_key_tenants(tenants: Sequence[TenantSecrets], seen: Path) -> dict[str, str]:
    """Credential hash (as the proxy records it) -> the tenant whose API key it carries."""
    keys = {t.api_key_file.read_text().strip(): t.tenant for t in tenants}
    out: dict[str, str] = {}
    if not seen.exists():
        return out
    for line in seen.read_text().splitlines():
        for key, tenant in keys.items():
            if key in line:
                out[hashlib.sha256(line.encode()).hexdigest()[:16]] = tenant
    return out


# -- every input accounted for --------------------------------------------------------------


async def _read_all(bootstrap: str, topics: Sequence[str]) -> list[Any]:
    """Every record of ``topics`` from the beginning to the end as of now."""
    tps = [tp for topic in topics for tp in await kafka_view.partitions(bootstrap, topic)]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in pending:
            consumer.seek(tp, starts[tp])
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=2000)
            for tp, records in batch.items():
                out.extend(r for r in records if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out


@dataclass
class Conservation:
    """Per tenant: records in (SIS topics) and records out (ingested or dead-lettered),
    each source record counted once."""

    sent: Counter[str] = field(default_factory=Counter)
    settled: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    hostile_admitted: list[str] = field(default_factory=list)
    hostile_refused: int = 0


async def conservation(
    stack: CampaignStack, tenants: Sequence[str], hostile: set[tuple[str, int, int]]
) -> Conservation:
    """Every SIS record is on the ingested topic or the ingest DLQ (by its source
    coordinates); every hostile record (another tenant's payload) is refused."""
    topics = stack.topics
    found = Conservation()
    sources: dict[tuple[str, int, int], str] = {}
    for record in await _read_all(stack.bootstrap, [topics.sis(t) for t in tenants]):
        where = (record.topic, record.partition, record.offset)
        sources[where] = record.topic.rsplit(".", 1)[-1]
    settled: set[tuple[str, int, int]] = set()
    for record in await _read_all(stack.bootstrap, [topics.ingested]):
        envelope = IngestEnvelope.model_validate_json(record.value)
        where = (envelope.source.topic, envelope.source.partition, envelope.source.offset)
        settled.add(where)
        if where in hostile:
            found.hostile_admitted.append(f"{where} admitted as {envelope.tenant}")
    refused: set[tuple[str, int, int]] = set()
    for record in await _read_all(stack.bootstrap, [topics.ingest_dlq]):
        letter = DeadLetter.model_validate_json(record.value)
        where = (letter.source.topic, letter.source.partition, letter.source.offset)
        settled.add(where)
        if where in hostile and letter.reason == "tenant-mismatch":
            refused.add(where)
    found.hostile_refused = len(refused)
    for where, tenant in sources.items():
        found.sent[tenant] += 1
        if where in settled:
            found.settled[tenant] += 1
        else:
            found.missing.append(f"{where[0]}/{where[1]}@{where[2]}: neither ingested nor parked")
    return found


# -- processes ------------------------------------------------------------------------------


#: What each service counts per record it consumed.
_WORK: dict[str, tuple[str, ...]] = {
    "ingest": ("cayg_ingest_accepted_total", "cayg_ingest_rejected_total"),
    "normalize": ("cayg_normalize_changes_total", "cayg_normalize_rejected_total"),
    "publish": ("cayg_publish_changes_total",),
}


def _work(stack: CampaignStack, name: str) -> float | None:
    service = stack.services[name].service
    total = 0.0
    for metric in _WORK[service]:
        value = stack.metric(name, metric.removesuffix("_total") + "_total")
        if value is None:
            return None
        total += value
    return total


async def zombies(
    stack: CampaignStack, probes: Sequence[FeedMessage], send: Any, idle_timeout_s: float
) -> list[str]:
    """Processes alive but not consuming. Every service must be running and ready; then
    ``probes`` (re-sent messages: nothing changes at the targets) go through the stack,
    and each consumer group must have consumed them: its processes' work counters grow
    and its lag returns to 0. (Of two publish instances in one group, one may hold no
    partition: the group's count must grow, and the lag shows a member that holds
    partitions without reading them.)"""
    found = []
    for name, service in stack.services.items():
        if not service.alive():
            found.append(f"{name}: not running at the end")
        elif not service.ready():
            found.append(f"{name}: alive but not ready")
    before = {name: _work(stack, name) for name in stack.services}
    await send(probes)
    try:
        await stack.wait_idle(timeout_s=idle_timeout_s)
    except TimeoutError as error:
        found.append(f"probes not consumed: {error}")
    after = {name: _work(stack, name) for name in stack.services}
    grown: Counter[str] = Counter()
    for name in stack.services:
        b, a = before[name], after[name]
        if b is not None and a is not None and a > b:
            grown[stack.groups[name]] += 1
    for group in sorted(set(stack.groups.values())):
        if grown[group] == 0:
            found.append(f"group {group}: no process consumed the probes")
    return found


# -- leaks ----------------------------------------------------------------------------------


def secret_forms(secret: str) -> set[str]:
    """How a secret could appear in a log: plain, base64 (standard, URL-safe, unpadded),
    URL-encoded. (Nothing for values under 8 characters: they would match by chance.)"""
    if len(secret) < 8:
        return set()
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }


def campaign_secrets(stack: CampaignStack) -> dict[str, str]:
    """Every secret of the run, by what it is."""
    found: dict[str, str] = {}
    secrets_dir = stack.base / "secrets"
    for tenant in stack.tenants:
        found[f"{tenant.tenant} registry API key"] = tenant.api_key_file.read_text().strip()
        found[f"{tenant.tenant} CLR client secret"] = tenant.client_secret_file.read_text().strip()
        key = json.loads(tenant.signing_key_file.read_text())
        for name, value in _private_members(key):
            found[f"{tenant.tenant} signing key {name}"] = value
    for name in ("admin-token", "console-password", "identity-salt", "ledger-dsn"):
        path = secrets_dir / name
        if path.exists() and name != "ledger-dsn":
            found[name] = path.read_text().strip()
    if stack.seen_credentials.exists():
        for n, line in enumerate(stack.seen_credentials.read_text().splitlines()):
            scheme, _, token = line.partition(" ")
            found[f"{scheme} credential #{n + 1} seen on the wire"] = token or line
    return {what: value for what, value in found.items() if len(value) >= 8}


def _private_members(document: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Private-key material in a key file: JWK ``d`` members and PEM private keys."""
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}" if path else key
            if key in ("d", "privateKeyMultibase", "private_key", "secret") and isinstance(
                value, str
            ):
                yield where, value
            elif isinstance(value, str) and "PRIVATE KEY" in value:
                yield where, value.split("-----")[2].strip().splitlines()[0]
            else:
                yield from _private_members(value, where)
    elif isinstance(document, list):
        for n, value in enumerate(document):
            yield from _private_members(value, f"{path}[{n}]")


def learner_identifiers(messages: Iterable[FeedMessage]) -> set[str]:
    """Raw learner identifiers the stream carried: institution ids, SIS credential values,
    e-mail addresses."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("institutionId", "email", "address") and isinstance(value, str):
                    found.add(value)
                elif key == "credentials" and isinstance(value, list):
                    found.update(
                        str(c["value"]) for c in value if isinstance(c, dict) and "value" in c
                    )
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for message in messages:
        try:
            walk(json.loads(message.value))
        except ValueError:
            continue
    return {value for value in found if len(value) >= 6}


@dataclass
class Leaks:
    lines_scanned: int = 0
    files: int = 0
    found: list[str] = field(default_factory=list)


def leaks(log_files: Sequence[Path], secrets: dict[str, str], identifiers: set[str]) -> Leaks:
    """Every log line of every process against every form of every secret and every raw
    learner identifier."""
    needles: dict[str, str] = {}
    for what, secret in secrets.items():
        for form in secret_forms(secret):
            needles[form] = what
    for identifier in identifiers:
        needles[identifier] = "a raw learner identifier"
    pattern = re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    result = Leaks(files=len(log_files))
    hits: dict[str, int] = defaultdict(int)
    for path in log_files:
        for line in path.read_text(errors="replace").splitlines():
            result.lines_scanned += 1
            for match in pattern.finditer(line):
                hits[f"{path.name}: {needles[match.group(0)]}"] += 1
    result.found = [f"{where} ({n} line(s))" for where, n in sorted(hits.items())]
    return result


# -- operator actions -----------------------------------------------------------------------


async def console_refuses_anonymous_replay(stack: CampaignStack) -> list[str]:
    """The console's replay (a state change: it writes to an SIS topic) without
    credentials and with a wrong password is refused and replays nothing."""
    problems: list[str] = []
    parked = await _read_all(stack.bootstrap, [stack.topics.ingest_dlq])
    if not parked:
        return ["no dead letter to try a replay on"]
    item = parked[0]
    url = f"{stack.console_url}/dlq/ingest/{item.partition}/{item.offset}/replay"
    letter = DeadLetter.model_validate_json(item.value)
    sis = letter.source.topic
    before = len(await _read_all(stack.bootstrap, [sis]))
    attempts = {
        "no credentials": {},
        "a wrong password": {"data": {"username": "operator", "password": "not-it"}},
        "a wrong Basic header": {"auth": ("operator", "guess")},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for what, kwargs in attempts.items():
            response = await client.post(url, **kwargs)  # type: ignore[arg-type]
            if response.status_code not in (401, 403):
                problems.append(f"replay with {what}: HTTP {response.status_code}")
    after = len(await _read_all(stack.bootstrap, [sis]))
    if after != before:
        problems.append(f"{after - before} record(s) replayed without valid credentials")
    return problems
