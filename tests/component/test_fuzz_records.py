"""Bad input at scale, the fast tier (issue 10): generated and mutated SIS records of every
format go through ingest's and normalize's real per-record decisions; each one ends as
output or a dead letter with a reason, none on the last-resort path, and every output
parses back. The full run (100,000 cases) is part of ``cayg-campaign``; here
``CAYG_FUZZ_CASES`` (default 400) sets the count.
"""

from __future__ import annotations

import os

import pytest

from cayg_campaign.fuzz import run_fuzz

pytestmark = pytest.mark.component

CASES = int(os.environ.get("CAYG_FUZZ_CASES", "400"))


def test_every_generated_record_ends_as_output_or_a_dead_letter() -> None:
    report = run_fuzz(CASES, seed=int(os.environ.get("CAYG_FUZZ_SEED", "0")), quiet=False)

    assert report.failures == []
    assert report.cases == CASES
    # The generator reaches both ends: admitted records that map to changes, and
    # refusals at both stages for many different reasons.
    assert report.changes > 0
    assert {key.split(":")[0] for key in report.letters} == {"ingest", "normalize"}
    assert len(report.letters) >= 8, report.letters


def test_a_failing_property_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from cayg_campaign import fuzz

    def broken(self: fuzz.Pipeline, record: object, letters: dict[str, int]) -> tuple[int, int]:
        raise AssertionError("ingest: an exception outside the rejection path: boom")

    monkeypatch.setattr(fuzz.Pipeline, "check", broken)
    report = run_fuzz(5, quiet=False)
    assert report.failures == ["ingest: an exception outside the rejection path: boom"]
