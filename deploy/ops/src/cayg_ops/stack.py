"""A local stack of detached processes with pid files: start, wait ready, stop.

The demo starts Kafka, the two stand-ins and the three services this way, so that the
command returns with everything still running (to look at, or to break on purpose) and a
second command stops it all. Every process logs to a file in the stack directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class StackError(RuntimeError):
    """A component failed to start or stop."""


@dataclass(frozen=True)
class Component:
    """One long-running process of the stack."""

    name: str
    argv: Sequence[str]
    ready_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0


class Stack:
    """Processes that belong to one stack directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs = directory / "logs"
        self.pids = directory / "pids"

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        """The pid of ``name`` if it is alive."""
        path = self._pid_path(name)
        if not path.exists():
            return None
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            path.unlink(missing_ok=True)
            return None
        return pid

    def start(self, component: Component) -> bool:
        """Start ``component`` unless it runs already; wait until ready. True if started."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids.mkdir(parents=True, exist_ok=True)
        if self.running_pid(component.name) is not None:
            return False
        with self.log_path(component.name).open("ab") as log:
            process = subprocess.Popen(
                list(component.argv),
                env={**os.environ, **component.env, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid_path(component.name).write_text(str(process.pid))
        deadline = time.monotonic() + component.ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(
                    f"{component.name} exited during start-up; see {self.log_path(component.name)}"
                )
            if _answers(component.ready_url):
                return True
            time.sleep(0.25)
        self.stop(component.name)
        raise StackError(
            f"{component.name} not ready after {component.ready_timeout_s:.0f} s; "
            f"see {self.log_path(component.name)}"
        )

    def stop(self, name: str, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. True if something was running."""
        pid = self.running_pid(name)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self._pid_path(name).unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect a child that has exited so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False
