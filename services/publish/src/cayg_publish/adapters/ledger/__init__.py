"""The publish ledger: one port, three adapters (in-memory, SQLite, PostgreSQL).

Each adapter also keeps a :class:`~cayg_publish.domain.Catalog` (``ledger.catalog``) of
the reference data the renderers need, in the same database.
"""

from cayg_publish.adapters.ledger.memory import InMemoryCatalog, InMemoryLedger
from cayg_publish.adapters.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError
from cayg_publish.adapters.ledger.postgres import PostgresCatalog, PostgresLedger
from cayg_publish.adapters.ledger.sqlite import SqliteCatalog, SqliteLedger
from cayg_publish.adapters.ledger.status_store import (
    StatusScope,
    StatusStore,
    status_target_name,
)
from cayg_publish.domain.catalog import (
    Catalog,
    Decision,
    DecisionKind,
    LedgerEntry,
    LedgerTotals,
    Outcome,
)

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "Catalog",
    "Decision",
    "DecisionKind",
    "InMemoryCatalog",
    "InMemoryLedger",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerTotals",
    "Outcome",
    "PostgresCatalog",
    "PostgresLedger",
    "SqliteCatalog",
    "SqliteLedger",
    "StatusScope",
    "StatusStore",
    "status_target_name",
]
