"""The publish ledger: one port, three adapters (in-memory, SQLite, PostgreSQL)."""

from cayg_publish.domain import Decision, DecisionKind, LedgerEntry, LedgerTotals, Outcome
from cayg_publish.ledger.memory import InMemoryLedger
from cayg_publish.ledger.port import DEFAULT_CLAIM_TTL, Ledger, LedgerError
from cayg_publish.ledger.postgres import PostgresLedger
from cayg_publish.ledger.sqlite import SqliteLedger

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "Decision",
    "DecisionKind",
    "InMemoryLedger",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerTotals",
    "Outcome",
    "PostgresLedger",
    "SqliteLedger",
]
