"""Strict RDF Dataset Canonicalization (RDFC-1.0 / URDNA2015) of JSON-LD documents.

A JSON-LD processor silently ignores data it cannot map to IRIs: undefined terms, types
and relative identifiers vanish during expansion or RDF conversion. For a signature that
is dangerous both ways. A signer would sign less than the JSON it publishes, and a
verifier would accept JSON with fields added after signing. So :func:`canonicalize`
refuses any document from which something would be dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from pyld import canon, jsonld

from . import rdfc
from ._nodes import ExpandedNodes
from .contexts import ContextLoader
from .errors import ContextError, SigningError, UndefinedTermError

__all__ = ["canonicalize"]

# VC 2.0's context may map unknown terms into this namespace through "@vocab". The VC
# spec calls such terms issuer-dependent and not meant for production; to us they are
# terms the contexts do not define. (Shared with rdfc.py, which checks the same.)
_ISSUER_DEPENDENT: Final = rdfc.ISSUER_DEPENDENT

# RFC 3987 scheme followed by ":" and no whitespace, the same test the JSON-LD to RDF
# conversion applies before it discards a triple with a "relative" IRI.
_ABSOLUTE_IRI: Final = rdfc.ABSOLUTE_IRI


def as_json_object(document: Mapping[str, Any], what: str = "document") -> dict[str, Any]:
    """Deep-copy ``document`` through JSON, so only JSON values reach pyld.

    Raises:
        SigningError: ``document`` is not a JSON object (or holds NaN, bytes, dates...).
    """
    try:
        text = json.dumps(document, allow_nan=False)
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SigningError(f"{what} is not plain JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SigningError(f"{what} must be a JSON object")
    return value


def canonicalize(document: Mapping[str, Any], loader: ContextLoader) -> str:
    """Return the URDNA2015 (RDFC-1.0) canonical N-Quads of a JSON-LD document.

    Contexts come only from ``loader``. The document is refused, rather than partly
    canonicalized, when it uses terms, types or identifiers the contexts do not define.

    Raises:
        UndefinedTermError: something in the document would be dropped (subclass of
            :class:`SigningError`).
        SigningError: no ``@context``, an unknown context URL, invalid JSON-LD, or a
            document that yields no RDF statements at all.
    """
    doc = _Owned(as_json_object(document))
    if "@context" not in doc:
        raise SigningError("document has no @context")

    dropped: list[str] = []

    def on_dropped(expanded_property: str | None) -> None:
        if expanded_property is None:
            # pyld passes None for keys shaped like keywords ("@foo") or mapped to null.
            dropped.append(
                "a key shaped like a JSON-LD keyword, or mapped to null, would be dropped"
            )
        else:
            dropped.append(f"term {expanded_property!r} is not defined by the @context")

    processor = _ContextCachingProcessor(
        loader._processed_contexts,
        on_dropped,
        loader._expanded_iris,
        loader._finished_contexts,
        loader._expanded_nodes,
    )
    with loader._lock:
        options = loader._pyld_options()
        try:
            expanded = processor.expand(doc, options)
            nquads = None if dropped else _fast_nquads(expanded)
            if nquads is None:
                problems = dropped + _undefined_in_expanded(expanded)
                if problems:
                    raise UndefinedTermError(tuple(dict.fromkeys(problems)))
                # Expansion is idempotent, so canonicalizing the expanded form gives the
                # same dataset as the original document; the processor does not expand
                # it again.
                processor.already_expanded = expanded
                nquads = processor.canonical_nquads(expanded, options)
        except SigningError:
            raise
        except Exception as exc:
            # Untrusted input can make pyld fail in many ways (JsonLdError, but also
            # TypeError or RecursionError on odd shapes); all mean "cannot canonicalize".
            raise SigningError(f"JSON-LD processing failed: {_describe(exc)}") from exc
    if not isinstance(nquads, str):
        raise SigningError("JSON-LD canonicalization did not produce N-Quads")
    if not nquads:
        raise SigningError("document yields no RDF statements; nothing to sign")
    return nquads


class _Owned(dict[str, Any]):
    """A document only :func:`canonicalize` holds (its own JSON copy, no shared parts).

    pyld's ``expand`` starts with a deep copy of its input so as not to change the
    caller's; this one is already private and dropped afterwards, so the copy (about 5% of
    a CLR's canonicalization) is skipped: ``deepcopy`` returns it as it is.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Owned:
        return self


