"""The dead-letter workflow: list what is parked, replay what was fixed, resolve the rest.

Kafka cannot delete one record, so what an operator did with a letter is written to a
compacted topic of its own, ``cayg.dlq.actions.v1``:

* ``replayed`` — the letter's original was sent back, and where the copy landed
  (``topic@partition:offset``); keyed by the copy, so every replay is kept;
* ``resolved`` — the operator decided nothing more is to be done (the SIS will resend,
  a test message…), with a note; keyed by the letter.

Reading the DLQs against that log gives each letter a state. A stage that parks a replayed
copy again writes a new letter whose *source* is the copy's coordinates: that letter is
recognised as a **repeat** of the original and folded into it ("failed again"), never
listed as a second letter. By default ``cayg dlq list`` shows the letters still to act on:
``open`` (never replayed) and ``failed-again``; ``replayed`` (sent back, not parked again),
``resolved`` and repeats are shown with ``--all``.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cayg_ops import kafka_view
from cayg_ops.kafka_view import Cluster, ParkedMessage, Replayed, client_options
from cayg_shared.topics import SIS_TOPIC_PREFIX, TENANT_ID_RE, Topics

STAGES = ("ingest", "normalize", "publish")
#: Most letters read from one DLQ (they are few by nature; a flood is a different problem).
READ_LIMIT = 100_000


class LetterState(StrEnum):
    """What has become of a letter."""

    OPEN = "open"
    FAILED_AGAIN = "failed-again"
    REPLAYED = "replayed"
    RESOLVED = "resolved"
    REPEAT = "repeat"


#: The states ``dlq list`` and ``dlq replay`` act on unless told otherwise.
TO_ACT_ON = frozenset({LetterState.OPEN, LetterState.FAILED_AGAIN})


class Action(BaseModel):
    """One record of the actions topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["replayed", "resolved"]
    #: The letter acted on, ``topic@partition:offset``.
    letter: str
    stage: str
    reason: str
    at: datetime
    #: For ``replayed``: where the copy landed.
    sent_to: str | None = None
    note: str | None = Field(default=None, max_length=500)
    by: str | None = None

    @property
    def key(self) -> bytes:
        """Compaction key: one record per copy sent, one per resolved letter."""
        return f"{self.kind}:{self.sent_to or self.letter}".encode()


def dlq_topic(topics: Topics, stage: str) -> str:
    """The dead-letter topic of ``stage``."""
    return {
        "ingest": topics.ingest_dlq,
        "normalize": topics.normalize_dlq,
        "publish": topics.publish_dlq,
    }[stage]


@dataclass
class Letter:
    """A parked message as the operator sees it."""

    stage: str
    item: ParkedMessage
    state: LetterState = LetterState.OPEN
    replays: list[Action] = field(default_factory=list)
    resolved: Action | None = None
    #: Letters the stage wrote when a replayed copy failed again (newest last).
    repeats: list[Letter] = field(default_factory=list)
    #: For a repeat: the letter it repeats.
    repeat_of: str | None = None

    @property
    def coordinates(self) -> str:
        return self.item.coordinates

    @property
    def failed_at(self) -> datetime | None:
        if self.item.letter is not None:
            return self.item.letter.failed_at
        if self.item.timestamp_ms is not None:
            return datetime.fromtimestamp(self.item.timestamp_ms / 1000, UTC)
        return None

    @property
    def reason(self) -> str:
        return self.item.letter.reason if self.item.letter else "undecodable-letter"

    @property
    def tenant(self) -> str | None:
        """The letter's tenant; for a message refused before ingest named it (too large,
        not JSON), the tenant of the SIS topic it was read from."""
        letter = self.item.letter
        if letter is None:
            return None
        if letter.tenant is not None:
            return letter.tenant
        _, found, tenant = letter.source.topic.rpartition(SIS_TOPIC_PREFIX)
        return tenant if found and TENANT_ID_RE.match(tenant) else None

    def as_json(self) -> dict[str, Any]:
        """The letter for ``--json`` (never the original value: it may hold personal data)."""
        letter = self.item.letter
        out: dict[str, Any] = {
            "letter": self.coordinates,
            "stage": self.stage,
            "state": self.state.value,
            "reason": self.reason,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "tenant": self.tenant,
            "event_id": str(letter.event_id) if letter and letter.event_id else None,
            "detail": letter.detail if letter else None,
            "field_path": letter.field_path if letter else None,
            "source": (
                f"{letter.source.topic}@{letter.source.partition}:{letter.source.offset}"
                if letter
                else None
            ),
            "replayable": self.item.unreplayable is None,
            "not_replayable_because": self.item.unreplayable,
            "replays": [
                {"at": a.at.isoformat(), "sent_to": a.sent_to, "by": a.by} for a in self.replays
            ],
            "failed_again": [
                {"letter": r.coordinates, "reason": r.reason, "detail": _detail(r)}
                for r in self.repeats
            ],
        }
        if self.resolved is not None:
            out["resolved"] = {
                "at": self.resolved.at.isoformat(),
                "note": self.resolved.note,
                "by": self.resolved.by,
            }
        if self.repeat_of is not None:
            out["repeat_of"] = self.repeat_of
        return out


