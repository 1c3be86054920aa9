"""Where a running process spends its CPU: py-spy samples, summarised.

The projection section samples the CLR publish lane (with its signing workers) and the
CLR stand-in while documents are being delivered. py-spy runs with ``--gil``: a sample is
kept only when a thread holds the GIL, so waiting (the event loop's ``select``, idle pool
threads, a worker waiting for a task) is left out and what remains is Python running. Each
sample's innermost frame names what the time went to (:func:`owner`); the summary gives the
shares per process kind (the lane itself, its signing workers, the stand-in), the top
innermost frames and the project's own functions with their inclusive share.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: Innermost-frame paths → what the time is spent on (first match wins).
_OWNERS: Final = (
    ("pyld/", "JSON-LD expansion and RDF canonicalization (pyld)"),
    ("cayg_signing/", "signing and verification (cayg_signing)"),
    ("nacl/", "Ed25519"),
    ("cryptography/", "Ed25519"),
    ("base58/", "multibase encoding"),
    ("jsonschema", "JSON Schema checks"),
    ("json/", "JSON encoding and decoding"),
    ("httpx/", "HTTP client"),
    ("httpcore/", "HTTP client"),
    ("h11/", "HTTP (h11)"),
    ("starlette/", "HTTP server"),
    ("uvicorn/", "HTTP server"),
    ("sqlite", "ledger (SQLite)"),
    ("adapters/ledger/", "ledger (SQLite)"),
    ("cayg_standins/", "stand-in's own code"),
    ("cayg_publish/", "publish's own code"),
    ("cayg_shared/", "shared schema and service code"),
    ("pydantic", "pydantic"),
    ("aiokafka/", "Kafka client"),
    ("faststream/", "Kafka client"),
    ("multiprocessing/", "process pool hand-off"),
    ("concurrent/", "thread and process pool hand-off"),
    ("pickle", "process pool hand-off"),
    ("threading.py", "thread hand-off"),
    ("queue.py", "thread hand-off"),
    ("asyncio/", "event loop"),
    ("selectors.py", "event loop"),
    ("structlog/", "logging"),
    ("logging/", "logging"),
    ("prometheus_client/", "metrics"),
    ("opentelemetry/", "tracing"),
)
_FRAME: Final = re.compile(r"^(?P<name>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def owner(frame: str) -> str:
    """What the time of an innermost frame (``function (path:line)``) is spent on."""
    found = _FRAME.match(frame)
    path = found.group("path") if found else frame
    for needle, label in _OWNERS:
        if needle in path:
            return label
    return "other Python"


def _function(frame: str) -> str:
    """``function (file.py)``: the frame without its line and directories."""
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found.group("path")
    short = "/".join(path.split("/")[-2:])
    return f"{found.group('name')} ({short})"


def _kind(frames: list[str], main_pid: int) -> str:
    """A child process's stacks start with the parent's ``process`` frame, then its own."""
    if any(f.startswith("process ") and "spawn_main" in f for f in frames[:3]):
        return "signing workers"
    if not frames[0].startswith("process ") or frames[0].startswith(f"process {main_pid}:"):
        return "process"
    return "other"


@dataclass
class Spy:
    """One py-spy recording of a process (and its children) for ``seconds``."""

    pid: int
    seconds: float
    out: Path
    proc: subprocess.Popen[bytes] | None = None
    error: str | None = None

    def start(self) -> None:
        """Start sampling (never fails the measurement: a missing py-spy is reported)."""
        spy = shutil.which("py-spy")
        if spy is None:
            self.error = "py-spy not found (it is in the dev dependency group)"
            return
        self.proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.pid),
                "--duration",
                str(max(1, int(self.seconds))),
                "--rate",
                "50",
                "--gil",
                "--subprocesses",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for the recording and summarise it."""
        if self.proc is None:
            return {"error": self.error or "not started"}
        try:
            _, stderr = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        if not self.out.exists():
            return {"error": f"py-spy wrote nothing: {stderr.decode(errors='replace')[-500:]}"}
        return summarise(self.out, self.pid)


def summarise(raw: Path, main_pid: int, top: int = 12) -> dict[str, Any]:
    """Shares per process kind and per owner, top innermost frames, the project's
    functions by inclusive share (of all samples of the recording)."""
    kinds: Counter[str] = Counter()
    owners: dict[str, Counter[str]] = {}
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        kind = _kind(frames, main_pid)
        leaf = frames[-1]
        total += n
        kinds[kind] += n
        owners.setdefault(kind, Counter())[owner(leaf)] += n
        leaves[_function(leaf)] += n
        for name in {_function(f) for f in frames if "(cayg_" in f or "/cayg_" in f}:
            ours[name] += n

    def share(n: int) -> float:
        return round(100 * n / max(1, total), 1)

    return {
        "samples": total,
        "note": "samples taken while a thread held the GIL (py-spy --gil, 50/s): Python "
        "running, waits left out; shares are of all samples of the recording",
        "by_process": {k: share(n) for k, n in kinds.most_common()},
        "by_owner": {
            kind: {label: share(n) for label, n in counter.most_common(8)}
            for kind, counter in owners.items()
        },
        "top_frames": [[name, share(n)] for name, n in leaves.most_common(top)],
        # Entry points and middleware hold (nearly) every sample and say nothing.
        "project_inclusive": [
            [name, share(n)] for name, n in ours.most_common() if n < 0.9 * total
        ][:top],
    }
