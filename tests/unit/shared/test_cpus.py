"""How many CPUs a service counts on: its affinity, capped by its container's CPU limit, and
the decision workers ingest and normalize start by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cayg_ingest.settings import IngestSettings
from cayg_normalize.settings import NormalizeSettings
from cayg_shared import settings
from cayg_shared.settings import available_cpus, cgroup_cpu_limit, default_decide_workers

pytestmark = pytest.mark.unit


def _limit(
    tmp_path: Path, v2: str | None = None, v1: tuple[str, str] | None = None
) -> float | None:
    cpu_max, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    if v2 is not None:
        cpu_max.write_text(v2)
    if v1 is not None:
        quota.write_text(v1[0])
        period.write_text(v1[1])
    return cgroup_cpu_limit(cpu_max, quota, period)


def test_a_cgroup_limit_is_read_from_v2_then_v1(tmp_path: Path) -> None:
    for name in "abcdef":
        (tmp_path / name).mkdir()
    assert _limit(tmp_path / "a") is None
    assert _limit(tmp_path / "b", "150000 100000\n") == 1.5
    assert _limit(tmp_path / "c", "max 100000\n", ("200000", "100000")) is None
    assert _limit(tmp_path / "d", None, ("200000", "100000")) == 2.0
    assert _limit(tmp_path / "e", None, ("-1", "100000")) is None
    assert _limit(tmp_path / "f", "garbage", None) is None


@pytest.mark.parametrize(
    ("cpus", "limit", "available", "workers"),
    [
        (1, None, 1, 0),
        (2, None, 2, 2),
        (16, None, 16, 16),
        (16, 1.0, 1, 0),
        (16, 1.5, 2, 2),
        (4, 0.25, 1, 0),
    ],
)
def test_decision_workers_follow_the_cpus_a_container_may_use(
    monkeypatch: pytest.MonkeyPatch, cpus: int, limit: float | None, available: int, workers: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cpus)))
    monkeypatch.setattr(settings, "cgroup_cpu_limit", lambda: limit)

    assert available_cpus() == available
    assert default_decide_workers() == workers
    assert IngestSettings().decide_workers == workers
    assert NormalizeSettings().decide_workers == workers


def test_decision_workers_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAYG_NORMALIZE_DECIDE_WORKERS", "0")
    monkeypatch.setenv("CAYG_INGEST_DECIDE_WORKERS", "3")

    assert NormalizeSettings().decide_workers == 0
    assert IngestSettings().decide_workers == 3