def _fast_nquads(expanded: Any) -> str | None:
    """Canonical N-Quads from :mod:`.rdfc`, or None: the document is refused or has a shape
    left to pyld (decided there), or it failed there in a way pyld may report differently.
    Either way the caller runs the strict checks (for their full list of problems) and,
    if they pass, pyld: the same result and the same errors as before, only slower."""
    try:
        return rdfc.canonical_nquads(expanded)
    except rdfc.FallBack:
        return None
    except Exception:  # noqa: BLE001 - pyld decides how such a document fails
        return None


#: How many processed contexts one loader keeps (each a few KB; the pinned contexts and
#: their scoped contexts need a few hundred).
PROCESSED_CONTEXTS_MAX: Final = 2048

#: (active context id, local context key, flags) -> (processed context, what keeps the
#: keys' objects alive).
ProcessedContexts = dict[tuple[Any, ...], tuple[dict[str, Any], tuple[Any, ...]]]

#: How many IRI expansions one loader keeps (terms and compact IRIs of the pinned
#: contexts, per processed context: a few thousand in practice).
EXPANDED_IRIS_MAX: Final = 50_000

#: (processed context id, value, base, vocab) -> expanded IRI (None: dropped).
ExpandedIris = dict[tuple[Any, ...], Any]


class _Urdna2015(canon.URDNA2015):  # type: ignore[misc]
    """pyld's RDFC-1.0 with one copy made cheaper: a quad component is a flat dict of
    strings, so a shallow copy is the deep copy pyld makes for every blank node component
    of every quad it hashes (8% of a CLR's canonicalization)."""

    def modify_first_degree_component(self, id_: str, component: Any, key: str) -> Any:
        del key  # URDNA2015 treats the subject, object and graph name alike
        if component["type"] != "blank node":
            return component
        changed = dict(component)
        changed["value"] = "_:a" if component["value"] == id_ else "_:z"
        return changed


