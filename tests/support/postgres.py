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
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from cayg_campaign.processes import InfrastructureError, throwaway_postgres

DSN_ENV = "CAYG_TEST_POSTGRES_DSN"


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            dsn = stack.enter_context(throwaway_postgres())
        except InfrastructureError as exc:
            pytest.fail(f"{exc} (or set {DSN_ENV})")
        yield dsn


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
