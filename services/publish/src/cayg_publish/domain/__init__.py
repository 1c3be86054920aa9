"""Publish's domain: the catalog and its transitions, which documents a change dirties,
the ledger's state machine, retry policy, idempotency and rendering. Pure: no I/O, no
messaging or HTTP stack (an import-linter contract holds it to that)."""