class _ContextCachingProcessor(jsonld.JsonLdProcessor):  # type: ignore[misc]
    """pyld's processor with context processing memoised across documents.

    pyld caches a processed context per (resolved context, active context) but gives every
    non-propagating (type-scoped) result a fresh id, so the VC 2.0 / OB 3.0 contexts'
    scoped contexts are processed again for every typed node of every document: 40% of a
    signature's time. Active contexts are never mutated once processed (pyld returns its
    own cached ones the same way), so the result of processing one local context on one
    active context can be reused: keyed by the active context's ``_uuid`` and the local
    context (URLs by value; objects by identity, kept alive with the entry so an id is
    never reused). A test canonicalizes with and without this cache and compares.
    """

    def __init__(
        self,
        cache: ProcessedContexts,
        on_dropped: Any,
        iris: ExpandedIris | None = None,
        finished: set[Any] | None = None,
        nodes: ExpandedNodes | None = None,
    ) -> None:
        super().__init__(on_property_dropped=self._count_dropped)
        self._on_dropped = on_dropped
        #: Properties dropped so far in this processor (a node's expansion that dropped
        #: any is not remembered).
        self._dropped = 0
        self._processed = cache
        self._iris: ExpandedIris = {} if iris is None else iris
        #: Ids of the contexts this cache finished processing (never mutated afterwards).
        self._finished: set[Any] = set() if finished is None else finished
        self._nodes = nodes
        #: A document already in expanded form: RDF conversion uses it as it is.
        self.already_expanded: Any = None

    def _count_dropped(self, expanded_property: str | None) -> None:
        self._dropped += 1
        self._on_dropped(expanded_property)

    def _expand(  # noqa: PLR0917 - pyld's signature
        self,
        active_ctx: Any,
        active_property: Any,
        element: Any,
        options: dict[str, Any],
        inside_list: bool = False,
        inside_index: bool = False,
        type_scoped_ctx: Any = None,
    ) -> Any:
        """pyld's expansion of one element, remembered for object nodes that recur (see
        :class:`ExpandedNodes`). Arrays, scalars, the document itself and nodes with their
        own ``@context`` are expanded as pyld does."""
        key = (
            None
            if options.get("base") is not None
            else self._node_key(
                active_ctx, active_property, element, inside_list, inside_index, type_scoped_ctx
            )
        )
        if key is not None:
            nodes, tried, node_key = key
            found = nodes.get(node_key)
            if found is not None:
                tried[0] += 1
                return json.loads(found)
            tried[1] += 1
        dropped = self._dropped
        expanded = super()._expand(
            active_ctx,
            active_property,
            element,
            options,
            inside_list,
            inside_index,
            type_scoped_ctx,
        )
        if key is not None and self._dropped == dropped:
            nodes.put(node_key, json.dumps(expanded, ensure_ascii=False))
        return expanded

    def _node_key(  # noqa: PLR0917 - the arguments the expansion depends on
        self,
        active_ctx: Any,
        active_property: Any,
        element: Any,
        inside_list: bool,
        inside_index: bool,
        type_scoped_ctx: Any,
    ) -> tuple[ExpandedNodes, list[int], tuple[Any, ...]] | None:
        """Where a remembered expansion of ``element`` would be, or None: not one to
        remember (or look up)."""
        nodes = self._nodes
        if (
            nodes is None
            or type(element) is not dict
            or not isinstance(active_property, str)
            or "@context" in element
        ):
            return None
        context_id = active_ctx.get("_uuid")
        scoped_id = None if type_scoped_ctx is None else type_scoped_ctx.get("_uuid")
        if context_id not in self._finished or (
            type_scoped_ctx is not None and scoped_id not in self._finished
        ):
            return None
        tried = nodes.worth_trying(active_property)
        if tried is None:
            return None
        # Keys in their order (not sorted): equal nodes written alike share an entry, and
        # no expansion is ever reused for a node whose keys came in another order.
        text = json.dumps(element, separators=(",", ":"), ensure_ascii=False)
        return (
            nodes,
            tried,
            (context_id, scoped_id, active_property, inside_list, inside_index, text),
        )

    def canonical_nquads(self, expanded: Any, options: dict[str, Any]) -> Any:
        """RDFC-1.0 (URDNA2015) N-Quads of an expanded document: what pyld's ``normalize``
        does for JSON-LD input, with :class:`_Urdna2015`."""
        opts = {k: v for k, v in options.items() if k not in ("identifierIssuer", "format")}
        opts.setdefault("base", "")
        opts.setdefault("extractAllScripts", True)
        opts.setdefault("processingMode", "json-ld-1.1")
        opts["produceGeneralizedRdf"] = False
        dataset = self.to_rdf(expanded, opts)
        return _Urdna2015().main(
            dataset, {**opts, "algorithm": "URDNA2015", "format": "application/n-quads"}
        )

    def _expand_iri(  # noqa: PLR0917 - pyld's signature
        self,
        active_ctx: Any,
        value: Any,
        base: Any = None,
        vocab: bool = False,
        local_ctx: Any = None,
        defined: Any = None,
    ) -> Any:
        """pyld's IRI expansion, memoised for finished contexts.

        Outside context processing (no ``local_ctx``/``defined``) the result depends only on
        the active context and the arguments, and a context this processor finished (one
        in the processed-context cache, never mutated afterwards) is identified by its
        ``_uuid``: pyld otherwise redoes the same term lookups and pattern matches for every
        property of every document (18% of a CLR's canonicalization).
        """
        uuid = active_ctx.get("_uuid") if local_ctx is None and defined is None else None
        if uuid is None or uuid not in self._finished or not isinstance(value, str):
            return super()._expand_iri(active_ctx, value, base, vocab, local_ctx, defined)
        key = (uuid, value, base, vocab)
        try:
            return self._iris[key]
        except KeyError:
            pass
        result = super()._expand_iri(active_ctx, value, base, vocab, local_ctx, defined)
        if len(self._iris) >= EXPANDED_IRIS_MAX:
            self._iris.clear()
        self._iris[key] = result
        return result

    def expand(self, input_: Any, options: dict[str, Any]) -> Any:
        """Expand ``input_``, unless it is :attr:`already_expanded` (expansion is
        idempotent; pyld's RDF conversion would otherwise expand it a second time)."""
        if input_ is not None and input_ is self.already_expanded:
            return input_
        return super().expand(input_, options)

    def _process_context(  # noqa: PLR0917 - pyld's signature
        self,
        active_ctx: dict[str, Any],
        local_ctx: Any,
        options: dict[str, Any],
        override_protected: bool = False,
        propagate: bool = True,
        validate_scoped: bool = True,
        cycles: Any = None,
    ) -> dict[str, Any]:
        active_id = active_ctx.get("_uuid")
        local_key = _local_key(local_ctx)
        if active_id is None or local_key is None:
            return self._process(
                active_ctx,
                local_ctx,
                options,
                override_protected,
                propagate,
                validate_scoped,
                cycles,
            )
        key = (active_id, local_key, override_protected, propagate, validate_scoped)
        hit = self._processed.get(key)
        if hit is not None:
            return hit[0]
        result = self._process(
            active_ctx, local_ctx, options, override_protected, propagate, validate_scoped, cycles
        )
        if len(self._processed) >= PROCESSED_CONTEXTS_MAX:
            del self._processed[next(iter(self._processed))]
        self._processed[key] = (result, (active_ctx, local_ctx))
        if result.get("_uuid") is not None:
            self._finished.add(result["_uuid"])
        return result

    def _process(  # noqa: PLR0917
        self,
        active_ctx: dict[str, Any],
        local_ctx: Any,
        options: dict[str, Any],
        override_protected: bool,
        propagate: bool,
        validate_scoped: bool,
        cycles: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = super()._process_context(
            active_ctx, local_ctx, options, override_protected, propagate, validate_scoped, cycles
        )
        return result


def _local_key(local_ctx: Any) -> tuple[Any, ...] | None:
    """A cache key for a local context: URLs by value, objects by identity."""
    if isinstance(local_ctx, str):
        return ("url", local_ctx)
    if isinstance(local_ctx, list):
        if all(isinstance(item, str) for item in local_ctx):
            return ("urls", *local_ctx)
        return ("object", id(local_ctx))
    if isinstance(local_ctx, dict):
        return ("object", id(local_ctx))
    return None


def _describe(exc: BaseException) -> str:
    """One line naming the root cause, preferring our own ContextError message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ContextError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, jsonld.JsonLdError):
        first = exc.args[0] if exc.args else ""
        code = f" ({exc.code})" if exc.code else ""
        return f"{first}{code}"
    return f"{type(exc).__name__}: {exc}"


def _iri_problem(kind: str, value: Any, *, allow_blank: bool) -> str | None:
    if not isinstance(value, str):
        return f"{kind} {value!r} is not a string"
    if value.startswith("_:"):
        return None if allow_blank else f"{kind} {value!r} is a blank node"
    if not _ABSOLUTE_IRI.match(value):
        return f"{kind} {value!r} is not defined by the @context (not an absolute IRI)"
    if value.startswith(_ISSUER_DEPENDENT):
        return f"{kind} {value!r} is only defined by the issuer-dependent @vocab"
    return None


def _undefined_in_expanded(expanded: Any) -> list[str]:
    """Everything in expanded JSON-LD that RDF conversion would silently drop."""
    problems: list[str] = []

    def note(problem: str | None) -> None:
        if problem is not None:
            problems.append(problem)

    def walk_items(items: Any) -> None:
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict):
                walk_object(item)

    def walk_object(obj: dict[str, Any]) -> None:
        if "@value" in obj:
            datatype = obj.get("@type")
            if datatype is not None and datatype != "@json":
                note(_iri_problem("datatype", datatype, allow_blank=False))
            if "@direction" in obj:
                # Without an rdfDirection option the base direction is not in the RDF.
                problems.append(f"@direction on value {obj['@value']!r} would not be signed")
            return
        if "@list" in obj:
            walk_items(obj["@list"])
            return
        for key, value in obj.items():
            if key == "@id":
                note(_iri_problem("id", value, allow_blank=True))
            elif key == "@type":
                for type_ in value if isinstance(value, list) else [value]:
                    note(_iri_problem("type", type_, allow_blank=True))
            elif key == "@reverse" and isinstance(value, dict):
                for prop, items in value.items():
                    note(_iri_problem("property", prop, allow_blank=False))
                    walk_items(items)
            elif key in {"@graph", "@included"}:
                walk_items(value)
            elif key.startswith("@"):
                continue
            else:
                note(_iri_problem("property", key, allow_blank=False))
                walk_items(value)

    walk_items(expanded)
    return problems
