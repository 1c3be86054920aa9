"""Canonical N-Quads of expanded JSON-LD: RDF conversion and RDFC-1.0 in one pass.

Written from JSON-LD 1.1 "Deserialize JSON-LD to RDF" (on expanded input) and W3C
RDFC-1.0, to give byte for byte what pyld's ``to_rdf`` followed by its ``URDNA2015``
gives today, at a fraction of the cost (no node map, no dict per RDF term, no deep
copies). pyld's own quirks are kept where they show in the output:

* the quads form a *multiset*: pyld removes a repeated value only when its value object
  equals an earlier one on the same subject and property (same ``@value`` (a boolean
  never equal to a number), ``@type``, ``@language`` and ``@index``), and a repeated node
  reference or ``@type`` only within its own property, so e.g. ``"a"`` and
  ``"a"^^xsd:string`` both stay, and ``@type`` and an explicit ``rdf:type`` both stay;
  every list is new blank nodes, so lists are never merged. Repeated quads are hashed and
  printed as often as pyld keeps them;
* literals are escaped as pyld's N-Quads writer does (``\\``, ``\\t``, ``\\n``, ``\\r`` and
  ``"`` only), numbers printed as pyld does (``1.1E0``; integers as ``xsd:integer`` below
  1e21), ``@json`` through the same JSON canonicalization.

Anything this module does not handle itself raises :class:`FallBack`; the caller then runs
the strict checks of ``canon.py`` and, when they pass, pyld. That covers every document
the strict checks refuse (this module checks the same things and stops at the first), and
a few shapes decided by exact tests: node objects with ``@index`` (pyld fails on some of
them), shapes expansion never produces (free-floating values, non-list property values),
two ``@json`` values pyld considers equal that print differently, and Hash N-Degree Quads
over a related blank node list holding the same node more than once next to others
(pyld's permutation generator then skips some orders, so its result depends on its own
blank node labels).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from hashlib import sha256
from itertools import permutations
from typing import Any, Final

from pyld import jsonld

__all__ = ["ABSOLUTE_IRI", "ISSUER_DEPENDENT", "FallBack", "canonical_nquads"]

#: VC 2.0's context may map unknown terms into this namespace through "@vocab"; to us
#: they are terms the contexts do not define.
ISSUER_DEPENDENT: Final = "https://www.w3.org/ns/credentials/issuer-dependent#"

#: RFC 3987 scheme followed by ":" and no whitespace, the same test the JSON-LD to RDF
#: conversion applies before it discards a triple with a "relative" IRI.
ABSOLUTE_IRI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*\Z")

_RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XSD: Final = "http://www.w3.org/2001/XMLSchema#"
_XSD_STRING: Final = _XSD + "string"
_XSD_BOOLEAN: Final = _XSD + "boolean"
_XSD_DOUBLE: Final = _XSD + "double"
_XSD_INTEGER: Final = _XSD + "integer"
_RDF_LANGSTRING: Final = _RDF + "langString"
_RDF_JSON: Final = _RDF + "JSON"
_TYPE: Final = f"<{_RDF}type>"
_FIRST: Final = f"<{_RDF}first>"
_REST: Final = f"<{_RDF}rest>"
_NIL: Final = f"<{_RDF}nil>"

#: Datatypes of a string value that change how it is printed, or that are not printed.
_SPECIAL_TYPES: Final = frozenset({_XSD_DOUBLE, "@json"})
_UNPRINTED_TYPES: Final = frozenset({_XSD_STRING, _RDF_LANGSTRING})

_NEEDS_ESCAPE: Final = re.compile(r'[\\\t\n\r"]')
_DOUBLE_EXPONENT: Final = re.compile(r"(\d)0*E\+?(-)?0*(\d)")

#: Property, type and datatype IRIs that passed the strict check -> their N-Quads term
#: "<iri>" (bounded; they repeat across documents, node identifiers mostly do not and are
#: not kept).
_TERMS: dict[str, str] = {}
_TERMS_MAX: Final = 20_000

#: A quad: subject, predicate, object, graph name, each as printed in N-Quads ("<iri>",
#: a literal starting with '"', or a blank node "_:..."; the default graph is "").
Quad = tuple[str, str, str, str]


class FallBack(Exception):
    """The document is not handled here: run the strict checks and pyld instead."""


def canonical_nquads(expanded: Any) -> str:
    """RDFC-1.0 canonical N-Quads of expanded JSON-LD, exactly as pyld prints them.

    Raises:
        FallBack: the document needs the strict checks' messages or pyld (see module).
    """
    return _canonicalize(_Converter().convert(expanded))


# -- JSON-LD (expanded) to RDF ---------------------------------------------------------


def _iri_term(value: Any) -> str | None:
    """``<value>`` for an absolute IRI that is neither a blank node nor issuer-dependent
    (the strict check of a property, type or datatype); None for anything else."""
    term = _TERMS.get(value) if type(value) is str else None
    if term is not None:
        return term
    if (
        type(value) is not str
        or value.startswith("_:")
        or ABSOLUTE_IRI.match(value) is None
        or value.startswith(ISSUER_DEPENDENT)
    ):
        return None
    if len(_TERMS) >= _TERMS_MAX:
        _TERMS.clear()
    term = _TERMS[value] = f"<{value}>"
    return term


def _plain(value: str) -> str:
    """A plain string (xsd:string) as an N-Quads literal."""
    if _NEEDS_ESCAPE.search(value) is None:
        return f'"{value}"'
    return f'"{_escape(value)}"'


def _escape(value: str) -> str:
    """pyld's N-Quads escaping (only these five characters)."""
    return (
        value.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace('"', '\\"')
    )


