"""A messy, multi-tenant SIS stream through the whole pipeline ends exactly where the SIS
says it should: every registry resource and every learner's CLR, entity by entity.

The stream and its expected end state come from :mod:`cayg_campaign.stream` (seeded): Ethos from
two publishers, CloudEvents in both modes and backfill rows; forward references,
revisions, revocations after delivery, deletes, duplicates, stale versions and bad
messages, in two phases with the pipeline idle in between. Seeds never share ids, so all
of them run through one pipeline.

CI runs three small seeds (about 120 messages each). The long mode takes more and larger
seeds (about 700 messages each), e.g.::

    CAYG_MESSY_SEEDS=20 CAYG_MESSY_SIZE=large \\
        uv run pytest tests/e2e/test_messy_stream.py -q

``CAYG_MESSY_SEEDS=7,42`` runs exactly those seeds (to reproduce a failure). A failure lists
every mismatching entity with what the stream did to it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cayg_campaign.stream import REGISTERED_PARTNER, SIZES, Expected, MessyStream, messy_stream
from cayg_campaign.targets import (
    Targets,
    definition_mismatches,
    parked_mismatches,
    parked_reasons,
    record_mismatches,
)
from cayg_publish.app import DOCUMENT_COUNTS_EVERY_S
from support.pipeline import Pipeline

pytestmark = pytest.mark.e2e


def _seeds(value: str) -> list[int]:
    """``N`` → seeds 1..N; ``7,42`` → exactly those (to reproduce a failing seed)."""
    if "," in value:
        return [int(part) for part in value.split(",") if part.strip()]
    return list(range(1, 1 + int(value)))


SEEDS = _seeds(os.environ.get("CAYG_MESSY_SEEDS", "3"))
SIZE = SIZES[os.environ.get("CAYG_MESSY_SIZE", "small")]
#: Large runs take longer to drain; the timeout only bounds a hung pipeline.
IDLE_TIMEOUT_S = 150.0 * max(1, len(SEEDS) // 3) * (4 if SIZE is SIZES["large"] else 1)


@pytest.fixture
def pipeline(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    # The stream names one partner by a CTID another account registered.
    monkeypatch.setenv("CAYG_STANDINS_REGISTERED_CTIDS", REGISTERED_PARTNER)
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


async def _start(pipeline: Pipeline) -> None:
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)


async def _wait_idle(pipeline: Pipeline) -> None:
    # Idle for longer than publish takes to refresh its documents gauge from the ledger:
    # a change committed just before a stale refresh would otherwise look delivered.
    await pipeline.wait_idle(timeout_s=IDLE_TIMEOUT_S, settle_s=DOCUMENT_COUNTS_EVERY_S + 1)


async def _end_state_problems(pipeline: Pipeline, expected: Expected) -> list[str]:
    targets = Targets(pipeline.ports, pipeline.tenants)
    parked = await parked_reasons(pipeline.bootstrap, pipeline.topics)
    return [
        *definition_mismatches(expected, targets),
        *record_mismatches(expected, targets),
        *parked_mismatches(expected, parked),
    ]


def _report(streams: list[MessyStream], problems: list[str]) -> str:
    seeds = ", ".join(str(s.seed) for s in streams)
    sent = sum(len(s.phase1) + len(s.phase2) for s in streams)
    return f"{len(problems)} mismatch(es) after seeds {seeds} ({sent} messages):\n" + "\n".join(
        problems
    )


@pytest.mark.timeout(300 + 2 * int(IDLE_TIMEOUT_S))
async def test_messy_streams_end_in_the_expected_state(pipeline: Pipeline) -> None:
    streams = [messy_stream(seed, SIZE) for seed in SEEDS]
    expected = Expected()
    for stream in streams:
        expected.merge(stream.expected)
    await _start(pipeline)

    await pipeline.feed(m for s in streams for m in s.phase1)
    await _wait_idle(pipeline)
    await pipeline.feed(m for s in streams for m in s.phase2)
    await _wait_idle(pipeline)

    problems = await _end_state_problems(pipeline, expected)
    assert not problems, _report(streams, problems)


# Two SIGKILLed publish instances each wait out their consumer-group session and leases:
# this test needs more than the suite's default hang guard on a loaded 2-core machine.
@pytest.mark.timeout(600)
async def test_messy_stream_ends_the_same_when_publish_is_killed(pipeline: Pipeline) -> None:
    stream = messy_stream(101, SIZE)
    publish = pipeline.services["publish"]
    await _start(pipeline)

    await pipeline.feed(stream.phase1)
    await _wait_idle(pipeline)
    # A crash between the phases, and another one while phase 2 is being worked through.
    publish.kill()
    await asyncio.to_thread(publish.start)
    half = len(stream.phase2) // 2
    await pipeline.feed(stream.phase2[:half])
    # Killed once it has recorded some of phase 2 (its counters start at zero again).
    for _ in range(600):  # bounded: at most about 60 s
        if pipeline.metric("cayg_publish_changes_total") > 0:
            break
        await asyncio.sleep(0.1)
    assert pipeline.metric("cayg_publish_changes_total") > 0, "publish recorded nothing"
    publish.kill()
    await pipeline.feed(stream.phase2[half:])
    await asyncio.to_thread(publish.start)
    await _wait_idle(pipeline)

    assert publish.starts == 3
    problems = await _end_state_problems(pipeline, stream.expected)
    assert not problems, _report([stream], problems)


class _HeldTargets(Targets):
    """Targets answering from fixed contents (no stand-ins): to check the comparison."""

    def __init__(
        self,
        records: dict[str, dict[str, dict[str, Any]]],
        resources: dict[str, dict[str, Any]],
    ) -> None:
        self.records = records
        self.resources = resources

    def clr_records(self, tenant: str) -> dict[str, dict[str, Any]]:
        return self.records.get(tenant, {})

    def registry_resource(self, ctid: str) -> dict[str, Any] | None:
        return self.resources.get(ctid)

    def published_ctids(self, tenant: str) -> set[str]:
        return set(self.resources)

    def registry_partners(self, ctid: str) -> list[str]:
        return list(self.resources[ctid].get("partners", []))


def _as_held(expected: Expected) -> _HeldTargets:
    """Targets holding exactly what ``expected`` says they must."""
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for want in expected.records.values():
        if want.state == "none":
            continue
        credentials = [
            {"id": award, "awardedDate": f"{day}T00:00:00Z"} for award, day in want.awards.items()
        ]
        record: dict[str, Any] = {"id": want.clr_id, "credentialSubject": {}}
        record["credentialSubject"]["verifiableCredential"] = credentials
        if want.state == "withdrawn":
            record["validUntil"] = "2025-09-01T00:00:00Z"
        records.setdefault(want.tenant, {})[want.clr_id] = record
    resources = {
        ctid: {
            "ceterms:name": {"en-US": d.name},
            "ceterms:credentialStatusType": {"ceterms:targetNode": f"credentialStat:{d.status}"},
            "partners": list(d.partners),
        }
        for ctid, d in expected.definitions.items()
    }
    return _HeldTargets(records, resources)


def test_the_comparison_finds_each_kind_of_difference() -> None:
    expected = messy_stream(5).expected
    held = _as_held(expected)
    assert definition_mismatches(expected, held) == []
    assert record_mismatches(expected, held) == []

    live = next(r for r in expected.records.values() if r.state == "live")
    withdrawn = next(r for r in expected.records.values() if r.state == "withdrawn")
    absent = next(r for r in expected.records.values() if r.state == "none")
    deprecated = next(d for d in expected.definitions.values() if d.status == "Deprecated")
    # A revoked award still shown, a withdrawn record still valid, a record that must not
    # exist, a definition left active, and one missing altogether.
    held.records[live.tenant][live.clr_id]["credentialSubject"]["verifiableCredential"].append(
        {"id": "urn:uuid:revoked", "awardedDate": "2025-05-01T00:00:00Z"}
    )
    del held.records[withdrawn.tenant][withdrawn.clr_id]["validUntil"]
    held.records.setdefault(absent.tenant, {})[absent.clr_id] = {"id": absent.clr_id}
    held.resources[deprecated.ctid]["ceterms:credentialStatusType"] = {
        "ceterms:targetNode": "credentialStat:Active"
    }
    gone = next(c for c, d in expected.definitions.items() if d.status == "Active")
    del held.resources[gone]
    # A partner sent as a CTID that exists nowhere instead of described inline.
    partnered = next(
        c for c, d in expected.definitions.items() if d.partners and d.partners[0][:5] == "name:"
    )
    held.resources[partnered]["partners"] = ["ctid:ce-00000000-0000-4000-8000-000000000000"]

    records = record_mismatches(expected, held)
    definitions = definition_mismatches(expected, held)
    assert len(records) == 3, records
    assert any(live.clr_id in p and "urn:uuid:revoked" in p for p in records)
    assert any(withdrawn.clr_id in p and "not withdrawn" in p for p in records)
    assert any(absent.clr_id in p and "expected none" in p for p in records)
    assert len(definitions) == 3, definitions
    assert any(partnered in p and "recognizedBy" in p for p in definitions)
    assert any(deprecated.ctid in p and "expected Deprecated" in p for p in definitions)
    assert any(gone in p and "missing" in p for p in definitions)