def _detail(letter: Letter) -> str | None:
    return letter.item.letter.detail if letter.item.letter else None


def _source(item: ParkedMessage) -> str | None:
    if item.letter is None:
        return None
    source = item.letter.source
    return f"{source.topic}@{source.partition}:{source.offset}"


def fold(parked: dict[str, list[ParkedMessage]], actions: Iterable[Action]) -> list[Letter]:
    """Every letter with its state, repeats folded into the letters they repeat."""
    replays: dict[str, list[Action]] = defaultdict(list)
    copies: dict[str, Action] = {}
    resolved: dict[str, Action] = {}
    for action in actions:
        if action.kind == "replayed" and action.sent_to:
            replays[action.letter].append(action)
            copies[action.sent_to] = action
        elif action.kind == "resolved":
            resolved[action.letter] = action
    letters = [Letter(stage, item) for stage, items in parked.items() for item in items]
    by_coordinates = {letter.coordinates: letter for letter in letters}
    for letter in letters:
        source = _source(letter.item)
        copy = copies.get(source) if source else None
        if copy is not None:
            letter.state = LetterState.REPEAT
            letter.repeat_of = copy.letter
            original = by_coordinates.get(copy.letter)
            if original is not None:
                original.repeats.append(letter)
    for letter in letters:
        if letter.state is LetterState.REPEAT:
            continue
        letter.replays = sorted(replays.get(letter.coordinates, []), key=lambda a: a.at)
        letter.resolved = resolved.get(letter.coordinates)
        if letter.resolved is not None:
            letter.state = LetterState.RESOLVED
        elif letter.replays:
            last = letter.replays[-1].sent_to
            again = any(_source(r.item) == last for r in letter.repeats)
            letter.state = LetterState.FAILED_AGAIN if again else LetterState.REPLAYED
    return letters