def _double(value: float) -> str:
    """The canonical xsd:double form pyld prints (``1.5E0``, ``1.0E21``)."""
    return _DOUBLE_EXPONENT.sub(r"\1E\2\3", f"{value:1.15E}")


def _is_integral(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


class _Converter:
    """Expanded JSON-LD to the multiset of quads pyld's ``to_rdf`` produces."""

    def __init__(self) -> None:
        self.quads: list[Quad] = []
        #: What pyld's node map compares to drop a repeated value (see module).
        self.seen: set[tuple[Any, ...]] = set()
        #: Document blank node labels -> ours.
        self.labels: dict[str, str] = {}
        self.count = 0
        #: (subject, property, graph) -> the @json values and their literals.
        self.json_seen: dict[tuple[str, str, str], list[tuple[Any, str]]] = {}

    def convert(self, expanded: Any) -> list[Quad]:
        if type(expanded) is not list:
            raise FallBack("expanded document is not a list")
        for item in expanded:
            self.top_node(item, "")
        return self.quads

    def fresh(self) -> str:
        self.count += 1
        return f"_:{self.count}"

    def blank(self, label: str) -> str:
        ours = self.labels.get(label)
        if ours is None:
            ours = self.labels[label] = self.fresh()
        return ours

    def top_node(self, item: Any, graph: str) -> str:
        """A node object outside any property (top level, @graph, @included)."""
        if type(item) is not dict or "@value" in item or "@list" in item:
            raise FallBack("free-floating value or list")
        return self.node(item, graph)

    def node(self, obj: dict[str, Any], graph: str) -> str:
        """Emit a node object's quads into ``graph``; return its subject term."""
        quads = self.quads
        seen = self.seen
        id_ = obj.get("@id")
        if id_ is None:
            subject = self.fresh()
        elif type(id_) is not str:
            raise FallBack("@id is not a string")
        elif id_.startswith("_:"):
            subject = self.blank(id_)
        elif ABSOLUTE_IRI.match(id_) is None or id_.startswith(ISSUER_DEPENDENT):
            raise FallBack("refused @id")
        else:
            subject = f"<{id_}>"
        for key, values in obj.items():
            predicate = _TERMS.get(key)
            if predicate is None:
                if key.startswith("@"):
                    self.keyword(subject, key, values, graph)
                    continue
                predicate = _iri_term(key)
                if predicate is None:
                    raise FallBack("refused property")
            if type(values) is not list:
                raise FallBack("property values are not a list")
            for item in values:
                if type(item) is not dict:
                    raise FallBack("property value is not an object")
                if "@value" in item:
                    value = item["@value"]
                    if len(item) == 1 and type(value) is str:
                        # A plain string: pyld drops it only when the same string is
                        # there already, that is when the quad is.
                        key4 = (subject, predicate, _plain(value), graph)
                        if key4 not in seen:
                            seen.add(key4)
                            quads.append(key4)
                    else:
                        self.value(subject, predicate, item, graph)
                elif "@list" in item:
                    quads.append((subject, predicate, self.list(item["@list"], graph), graph))
                else:
                    # Even a new blank node is remembered: its own @reverse may name this
                    # very quad again.
                    key4 = (subject, predicate, self.node(item, graph), graph)
                    if key4 not in seen:
                        seen.add(key4)
                        quads.append(key4)
        return subject

    def keyword(self, subject: str, key: str, values: Any, graph: str) -> None:
        """The keys of a node object that are keywords (other than @id: nothing)."""
        if key == "@type":
            if type(values) is not list:
                raise FallBack("@type is not a list")
            seen = self.seen
            for type_ in values:
                term = _iri_term(type_)
                if term is None:
                    if type(type_) is str and type_.startswith("_:"):
                        term = self.blank(type_)
                    else:
                        raise FallBack("refused @type")
                key4 = (subject, "@type", term, graph)
                if key4 not in seen:
                    seen.add(key4)
                    self.quads.append((subject, _TYPE, term, graph))
        elif key == "@reverse":
            self.reverse(subject, values, graph)
        elif key == "@graph":
            if type(values) is not list:
                raise FallBack("@graph is not a list")
            for item in values:
                self.top_node(item, subject)
        elif key == "@included":
            if type(values) is not list:
                raise FallBack("@included is not a list")
            for item in values:
                self.top_node(item, graph)
        elif key == "@index":
            raise FallBack("@index on a node object")

    def reverse(self, subject: str, values: Any, graph: str) -> None:
        if type(values) is not dict:
            raise FallBack("@reverse is not an object")
        for key, items in values.items():
            predicate = _iri_term(key)
            if type(items) is not list or predicate is None:
                raise FallBack("refused reverse property")
            for item in items:
                term = self.top_node(item, graph)
                key4 = (term, predicate, subject, graph)
                if key4 not in self.seen:
                    self.seen.add(key4)
                    self.quads.append(key4)

    def list(self, items: Any, graph: str) -> str:
        """Emit an RDF collection; return its head (rdf:nil when empty)."""
        if type(items) is not list:
            raise FallBack("@list is not a list")
        if not items:
            return _NIL
        quads = self.quads
        head = cell = self.fresh()
        last = len(items) - 1
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise FallBack("list item is not an object")
            if "@value" in item:
                term = self.literal(item)
            elif "@list" in item:
                term = self.list(item["@list"], graph)
            else:
                term = self.node(item, graph)
            rest = _NIL if i == last else self.fresh()
            quads.append((cell, _FIRST, term, graph))
            quads.append((cell, _REST, rest, graph))
            cell = rest
        return head

    def value(self, subject: str, predicate: str, item: dict[str, Any], graph: str) -> None:
        """A value object of a property: dropped when pyld's node map drops it."""
        if "@direction" in item:
            raise FallBack("@direction")
        value = item["@value"]
        if item.get("@type") == "@json":
            literal = self.literal(item)
            where = (subject, predicate, graph)
            earlier = self.json_seen.setdefault(where, [])
            for other, other_literal in earlier:
                if other == value and (type(other) is bool) is (type(value) is bool):
                    if other_literal != literal:
                        raise FallBack("equal @json values print differently")
                    return
            earlier.append((value, literal))
            self.quads.append((subject, predicate, literal, graph))
            return
        key = (
            subject,
            predicate,
            graph,
            type(value) is bool,
            value,
            item.get("@type"),
            item.get("@language"),
            item.get("@index"),
        )
        if key not in self.seen:
            self.seen.add(key)
            self.quads.append((subject, predicate, self.literal(item), graph))

    @staticmethod
    def literal(item: dict[str, Any]) -> str:
        """A value object as an N-Quads literal, as pyld converts and prints it."""
        if "@direction" in item:
            raise FallBack("@direction")
        value = item["@value"]
        datatype = item.get("@type")
        language = None
        if datatype is not None and datatype != "@json" and _iri_term(datatype) is None:
            raise FallBack("refused datatype")
        if type(value) is str and datatype not in _SPECIAL_TYPES and "@language" not in item:
            # The common case: a string, typed or not.
            lexical = _plain(value)
            if datatype is None or datatype in _UNPRINTED_TYPES:
                return lexical
            return f"{lexical}^^<{datatype}>"
        if datatype == "@json":
            lexical = jsonld.canonicalize(value).decode("UTF-8")
            datatype = _RDF_JSON
        elif type(value) is bool:
            lexical = "true" if value else "false"
            datatype = datatype or _XSD_BOOLEAN
        elif type(value) is float and not value.is_integer():
            lexical = _double(value)
            datatype = datatype or _XSD_DOUBLE
        elif datatype == _XSD_DOUBLE:
            try:
                number = float(value)
            except (ValueError, TypeError):
                lexical = value
            else:
                lexical = _double(number)
        elif _is_integral(value) and abs(value) >= 1e21:
            lexical = _double(value)
            datatype = datatype or _XSD_DOUBLE
        elif _is_integral(value):
            lexical = str(int(value))
            datatype = datatype or _XSD_INTEGER
        elif "@language" in item:
            lexical = value
            language = item["@language"]
            datatype = datatype or _RDF_LANGSTRING
        else:
            lexical = value
            datatype = datatype or _XSD_STRING
        if type(lexical) is not str:
            raise FallBack("literal value is not a string")
        lexical = _plain(lexical)
        if datatype == _XSD_STRING:
            return lexical
        if datatype == _RDF_LANGSTRING:
            if language:
                if type(language) is not str:
                    raise FallBack("@language is not a string")
                return f"{lexical}@{language}"
            return lexical
        return f"{lexical}^^<{datatype}>"


# -- RDFC-1.0 --------------------------------------------------------------------------


def _line(s: str, p: str, o: str, g: str) -> str:
    return f"{s} {p} {o} {g} .\n" if g else f"{s} {p} {o} .\n"


def _canonicalize(quads: list[Quad]) -> str:
    """RDFC-1.0 over a multiset of quads: the sorted canonical N-Quads."""
    mentions: dict[str, list[Quad]] = {}
    for quad in quads:
        s, _, o, g = quad
        # Once per position, as pyld does: a quad naming a blank node twice counts twice.
        if s[0] == "_":
            mentions.setdefault(s, []).append(quad)
        if o[0] == "_":
            mentions.setdefault(o, []).append(quad)
        if g and g[0] == "_":
            mentions.setdefault(g, []).append(quad)
    if not mentions:
        return "".join(sorted(_line(*quad) for quad in quads))
    issued = _Rdfc(mentions).issue()
    lines = []
    for subject, p, object_, graph in quads:
        s = issued[subject] if subject[0] == "_" else subject
        o = issued[object_] if object_[0] == "_" else object_
        g = issued[graph] if graph and graph[0] == "_" else graph
        lines.append(f"{s} {p} {o} {g} .\n" if g else f"{s} {p} {o} .\n")
    lines.sort()
    return "".join(lines)


class _Rdfc:
    """The canonical issuer of RDFC-1.0 (first degree, then N-degree hashes)."""

    def __init__(self, mentions: dict[str, list[Quad]]) -> None:
        self.mentions = mentions
        self.canonical: dict[str, str] = {}
        self.first: dict[str, str] = {}

    def issue(self) -> dict[str, str]:
        canonical = self.canonical
        by_hash: dict[str, list[str]] = {}
        for node in self.mentions:
            by_hash.setdefault(self.first_degree(node), []).append(node)
        shared: list[tuple[str, list[str]]] = []
        for hash_, nodes in sorted(by_hash.items()):
            if len(nodes) == 1:
                canonical[nodes[0]] = f"_:c14n{len(canonical)}"
            else:
                shared.append((hash_, nodes))
        for _, nodes in shared:
            results: list[tuple[str, dict[str, str]]] = []
            for node in nodes:
                if node in canonical:
                    continue
                results.append(self.n_degree(node, {node: "_:b0"}))
            results.sort(key=lambda result: result[0])
            for _, issuer in results:
                for existing in issuer:
                    if existing not in canonical:
                        canonical[existing] = f"_:c14n{len(canonical)}"
        return canonical

    def first_degree(self, node: str) -> str:
        """Hash First Degree Quads: the node as _:a, other blank nodes as _:z."""
        cached = self.first.get(node)
        if cached is not None:
            return cached
        lines = []
        for subject, p, object_, graph in self.mentions[node]:
            s = ("_:a" if subject == node else "_:z") if subject[0] == "_" else subject
            o = ("_:a" if object_ == node else "_:z") if object_[0] == "_" else object_
            if graph:
                g = ("_:a" if graph == node else "_:z") if graph[0] == "_" else graph
                lines.append(f"{s} {p} {o} {g} .\n")
            else:
                lines.append(f"{s} {p} {o} .\n")
        lines.sort()
        digest = sha256("".join(lines).encode("utf-8")).hexdigest()
        self.first[node] = digest
        return digest

    def related_hash(self, related: str, predicate: str, issuer: dict[str, str], at: str) -> str:
        """Hash Related Blank Node."""
        id_ = self.canonical.get(related) or issuer.get(related) or self.first_degree(related)
        text = at + id_ if at == "g" else at + predicate + id_
        return sha256(text.encode("utf-8")).hexdigest()

    def n_degree(self, node: str, issuer: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Hash N-Degree Quads; ``issuer`` (old -> "_:bN", in order) is not changed."""
        related: dict[str, list[str]] = {}
        for s, p, o, g in self.mentions[node]:
            if s[0] == "_" and s != node:
                related.setdefault(self.related_hash(s, p, issuer, "s"), []).append(s)
            if o[0] == "_" and o != node:
                related.setdefault(self.related_hash(o, p, issuer, "o"), []).append(o)
            if g and g[0] == "_" and g != node:
                related.setdefault(self.related_hash(g, p, issuer, "g"), []).append(g)
        canonical = self.canonical
        digest = sha256()
        for hash_, nodes in sorted(related.items()):
            digest.update(hash_.encode("utf-8"))
            chosen_path = ""
            chosen_issuer: dict[str, str] | None = None
            for order in _orders(nodes):
                copy = dict(issuer)
                path = ""
                recursion: list[str] = []
                skip = False
                for other in order:
                    if other in canonical:
                        path += canonical[other]
                    else:
                        label = copy.get(other)
                        if label is None:
                            recursion.append(other)
                            label = copy[other] = f"_:b{len(copy)}"
                        path += label
                    if chosen_path and len(path) >= len(chosen_path) and path > chosen_path:
                        skip = True
                        break
                if skip:
                    continue
                for other in recursion:
                    result_hash, result_issuer = self.n_degree(other, copy)
                    path += f"{copy[other]}<{result_hash}>"
                    copy = result_issuer
                    if chosen_path and len(path) >= len(chosen_path) and path > chosen_path:
                        skip = True
                        break
                if skip:
                    continue
                if not chosen_path or path < chosen_path:
                    chosen_path = path
                    chosen_issuer = copy
            digest.update(chosen_path.encode("utf-8"))
            assert chosen_issuer is not None  # the first order is never skipped
            issuer = chosen_issuer
        return digest.hexdigest(), issuer


def _orders(nodes: list[str]) -> Iterator[tuple[str, ...]]:
    """Every order of a related blank node list (see module on repeated nodes)."""
    distinct = set(nodes)
    if len(distinct) == len(nodes):
        return permutations(nodes)
    if len(distinct) == 1:
        return iter([tuple(nodes)])
    raise FallBack("a related blank node list repeats a node next to others")
