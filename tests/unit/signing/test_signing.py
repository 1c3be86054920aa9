"""eddsa-rdfc-2022 DataIntegrityProof signing against the official 1EdTech vectors."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pyld import jsonld

from cayg_signing import (
    PINNED_CONTEXTS,
    ContextError,
    ContextLoader,
    KeyFormatError,
    ProofError,
    SigningError,
    SigningKey,
    UndefinedTermError,
    canonicalize,
    did_key,
    encode_multibase,
    hash_data,
    public_key_from_did_key,
    sign_credential,
    verify_credential,
)

pytestmark = pytest.mark.unit

VECTORS = ("ob", "clr")
CREATED = datetime(2010, 1, 1, 19, 23, 24, tzinfo=UTC)  # the vectors' proof.created
Json = dict[str, Any]


# --------------------------------------------------------------------------- fixtures


def _vector(edtech: Path, name: str) -> Json:
    data: Json = json.loads((edtech / "vectors" / name).read_text("utf-8"))
    return data


def _only_proof(document: Json) -> Json:
    """The single proof of a document (the CLR vector writes it as a one-item list)."""
    proof = document["proof"]
    if isinstance(proof, list):
        assert len(proof) == 1
        proof = proof[0]
    assert isinstance(proof, dict)
    return proof


def _credential_for(key: SigningKey) -> Json:
    """A small OB 3.0 credential whose issuer is the key's DID."""
    did = key.did_key.partition("#")[0]
    return {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
        ],
        "id": "urn:uuid:0b6b8a9e-4f3e-4b0a-9f51-0d8f4f1b2c3d",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": {"id": did, "type": ["Profile"], "name": "Cayg Community College"},
        "validFrom": "2024-05-01T00:00:00Z",
        "name": "Welding Level 1",
        "credentialSubject": {
            "id": "did:example:learner-1",
            "type": ["AchievementSubject"],
            "achievement": {
                "id": "https://cayg.example/achievements/welding-1",
                "type": ["Achievement"],
                "criteria": {"narrative": "Passed the practical assessment."},
                "description": "Basic MIG welding.",
                "name": "Welding Level 1",
            },
        },
    }


# ------------------------------------------------------------- official vectors, exact


def test_pins_are_the_reference_files(edtech: Path) -> None:
    mapping = json.loads((edtech / "contexts" / "contexts.json").read_text("utf-8"))
    assert set(mapping) == set(PINNED_CONTEXTS)
    for url, name in mapping.items():
        digest = hashlib.sha256((edtech / "contexts" / name).read_bytes()).hexdigest()
        assert PINNED_CONTEXTS[url].sha256 == digest, url


@pytest.mark.parametrize("vector", VECTORS)
def test_document_canonical_nquads_match_vector_byte_for_byte(
    edtech: Path, loader: ContextLoader, keys_json: Json, vector: str
) -> None:
    unsigned = _vector(edtech, f"{vector}_unsigned.json")
    expected = (edtech / "vectors" / f"{vector}_document_canon.nq").read_bytes()
    nquads = canonicalize(unsigned, loader)
    assert nquads.encode("utf-8") == expected
    assert hashlib.sha256(expected).hexdigest() == keys_json["vectors"][vector]["documentHashHex"]


@pytest.mark.parametrize("vector", VECTORS)
def test_signed_document_minus_proof_canonicalizes_like_unsigned(
    edtech: Path, loader: ContextLoader, vector: str
) -> None:
    signed = _vector(edtech, f"{vector}_signed.json")
    del signed["proof"]
    expected = (edtech / "vectors" / f"{vector}_document_canon.nq").read_text("utf-8")
    assert canonicalize(signed, loader) == expected


@pytest.mark.parametrize("vector", VECTORS)
def test_proof_options_canonical_nquads_match_vector_byte_for_byte(
    edtech: Path, loader: ContextLoader, keys_json: Json, vector: str
) -> None:
    unsigned = _vector(edtech, f"{vector}_unsigned.json")
    options = {"@context": unsigned["@context"], **keys_json["proofOptions"]}
    expected = (edtech / "vectors" / f"{vector}_proof_canon.nq").read_bytes()
    assert canonicalize(options, loader).encode("utf-8") == expected
    assert hashlib.sha256(expected).hexdigest() == keys_json["vectors"][vector]["proofHashHex"]


