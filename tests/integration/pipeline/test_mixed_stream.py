"""Accounting on a real broker: a mixed stream of about 3,000 SIS records from the three demo
tenants — good traffic, exact duplicates, deletions, spoofed tenants, garbage, unknown
formats, oversized and malformed events — through the ingest and normalize *processes*.

Every input record must end exactly once, either as an envelope on ``cayg.ingested.v1`` or
as a dead letter on ``cayg.ingest.dlq.v1`` (matched by source coordinates); every envelope
as zero or more changes on ``cayg.normalized.v1`` (matched by causation id, counted against
normalize's own log line) or a dead letter on ``cayg.normalize.dlq.v1``. Duplicates carry
the same ids, dead letters the reason each kind of bad input deserves, and no learner
email or institution id reaches a log line.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiokafka import ConsumerRecord

from cayg_campaign.kinds import INGEST_REASONS, MAPPED, NORMALIZE_REASONS, kind_of
from cayg_ops.feed import HARBOR, LAKESHORE, NORTHFIELD, FeedMessage, mixed_feed, topic_for
from cayg_shared.envelope import DeadLetter, IngestEnvelope, Stage
from cayg_shared.schema import Change
from cayg_shared.topics import Topics
from support.processes import ServiceProcess, service_env
from support.topics import create_topics, produce_batch, read_to_end, wait_until_consumed

pytestmark = pytest.mark.integration

TENANTS = Path(__file__).resolve().parents[3] / "deploy" / "config" / "tenants.json"
#: SIS topics accept records up to 4 MiB, so that records over a tenant's limit (1 MiB
#: default, 2 MiB for Harbor) reach ingest and are refused there, not by the broker.
SIS_TOPIC_MAX_BYTES = 4 * 1_048_576

Coordinates = tuple[str, int, int]


@dataclass(frozen=True)
class Sent:
    """An input record and where the broker put it (topic without the test's prefix)."""

    message: FeedMessage
    at: Coordinates


@dataclass
class Outputs:
    envelopes: dict[Coordinates, list[IngestEnvelope]]
    envelope_positions: dict[Coordinates, IngestEnvelope]
    ingest_letters: dict[Coordinates, list[DeadLetter]]
    normalize_letters: dict[Coordinates, list[DeadLetter]]
    changes: dict[UUID, list[Change]]


def _decode(records: list[ConsumerRecord[bytes, bytes]], topics: Topics) -> Outputs:
    out = Outputs(defaultdict(list), {}, defaultdict(list), defaultdict(list), defaultdict(list))
    for record in records:
        value = record.value or b""
        if record.topic == topics.ingested:
            envelope = IngestEnvelope.model_validate_json(value)
            where = (topics.unprefixed(envelope.source.topic), *_at(envelope.source))
            out.envelopes[where].append(envelope)
            out.envelope_positions[(record.topic, record.partition, record.offset)] = envelope
        elif record.topic == topics.normalized:
            change = Change.from_kafka_value(value)
            out.changes[change.causation_id].append(change)
        else:
            letter = DeadLetter.model_validate_json(value)
            where = (topics.unprefixed(letter.source.topic), *_at(letter.source))
            if record.topic == topics.ingest_dlq:
                assert letter.stage is Stage.INGEST
                out.ingest_letters[where].append(letter)
            else:
                assert letter.stage is Stage.NORMALIZE
                out.normalize_letters[(letter.source.topic, *_at(letter.source))].append(letter)
    return out


def _at(source: Any) -> tuple[int, int]:
    return int(source.partition), int(source.offset)


def _walk(value: Any, parent: str = "") -> Iterator[tuple[str, Any, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield key, child, parent
            yield from _walk(child, key)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child, parent)


def _learner_secrets(feed: list[FeedMessage]) -> set[str]:
    """Learner emails and institution ids (student numbers, SSNs) anywhere in the input."""
    secrets: set[str] = set()
    for message in feed:
        try:
            document = json.loads(message.value)
        except ValueError:
            continue
        for key, value, parent in _walk(document):
            if not isinstance(value, str):
                continue
            if (
                key in ("email", "institutionId")
                or (key == "address" and parent == "emails")
                or (key == "value" and parent == "credentials")
            ):
                secrets.add(value.lower())
    return secrets


_TOKEN = re.compile(r"[\w.%+@-]+")


async def test_every_record_of_a_mixed_stream_is_accounted_for_exactly_once(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    feed = mixed_feed(seed=2025, learners_per_tenant=450)
    sis_topics = [topics.sis(tenant) for tenant in (NORTHFIELD, LAKESHORE, HARBOR)]
    # Topics made up front, as in production: SIS topics that let oversized records reach
    # ingest, and three partitions everywhere (a subscriber auto-creating its topic would
    # make it with one).
    await create_topics(
        kafka_bootstrap, sis_topics, configs={"max.message.bytes": str(SIS_TOPIC_MAX_BYTES)}
    )
    await create_topics(
        kafka_bootstrap,
        [topics.ingested, topics.ingest_dlq, topics.normalized, topics.normalize_dlq],
    )

    began = time.monotonic()
    written = await produce_batch(
        kafka_bootstrap,
        [(topic_for(m, topics), m.key, m.value, m.headers) for m in feed],
        max_request_size=SIS_TOPIC_MAX_BYTES,
    )
    produce_s = time.monotonic() - began
    sent = [
        Sent(message, (topics.unprefixed(topic), partition, offset))
        for message, (topic, partition, offset) in zip(feed, written, strict=True)
    ]

    services = {
        name: ServiceProcess(
            name,
            # Per-record lines are DEBUG: the accounting reads normalize's, and the leak
            # check must see every line a record can cause.
            env=service_env(name, kafka_bootstrap, topic_prefix, TENANTS, LOG_LEVEL="DEBUG"),
            log_dir=tmp_path,
        )
        for name in ("ingest", "normalize")
    }
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in services.values()))
        started = time.monotonic()
        await wait_until_consumed(
            kafka_bootstrap, f"{topic_prefix}cayg-ingest", sis_topics, timeout_s=100
        )
        ingest_s = time.monotonic() - started
        await wait_until_consumed(
            kafka_bootstrap, f"{topic_prefix}cayg-normalize", [topics.ingested], timeout_s=60
        )
        pipeline_s = time.monotonic() - started
        for proc in services.values():
            assert proc.stop() == 0
    finally:
        for proc in services.values():
            proc.kill()

    records = await read_to_end(
        kafka_bootstrap,
        [topics.ingested, topics.ingest_dlq, topics.normalized, topics.normalize_dlq],
    )
    out = _decode(records, topics)

    outcomes = _account_for_inputs(sent, out)
    mapped = _account_for_envelopes(out, services["normalize"].log_lines(), topics)
    parked = _check_normalize_reasons(sent, out, topics)
    _check_duplicates(sent, out)
    _check_no_learner_identifiers_logged(feed, services)

    megabytes = sum(len(m.value) for m in feed) / 1e6
    changes = sum(len(c) for c in out.changes.values())
    print(
        f"\nmixed stream: {len(feed)} records ({megabytes:.1f} MB) produced in {produce_s:.1f} s;"
        f"\n  ingest drained them in {ingest_s:.1f} s ({len(feed) / ingest_s:.0f} records/s);"
        f"\n  ingest+normalize done {pipeline_s:.1f} s after start "
        f"({len(out.envelope_positions) / pipeline_s:.0f} envelopes/s end to end);"
        f"\n  outcomes: {dict(sorted(outcomes.items()))};"
        f"\n  {len(out.envelope_positions)} envelopes → {mapped} mapped into {changes} changes, "
        f"{sum(parked.values())} parked by normalize {dict(sorted(parked.items()))}"
    )


def _account_for_inputs(sent: list[Sent], out: Outputs) -> Counter[str]:
    """Each input: one envelope or one dead letter, never both, never neither, and the
    dead letter's reason is the one its kind deserves."""
    inputs = {s.at: s for s in sent}
    assert len(inputs) == len(sent), "the broker gave every record its own offset"
    unknown = set(out.envelopes) | set(out.ingest_letters)
    assert unknown <= set(inputs), "nothing appears that was not sent"
    outcomes: Counter[str] = Counter()
    for at, item in inputs.items():
        envelopes, letters = out.envelopes.get(at, []), out.ingest_letters.get(at, [])
        kind = kind_of(item.message.label)
        assert len(envelopes) + len(letters) == 1, (
            f"{item.message.label} at {at}: {len(envelopes)} envelopes, {len(letters)} letters"
        )
        if kind in INGEST_REASONS:
            [letter] = letters
            assert letter.reason == INGEST_REASONS[kind], f"{item.message.label} at {at}"
            assert letter.tenant == item.message.tenant or letter.reason == "too-large"
            original = letter.original_value()
            if letter.value_truncated:
                assert item.message.value.startswith(original)
            else:
                assert original == item.message.value
            outcomes[f"ingest-dlq:{letter.reason}"] += 1
        else:
            assert kind in MAPPED or kind in NORMALIZE_REASONS, f"unexpected label {kind}"
            [envelope] = envelopes
            assert envelope.tenant == item.message.tenant
            outcomes["ingested"] += 1
    return outcomes


def _account_for_envelopes(out: Outputs, normalize_log: list[str], topics: Topics) -> int:
    """Each envelope: changes (as many as normalize says it mapped, maybe none) or one
    dead letter; the changes of one envelope all name it as their cause."""
    mapped_lines: Counter[str] = Counter()
    logged_changes: Counter[str] = Counter()
    for line in normalize_log:
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("message") == "envelope normalized":
            mapped_lines[entry["event_id"]] += 1
            logged_changes[entry["event_id"]] += int(entry["changes"])

    by_event: dict[UUID, list[tuple[Coordinates, IngestEnvelope]]] = defaultdict(list)
    for position, envelope in out.envelope_positions.items():
        by_event[envelope.event_id].append((position, envelope))
    assert set(out.normalize_letters) <= set(out.envelope_positions)
    assert set(out.changes) <= set(by_event), "every change names an envelope as its cause"

    mapped = 0
    for event_id, copies in by_event.items():
        parked = [out.normalize_letters.get(position, []) for position, _ in copies]
        kind_of_first = copies[0][1]
        for letters in parked:
            assert len(letters) <= 1, f"{event_id} parked twice from one position"
        parked_count = sum(len(letters) for letters in parked)
        assert parked_count in (0, len(copies)), f"copies of {event_id} ended differently"
        key = str(event_id)
        if parked_count:
            reasons = {letters[0].reason for letters in parked}
            assert len(reasons) == 1
            assert all(letters[0].event_id == event_id for letters in parked)
            assert event_id not in out.changes, f"{event_id} was parked and mapped"
            assert mapped_lines[key] == 0
            continue
        mapped += len(copies)
        assert mapped_lines[key] == len(copies), f"{kind_of_first.subject_type} {event_id}"
        assert len(out.changes.get(event_id, [])) == logged_changes[key]
        for change in out.changes.get(event_id, []):
            assert change.tenant == kind_of_first.tenant
            assert change.correlation_id == kind_of_first.correlation_id
    assert sum(mapped_lines.values()) == mapped, "no envelope was mapped that is not on the topic"
    return mapped


def _check_normalize_reasons(sent: list[Sent], out: Outputs, topics: Topics) -> Counter[str]:
    """Envelopes of unmappable kinds are parked for the reason their kind deserves; no
    envelope of a good kind is parked."""
    inputs = {s.at: s for s in sent}
    reasons: Counter[str] = Counter()
    for position, envelope in out.envelope_positions.items():
        source = (topics.unprefixed(envelope.source.topic), *_at(envelope.source))
        kind = kind_of(inputs[source].message.label)
        letters = out.normalize_letters.get(position, [])
        if kind in NORMALIZE_REASONS:
            [letter] = letters
            assert letter.reason == NORMALIZE_REASONS[kind], f"{kind} at {source}"
            assert letter.tenant == envelope.tenant
            reasons[letter.reason] += 1
        else:
            assert letters == [], f"{kind} at {source}: {[x.reason for x in letters]}"
    return reasons


def _check_duplicates(sent: list[Sent], out: Outputs) -> None:
    """Exact duplicates (and a CloudEvent re-sent in the other mode) share their event id,
    and the changes they cause share theirs: downstream can drop the repeats."""
    groups: dict[tuple[str, bytes | None, bytes, str], list[Sent]] = defaultdict(list)
    for item in sent:
        m = item.message
        groups[(m.tenant, m.key, m.value, json.dumps(m.headers, sort_keys=True))].append(item)
    repeated = [items for items in groups.values() if len(items) > 1]
    assert len(repeated) >= 100, "the feed repeats enough records to matter"
    for items in repeated:
        ids = {e.event_id for item in items for e in out.envelopes.get(item.at, [])}
        reasons = {d.reason for item in items for d in out.ingest_letters.get(item.at, [])}
        assert len(ids) + len(reasons) == 1, f"{items[0].message.label}: {ids} {reasons}"
    for event_id, changes in out.changes.items():
        copies = sum(1 for e in out.envelope_positions.values() if e.event_id == event_id)
        per_id = Counter(change.event_id for change in changes)
        assert set(per_id.values()) == {copies}, f"changes of {event_id} differ between copies"

    other_mode = [s for s in sent if s.message.label.startswith("other-mode:")]
    assert other_mode
    by_message_id = {
        (e.tenant, e.source_message_id): e.event_id
        for envelopes in out.envelopes.values()
        for e in envelopes
        if e.format.value == "cloudevent-structured"
    }
    for item in other_mode:
        [binary] = out.envelopes[item.at]
        assert binary.format.value == "cloudevent-binary"
        assert by_message_id[(binary.tenant, binary.source_message_id)] == binary.event_id


def _check_no_learner_identifiers_logged(
    feed: list[FeedMessage], services: dict[str, ServiceProcess]
) -> None:
    secrets = _learner_secrets(feed)
    assert len(secrets) > 1000, "the feed is full of learner identifiers"
    for name, proc in services.items():
        lines = proc.log_lines()
        assert len(lines) > 1000, f"{name} logged every record"
        for line in lines:
            tokens = _TOKEN.findall(line.lower())
            leaked = {t for t in tokens if t in secrets or t.strip("._%+-") in secrets}
            assert not leaked, f"{name} logged learner identifiers: {line[:300]}"
