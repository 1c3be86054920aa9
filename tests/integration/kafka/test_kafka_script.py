"""deploy/kafka/kafka.sh: start waits until ready, starting twice is harmless, stop leaves
nothing running, and the broker's log is kept in a file."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from support.kafka import KAFKA_SH, free_port

pytestmark = pytest.mark.integration


def _kafka(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), *args], capture_output=True, text=True, timeout=300, check=False
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_twice_then_stop_leaves_nothing(tmp_path: Path) -> None:
    port = free_port(pairs=2)
    run_dir = tmp_path / "broker"
    first = _kafka("start", "--port", str(port), "--dir", str(run_dir))
    assert first.returncode == 0, first.stderr
    try:
        pid = int((run_dir / "broker.pid").read_text())
        again = _kafka("start", "--port", str(port), "--dir", str(run_dir))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == first.stdout.strip() == f"127.0.0.1:{port}"
        assert int((run_dir / "broker.pid").read_text()) == pid, "a second start reuses it"
        assert _kafka("status", "--dir", str(run_dir)).returncode == 0
        assert "Kafka Server started" in (run_dir / "broker.log").read_text()
    finally:
        stopped = _kafka("stop", "--dir", str(run_dir))
    assert stopped.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _listening(port)
    assert _kafka("status", "--dir", str(run_dir)).returncode != 0
    assert _kafka("stop", "--dir", str(run_dir)).returncode == 0, "stopping twice is harmless"


def test_a_taken_port_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _kafka("start", "--port", str(port), "--dir", str(tmp_path / "b"))
    assert result.returncode != 0
    assert "already taken" in result.stderr