@pytest.mark.parametrize("vector", VECTORS)
def test_hash_data_is_proof_hash_then_document_hash(
    edtech: Path, keys_json: Json, vector: str
) -> None:
    proof_nq = (edtech / "vectors" / f"{vector}_proof_canon.nq").read_text("utf-8")
    doc_nq = (edtech / "vectors" / f"{vector}_document_canon.nq").read_text("utf-8")
    assert hash_data(proof_nq, doc_nq).hex() == keys_json["vectors"][vector]["dataToSignHex"]


def test_vector_key_pair_is_read_exactly(keys_json: Json, vector_key: SigningKey) -> None:
    pair = keys_json["keyPair"]
    assert vector_key.public_key.hex() == pair["publicKeyHex"]
    assert vector_key.public_key_multibase == pair["publicKeyMultibase"]
    assert vector_key.verification_method == pair["verificationMethod"]
    # The spec's 64-byte secret is seed || public key; we write the 32-byte seed form.
    assert SigningKey.from_json(vector_key.to_json()).public_key == vector_key.public_key


@pytest.mark.parametrize("vector", VECTORS)
def test_signing_unsigned_vector_reproduces_proof_value(
    edtech: Path, loader: ContextLoader, keys_json: Json, vector_key: SigningKey, vector: str
) -> None:
    unsigned = _vector(edtech, f"{vector}_unsigned.json")
    before = copy.deepcopy(unsigned)
    signed = sign_credential(unsigned, vector_key, loader, created=CREATED)

    assert unsigned == before  # the input is not modified
    proof = signed["proof"]
    assert proof["proofValue"] == keys_json["vectors"][vector]["proofValue"]
    expected_signed = _vector(edtech, f"{vector}_signed.json")
    assert proof == _only_proof(expected_signed)
    assert {k: v for k, v in signed.items() if k != "proof"} == unsigned


def test_created_in_another_timezone_is_written_in_utc(
    edtech: Path, loader: ContextLoader, keys_json: Json, vector_key: SigningKey
) -> None:
    unsigned = _vector(edtech, "ob_unsigned.json")
    plus_two = CREATED.astimezone(timezone(timedelta(hours=2)))
    signed = sign_credential(unsigned, vector_key, loader, created=plus_two)
    assert signed["proof"]["created"] == "2010-01-01T19:23:24Z"
    assert signed["proof"]["proofValue"] == keys_json["vectors"]["ob"]["proofValue"]


# ------------------------------------------------------------------------ verification


@pytest.mark.parametrize("vector", VECTORS)
def test_signed_vectors_verify(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes], vector: str
) -> None:
    verify_credential(_vector(edtech, f"{vector}_signed.json"), loader, trusted_keys=trusted)


def test_achievement_credential_embedded_in_clr_verifies(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    clr = _vector(edtech, "clr_signed.json")
    inner = clr["credentialSubject"]["verifiableCredential"]
    assert len(inner) == 1
    assert "AchievementCredential" in inner[0]["type"]
    verify_credential(inner[0], loader, trusted_keys=trusted)
    # Its document hash as stated in the conformance README.
    unsigned_inner = {k: v for k, v in inner[0].items() if k != "proof"}
    digest = hashlib.sha256(canonicalize(unsigned_inner, loader).encode()).hexdigest()
    assert digest == "f7eefd823402bf4224a6bba0d502ab764168b3b3b01a5ab02631fa2113cb1f27"


@pytest.mark.parametrize(
    "name",
    ["clr_signed_neg_name_removed.json", "clr_signed_neg_association_tampered.json"],
)
def test_negative_vectors_fail(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes], name: str
) -> None:
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential(_vector(edtech, name), loader, trusted_keys=trusted)


def test_https_method_needs_a_trusted_key(edtech: Path, loader: ContextLoader) -> None:
    signed = _vector(edtech, "ob_signed.json")
    with pytest.raises(ProofError, match="not a trusted key"):
        verify_credential(signed, loader)
    other = SigningKey.generate()
    method = _only_proof(signed)["verificationMethod"]
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential(signed, loader, trusted_keys={method: other.public_key})
    with pytest.raises(ProofError, match="32-byte"):
        verify_credential(signed, loader, trusted_keys={method: b"short"})


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*path, index))
    else:
        yield path


def _key_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of every object member, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _key_paths(item, (*path, index))


def _parent(document: Json, path: tuple[Any, ...]) -> Any:
    node: Any = document
    for step in path[:-1]:
        node = node[step]
    return node


