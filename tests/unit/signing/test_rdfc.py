"""Our RDF conversion + RDFC-1.0 (``rdfc.py``) against pyld's ``normalize``, byte for byte.

pyld's output is the reference: the 1EdTech vectors, documents the project renders, seeded
random documents in expanded form covering every construct the conversion handles
(blank nodes, lists, @graph, @reverse, @included, @json, numbers, escapes, repeats), and
symmetric blank node shapes that need Hash N-Degree Quads. Documents ``rdfc.py`` hands
back (:class:`FallBack`) still canonicalize exactly as pyld does, through ``canon.py``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pyld import jsonld

from cayg_publish.domain.render.openbadges import (
    Issuer,
    OpenBadgesOptions,
    achievement_credential,
    clr_credential,
    learner_identifiers,
    sign_for_upload,
)
from cayg_shared.schema import Evidence, LearnerRef, Result, ResultType
from cayg_signing import ContextLoader, SigningKey, UndefinedTermError, canonicalize
from cayg_signing import canon as canon_module
from cayg_signing.proof import sign_credential
from cayg_signing.rdfc import FallBack, canonical_nquads
from unit.publish.publish_factories import (
    TENANT,
    award,
    definition,
    learner_identity,
)

pytestmark = pytest.mark.unit

Json = dict[str, Any]

EX = "http://example.org/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XSD = "http://www.w3.org/2001/XMLSchema#"
_ISSUER_DEPENDENT = "https://www.w3.org/ns/credentials/issuer-dependent#"


def _pyld(document: Any, loader: ContextLoader | None = None) -> str:
    """pyld alone: a fresh processor, URDNA2015, N-Quads."""
    options: Json = {"algorithm": "URDNA2015", "format": "application/n-quads", "base": None}
    if loader is not None:
        options["documentLoader"] = loader.load_document
    nquads = jsonld.JsonLdProcessor().normalize(copy.deepcopy(document), options)
    assert isinstance(nquads, str)
    return nquads


def _ours(document: Any, loader: ContextLoader | None = None) -> str:
    """pyld's expansion, then rdfc.py (raising FallBack when it hands the document back)."""
    options: Json = {"base": None}
    if loader is not None:
        options["documentLoader"] = loader.load_document
    expanded = jsonld.expand(copy.deepcopy(document), options)
    return canonical_nquads(expanded)


# -- the 1EdTech vectors and the project's own documents ---------------------------------


@pytest.mark.parametrize("vector", ["ob", "clr"])
@pytest.mark.parametrize("variant", ["unsigned", "signed"])
def test_vectors_equal_pyld_and_the_given_canonical_form(
    edtech: Path, loader: ContextLoader, vector: str, variant: str
) -> None:
    document = json.loads((edtech / "vectors" / f"{vector}_{variant}.json").read_text("utf-8"))
    document.pop("proof", None)
    expected = (edtech / "vectors" / f"{vector}_document_canon.nq").read_text("utf-8")

    assert _ours(document, loader) == expected
    assert _pyld(document, loader) == expected


@pytest.mark.parametrize("vector", ["ob", "clr"])
def test_signed_vectors_with_their_proofs_equal_pyld(
    edtech: Path, loader: ContextLoader, vector: str
) -> None:
    # With the proof in place the proof is a blank-node named graph (and so are the
    # proofs of a CLR's nested credentials).
    document = json.loads((edtech / "vectors" / f"{vector}_signed.json").read_text("utf-8"))
    assert _ours(document, loader) == _pyld(document, loader)


def test_proof_options_equal_pyld(edtech: Path, loader: ContextLoader) -> None:
    keys = json.loads((edtech / "vectors" / "keys.json").read_text("utf-8"))
    unsigned = json.loads((edtech / "vectors" / "clr_unsigned.json").read_text("utf-8"))
    options = {"@context": unsigned["@context"], **keys["proofOptions"]}
    expected = (edtech / "vectors" / "clr_proof_canon.nq").read_text("utf-8")
    assert _ours(options, loader) == expected


_OPTIONS = OpenBadgesOptions(
    issuer=Issuer(
        id="https://www.northfield.example/issuers/1",
        name="Northfield Community College",
        url="https://nf.example/",
    ),
    identity_salt=SecretStr("tenant-salt-secret"),
)


