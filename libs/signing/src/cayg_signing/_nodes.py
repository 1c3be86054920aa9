"""Expanded JSON-LD nodes remembered across documents (used by :mod:`.canon`)."""

from __future__ import annotations

from typing import Any, Final

#: How many expanded nodes one loader keeps (an achievement definition, an issuer profile,
#: a schema reference: what recurs across a tenant's credentials; a few hundred in the
#: benchmark's export of two institutions).
EXPANDED_NODES_MAX: Final = 4096

#: A property's nodes stop being remembered once this many were expanded without their
#: expansion being found again at least once in every ``_NODE_MISSES_PER_HIT``: a learner's
#: identifiers, a credential's status entry or proof never recur, and looking them up
#: costs a JSON encoding of each.
_NODE_TRIAL: Final = 64
_NODE_MISSES_PER_HIT: Final = 8


class ExpandedNodes:
    """Expanded JSON-LD of object nodes, by what their expansion depends on.

    pyld expands a node from the node itself, the property it is the value of, the active
    and type-scoped contexts and two flags. When both contexts are ones the processor
    finished (never changed afterwards, identified by ``_uuid``), the expansion of an equal
    node is the same, and credentials repeat many nodes: each award of a definition
    embeds the same achievement, every credential the same issuer and schema reference.
    Expansions are kept as JSON text, so a hit hands out a fresh copy: pyld changes nodes
    it has expanded (in a type or index map it adds the key to the node).
    A node whose expansion dropped anything (an undefined term) is never kept, so every
    document that has it is refused as before.
    """

    __slots__ = ("_entries", "_tried")

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], str] = {}
        #: property -> [hits, misses], to stop trying properties whose nodes never recur.
        self._tried: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def worth_trying(self, active_property: str) -> list[int] | None:
        """The property's [hits, misses] counters, or None when its nodes do not recur."""
        tried = self._tried.get(active_property)
        if tried is None:
            if len(self._tried) >= EXPANDED_NODES_MAX:
                self._tried.clear()
            tried = self._tried[active_property] = [0, 0]
        elif tried[1] >= _NODE_TRIAL and tried[0] * _NODE_MISSES_PER_HIT < tried[1]:
            return None
        return tried

    def get(self, key: tuple[Any, ...]) -> str | None:
        return self._entries.get(key)

    def put(self, key: tuple[Any, ...], expanded_json: str) -> None:
        if len(self._entries) >= EXPANDED_NODES_MAX:
            # Oldest first (dicts keep insertion order): what recurs is put back soon.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = expanded_json
