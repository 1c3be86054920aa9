"""A short campaign on every change (issue 10): the whole stack on loopback with a broker
of its own, two seeded streams in every input format, at least 20 SIGKILLs across every
service, graceful restarts, a broker restart, target outages, 5xx bursts, 429 storms,
timeouts after the write and slow targets, payloads claiming another institution or another
tenant's CTID, then the checks against
the streams' model. The long campaign is ``uv run cayg-campaign --seed N --minutes M``
(docs/RELIABILITY.md); ``CAYG_CAMPAIGN_SEED`` picks this one's seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cayg_campaign.runner import Options, run

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CAYG_CAMPAIGN_SEED", "11"))


@pytest.mark.timeout(900)
async def test_a_short_campaign_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    options = Options(
        seed=SEED,
        minutes=1.0,
        short=True,
        fuzz_cases=300,
        workdir=tmp_path,
        command=f"uv run cayg-campaign --seed {SEED} --minutes 1 --short --fuzz-cases 300",
    )
    result = await run(options)

    assert result.problems == {}, result.problems
    # The faults really happened, to every service.
    assert sum(result.chaos.kills.values()) >= 20
    assert set(result.chaos.kills) == {"ingest", "normalize", "publish"}
    assert result.chaos.broker_restarts == 1
    assert len(result.chaos.target_faults) == 10
    # The checks had something to check.
    assert result.writes.applied > 0
    assert result.hostile_sent > 0
    assert result.conservation.hostile_refused == result.hostile_sent
    assert result.ctid_claims_sent > 0
    assert result.ctid_claims_refused == result.ctid_claims_sent
    assert sum(result.conservation.sent.values()) >= result.events + result.hostile_sent
    assert result.leaks.lines_scanned > 0
    assert result.fuzz.cases == 300
