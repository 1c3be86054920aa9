"""Run cayg services as real OS processes, the way an operator runs them.

Integration and e2e tests start ingest, normalize and publish as subprocesses with their
settings in the environment, wait for ``/readyz``, and stop them with SIGTERM (graceful)
or SIGKILL (a crash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from support.kafka import REPO_ROOT, free_port


class ServiceProcess:
    """One service process with its own HTTP port and a log file."""

    def __init__(
        self,
        service: str,
        *,
        env: Mapping[str, str],
        log_dir: Path,
        name: str | None = None,
    ) -> None:
        self.service = service
        self.name = name or service
        self.port = free_port()
        prefix = f"CAYG_{service.upper()}_"
        self.env = {
            **os.environ,
            **env,
            f"{prefix}HTTP_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_dir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_timeout_s: float = 60.0) -> None:
        """Start the process and wait until it reports ready."""
        self.starts += 1
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"cayg_{self.service}"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.service} exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"{self.service} not ready in {ready_timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM and wait: the graceful path that finishes in-flight work.

        Returns 0 after a clean shutdown. (uvicorn re-raises the captured SIGTERM once it has
        shut down, so the raw exit status is -15 then; the "stopped cleanly" log line is
        what tells a clean stop from a kill.)
        """
        if self._process is None or self._process.poll() is not None:
            return self._process.returncode if self._process else 0
        self._process.send_signal(signal.SIGTERM)
        try:
            status = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise RuntimeError(f"{self.service} ignored SIGTERM:\n{self.log_tail()}") from None
        clean = any("service stopped cleanly" in line for line in self.log_lines()[-20:])
        if status in (0, -signal.SIGTERM) and clean:
            return 0
        return status or 1

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to commit or flush."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self) -> list[str]:
        return (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )


def service_env(
    service: str,
    bootstrap: str,
    prefix: str,
    tenants_file: Path,
    **settings: str,
) -> dict[str, str]:
    """The environment of one service of a test: its own topics (``prefix``) and consumer
    group, the tenant registry, quick metadata refresh and redelivery; ``settings`` add
    more (``MAX_MESSAGE_BYTES="65536"`` → ``CAYG_<SERVICE>_MAX_MESSAGE_BYTES``)."""
    p = f"CAYG_{service.upper()}_"
    return {
        f"{p}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        f"{p}KAFKA__METADATA_MAX_AGE_MS": "1000",
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}GROUP_ID": f"{prefix}cayg-{service}",
        f"{p}TENANTS_FILE": str(tenants_file),
        f"{p}REDELIVERY_BACKOFF_S": "0.2",
        **{f"{p}{name}": value for name, value in settings.items()},
    }
