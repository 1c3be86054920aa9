"""The services (and stand-ins) as OS processes, the way an operator runs them, with their
memory read from ``/proc``.

Each process is configured only through its environment (``CAYG_<SERVICE>_…``), logs to a
file, and is ready when its ready URL answers. Peak memory is the kernel's high-water mark
(``VmHWM``), read just before the process is stopped, so nothing between samples is missed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from cayg_bench.kafka import REPO_ROOT

TENANTS_FILE: Final = REPO_ROOT / "deploy" / "config" / "tenants.json"


#: Ports :func:`free_port` handed out in this run.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now and was not handed out before in this run.

    A port is only taken once the process it is for binds it, seconds later: the kernel may
    offer the same free port twice meanwhile (once, a service's port was another's, and
    the first to start took it from the other).
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (0.0 once the process is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        # Fields after the parenthesised command name; utime and stime are the 14th and
        # 15th fields of the whole line.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def listener_pid(bootstrap: str) -> int | None:
    """The process of this machine listening on the first ``host:port`` of ``bootstrap``
    (a broker the harness did not start), found from its socket; None when none is seen."""
    _, _, port_text = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    if not port_text.isdigit():
        return None
    port = f"{int(port_text):04X}"
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex, state 0A = LISTEN, then the inode.
                if fields[1].endswith(f":{port}") and fields[3] == "0A":
                    inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return int(fd_dir.parent.name)
    return None


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (publish's signing workers)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live child processes (publish's signing workers)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in child_pids(pid))


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB (empty once the process is gone)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def proc_pss_kib(pid: int) -> int:
    """``Pss`` of ``pid`` in KiB (0 once the process is gone): its resident pages, each
    shared page divided by the processes sharing it. Summed over a service and its worker
    processes it counts shared pages (the interpreter, libraries, the pages a worker shares
    with others) once, as the kernel's memory accounting for a container does; a sum of
    ``VmRSS`` counts them once per process."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class Proc:
    """One long-running process of a measurement."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        ready_url: str,
        members: int = 1,
    ) -> None:
        self.name = name
        #: How many members of its consumer group the process runs (its consumer processes).
        self.members = members
        self.argv = list(argv)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / f"{name}.log"
        self.ready_url = ready_url
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        self.ready_at = 0.0
        self.peak_rss_kib = 0
        #: The resident set at the last :meth:`sample`.
        self.rss_kib = 0
        #: With ``children=True`` samples: the largest resident set of the process and its
        #: children together, and theirs at the last sample.
        self.tree_peak_rss_kib = 0
        self.tree_rss_kib = 0
        #: The same with shared pages counted once (sum of ``Pss``; see :func:`proc_pss_kib`).
        self.tree_peak_pss_kib = 0
        self.tree_pss_kib = 0

    @property
    def pid(self) -> int:
        """The process id (the process must have been launched)."""
        assert self.process is not None
        return self.process.pid

    def launch(self) -> None:
        """Start the process; :meth:`wait_ready` waits for it."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.launched_at = time.monotonic()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until the ready URL answers below 500."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code < 500:
                    self.ready_at = time.monotonic()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout_s} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time the process has used so far (user + system)."""
        return cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def sample(self, *, children: bool = False) -> None:
        """Keep the high-water mark seen so far (also read by :meth:`stop`); with
        ``children``, also the resident set of the process with its children."""
        if self.process is not None and self.process.poll() is None:
            status = proc_status(self.process.pid)
            self.peak_rss_kib = max(self.peak_rss_kib, status.get("VmHWM", 0))
            self.rss_kib = status.get("VmRSS", self.rss_kib)
            if children:
                kids = child_pids(self.process.pid)
                self.tree_rss_kib = self.rss_kib + sum(
                    proc_status(kid).get("VmRSS", 0) for kid in kids
                )
                self.tree_peak_rss_kib = max(self.tree_peak_rss_kib, self.tree_rss_kib)
                self.tree_pss_kib = proc_pss_kib(self.process.pid) + sum(
                    proc_pss_kib(kid) for kid in kids
                )
                self.tree_peak_pss_kib = max(self.tree_peak_pss_kib, self.tree_pss_kib)

    def stop(self, timeout_s: float = 40.0) -> None:
        """SIGTERM (the graceful path), SIGKILL if it is ignored; records peak RSS first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.sample()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the process's log, for error messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_all(procs: Iterable[Proc], timeout_s: float = 90.0) -> None:
    """Launch every process at once (start-up is mostly imports), then wait for each."""
    started = list(procs)
    for proc in started:
        proc.launch()
    try:
        for proc in started:
            proc.wait_ready(timeout_s)
    except BaseException:
        stop_all(started)
        raise


def stop_all(procs: Iterable[Proc]) -> None:
    """Stop every process (in reverse order of start)."""
    for proc in reversed(list(procs)):
        proc.stop()


#: The services with a batch loop, which the harness runs with consumer processes.
CONSUMER_SERVICES: Final = ("ingest", "normalize")
#: Their ``CONSUMERS``: one per partition of the harness's topics (``kafka.PARTITIONS``),
#: so each takes a whole one (ingest reads three tenants' topics: three partitions each).
#: They then decide in their own processes (``DECIDE_WORKERS`` defaults to 0 with more
#: than one consumer).
SERVICE_CONSUMERS: Final = 3


def service(
    service_name: str,
    *,
    bootstrap: str,
    prefix: str,
    log_dir: Path,
    name: str | None = None,
    group: str | None = None,
    extra: Mapping[str, str] | None = None,
    python_args: Sequence[str] = (),
) -> Proc:
    """One cayg service (``ingest``, ``normalize``, ``publish``) on topics under ``prefix``.

    Every stage creates its topics before it starts services, so they keep the default
    metadata refresh (30 s): refreshing every second, as the harness once did, cost each
    service several per cent of a core decoding the metadata of every topic on the broker.
    """
    port = free_port()
    p = f"CAYG_{service_name.upper()}_"
    env = {
        f"{p}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}GROUP_ID": group or f"{prefix}cayg-{service_name}",
        f"{p}TENANTS_FILE": str(TENANTS_FILE),
        f"{p}HTTP_PORT": str(port),
        **({f"{p}CONSUMERS": str(SERVICE_CONSUMERS)} if service_name in CONSUMER_SERVICES else {}),
        **{f"{p}{k}": v for k, v in (extra or {}).items()},
    }
    module = python_args or ["-m", f"cayg_{service_name}"]
    return Proc(
        name or service_name,
        [sys.executable, *module],
        env=env,
        log_dir=log_dir,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        members=int(env.get(f"{p}CONSUMERS", "1")),
    )
