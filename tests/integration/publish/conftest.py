"""Fixtures for publish's integration tests: a real PostgreSQL, ledgers of every kind.

PostgreSQL comes from ``CAYG_TEST_POSTGRES_DSN`` when set; otherwise a throwaway cluster is
created with ``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` in a temporary
directory on a free port (as the ``postgres`` user when the tests run as root, because
PostgreSQL refuses to run as root) and stopped at the end of the session. If neither
works, tests that need it fail with the reason: a missing database must not read as a pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cayg_publish.adapters.ledger import InMemoryLedger, Ledger, PostgresLedger, SqliteLedger
from integration.publish.publish_support import Clock
from support.postgres import fresh_schema


@pytest.fixture
def clock() -> Clock:
    """A clock that moves only when told."""
    return Clock()


#: Creates a ledger client on the test's store; call it twice for two clients (two
#: connections to the same database, like two publish instances).
LedgerFactory = Callable[[], Ledger]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_kind(request: pytest.FixtureRequest) -> str:
    """Which ledger adapter the test runs against."""
    kind: str = request.param
    return kind


@pytest.fixture
async def ledger_factory(
    request: pytest.FixtureRequest, ledger_kind: str, tmp_path: Path, clock: Clock
) -> AsyncIterator[LedgerFactory]:
    """A factory of ledger clients sharing one store; every client is closed after the test."""
    created: list[Ledger] = []
    memory = InMemoryLedger(clock=clock)
    async with contextlib.AsyncExitStack() as stack:
        dsn = ""
        if ledger_kind == "postgres":
            dsn = await stack.enter_async_context(
                fresh_schema(request.getfixturevalue("postgres_dsn"))
            )

        def factory() -> Ledger:
            ledger: Ledger
            if ledger_kind == "memory":
                # One process, one dict: a "second client" is the same ledger.
                ledger = memory
            elif ledger_kind == "sqlite":
                ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
            else:
                ledger = PostgresLedger(dsn, clock=clock)
            created.append(ledger)
            return ledger

        yield factory
        for ledger in created:
            await ledger.close()


@pytest.fixture
async def ledger(ledger_factory: LedgerFactory) -> Ledger:
    """One migrated ledger client."""
    client = ledger_factory()
    await client.migrate()
    return client
