"""The benchmark harness works: its smallest mode runs every section against a real broker
and writes every figure. Nothing here is timed: the figures only have to exist and be
positive (a harness that silently measured nothing would read as a result)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cayg_bench.cli import SECTIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.fixture(scope="module")
def results(
    kafka_bootstrap: str, repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], str]:
    """One tiny run of ``bash bench/run.sh`` against the session's broker."""
    work = tmp_path_factory.mktemp("bench")
    out, doc = work / "results.json", work / "BENCHMARKS.md"
    run = subprocess.run(
        [
            "bash",
            str(repo_root / "bench" / "run.sh"),
            "--tiny",
            "--bootstrap",
            kafka_bootstrap,
            "--out",
            str(out),
            "--doc",
            str(doc),
            "--work",
            str(work / "state"),
        ],
        cwd=repo_root,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(out.read_text()), doc.read_text()


def test_every_section_is_present_without_errors(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    assert data["failed_sections"] == []
    for section in SECTIONS:
        assert section in data, section
        assert "error" not in data[section], data[section]


def test_raw_limit_and_services_have_positive_throughput(
    results: tuple[dict[str, Any], str],
) -> None:
    data, _ = results
    for variant in ("batched", "per_record"):
        assert data["raw"][variant]["records"] == data["records"]["count"]
        assert _positive(data["raw"][variant]["records_per_s"])
    for section in ("alone", "scale_out"):
        for name in ("ingest", "normalize"):
            figure = data[section][name]
            assert figure["drained"], (section, name, figure)
            assert _positive(figure["records_per_s"]), (section, name, figure)
            assert all(_positive(v) for v in figure["peak_rss_mib"].values())
            # Read in clock ticks (10 ms): a tiny run's few records may not fill one.
            cpu = figure["cpu_us_per_record"]
            assert isinstance(cpu, int | float), (section, name, figure)
            assert cpu >= 0, (section, name, figure)
    assert _positive(data["raw"]["batched"]["cpu_us_per_record"])
    # The session's broker runs here: the harness finds its process by its port and reads
    # its CPU time (in clock ticks of 10 ms: a tiny run's share may round to 0).
    for figure in (data["raw"]["batched"], data["alone"]["normalize"]):
        broker = figure["broker_cpu_us_per_record"]
        assert isinstance(broker, int | float), figure
        assert broker >= 0, figure
    assert data["scale_out"]["ingest"]["instances"] == 2
    # --tiny runs one more pair of raw limit and services alone; the targets read the median.
    [extra] = data["rounds"]["rounds"]
    assert extra["round"] == 2
    assert _positive(extra["raw_batched"]["records_per_s"])
    assert all(extra[name]["drained"] for name in ("ingest", "normalize")), extra
    assert "(median of 2 pairs;" in results[1]
    assert _positive(data["publish"]["awards_per_s"])
    assert data["publish"]["idle"]["idle"]


def test_end_to_end_has_latencies_at_every_rate(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    runs = data["e2e"]["runs"]
    assert [run["offered_per_s"] for run in runs] == [50, 200, 1000]
    for run in runs:
        assert run["to_normalized"]["missing"] == 0, run
        assert _positive(run["to_normalized"]["p99_ms"]), run
    # At least one learner record reached the CLR stand-in and was matched to its award.
    assert any(_positive(run["to_clr_write"].get("p50_ms")) for run in runs), runs
    # Every award's own arrival in its learner's record is timed too (later awards of a
    # learner included), and the projection issue's target reads it.
    assert any(_positive(run["award_to_clr"].get("p50_ms")) for run in runs), runs
    assert all(run["award_to_clr"]["count"] >= run["to_clr_write"]["count"] for run in runs)
    assert "a learner's award reaches their CLR with p99" in results[1]


def test_backfill_and_profile(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    for run in data["backfill"]["runs"]:
        assert run["cli"]["exit_code"] == 0
        assert _positive(run["cli"]["wall_s"])
        assert run["pipeline"]["ingest"]["drained"], run
        assert run["pipeline"]["normalize"]["records"] == run["rows"], run
        assert all(_positive(v) for v in run["peak_rss_mib"].values()), run
    profile = data["profile"]
    assert profile["service"] in ("ingest", "normalize")
    assert profile["top_self"], profile
    assert _positive(profile["sampled_s"])
    # The consume loop's parts are reported as shares of the sampled time.
    parts = profile["parts"]
    assert "the batch loop (fetch, decide, send, await, commit)" in parts, parts
    assert all(0 <= share <= 1 for share in parts.values()), parts


def test_projection_reaches_the_expected_end_state(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    p = data["projection"]
    assert p["learners"] == 20
    assert p["awards"] == 100
    assert p["persons_after_awards"] > 0
    # Every learner's CLR record holds exactly its five awards, and the comparison that
    # says so flags planted differences.
    assert p["end_state"]["equal"], p["end_state"]
    assert p["end_state"]["comparison_catches_errors"]
    assert p["clr_records"] == p["learners"]
    assert p["awards_in_clr_records"] == p["awards"]
    assert all(x.get("drained", x.get("idle")) for x in p["drained"].values()), p["drained"]
    assert _positive(p["awards_per_s"])
    assert p["clr_write_requests"]["total"] >= p["clr_records"]
    assert all(_positive(v) for v in p["peak_rss_mib"].values()), p["peak_rss_mib"]
    assert set(p["cpu_ms_per_award"]) == set(p["peak_rss_mib"])


def test_the_document_shows_the_machine_and_its_sections(
    results: tuple[dict[str, Any], str],
) -> None:
    data, doc = results
    assert f"| CPUs (nproc) | {data['machine']['nproc']} |" in doc
    for heading in (
        "## Raw limit",
        "## Where the time goes",
        "## End to end",
        "## Backfill",
        "## Projection backfill",
        "## Profile",
    ):
        assert heading in doc


def test_the_document_shows_a_command_that_runs_anywhere(
    results: tuple[dict[str, Any], str],
) -> None:
    data, doc = results
    # The run was placed with --bootstrap, --out, --doc and --work; the command the
    # document shows to reproduce it keeps what shapes the results and drops the rest.
    assert "--bootstrap" in data["command"]
    shown = doc.split("```bash\n", 1)[1].split("\n", 1)[0]
    assert shown == "bash bench/run.sh --tiny"
