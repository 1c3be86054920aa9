"""A real PostgreSQL for the tests that need one.

PostgreSQL comes from ``CAYG_TEST_POSTGRES_DSN`` when set; otherwise a throwaway cluster is
created with ``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` in a temporary
directory on a free port (as the ``postgres`` user when the tests run as root, because
PostgreSQL refuses to run as root) and stopped at the end of the session. If neither
works, tests that need it fail with the reason: a missing database must not read as a pass.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

DSN_ENV = "CAYG_TEST_POSTGRES_DSN"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_bin() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pytest.fail(
        f"no PostgreSQL for the ledger tests: set {DSN_ENV} or install PostgreSQL "
        "(initdb not found in /usr/lib/postgresql/*/bin or on PATH)"
    )


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str]:
    bindir = _postgres_bin()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                f"tests run as root and there is no 'postgres' user to run PostgreSQL as: "
                f"set {DSN_ENV} or create the user"
            )
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.fail(f"tests run as root and runuser is missing: set {DSN_ENV}")
        run_as = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="cayg-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "postgres.log"
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*run_as, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip()
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            pytest.fail(f"{Path(args[0]).name} failed ({result.returncode}): {detail}")

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


def postgres_server() -> Iterator[str]:
    """A DSN of a PostgreSQL server for this session (fails when there is none)."""
    configured = os.environ.get(DSN_ENV)
    if configured:
        try:
            with psycopg.connect(configured, connect_timeout=10):
                pass
        except psycopg.Error as exc:
            pytest.fail(f"{DSN_ENV} is set but the server does not answer: {exc}")
        yield configured
        return
    with _throwaway_cluster() as dsn:
        yield dsn


@asynccontextmanager
async def fresh_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A DSN whose ``search_path`` is a fresh schema, dropped afterwards.

    Async on purpose: a blocking DROP would stall the event loop while a task the test
    left behind still holds a lock on the schema, and the two would wait for each other.
    """
    schema = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_conninfo(postgres_dsn, options=f"-csearch_path={schema}")
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            await conn.execute("SET lock_timeout = '30s'")
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