def _rendered(loader: ContextLoader, awards: int) -> tuple[Json, Json]:
    """An AchievementCredential and a signed CLR of ``awards`` signed credentials."""
    key = SigningKey.generate(f"{_OPTIONS.issuer.id}#key-1")

    def sign(document: Mapping[str, Any]) -> Json:
        return sign_credential(document, key, loader)

    entries = []
    first: Json = {}
    for i in range(awards):
        defined = definition(f"MC-{i}", name=f"Microcredential {i} — “quoted” \\ tab\t")
        given = award(
            f"AW-{i}",
            of=defined,
            results=(Result(name="Final grade", result_type=ResultType.LETTER_GRADE, value="A"),),
            evidence=(Evidence(url="https://portfolio.example/ada", name="Portfolio"),),
        )
        credential = achievement_credential(
            TENANT,
            f"{TENANT}/credential-award/AW-{i}",
            given,
            definition=defined,
            identifiers=learner_identifiers(given.learner, learner_identity()),
            options=_OPTIONS,
        )
        first = first or credential
        entries.append((credential, defined))
    identifiers = learner_identifiers(LearnerRef(person_ref="person-1"), learner_identity())
    clr = clr_credential(TENANT, "person:person-1", entries, identifiers, _OPTIONS)
    return first, sign_for_upload(clr, sign)


@pytest.mark.parametrize("awards", [1, 3])
def test_rendered_documents_equal_pyld(loader: ContextLoader, awards: int) -> None:
    credential, signed_clr = _rendered(loader, awards)
    unsigned_clr = {k: v for k, v in signed_clr.items() if k != "proof"}
    for document in (credential, signed_clr, unsigned_clr):
        expected = _pyld(document, loader)
        assert _ours(document, loader) == expected
        assert canonicalize(document, loader) == expected


# -- generated documents -------------------------------------------------------------------

_STRINGS = (
    "",
    "plain",
    "a",
    "Ünïcødé ✓ 𝄞 日本語",
    'quote " and backslash \\ and tab \t',
    "line\nfeed and\r\nreturn",
    "\x00\x01\x1f\x7f\u2028\ufeff",
    "<http://not.an.iri> _:b0 .",
    "1.5",
    "true",
)
_PROPERTIES = (*(f"{EX}p{i}" for i in range(4)), f"{RDF}type")
_IRIS = (*(f"{EX}n{i}" for i in range(4)), "urn:uuid:0f3c", "did:example:abc#key-1")
_BLANKS = ("_:b0", "_:b1", "_:x", "_:c14n0")
_DATATYPES = (
    f"{XSD}string",
    f"{XSD}integer",
    f"{XSD}double",
    f"{XSD}boolean",
    f"{EX}datatype",
    f"{RDF}langString",
)
_NUMBERS = (0, 1, -7, 42, 2**53 + 1, 10**20, 10**21, -(10**22), 1.0, -0.0, 100.0, 1.1, -0.5)
_MORE_NUMBERS = (0.1 + 0.2, 1e21, 1.5e300, 2.5e-7, 123456789.125, 1e-300, 5e-324)
_DOUBLE_TEXT = ("1.5", "abc", " 2 ", "1e400", "nan", "-0", "1_000", "")
_JSON: tuple[Any, ...] = (
    {"b": [1, 2.5, "x"], "a": None},
    [True, {"z": 1}, []],
    "text",
    3,
    1.5,
    None,
    {},
)


