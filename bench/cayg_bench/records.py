"""The SIS records every stage is measured on: the demo's feed generator at volume.

``cayg_ops.feed.sample_feed`` makes Ethos change notifications (Northfield on Colleague,
Lakeshore on Banner) and cayg CloudEvents (Harbor Tech, structured and binary mode) for as
many learners as asked: persons, definitions, awards, a rescission and a revocation, about
690 bytes on average. The harness drops the feed's deliberately broken messages (those are a
DLQ demonstration, not throughput), interleaves the three institutions so any prefix of the
stream has all three, and tags each record with a correlation id header (``b<n>``) that
ingest and normalize carry to their outputs, so end-to-end latency can be matched per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Final

from cayg_ops.feed import FeedMessage, sample_feed
from cayg_shared.headers import CORRELATION_ID
from cayg_shared.topics import Topics

#: The feed yields about this many good records per learner per institution.
_RECORDS_PER_LEARNER: Final = 6
TENANTS: Final = ("northfield-cc", "lakeshore-univ", "harbor-tech")


@dataclass(frozen=True)
class SisRecord:
    """One record for an SIS topic, with the correlation id that identifies it downstream."""

    tenant: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    correlation_id: str
    label: str

    def to(self, topics: Topics) -> tuple[str, bytes | None, bytes, dict[str, str]]:
        """(topic, key, value, headers) for this deployment's topics."""
        return topics.sis(self.tenant), self.key, self.value, self.headers


def sis_records(count: int, *, seed: int = 2025) -> list[SisRecord]:
    """``count`` realistic SIS records (deterministic for a seed)."""
    learners = max(4, count // (_RECORDS_PER_LEARNER * len(TENANTS)) + 2)
    while True:
        feed = [m for m in sample_feed(seed=seed, learners_per_tenant=learners) if _good(m)]
        if len(feed) >= count:
            break
        learners = learners * 2
    out: list[SisRecord] = []
    for n, message in enumerate(_interleave(feed)):
        if n == count:
            break
        tag = f"b{n}"
        headers = {**message.headers, CORRELATION_ID: tag}
        out.append(
            SisRecord(message.tenant, message.key, message.value, headers, tag, message.label)
        )
    return out


def _good(message: FeedMessage) -> bool:
    return not message.label.startswith("bad:")


def _interleave(feed: Sequence[FeedMessage]) -> Iterator[FeedMessage]:
    """Round-robin over the institutions, each keeping its own order (per-key order holds)."""
    per_tenant: dict[str, list[FeedMessage]] = {}
    for message in feed:
        per_tenant.setdefault(message.tenant, []).append(message)
    for row in zip_longest(*per_tenant.values()):
        yield from (m for m in row if m is not None)


def mean_size(records: Sequence[SisRecord]) -> float:
    """Mean value size in bytes."""
    return sum(len(r.value) for r in records) / max(1, len(records))


def backfill_rows(count: int) -> Iterator[str]:
    """A backfill file (JSONL, ``cayg backfill``'s format) of one definition and ``count - 1``
    retro-awards of Northfield, one learner each."""
    yield json.dumps(
        {
            "type": "definition.upserted",
            "recordId": "defs:BENCH-MS",
            "recordedAt": "2024-11-04T15:20:00Z",
            "data": {
                "sourceId": "BENCH-MS",
                "code": "BENCH-MS",
                "credentialType": "ceterms:CertificateOfCompletion",
                "name": "Benchmark Milestone",
                "description": "A historic milestone retro-awarded by the benchmark backfill.",
                "sourceVersion": 1,
            },
        }
    )
    for n in range(1, count):
        yield json.dumps(
            {
                "type": "award.issued",
                "recordId": f"awards:{n}",
                "recordedAt": "2025-01-15T09:30:00Z",
                "data": {
                    "awardId": f"RA-BENCH-{n:07d}",
                    "learner": {
                        "institutionId": f"{1_000_000 + n:07d}",
                        "email": f"learner{n}@alumni.northfield.example",
                    },
                    "definition": {"sourceId": "BENCH-MS"},
                    "awardedOn": "2016-05-13",
                    "approach": "retro-award",
                    "creditsEarned": {"value": 30, "unit": "SemesterHour"},
                    "sourceVersion": 1,
                },
            }
        )