def _tampered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    assert isinstance(value, str)
    return value[:-1] + ("X" if value[-1:] != "X" else "Y")


def _still_verifying(
    document: Json, loader: ContextLoader, trusted: dict[str, bytes], change: Callable[[Json], None]
) -> bool:
    changed = copy.deepcopy(document)
    change(changed)
    try:
        verify_credential(changed, loader, trusted_keys=trusted)
    except ProofError:
        return False
    return True


@pytest.mark.parametrize("vector", VECTORS)
def test_changing_any_single_value_fails_verification(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes], vector: str
) -> None:
    signed = _vector(edtech, f"{vector}_signed.json")
    paths = list(_leaf_paths(signed))
    assert len(paths) > 20

    def change(path: tuple[Any, ...]) -> Callable[[Json], None]:
        def apply(doc: Json) -> None:
            parent = _parent(doc, path)
            parent[path[-1]] = _tampered(parent[path[-1]])

        return apply

    survivors = [p for p in paths if _still_verifying(signed, loader, trusted, change(p))]
    assert survivors == []


def _remove(path: tuple[Any, ...]) -> Callable[[Json], None]:
    def apply(doc: Json) -> None:
        del _parent(doc, path)[path[-1]]

    return apply


def test_removing_any_single_member_fails_verification(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    signed = _vector(edtech, "ob_signed.json")
    paths = list(_key_paths(signed))
    assert len(paths) > 20
    survivors = [p for p in paths if _still_verifying(signed, loader, trusted, _remove(p))]
    assert survivors == []


def test_clr_removals_that_verify_are_exactly_those_leaving_the_rdf_unchanged(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    # The proof covers the RDF dataset, not the JSON text. The CLR vector states some
    # facts twice (the issuer is also the achievements' creator, achievements appear both
    # in the CLR and in the embedded credential), so deleting one copy of such a fact
    # leaves the dataset, and therefore the proof, unchanged. Every other removal must
    # break the proof.
    signed = _vector(edtech, "clr_signed.json")
    unsigned = {k: v for k, v in signed.items() if k != "proof"}
    original = canonicalize(unsigned, loader)
    survivors = 0
    for path in _key_paths(unsigned):
        changed = copy.deepcopy(signed)
        _remove(path)(changed)
        try:
            verify_credential(changed, loader, trusted_keys=trusted)
        except ProofError:
            continue
        survivors += 1
        del changed["proof"]
        assert canonicalize(changed, loader) == original, path
    assert survivors > 0  # the vector really has such redundant copies


def test_adding_a_defined_term_fails_verification(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    signed = _vector(edtech, "ob_signed.json")
    signed["description"] = "Added after signing"
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential(signed, loader, trusted_keys=trusted)


def test_adding_an_undefined_term_fails_verification(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    # A plain JSON-LD processor drops "gpa" before hashing, so the signature alone would
    # still match; the strict check is what catches it.
    signed = _vector(edtech, "ob_signed.json")
    signed["credentialSubject"]["gpa"] = "4.0"
    with pytest.raises(ProofError, match="'gpa' is not defined"):
        verify_credential(signed, loader, trusted_keys=trusted)


def test_undefined_term_in_proof_fails_verification(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    signed = _vector(edtech, "ob_signed.json")
    signed["proof"]["note"] = "x"
    with pytest.raises(ProofError, match=r"proof options.*'note' is not defined"):
        verify_credential(signed, loader, trusted_keys=trusted)


@pytest.mark.parametrize(
    ("member", "value", "reason"),
    [
        ("type", "Ed25519Signature2020", "unsupported proof type"),
        ("cryptosuite", "ecdsa-rdfc-2019", "unsupported cryptosuite"),
        ("proofPurpose", "authentication", "proofPurpose"),
        ("proofValue", "not-multibase", "base58btc"),
        ("proofValue", "z3yMApqCuCjXDWPrbjfR5mjCPTHqFG8Pux1TxQrEM35jj", "64"),
        ("previousProof", "urn:uuid:1", "previousProof"),
    ],
)
def test_malformed_proofs_are_rejected_with_a_reason(
    edtech: Path,
    loader: ContextLoader,
    trusted: dict[str, bytes],
    member: str,
    value: str,
    reason: str,
) -> None:
    signed = _vector(edtech, "ob_signed.json")
    signed["proof"][member] = value
    with pytest.raises(ProofError, match=reason):
        verify_credential(signed, loader, trusted_keys=trusted)


def test_non_canonical_proof_value_is_rejected(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    signed = _vector(edtech, "ob_signed.json")
    signed["proof"]["proofValue"] += " "  # base58 decoders strip trailing whitespace
    with pytest.raises(ProofError, match="canonical"):
        verify_credential(signed, loader, trusted_keys=trusted)


def test_missing_proof_is_rejected(edtech: Path, loader: ContextLoader) -> None:
    with pytest.raises(ProofError, match="no proof"):
        verify_credential(_vector(edtech, "ob_unsigned.json"), loader)


# ---------------------------------------------------------------- undefined terms


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.__setitem__("honours", "cum laude"), "'honours' is not defined"),
        (
            lambda d: d["credentialSubject"]["achievement"].__setitem__("creditHours", 3),
            "'creditHours' is not defined",
        ),
        (lambda d: d["type"].append("DiplomaCredential"), "type 'DiplomaCredential'"),
        (lambda d: d["credentialSubject"].__setitem__("id", "learner-1"), "id 'learner-1'"),
        (lambda d: d.__setitem__("@weird", 1), "shaped like a JSON-LD keyword"),
        (
            lambda d: (
                d["@context"].append(
                    {"@vocab": "https://www.w3.org/ns/credentials/issuer-dependent#"}
                )
                or d.__setitem__("honours", "x")
            ),
            "issuer-dependent",
        ),
    ],
)
def test_signing_refuses_data_the_contexts_do_not_define(
    edtech: Path,
    loader: ContextLoader,
    vector_key: SigningKey,
    change: Callable[[Json], Any],
    reason: str,
) -> None:
    credential = _vector(edtech, "ob_unsigned.json")
    change(credential)
    with pytest.raises(UndefinedTermError, match=reason) as caught:
        sign_credential(credential, vector_key, loader, created=CREATED)
    assert isinstance(caught.value, SigningError)
    assert caught.value.problems


def test_signing_refuses_unknown_context_without_fetching(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(url: str, options: Any = None) -> Any:
        pytest.fail(f"pyld's default (network) document loader was asked for {url}")

    monkeypatch.setattr(jsonld, "_default_document_loader", no_network)
    credential = _vector(edtech, "ob_unsigned.json")
    credential["@context"].append("https://example.org/contexts/extra.json")
    with pytest.raises(SigningError, match=re.escape("extra.json' is not available offline")):
        sign_credential(credential, vector_key, loader, created=CREATED)
    # and the normal path does not use it either
    sign_credential(_vector(edtech, "clr_unsigned.json"), vector_key, loader, created=CREATED)


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        ({"name": "x"}, "no @context"),
        ({"@context": ["https://www.w3.org/ns/credentials/v2"]}, "no RDF statements"),
        ({"@context": [], "validFrom": datetime(2024, 1, 1)}, "not plain JSON"),
        ({"@context": [], "proof": {}}, "already has a proof"),
    ],
)
def test_signing_refuses_unusable_documents(
    loader: ContextLoader, vector_key: SigningKey, credential: Json, reason: str
) -> None:
    with pytest.raises(SigningError, match=reason):
        sign_credential(credential, vector_key, loader, created=CREATED)


def test_naive_created_is_refused(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    with pytest.raises(SigningError, match="timezone-aware"):
        sign_credential(
            _vector(edtech, "ob_unsigned.json"), vector_key, loader, created=datetime(2024, 1, 1)
        )


# ------------------------------------------------------------------------- contexts


def _copy_contexts(edtech: Path, target: Path) -> Path:
    target.mkdir()
    for source in (edtech / "contexts").iterdir():
        (target / source.name).write_bytes(source.read_bytes())
    return target


def test_context_file_not_matching_its_pin_is_refused(edtech: Path, tmp_path: Path) -> None:
    directory = _copy_contexts(edtech, tmp_path / "contexts")
    target = directory / "ob-v3p0-3.0.3.json"
    # Same JSON meaning, one extra trailing newline: still not the pinned bytes.
    target.write_bytes(target.read_bytes() + b"\n")
    with pytest.raises(ContextError, match=re.escape("context-3.0.3.json' has sha256")):
        ContextLoader.from_directory(directory)


def test_context_with_changed_term_is_refused(edtech: Path, tmp_path: Path) -> None:
    directory = _copy_contexts(edtech, tmp_path / "contexts")
    target = directory / "clr-v2p0-2.0.1.json"
    text = target.read_text("utf-8")
    changed = text.replace("vocab.html#ClrCredential", "vocab.html#Transcript")
    assert changed != text
    target.write_text(changed, "utf-8")
    with pytest.raises(ContextError, match="refusing"):
        ContextLoader.from_directory(directory)


def test_unpinned_url_in_map_is_refused(edtech: Path, tmp_path: Path) -> None:
    directory = _copy_contexts(edtech, tmp_path / "contexts")
    mapping = json.loads((directory / "contexts.json").read_text("utf-8"))
    mapping["https://example.org/other.json"] = "credentials-v2.jsonld"
    (directory / "contexts.json").write_text(json.dumps(mapping), "utf-8")
    with pytest.raises(ContextError, match="not pinned"):
        ContextLoader.from_directory(directory)


def test_map_cannot_point_outside_the_directory(edtech: Path, tmp_path: Path) -> None:
    directory = _copy_contexts(edtech, tmp_path / "contexts")
    mapping = {"https://www.w3.org/ns/credentials/v2": "../credentials-v2.jsonld"}
    (directory / "contexts.json").write_text(json.dumps(mapping), "utf-8")
    with pytest.raises(ContextError, match="not plain"):
        ContextLoader.from_directory(directory)


def test_directory_without_map_uses_pinned_file_names(edtech: Path, tmp_path: Path) -> None:
    directory = _copy_contexts(edtech, tmp_path / "contexts")
    (directory / "contexts.json").unlink()
    assert ContextLoader.from_directory(directory).urls == frozenset(PINNED_CONTEXTS)
    (directory / "clr-v2p0-2.0.1.json").unlink()
    with pytest.raises(ContextError, match="cannot read context"):
        ContextLoader.from_directory(directory)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="does not exist"):
        ContextLoader.from_directory(tmp_path / "nowhere")


def test_loader_works_as_a_pyld_document_loader(loader: ContextLoader, edtech: Path) -> None:
    expanded = jsonld.expand(_vector(edtech, "ob_unsigned.json"), {"documentLoader": loader})
    assert expanded[0]["@id"] == "http://example.com/credentials/3527"
    with pytest.raises(ContextError, match="not available offline"):
        loader("https://example.org/unknown.jsonld", {})
    # Callers cannot change the pinned document through what the loader hands out.
    url = "https://www.w3.org/ns/credentials/v2"
    loader.load_document(url)["document"]["@context"].clear()
    assert loader.load_document(url)["document"]["@context"]


# -------------------------------------------------------------------- keys and did:key


def test_generated_did_key_round_trips(loader: ContextLoader) -> None:
    key = SigningKey.generate()
    assert re.fullmatch(r"did:key:(z6Mk[1-9A-HJ-NP-Za-km-z]+)#\1", key.verification_method)
    assert key.did_key == key.verification_method == did_key(key.public_key)
    assert public_key_from_did_key(key.did_key) == key.public_key

    signed = sign_credential(_credential_for(key), key, loader)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", signed["proof"]["created"])
    verify_credential(signed, loader)  # the key comes from the DID itself

    signed["credentialSubject"]["achievement"]["name"] = "Welding Level 2"
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential(signed, loader)


def test_did_key_naming_another_key_is_rejected(loader: ContextLoader) -> None:
    signer, named = SigningKey.generate(), SigningKey.generate()
    credential = _credential_for(named)  # the issuer is the DID the proof names
    signed = sign_credential(credential, signer, loader)
    signed["proof"]["verificationMethod"] = named.did_key
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential(signed, loader)


def test_did_key_fragment_mismatch_is_rejected(loader: ContextLoader) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    signed = sign_credential(_credential_for(key), key, loader)
    did = key.did_key.partition("#")[0]
    signed["proof"]["verificationMethod"] = f"{did}#{other.public_key_multibase}"
    with pytest.raises(ProofError, match="fragment"):
        verify_credential(signed, loader)
    signed["proof"]["verificationMethod"] = did
    with pytest.raises(ProofError, match="no '#' fragment"):
        verify_credential(signed, loader)


def test_did_key_of_someone_other_than_the_issuer_needs_trust(loader: ContextLoader) -> None:
    key, issuer = SigningKey.generate(), SigningKey.generate()
    signed = sign_credential(_credential_for(issuer), key, loader)
    with pytest.raises(ProofError, match="not controlled by the issuer"):
        verify_credential(signed, loader)
    verify_credential(signed, loader, trusted_keys={key.did_key: key.public_key})
    with pytest.raises(ProofError, match="not the key that did:key names"):
        verify_credential(signed, loader, trusted_keys={key.did_key: issuer.public_key})


def test_signing_key_refuses_did_key_of_another_key() -> None:
    other = SigningKey.generate()
    with pytest.raises(KeyFormatError, match="different public key"):
        SigningKey.generate(verification_method=other.did_key)


def test_key_file_round_trip(tmp_path: Path, loader: ContextLoader) -> None:
    key = SigningKey.generate("https://cayg.example/issuers/1#key-1")
    path = tmp_path / "signing-key.json"
    key.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        key.write(path)
    loaded = SigningKey.from_file(path)
    assert loaded.public_key == key.public_key
    assert loaded.verification_method == "https://cayg.example/issuers/1#key-1"
    data = json.loads(path.read_text("utf-8"))
    assert set(data) == {"publicKeyMultibase", "secretKeyMultibase", "verificationMethod"}
    assert data["publicKeyMultibase"].startswith("z6Mk")

    credential = _credential_for(key)
    signed = sign_credential(credential, key, loader)
    verify_credential(signed, loader, trusted_keys={loaded.verification_method: loaded.public_key})


def test_key_file_without_method_defaults_to_did_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    data = key.to_json()
    del data["verificationMethod"]
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data), "utf-8")
    assert SigningKey.from_file(path).verification_method == key.did_key


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.__setitem__("verificationmethod", "x"), "unknown key file members"),
        (lambda d: d.pop("secretKeyMultibase"), "needs string members"),
        (
            lambda d: d.__setitem__(
                "publicKeyMultibase", SigningKey.generate().public_key_multibase
            ),
            "does not belong",
        ),
        (lambda d: d.__setitem__("secretKeyMultibase", "zzzz"), "Ed25519 secret key"),
        (lambda d: d.__setitem__("publicKeyMultibase", "6Mk"), "multibase"),
    ],
)
def test_bad_key_files_are_refused(
    tmp_path: Path, edit: Callable[[dict[str, str]], Any], reason: str
) -> None:
    data = SigningKey.generate().to_json()
    edit(data)
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(KeyFormatError, match=reason):
        SigningKey.from_file(path)


