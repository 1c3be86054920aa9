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

from cayg_signing import ContextLoader, canonicalize

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
