"""Canonicalization with processed contexts reused across documents (``canon.py``) gives
exactly what a fresh pyld processor gives, whatever was canonicalized before."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from pyld import jsonld

from cayg_signing import ContextLoader, UndefinedTermError, canonicalize

pytestmark = pytest.mark.unit

VECTORS = ("ob_unsigned.json", "ob_signed.json", "clr_unsigned.json", "clr_signed.json")


def _plain(document: dict[str, Any], loader: ContextLoader) -> str:
    """Canonical N-Quads from pyld alone: a new processor and new caches every time."""
    options = {
        "algorithm": "URDNA2015",
        "format": "application/n-quads",
        "base": None,
        "documentLoader": loader.load_document,
    }
    nquads = jsonld.JsonLdProcessor().normalize(copy.deepcopy(document), options)
    assert isinstance(nquads, str)
    return nquads


def _variants(edtech: Path) -> list[dict[str, Any]]:
    """The vectors, and each with different values and nesting, so documents of every
    shape follow one another through the same loader."""
    documents: list[dict[str, Any]] = []
    for name in VECTORS:
        vector = json.loads((edtech / "vectors" / name).read_text("utf-8"))
        documents.append(vector)
        renamed = copy.deepcopy(vector)
        renamed["name"] = "Ünïcode — renamed"
        renamed["id"] = "urn:uuid:6f1d0c52-3c9a-4d3e-8e2b-7a1c5d9e0f42"
        documents.append(renamed)
        subject = renamed.get("credentialSubject", {})
        if isinstance(subject.get("verifiableCredential"), list):
            nested = copy.deepcopy(renamed)
            inner = nested["credentialSubject"]["verifiableCredential"]
            nested["credentialSubject"]["verifiableCredential"] = inner + inner[:1]
            documents.append(nested)
    return documents


def test_cached_canonicalization_equals_a_fresh_processor(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    documents = _variants(edtech)
    expected = [_plain(d, loader) for d in documents]
    order = list(range(len(documents))) * 4
    random.Random(7).shuffle(order)
    for i in order:
        assert canonicalize(documents[i], loader) == expected[i], f"document {i}"
    assert len(loader._processed_contexts) > 0, "the processed contexts were reused"


def test_canonicalization_leaves_the_document_untouched(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    document = json.loads((edtech / "vectors" / "clr_signed.json").read_text("utf-8"))
    before = json.dumps(document, sort_keys=True)
    canonicalize(document, loader)
    canonicalize(document, loader)
    assert json.dumps(document, sort_keys=True) == before


def _awards(edtech: Path, count: int) -> list[dict[str, Any]]:
    """``count`` AchievementCredentials of the OB vector: one achievement and issuer in
    all of them (the nodes that recur), each with its own id and subject."""
    vector = json.loads((edtech / "vectors" / "ob_unsigned.json").read_text("utf-8"))
    awards = []
    for index in range(count):
        award = copy.deepcopy(vector)
        award["id"] = f"urn:uuid:00000000-0000-4000-8000-{index:012d}"
        award["credentialSubject"]["id"] = f"did:example:learner-{index}"
        awards.append(award)
    return awards


def test_recurring_nodes_are_expanded_once_and_give_what_pyld_gives(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    awards = _awards(edtech, 12)
    expected = [_plain(a, loader) for a in awards]
    assert [canonicalize(a, loader) for a in awards] == expected
    nodes = loader._expanded_nodes
    assert len(nodes) > 0, "recurring nodes were remembered"
    achievement = nodes._tried["achievement"]
    assert achievement == [11, 1], "the achievement was expanded once, then found 11 times"
    # A changed achievement is a different node: expanded anew, and its change signed.
    changed = copy.deepcopy(awards[0])
    changed["credentialSubject"]["achievement"]["name"] = "Renamed"
    assert canonicalize(changed, loader) == _plain(changed, loader) != expected[0]


def test_a_remembered_node_never_hides_an_undefined_term(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    good, bad = _awards(edtech, 2)
    bad["credentialSubject"]["achievement"]["undefinedTerm"] = "x"
    for _ in range(3):
        canonicalize(good, loader)
        # The same achievement with one more (undefined) key: refused every time, and
        # its expansion (which dropped the key) is never kept for the next document.
        with pytest.raises(UndefinedTermError, match="undefinedTerm"):
            canonicalize(bad, loader)
    # The good subject was found again twice; the bad one was expanded all three times.
    assert loader._expanded_nodes._tried["credentialSubject"] == [2, 1 + 3]


def test_a_remembered_expansion_is_handed_out_as_a_copy(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    # In a type map pyld adds each key's type to the node it just expanded. The two nodes
    # here are equal, so the second is found in the memo; handed out as the memo's own
    # object, the first key's type would end up on the second node (and in the memo).
    node = {"name": "Same node"}
    document = {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            {"byType": {"@id": "https://example.org/vocab#byType", "@container": "@type"}},
        ],
        "id": "https://example.org/things/1",
        "type": ["VerifiableCredential"],
        "byType": {"https://example.org/vocab#A": node, "https://example.org/vocab#B": dict(node)},
    }
    expected = _plain(document, loader)
    assert canonicalize(document, loader) == expected
    assert canonicalize(document, loader) == expected
    assert loader._expanded_nodes._tried["byType"][0] >= 1, "the second node was a memo hit"


def test_properties_whose_nodes_never_recur_stop_being_looked_up(edtech: Path) -> None:
    loader = ContextLoader.from_directory(edtech / "contexts")
    awards = _awards(edtech, 80)
    for award in awards:
        canonicalize(award, loader)
    nodes = loader._expanded_nodes
    # Each award's subject is its own: after the trial it is no longer looked up (or
    # kept), while the achievement that recurs still is.
    hits, misses = nodes._tried["credentialSubject"]
    assert (hits, misses) == (0, 64)
    assert nodes.worth_trying("credentialSubject") is None
    assert nodes.worth_trying("achievement") is not None