def test_vector_secret_with_wrong_public_half_is_refused(keys_json: Json) -> None:
    pair = keys_json["keyPair"]
    seed = bytes.fromhex(pair["privateKeyHex"])[:32]
    other_public = SigningKey.generate().public_key
    secret = encode_multibase(b"\x80\x26" + seed + other_public)
    with pytest.raises(KeyFormatError, match="does not belong"):
        SigningKey.from_json(
            {"publicKeyMultibase": pair["publicKeyMultibase"], "secretKeyMultibase": secret}
        )


def test_repr_does_not_leak_the_secret(vector_key: SigningKey, keys_json: Json) -> None:
    text = repr(vector_key)
    assert keys_json["keyPair"]["secretKeyMultibase"] not in text
    assert vector_key.to_json()["secretKeyMultibase"] not in text
    assert keys_json["keyPair"]["privateKeyHex"][:64] not in text


# ----------------------------------------------------------------------- proof sets


def test_every_proof_in_a_proof_set_must_verify(loader: ContextLoader) -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    credential = _credential_for(first)
    proof_a = sign_credential(credential, first, loader)["proof"]
    proof_b = sign_credential(credential, second, loader)["proof"]
    trust = {second.did_key: second.public_key}

    verify_credential({**credential, "proof": [proof_a, proof_b]}, loader, trusted_keys=trust)

    broken = {**proof_b, "created": "2001-01-01T00:00:00Z"}
    with pytest.raises(ProofError, match="signature does not verify"):
        verify_credential({**credential, "proof": [proof_a, broken]}, loader, trusted_keys=trust)


def test_one_loader_can_be_shared_between_threads(
    edtech: Path, loader: ContextLoader, keys_json: Json, vector_key: SigningKey
) -> None:
    unsigned = {v: _vector(edtech, f"{v}_unsigned.json") for v in VECTORS}
    jobs = [VECTORS[i % 2] for i in range(16)]

    def sign(vector: str) -> tuple[str, str]:
        signed = sign_credential(unsigned[vector], vector_key, loader, created=CREATED)
        return vector, signed["proof"]["proofValue"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(sign, jobs))
    assert results == [(v, keys_json["vectors"][v]["proofValue"]) for v in jobs]
