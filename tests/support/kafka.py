"""Where integration tests get a real Kafka broker from.

In order: ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing cluster); testcontainers'
Kafka module when a Docker engine answers; else Apache Kafka from Maven Central jars,
started by ``deploy/kafka/kafka.sh`` on a free port for this test session only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"


def free_port(pairs: int = 1) -> int:
    """A loopback port that is free now, and so is the next one when ``pairs`` is 2."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if pairs == 1 or _is_free(port + 1):
            return port
    raise RuntimeError("no free port pair found")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _docker_answers() -> bool:
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False
    return True


@contextlib.contextmanager
def kafka_broker(workdir: Path) -> Iterator[str]:
    """Yield a bootstrap address for a real broker, stopping it afterwards if we started it."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    port = free_port(pairs=2)
    run_dir = workdir / f"kafka-{port}"
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start", "--port", str(port), "--dir", str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        raise RuntimeError(f"local Kafka did not start:\n{started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(KAFKA_SH), "stop", "--dir", str(run_dir)],
            check=False,
            capture_output=True,
            timeout=120,
        )