class _Generator:
    """Random documents in expanded form, drawing from small pools so nodes, values and
    blank node labels repeat (merges and duplicates)."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def value(self) -> Json:
        r = self.r
        kind = r.randrange(9)
        if kind == 0:
            return {"@value": r.choice(_STRINGS)}
        if kind == 1:
            return {"@value": r.choice(_STRINGS), "@language": r.choice(["en", "en-US", "fr"])}
        if kind == 2:
            return {"@value": r.choice(_STRINGS), "@type": r.choice(_DATATYPES)}
        if kind == 3:
            return {"@value": r.choice(_DOUBLE_TEXT), "@type": f"{XSD}double"}
        if kind == 4:
            item: Json = {"@value": r.choice([True, False])}
            if self.chance(0.3):
                item["@type"] = r.choice(_DATATYPES)
            return item
        if kind in {5, 6}:
            item = {"@value": r.choice(_NUMBERS + _MORE_NUMBERS)}
            if self.chance(0.3):
                item["@type"] = r.choice(_DATATYPES)
            return item
        if kind == 7:
            return {"@value": r.choice(_JSON), "@type": "@json"}
        return {"@value": r.choice(_STRINGS[:3]), "@index": r.choice(["i1", "i2"])}

    def identifier(self) -> str | None:
        roll = self.r.random()
        if roll < 0.35:
            return None
        if roll < 0.7:
            return self.r.choice(_BLANKS)
        return self.r.choice(_IRIS)

    def node(self, depth: int) -> Json:
        r = self.r
        node: Json = {}
        identifier = self.identifier()
        if identifier is not None:
            node["@id"] = identifier
        if self.chance(0.4):
            node["@type"] = [
                r.choice((f"{EX}T1", f"{EX}T2", "_:t")) for _ in range(r.randint(1, 3))
            ]
        for _ in range(r.randint(0, 3)):
            node.setdefault(r.choice(_PROPERTIES), []).extend(
                self.item(depth) for _ in range(r.randint(0, 3))
            )
        if depth > 0 and self.chance(0.15):
            node["@reverse"] = {
                r.choice(_PROPERTIES[:-1]): [self.node(depth - 1) for _ in range(r.randint(1, 2))]
            }
        if depth > 0 and self.chance(0.12):
            node["@graph"] = [self.node(depth - 1) for _ in range(r.randint(1, 3))]
        if depth > 0 and self.chance(0.1):
            node["@included"] = [self.described(depth - 1) for _ in range(r.randint(1, 2))]
        if node and self.chance(0.2):
            # The same thing twice: the repeat is dropped, merged or kept as pyld does.
            key = r.choice(list(node))
            if isinstance(node[key], list) and node[key] and key != "@type":
                node[key].append(copy.deepcopy(r.choice(node[key])))
        return node

    def described(self, depth: int) -> Json:
        """A node object with at least one property (what @included takes)."""
        node = self.node(depth)
        node[f"{EX}d"] = [self.value()]
        return node

    def item(self, depth: int) -> Json:
        roll = self.r.random()
        if roll < 0.5 or depth == 0:
            return self.value()
        if roll < 0.65:
            return {"@id": self.r.choice(_IRIS + _BLANKS)}
        if roll < 0.8:
            return {"@list": [self.item(depth - 1) for _ in range(self.r.randint(0, 3))]}
        return self.node(depth - 1)

    def document(self) -> list[Json]:
        return [self.node(3) for _ in range(self.r.randint(1, 4))]


@pytest.mark.parametrize("block", range(8))
def test_generated_documents_equal_pyld(block: int) -> None:
    fast = 0
    for seed in range(block * 60, (block + 1) * 60):
        document = _Generator(seed).document()
        expected = _pyld(document)
        try:
            ours = _ours(document)
        except FallBack:
            continue
        assert ours == expected, f"seed {seed}: {json.dumps(document)}"
        fast += 1
    # The generator mostly builds documents rdfc.py handles itself.
    assert fast >= 50


@pytest.mark.parametrize("seed", range(40))
def test_generated_documents_through_canonicalize_equal_pyld(
    loader: ContextLoader, seed: int
) -> None:
    document = {"@context": {}, "@graph": _Generator(10_000 + seed).document()}
    expected = _pyld(document)
    if not expected:
        with pytest.raises(Exception, match="no RDF statements"):
            canonicalize(document, loader)
        return
    assert canonicalize(document, loader) == expected


# -- the value and literal rules, one by one ------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"@value": 1.1},
        {"@value": 1.0},
        {"@value": -0.0},
        {"@value": 10**21},
        {"@value": 10**21 - 1},
        {"@value": 1e21},
        {"@value": 5e-324},
        {"@value": 7, "@type": f"{XSD}double"},
        {"@value": "7", "@type": f"{XSD}double"},
        {"@value": "seven", "@type": f"{XSD}double"},
        {"@value": True, "@type": f"{EX}flag"},
        {"@value": 3, "@type": f"{EX}count"},
        {"@value": "x", "@type": f"{RDF}langString"},
        {"@value": "x", "@language": "en-GB"},
        {"@value": {"z": [1, 2.0, 1e21, "é"], "a": {"b": None}}, "@type": "@json"},
        {"@value": None, "@type": "@json"},
        {"@value": 'esc \\ " \t \n \r \b \f \x00', "@type": f"{EX}dt"},
    ],
)
def test_each_kind_of_literal_equals_pyld(value: Json) -> None:
    document = [{"@id": f"{EX}s", f"{EX}p": [value, {"@list": [value, value]}]}]
    assert _ours(document) == _pyld(document)


def test_repeats_are_dropped_or_kept_as_pyld_does() -> None:
    values = [
        {"@value": "a"},
        {"@value": "a"},
        {"@value": "a", "@type": f"{XSD}string"},
        {"@value": 1},
        {"@value": 1.0},
        {"@value": "1", "@type": f"{XSD}integer"},
        {"@value": True},
        {"@value": "true", "@type": f"{XSD}boolean"},
        {"@value": "a", "@index": "one"},
        {"@value": "a", "@index": "two"},
        {"@value": {"k": 1}, "@type": "@json"},
        {"@value": {"k": 1.0}, "@type": "@json"},
        {"@id": f"{EX}o"},
        {"@id": f"{EX}o"},
        {"@list": []},
        {"@list": []},
    ]
    document = [
        {
            "@id": f"{EX}s",
            "@type": [f"{EX}T", f"{EX}T"],
            f"{RDF}type": [{"@id": f"{EX}T"}],
            f"{EX}p": values,
        },
        {"@id": f"{EX}s", f"{EX}p": values[:3]},
        {"@id": f"{EX}o", "@reverse": {f"{EX}p": [{"@id": f"{EX}s"}]}},
    ]
    ours = _ours(document)
    assert ours == _pyld(document)
    # "a", "a"^^xsd:string and "a" with either @index: four value objects, one quad each.
    assert ours.count(f'<{EX}s> <{EX}p> "a" .\n') == 4
    assert ours.count(f"<{EX}s> <{RDF}type> <{EX}T> .\n") == 2  # @type and rdf:type


def test_a_new_blank_node_naming_its_own_quad_in_reverse_is_one_quad() -> None:
    # _:s p [ ] and, from inside [ ], the same quad again through @reverse.
    document = [
        {
            "@id": "_:s",
            f"{EX}p": [{f"{EX}q": [{"@value": 1}], "@reverse": {f"{EX}p": [{"@id": "_:s"}]}}],
        }
    ]
    ours = _ours(document)
    assert ours == _pyld(document)
    assert len(ours.splitlines()) == 2


# -- symmetric blank node shapes (Hash N-Degree Quads) ------------------------------------


def _ring(labels: list[str], prop: str = f"{EX}next", graph: str | None = None) -> list[Json]:
    nodes = [
        {"@id": label, prop: [{"@id": labels[(i + 1) % len(labels)]}], f"{EX}v": [{"@value": 1}]}
        for i, label in enumerate(labels)
    ]
    return [{"@id": graph, "@graph": nodes}] if graph else nodes


def _clique(labels: list[str]) -> list[Json]:
    return [
        {"@id": label, f"{EX}knows": [{"@id": other} for other in labels if other != label]}
        for label in labels
    ]


def _shapes() -> dict[str, list[Json]]:
    def labels(prefix: str, n: int) -> list[str]:
        return [f"_:{prefix}{i}" for i in range(n)]

    return {
        "ring2": _ring(labels("a", 2)),
        "ring5": _ring(labels("a", 5)),
        "two rings of 3": _ring(labels("a", 3)) + _ring(labels("b", 3)),
        "ring6": _ring(labels("a", 6)),
        "clique4": _clique(labels("k", 4)),
        "two cliques": _clique(labels("k", 3)) + _clique(labels("m", 3)),
        "star": [{"@id": "_:hub", f"{EX}leaf": [{f"{EX}v": [{"@value": "x"}]} for _ in range(4)]}],
        "rings in blank graphs": _ring(labels("a", 3), graph="_:g1")
        + _ring(labels("b", 3), graph="_:g2"),
        "ring in an IRI graph": _ring(labels("a", 4), graph=f"{EX}g"),
        "self loops": [{"@id": f"_:s{i}", f"{EX}p": [{"@id": f"_:s{i}"}]} for i in range(3)],
        "undirected pairs": [
            {"@id": "_:p0", f"{EX}p": [{"@id": "_:p1"}]},
            {"@id": "_:p1", f"{EX}p": [{"@id": "_:p0"}]},
            {"@id": "_:q0", f"{EX}p": [{"@id": "_:q1"}]},
            {"@id": "_:q1", f"{EX}p": [{"@id": "_:q0"}]},
        ],
        "lists of identical cells": [
            {"@id": f"{EX}s", f"{EX}p": [{"@list": [{"@value": "x"}] * 4}] * 2},
        ],
    }


def _blank_labels(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if value.startswith("_:") else set()
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(*(_blank_labels(item) for item in items))


def _relabelled(value: Any, labels: dict[str, str]) -> Any:
    if isinstance(value, str):
        return labels.get(value, value)
    if isinstance(value, dict):
        return {key: _relabelled(item, labels) for key, item in value.items()}
    if isinstance(value, list):
        return [_relabelled(item, labels) for item in value]
    return value


@pytest.mark.parametrize("shape", list(_shapes()))
def test_symmetric_shapes_equal_pyld_under_any_labelling(shape: str) -> None:
    document = _shapes()[shape]
    expected = _pyld(document)
    labels = sorted(_blank_labels(document))
    for seed in range(4):
        shuffled = labels[:]
        random.Random(seed).shuffle(shuffled)
        nodes = _relabelled(document, dict(zip(labels, shuffled, strict=True)))
        random.Random(seed).shuffle(nodes)
        assert _ours(nodes) == expected, seed
    assert "_:c14n" in expected


def test_two_triangles_and_a_hexagon_differ() -> None:
    triangles = _ring([f"_:a{i}" for i in range(3)]) + _ring([f"_:b{i}" for i in range(3)])
    hexagon = _ring([f"_:h{i}" for i in range(6)])
    assert _ours(triangles) == _pyld(triangles)
    assert _ours(hexagon) == _pyld(hexagon)
    assert _ours(triangles) != _ours(hexagon)


# -- what rdfc.py hands back, and canonicalize still equals pyld ---------------------------


def test_node_with_index_goes_to_pyld(loader: ContextLoader) -> None:
    nodes = [{"@id": f"{EX}s", "@index": "i", f"{EX}p": [{"@value": "x"}]}]
    with pytest.raises(FallBack, match="@index"):
        _ours(nodes)
    document = {"@context": {}, "@graph": nodes}
    assert canonicalize(document, loader) == _pyld(document)


def test_equal_json_values_printing_differently_go_to_pyld(loader: ContextLoader) -> None:
    # Python's == (which pyld uses) holds [true] equal to [1]; JSON prints them apart.
    values = [{"@value": [True], "@type": "@json"}, {"@value": [1], "@type": "@json"}]
    nodes = [{"@id": f"{EX}s", f"{EX}p": values}]
    with pytest.raises(FallBack, match="@json"):
        _ours(nodes)
    document = {"@context": {}, "@graph": nodes}
    assert canonicalize(document, loader) == _pyld(document)


def test_related_list_repeating_a_node_among_others_goes_to_pyld(loader: ContextLoader) -> None:
    # _:x names _:tx and _:ux twice each (as @type and as rdf:type), and the two look
    # the same; _:y is built like _:x, so both need Hash N-Degree Quads. Whether the list
    # [_:tx, _:tx, _:ux, _:ux] is reached depends on the order of the hashes, so on "k".
    def nodes(k: int) -> list[Json]:
        return [
            {
                "@id": node,
                "@type": [f"_:t{node[-1]}", f"_:u{node[-1]}"],
                f"{RDF}type": [{"@id": f"_:t{node[-1]}"}, {"@id": f"_:u{node[-1]}"}],
                f"{EX}k": [{"@value": k}],
            }
            for node in ("_:x", "_:y")
        ]

    with pytest.raises(FallBack, match="repeats a node"):
        _ours(nodes(1))
    document = {"@context": {}, "@graph": nodes(1)}
    assert canonicalize(document, loader) == _pyld(document)
    # Reached from the other side, the lists repeat one node only: handled here.
    assert _ours(nodes(0)) == _pyld(nodes(0))


_REFUSED_NODES = (
    {"@id": "relative/id"},
    {"@id": 7},
    {"@id": f"{EX}o", "@type": ["Relative"]},
    {"@id": f"{EX}o", "_:blank-property": [{"@value": "x"}]},
    {"@id": f"{EX}o", "relative": [{"@value": "x"}]},
    {"@id": f"{EX}o", f"{_ISSUER_DEPENDENT}x": [{"@value": 1}]},
    {"@id": f"{EX}o", "@reverse": {"relative": [{"@id": f"{EX}z"}]}},
)
_REFUSED_VALUES = (
    {"@value": "x", "@type": "_:dt"},
    {"@value": "x", "@type": "relative"},
    {"@value": "x", "@type": f"{_ISSUER_DEPENDENT}dt"},
    {"@value": "x", "@language": "ar", "@direction": "rtl"},
)


def _placed(bad: Json, where: str) -> list[Json]:
    """``bad`` inside an otherwise good expanded document, at ``where``."""
    if "@value" in bad:
        places: dict[str, Json] = {
            "property": {f"{EX}p": [bad]},
            "list": {f"{EX}p": [{"@list": [{"@value": "ok"}, {"@list": [bad]}]}]},
            "graph": {"@graph": [{"@id": f"{EX}g", f"{EX}p": [bad]}]},
            "included": {"@included": [{f"{EX}p": [bad]}]},
            "reverse": {"@reverse": {f"{EX}p": [{f"{EX}p": [bad]}]}},
            "repeat": {f"{EX}p": [{"@value": "x"}, {"@value": "x"} | bad]},
        }
    else:
        places = {
            "property": {f"{EX}p": [bad]},
            "list": {f"{EX}p": [{"@list": [{"@value": "ok"}, bad]}]},
            "graph": {"@graph": [bad]},
            "included": {"@included": [bad]},
            "reverse": {"@reverse": {f"{EX}p": [bad]}},
            "repeat": {f"{EX}p": [{"@id": f"{EX}o"}, bad]},
        }
    inner = places[where]
    return [{"@id": f"{EX}s", f"{EX}ok": [{"@value": "fine"}], **inner}]


@pytest.mark.parametrize("bad", _REFUSED_NODES + _REFUSED_VALUES)
@pytest.mark.parametrize("where", ["property", "list", "graph", "included", "reverse", "repeat"])
def test_whatever_the_strict_walk_refuses_is_handed_back(bad: Json, where: str) -> None:
    # The walk in canon.py then lists every problem, with the messages the other tests
    # check; rdfc.py only has to stop.
    expanded = _placed(bad, where)
    assert canon_module._undefined_in_expanded(expanded)
    with pytest.raises(FallBack):
        canonical_nquads(expanded)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"@id": "relative/id", f"{EX}p": [{"@value": 1}]}, "not an absolute IRI"),
        ({"@id": f"{EX}o", "@type": ["Relative"]}, "type 'Relative'"),
        ({"@value": "x", "@language": "ar", "@direction": "rtl"}, "@direction"),
        (
            {
                "@id": f"{EX}o",
                "https://www.w3.org/ns/credentials/issuer-dependent#x": [{"@value": 1}],
            },
            "issuer-dependent",
        ),
    ],
)
@pytest.mark.parametrize("where", ["property", "list", "reverse"])
def test_canonicalize_refuses_as_before(
    loader: ContextLoader, bad: Json, reason: str, where: str
) -> None:
    document = {"@context": {}, "@graph": _placed(bad, where)}
    with pytest.raises(UndefinedTermError, match=reason):
        canonicalize(document, loader)
