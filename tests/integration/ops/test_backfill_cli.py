"""``cayg backfill`` as an operator runs it (a real process) against a real broker, with the
ingest and normalize processes behind it: every row arrives on ``cayg.normalized.v1``
exactly once, retro-awards where the data says so, and a re-run mints no new ids.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cayg_ops.backfill import Plan, detect_format, plan_backfill
from cayg_shared.schema import Approach, Change, CredentialAward
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.processes import ServiceProcess, service_env
from support.topics import create_topics, end_offsets, read_to_end, wait_until_consumed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TENANTS = REPO / "deploy" / "config" / "tenants.json"
EXAMPLE = REPO / "deploy" / "ops" / "examples" / "northfield-onboarding.csv"
TENANT = "northfield-cc"


def _historic_awards(count: int) -> bytes:
    """A JSONL export: a milestone definition and ``count`` awards of it, every third one
    a retro-award of learning done years before."""
    rows: list[dict[str, object]] = [
        {
            "type": "definition.upserted",
            "recordId": "defs:CAP-MS",
            "recordedAt": "2024-10-01T08:00:00-05:00",
            "data": {
                "sourceId": "CAP-MS",
                "code": "MC-CAP",
                "credentialType": "MicroCredential",
                "name": "Microcredential: Capstone Milestone",
                "approaches": ["retro-award", "stack"],
            },
        }
    ]
    for n in range(count):
        retro = n % 3 == 0
        rows.append(
            {
                "type": "award.issued",
                "recordId": f"awards:{n}",
                "recordedAt": "2025-01-20T10:00:00Z",
                "data": {
                    "awardId": f"HIST-{n:05d}",
                    "learner": {"institutionId": f"{500_000 + n:07d}"},
                    "definition": {"sourceId": "CAP-MS"},
                    "awardedOn": "2015-06-01" if retro else "2024-12-10",
                    **({"approach": "retro-award"} if retro else {}),
                },
            }
        )
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _cayg(bootstrap: str, prefix: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cayg_ops",
            "--bootstrap",
            bootstrap,
            "--topic-prefix",
            prefix,
            "backfill",
            *map(str, args),
            "--tenant",
            TENANT,
            "--tenants",
            str(TENANTS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


async def _settle(bootstrap: str, prefix: str, topics: Topics) -> list[Change]:
    await wait_until_consumed(bootstrap, f"{prefix}cayg-ingest", [topics.sis(TENANT)])
    await wait_until_consumed(bootstrap, f"{prefix}cayg-normalize", [topics.ingested])
    parked = await read_to_end(bootstrap, [topics.ingest_dlq, topics.normalize_dlq])
    assert parked == [], [json.loads(r.value or b"{}").get("reason") for r in parked]
    records = await read_to_end(bootstrap, [topics.normalized])
    return [Change.from_kafka_value(r.value or b"") for r in records]


def _plan(path: Path) -> Plan:
    profile = TenantRegistry.load(TENANTS).get(TENANT)
    assert profile is not None
    return plan_backfill(path.read_bytes(), fmt=detect_format(path), profile=profile)


async def test_backfilled_rows_arrive_once_and_a_rerun_mints_no_new_ids(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    pipeline = [topics.ingested, topics.normalized, topics.ingest_dlq, topics.normalize_dlq]
    await create_topics(kafka_bootstrap, [topics.sis(TENANT), *pipeline])
    history = tmp_path / "capstone-history.jsonl"
    history.write_bytes(_historic_awards(600))

    dry = await asyncio.to_thread(_cayg, kafka_bootstrap, topic_prefix, history, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing sent" in dry.stdout
    assert set((await end_offsets(kafka_bootstrap, [topics.sis(TENANT)])).values()) == {0}

    services = [
        ServiceProcess(
            name, env=service_env(name, kafka_bootstrap, topic_prefix, TENANTS), log_dir=tmp_path
        )
        for name in ("ingest", "normalize")
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in services))

        runs = [
            await asyncio.to_thread(_cayg, kafka_bootstrap, topic_prefix, path)
            for path in (history, EXAMPLE)
        ]
        for run, rows in zip(runs, (601, 10), strict=True):
            assert run.returncode == 0, run.stderr
            assert f"sent {rows} records to {topics.sis(TENANT)}" in run.stdout
            assert "backfill [" in run.stderr, "progress goes to stderr"
            assert f"{rows}/{rows}" in run.stderr
            assert "rows/s" in run.stderr
        changes = await _settle(kafka_bootstrap, topic_prefix, topics)

        plans = [_plan(history), _plan(EXAMPLE)]
        expected = {r.event_id: r for plan in plans for r in plan.records}
        assert len(expected) == 611
        causes = Counter(change.causation_id for change in changes)
        assert set(causes) == set(expected), "every row, and nothing else"
        assert set(causes.values()) == {1}, "each row exactly once"
        assert len({change.event_id for change in changes}) == len(changes)
        retro = 0
        for change in changes:
            assert change.tenant == TENANT
            assert change.correlation_id.startswith("backfill:bf-")
            record = expected[change.causation_id]
            if isinstance(change.entity, CredentialAward):
                says = record.approach == "retro-award"
                assert (change.entity.approach is Approach.RETRO_AWARD) == says
                retro += says
        assert retro == 200 + 3

        # The operator runs the example again (a retry, a mistake): the same event ids.
        again = await asyncio.to_thread(_cayg, kafka_bootstrap, topic_prefix, EXAMPLE)
        assert again.returncode == 0, again.stderr
        after = await _settle(kafka_bootstrap, topic_prefix, topics)
    finally:
        for service in services:
            service.kill()

    assert len(after) == len(changes) + 10
    assert {c.event_id for c in after} == {c.event_id for c in changes}, "no new ids"
    assert {c.causation_id for c in after} == set(expected)