@dataclass(frozen=True)
class Filters:
    """Which letters a command acts on."""

    stages: tuple[str, ...] = STAGES
    tenant: str | None = None
    reasons: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    letters: tuple[str, ...] = ()
    states: frozenset[LetterState] = TO_ACT_ON

    def matches(self, letter: Letter) -> bool:
        if letter.stage not in self.stages or letter.state not in self.states:
            return False
        if self.letters and letter.coordinates not in self.letters:
            return False
        if self.tenant is not None and letter.tenant != self.tenant:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        when = letter.failed_at
        if self.since is not None and (when is None or when < self.since):
            return False
        return not (self.until is not None and (when is None or when > self.until))


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``2026-11-20``, ``2026-11-20T08:00:00+01:00`` (UTC when no offset), or a time ago:
    ``90m``, ``12h``, ``7d``, ``2w``."""
    match = _RELATIVE.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO date or date-time, or an age like 12h or 7d"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def read_actions(cluster: Cluster, topics: Topics) -> list[Action]:
    """Every action recorded (none when the topic does not exist yet)."""
    raw = await kafka_view.read_parked(cluster, topics.dlq_actions, limit=READ_LIMIT)
    actions: list[Action] = []
    for item in raw:
        try:
            actions.append(Action.model_validate_json(item.raw))
        except ValidationError:
            continue
    return actions


async def letters(cluster: Cluster, topics: Topics, stages: Sequence[str] = STAGES) -> list[Letter]:
    """Every letter of ``stages`` with its state (all stages are read: a repeat of one
    stage's letter lives in the same DLQ, but the actions name letters of every stage)."""
    parked = {
        stage: await kafka_view.read_parked(cluster, dlq_topic(topics, stage), limit=READ_LIMIT)
        for stage in stages
    }
    return fold(parked, await read_actions(cluster, topics))


async def record(cluster: Cluster, topics: Topics, actions: Sequence[Action]) -> None:
    """Append ``actions`` to the actions topic (acks=all)."""
    if not actions:
        return
    producer = AIOKafkaProducer(**client_options(cluster), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for action in actions:
            await producer.send_and_wait(
                topics.dlq_actions, action.model_dump_json().encode(), key=action.key
            )
    finally:
        await producer.stop()


def operator() -> str | None:
    """Who is acting (the OS user), for the actions log."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@dataclass
class ReplayOutcome:
    """What became of one replayed copy."""

    letter: Letter
    copy: Replayed
    #: ``accepted`` (read and not parked again), ``failed-again`` or ``pending``.
    outcome: str = "pending"
    repeat: ParkedMessage | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "letter": self.letter.coordinates,
            "stage": self.letter.stage,
            "reason": self.letter.reason,
            "sent_to": self.copy.coordinates,
            "outcome": self.outcome,
        }
        if self.repeat is not None and self.repeat.letter is not None:
            out["failed_again"] = {
                "letter": self.repeat.coordinates,
                "reason": self.repeat.letter.reason,
                "detail": self.repeat.letter.detail,
            }
        return out


async def replay(
    cluster: Cluster,
    topics: Topics,
    chosen: Sequence[Letter],
    *,
    wait_s: float,
    by: str | None = None,
) -> list[ReplayOutcome]:
    """Send each chosen letter's original back, record it (as done ``by`` someone, else
    the OS user), and watch for ``wait_s`` seconds whether the copy is read (every
    consumer group on its partition passed it) and whether it was parked again."""
    dlqs = [dlq_topic(topics, stage) for stage in STAGES]
    starts = await _end_offsets(cluster, dlqs)
    sent = await kafka_view.replay(cluster, [letter.item for letter in chosen], topics)
    now = datetime.now(UTC)
    by_item = {id(letter.item): letter for letter in chosen}
    outcomes = [ReplayOutcome(by_item[id(copy.item)], copy) for copy in sent]
    await record(
        cluster,
        topics,
        [
            Action(
                kind="replayed",
                letter=o.letter.coordinates,
                stage=o.letter.stage,
                reason=o.letter.reason,
                at=now,
                sent_to=o.copy.coordinates,
                by=by or operator(),
            )
            for o in outcomes
        ],
    )
    if wait_s > 0 and outcomes:
        await _watch(cluster, outcomes, dlqs, starts, wait_s)
    return outcomes


async def _end_offsets(cluster: Cluster, names: Sequence[str]) -> dict[TopicPartition, int]:
    tps = [tp for name in names for tp in await kafka_view.partitions(cluster, name)]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(**client_options(cluster), enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def _watch(
    cluster: Cluster,
    outcomes: list[ReplayOutcome],
    dlqs: Sequence[str],
    starts: dict[TopicPartition, int],
    wait_s: float,
) -> None:
    """Poll until every copy is read by its consumers (then any repeat is already parked:
    a stage commits only after its letter is durable) or ``wait_s`` passed."""
    deadline = time.monotonic() + wait_s
    by_copy = {o.copy.coordinates: o for o in outcomes}
    options = client_options(cluster)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, group_id=None)
    admin = AIOKafkaAdminClient(**options)
    await consumer.start()
    await admin.start()
    try:
        # Letters written since the replay began (topics created meanwhile start at 0).
        tps = [tp for name in dlqs for tp in await kafka_view.partitions(cluster, name)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts.get(tp, 0))
        while True:
            read = await _processed(admin, [o.copy for o in outcomes if o.outcome == "pending"])
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    parked = kafka_view.decode_parked(record)
                    source = _source(parked)
                    if source in by_copy:
                        found = by_copy[source]
                        found.outcome = "failed-again"
                        found.repeat = parked
            for outcome in outcomes:
                if outcome.outcome == "pending" and outcome.copy.coordinates in read:
                    outcome.outcome = "accepted"
            if all(o.outcome != "pending" for o in outcomes) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
        await admin.close()


#: Consumer groups of the cayg services (with any test or deployment prefix).
_SERVICE_GROUP = re.compile(r"(^|\.)cayg-(ingest|normalize|publish)(\.[a-z0-9_-]+)?$")


async def _processed(admin: AIOKafkaAdminClient, copies: Sequence[Replayed]) -> set[str]:
    """The copies every cayg consumer group reading their partition has committed past
    (a copy on a partition no cayg group has committed on is not counted as read)."""
    if not copies:
        return set()
    groups = [
        str(entry[0])
        for entry in await admin.list_consumer_groups()
        if _SERVICE_GROUP.search(str(entry[0]))
    ]
    positions: dict[TopicPartition, list[int]] = defaultdict(list)
    for group in groups:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except kafka_view.NO_COMMITS:
            continue
        for tp, meta in offsets.items():
            positions[tp].append(meta.offset)
    done: set[str] = set()
    for copy in copies:
        seen = positions.get(TopicPartition(copy.topic, copy.partition), [])
        # One group per stage reads the topic, one per publish lane: all must be past it.
        if seen and all(offset > copy.offset for offset in seen):
            done.add(copy.coordinates)
    return done


async def resolve(
    cluster: Cluster, topics: Topics, chosen: Sequence[Letter], *, note: str
) -> list[Action]:
    """Mark ``chosen`` as resolved with ``note``."""
    now = datetime.now(UTC)
    actions = [
        Action(
            kind="resolved",
            letter=letter.coordinates,
            stage=letter.stage,
            reason=letter.reason,
            at=now,
            note=note[:500],
            by=operator(),
        )
        for letter in chosen
    ]
    await record(cluster, topics, actions)
    return actions


def summary(found: Sequence[Letter]) -> dict[str, dict[str, int]]:
    """Letters per stage and state (``cayg status``)."""
    counts: dict[str, dict[str, int]] = {stage: {} for stage in STAGES}
    for letter in found:
        per = counts.setdefault(letter.stage, {})
        per[letter.state.value] = per.get(letter.state.value, 0) + 1
    return counts
