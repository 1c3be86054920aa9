"""Facts about the machine and the code a run measured, so figures can be compared."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cayg_bench.kafka import REPO_ROOT, kafka_version


def _first(path: str, field: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == field:
                return value.strip()
    except OSError:
        pass
    return "unknown"


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, check=False, capture_output=True, text=True
    )
    return result.stdout.strip()


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def facts() -> dict[str, Any]:
    """nproc, memory, CPU model, kernel, Python/Kafka/client versions, date, git commit."""
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem_kib) / 1_048_576, 1) if mem_kib.isdigit() else None,
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "aiokafka": _package("aiokafka"),
        "faststream": _package("faststream"),
        "git_commit": _git("rev-parse", "--short=12", "HEAD"),
        "git_dirty": dirty,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
