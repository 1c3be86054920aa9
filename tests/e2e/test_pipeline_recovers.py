"""The whole pipeline, for real: a Kafka broker, the registry and CLR host stand-ins as
HTTP servers, and ingest, normalize and publish as OS processes.

The registry is broken on purpose (a full outage) while the sample feed flows. cayg-sync
must keep the registry's documents failing — retried on the ledger's schedule — without
holding up the CLR host, and once the registry is back every credential definition must be
applied there, each content once (a definition is applied again only when its content
changes, e.g. when a program arriving later adds its stacking links).
Feeding the same stream again after a publish restart must change nothing anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cayg_ops import kafka_view
from support.pipeline import BAD_MESSAGES, LEARNERS, Pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


async def test_registry_outage_is_ridden_out_and_replays_change_nothing(
    pipeline: Pipeline,
) -> None:
    # Start everything, break the registry for a while, and feed the stream.
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)
    pipeline.admin(
        "POST", f"{pipeline.ports.registry_url}/_admin/faults", json={"seed": 3, "outage_s": 10}
    )
    await pipeline.feed()
    await pipeline.wait_idle()

    # Every definition reached the registry, after the outage; an identical body was never
    # applied twice (the stand-in counts a re-sent identical body as "unchanged"), and a
    # definition is applied at most twice: once alone, once more if a program listing it
    # arrived later and added stacking links.
    requests = pipeline.registry_requests()
    definitions = {ctid: entry for ctid, entry in requests.items() if "credential/publish" in entry}
    assert len(definitions) == 11  # 3 Northfield + 4 Lakeshore + 4 Harbor Tech
    assert all(1 <= e["credential/publish"].get("applied", 0) <= 2 for e in definitions.values())
    stacked = [pipeline.registry_resource(ctid) for ctid in definitions]
    assert any("ceterms:hasPart" in str(r) for r in stacked), "program stacking not applied"
    retried = pipeline.metric("cayg_publish_outcomes_total", outcome="retried")
    failing = pipeline.metric("cayg_publish_outcomes_total", outcome="failing")
    assert retried + failing > 0, "the outage should have made deliveries fail and retry"
    # Every request to a target is timed, failed ones (the outage) apart from answered ones.
    failed = pipeline.metric("cayg_publish_request_duration_seconds_count", result="failed")
    answered = pipeline.metric("cayg_publish_request_duration_seconds_count", result="ok")
    assert failed > 0
    assert answered >= len(definitions)

    # The CLR host was not held up by the broken registry, and nothing was rejected.
    upserts = pipeline.clr_upserts()
    # One record per learner with an award (plus the retro-award learner), withdrawn ones
    # too; the one Lakeshore award rescinded in the feed may be revoked before its first
    # delivery (it waits for its learner), and then no record is ever made for it.
    assert 3 * LEARNERS - 1 <= len(upserts) <= 3 * LEARNERS + 1
    assert all(row["rejected"] == 0 for row in upserts)

    # Only the deliberately broken input is parked; nothing failed in publish.
    assert pipeline.documents_owed("publish") == 0
    ingest_dlq = await kafka_view.read_parked(pipeline.bootstrap, pipeline.topics.ingest_dlq)
    publish_dlq = await kafka_view.read_parked(pipeline.bootstrap, pipeline.topics.publish_dlq)
    assert len(ingest_dlq) == BAD_MESSAGES
    assert publish_dlq == []

    # Restart publish and feed the very same stream again: nothing changes anywhere.
    assert pipeline.services["publish"].stop() == 0
    await asyncio.to_thread(pipeline.services["publish"].start)
    await pipeline.feed()
    await pipeline.wait_idle()

    again = pipeline.registry_requests()
    assert {c: e["credential/publish"] for c, e in again.items() if c in definitions} == {
        c: e["credential/publish"] for c, e in definitions.items()
    }
    totals_before = {(r["issuer_id"], r["credential_id"]): r["total"] for r in upserts}
    totals_after = {
        (r["issuer_id"], r["credential_id"]): r["total"] for r in pipeline.clr_upserts()
    }
    assert totals_after == totals_before, "a replayed stream must not touch the CLR host"


@pytest.fixture
def laned_pipeline(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    # Registry requests take 20 s here: leases must outlast them. One call at a time per
    # registry keeps its lane crawling for minutes, well past the CLR lane.
    running = Pipeline(
        tmp_path,
        kafka_bootstrap,
        topic_prefix,
        lanes=True,
        lease_ttl_s=60,
        registry_concurrency=1,
    )
    try:
        yield running
    finally:
        running.close()


# Registry requests take 20 s each, and the CLR lane is watched for up to 150 s: more than
# the suite's default hang guard on a loaded 2-core machine.
@pytest.mark.timeout(600)
async def test_a_slow_registry_does_not_hold_up_the_clr_lane(laned_pipeline: Pipeline) -> None:
    pipeline = laned_pipeline
    # Every registry request takes 20 s: the registry lane crawls through its 11 definitions.
    pipeline.admin(
        "POST", f"{pipeline.ports.registry_url}/_admin/faults", json={"latency_ms": 20000}
    )
    for service in pipeline.services.values():
        await asyncio.to_thread(service.start)
    await pipeline.feed()

    # Wait until everything is normalized and the CLR lane has delivered every learner's
    # record; the registry lane must still be working through its documents then.
    clr_done = False
    for _ in range(300):  # bounded: at most about 150 s
        upstream = [await pipeline.lag_of(name) for name in ("ingest", "normalize")]
        clr_lag = await pipeline.lag_of("publish-clr")
        clr_owed = pipeline.documents_owed("publish-clr")
        if (
            upstream == [0, 0]
            and clr_lag == 0
            and clr_owed == 0
            # (less the rescinded award's learner, when it was revoked before delivery)
            and len(pipeline.clr_upserts()) >= 3 * LEARNERS - 1
        ):
            clr_done = True
            break
        await asyncio.sleep(0.5)
    assert clr_done, "the CLR lane did not deliver every learner's record"
    # The registry itself shows the slow lane still at work: not every definition is there.
    assert len(_applied_definitions(pipeline)) < 11, "the registry lane should still be working"
    # And publish's gauge says so once it is next refreshed (every DOCUMENT_COUNTS_EVERY_S,
    # 5 s: with batched reads the CLR lane can finish before the registry lane's first
    # refresh after the feed, and the gauge then still reads its start-up count of 0).
    registry_owed = 0
    for _ in range(40):  # bounded: at most about 20 s, four refreshes
        registry_owed = pipeline.documents_owed("publish")
        if registry_owed > 0:
            break
        await asyncio.sleep(0.5)
    assert registry_owed > 0, "publish's gauge should show the registry lane's documents owed"

    # And the slow lane finishes too, every definition applied (twice at most: see above).
    pipeline.admin("DELETE", f"{pipeline.ports.registry_url}/_admin/faults")
    await pipeline.wait_idle()
    applied = _applied_definitions(pipeline)
    assert len(applied) == 11
    assert all(1 <= n <= 2 for n in applied)


def _applied_definitions(pipeline: Pipeline) -> list[int]:
    """How many times the registry stand-in applied each definition it has applied."""
    requests = pipeline.registry_requests()
    publishes = [e["credential/publish"] for e in requests.values() if "credential/publish" in e]
    return [n for n in (p.get("applied") or 0 for p in publishes) if n > 0]
