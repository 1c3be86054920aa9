"""Run the stack's parts as real OS processes on loopback, the way an operator runs them:
the services (``python -m cayg_<service>``), a local Kafka broker from the Maven jars
(``deploy/kafka/kafka.sh``) and a throwaway PostgreSQL cluster.

The tests use the same building blocks (``tests/support``), so a campaign and a test start
a service identically.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import httpx

REPO_ROOT = Path(__file__).resolve().parents[4]
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"


class InfrastructureError(RuntimeError):
    """A part of the stack could not be started (one line says which and why)."""


#: Listening ports come from below Linux's ephemeral range (32768-60999): a port taken
#: from that range can be handed to some client's outgoing connection (the broker's, a
#: service's) between choosing it and the service binding it, and the service then fails
#: to start with "address already in use".
_LISTEN_PORTS: Final = range(20_000, 32_000)


def free_port(pairs: int = 1) -> int:
    """A loopback port that is free now, and so is the next one when ``pairs`` is 2."""
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(_LISTEN_PORTS.start, _LISTEN_PORTS.stop - 1)
        if _is_free(port) and (pairs == 1 or _is_free(port + 1)):
            return port
    raise InfrastructureError("no free port pair found")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self.alive() and self._process else None

    def alive(self) -> bool:
        """True while the OS process exists (whatever it is doing)."""
        return self._process is not None and self._process.poll() is None

    def exit_status(self) -> int | None:
        """The exit status once the process has ended (None while it runs)."""
        return self._process.poll() if self._process is not None else None

    def launch(self) -> None:
        """Start the process without waiting for it to become ready."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", f"cayg_{self.service}"],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, *, ready_timeout_s: float = 60.0) -> None:
        """Start the process and wait until it reports ready."""
        self.launch()
        self.wait_ready(timeout_s=ready_timeout_s)

    def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        """Wait until the launched process reports ready (kill it if it does not)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.service} exited at start-up:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"{self.service} not ready in {timeout_s} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """True when ``/readyz`` answers 200."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

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


class LocalBroker:
    """A single-node Kafka broker from the local jars that can be stopped and started again
    on the same port with its data (a broker restart)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port(pairs=2)
        self.run_dir = workdir / f"kafka-{self.port}"
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        started = subprocess.run(
            ["bash", str(KAFKA_SH), "start", "--port", str(self.port), "--dir", str(self.run_dir)],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if started.returncode != 0:
            raise InfrastructureError(f"local Kafka did not start: {started.stderr.strip()}")

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(KAFKA_SH), "stop", "--dir", str(self.run_dir)],
            check=False,
            capture_output=True,
            timeout=120,
        )

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def postgres_bin() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are (the newest installed PostgreSQL)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise InfrastructureError(
        "no PostgreSQL: initdb not found in /usr/lib/postgresql/*/bin or on PATH"
    )


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own on a free loopback port (fsync off), removed
    afterwards; yields its DSN. Run as root, it runs the server as the ``postgres`` user."""
    bindir = postgres_bin()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise InfrastructureError(
                "running as root and there is no 'postgres' user to run PostgreSQL as"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise InfrastructureError("running as root and runuser is missing")
        run_as = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="cayg-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "postgres.log"
    port = free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*run_as, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip()
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            raise InfrastructureError(
                f"{Path(args[0]).name} failed ({result.returncode}): {detail}"
            )

    started = False
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "cayg",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        options = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        started = True
        yield f"host=127.0.0.1 port={port} user=cayg dbname=postgres"
    finally:
        if started:
            subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)
