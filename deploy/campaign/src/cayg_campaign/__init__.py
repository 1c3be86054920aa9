"""Campaigns against the whole cayg-sync stack on loopback: a seeded multi-tenant stream
in every input format, faults injected while it flows (SIGKILLs, restarts, a broker
restart, target outages, 5xx, 429, timeouts after the write, slow targets), hostile and
fuzzed input, then checks of the end state against the stream's model.

``uv run cayg-campaign --seed 7 --minutes 5`` runs one; see docs/RELIABILITY.md.
"""
