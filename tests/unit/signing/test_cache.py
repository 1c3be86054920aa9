"""SignatureCache and VerificationCache: what is a hit, what is a miss, what is never served."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_signing import (
    CacheStats,
    ContextLoader,
    ProofError,
    SignatureCache,
    SigningError,
    SigningKey,
    VerificationCache,
    canonical_json,
    sign_credential,
    signature_cache_key,
    verify_credential,
)

pytestmark = pytest.mark.unit

Json = dict[str, Any]
CREATED = datetime(2010, 1, 1, 19, 23, 24, tzinfo=UTC)  # the vectors' proof.created
LATER = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def _vector(edtech: Path, name: str) -> Json:
    data: Json = json.loads((edtech / "vectors" / name).read_text("utf-8"))
    return data


def _reordered(value: Any) -> Any:
    """The same JSON with every object's members in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def _proof(document: Json) -> Json:
    proof = document["proof"]
    assert isinstance(proof, dict)
    return proof


# ------------------------------------------------------------------------- cache key


def test_canonical_json_ignores_member_order_but_not_values(edtech: Path) -> None:
    document = _vector(edtech, "ob_unsigned.json")
    assert canonical_json(_reordered(document)) == canonical_json(document)
    assert list(_reordered(document)) != list(document)
    changed = {**document, "name": document["name"] + "!"}
    assert canonical_json(changed) != canonical_json(document)


@pytest.mark.parametrize("bad", [{"when": datetime(2024, 1, 1)}, {"x": float("nan")}, [1, 2]])
def test_canonical_json_refuses_what_is_not_a_json_object(bad: Any) -> None:
    with pytest.raises(SigningError):
        canonical_json(bad)


def test_key_separates_method_public_key_created_and_content(
    edtech: Path, vector_key: SigningKey
) -> None:
    document = _vector(edtech, "ob_unsigned.json")
    method, public = vector_key.verification_method, vector_key.public_key
    rekeyed = SigningKey.generate(method).public_key  # the same method, re-keyed

    def key(doc: Json, m: str = method, p: bytes = public, c: datetime | None = None) -> str:
        return signature_cache_key(doc, verification_method=m, public_key=p, created=c)

    variants = {
        key(document, m="https://other.example/keys/1"),
        key(document, p=rekeyed),
        key(document, c=CREATED),
        key({**document, "name": "Other"}),
    }
    assert key(document) not in variants
    assert len(variants) == 4
    assert key(_reordered(document)) == key(document)


# ------------------------------------------------------------------- SignatureCache


def test_hit_returns_the_first_signature_with_its_created(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey, trusted: dict[str, bytes]
) -> None:
    cache = SignatureCache(maxsize=8)
    document = _vector(edtech, "ob_unsigned.json")
    first = cache.sign(document, vector_key, loader)
    again = cache.sign(copy.deepcopy(document), vector_key, loader)
    assert again == first  # same proof, same created: byte-identical re-issue
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.size, stats.maxsize) == (1, 1, 1, 8)
    assert stats.chars == len(canonical_json(first))
    verify_credential(again, loader, trusted_keys=trusted)


def test_cached_signature_is_what_inline_signing_gives(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey, trusted: dict[str, bytes]
) -> None:
    cache = SignatureCache()
    document = _vector(edtech, "ob_unsigned.json")
    expected = sign_credential(document, vector_key, loader, created=CREATED)
    assert cache.sign(document, vector_key, loader, created=CREATED) == expected
    assert cache.sign(document, vector_key, loader, created=CREATED) == expected
    # ...which is the official vector's proof, reproduced from the cache.
    official = _vector(edtech, "ob_signed.json")["proof"]
    assert _proof(expected)["proofValue"] == official["proofValue"]
    assert cache.stats.hits == 1


def test_a_fixed_created_is_part_of_the_key(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    cache = SignatureCache()
    document = _vector(edtech, "ob_unsigned.json")
    early = cache.sign(document, vector_key, loader, created=CREATED)
    late = cache.sign(document, vector_key, loader, created=LATER)
    assert _proof(early)["created"] == "2010-01-01T19:23:24Z"
    assert _proof(late)["created"] == "2024-06-01T12:00:00Z"
    assert cache.stats.misses == 2
    assert cache.stats.hits == 0


def test_changed_content_or_another_key_is_signed_anew(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    cache = SignatureCache()
    document = _vector(edtech, "ob_unsigned.json")
    original = cache.sign(document, vector_key, loader, created=CREATED)
    changed = cache.sign({**document, "name": "Renamed"}, vector_key, loader, created=CREATED)
    rekeyed = SigningKey.generate(vector_key.verification_method)
    resigned = cache.sign(document, rekeyed, loader, created=CREATED)
    assert changed["name"] == "Renamed"
    values = {_proof(d)["proofValue"] for d in (original, changed, resigned)}
    assert len(values) == 3
    verify_credential(
        resigned, loader, trusted_keys={rekeyed.verification_method: rekeyed.public_key}
    )
    assert cache.stats.hits == 0


def test_member_order_does_not_matter(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    cache = SignatureCache()
    document = _vector(edtech, "ob_unsigned.json")
    first = cache.sign(document, vector_key, loader)
    assert cache.sign(_reordered(document), vector_key, loader) == first
    assert cache.stats.hits == 1


def test_callers_cannot_change_what_the_cache_serves(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    cache = SignatureCache()
    document = _vector(edtech, "ob_unsigned.json")
    first = cache.sign(document, vector_key, loader, created=CREATED)
    expected = copy.deepcopy(first)
    first["name"] = "changed by the caller"
    _proof(first)["proofValue"] = "z1"
    served = cache.sign(document, vector_key, loader, created=CREATED)
    assert served == expected
    served["name"] = "changed again"
    assert cache.sign(document, vector_key, loader, created=CREATED) == expected


def test_least_recently_used_entry_is_dropped_first() -> None:
    cache = SignatureCache(maxsize=2)
    cache.put("a", {"n": 1})
    cache.put("b", {"n": 2})
    assert cache.get("a") == {"n": 1}  # a is now more recent than b
    cache.put("c", {"n": 3})
    assert cache.get("b") is None
    assert cache.get("a") == {"n": 1}
    assert cache.get("c") == {"n": 3}
    assert cache.stats.size == 2


def test_stored_characters_are_bounded_too() -> None:
    cache = SignatureCache(maxsize=100, max_chars=40)
    small = {"v": "x" * 10}  # 18 characters of canonical JSON
    assert len(canonical_json(small)) == 18
    cache.put("a", small)
    cache.put("b", small)
    assert cache.stats.chars == 36
    cache.put("c", small)  # 54 > 40: the oldest goes
    assert cache.get("a") is None
    assert cache.get("b") == small
    assert cache.stats.chars == 36
    cache.put("huge", {"v": "x" * 100})  # larger than the budget: not stored at all
    assert cache.get("huge") is None
    assert cache.get("b") == small
    assert cache.get("c") == small
    cache.put("b", {"v": "y"})  # replacing an entry releases its characters
    assert cache.stats.chars == 18 + len(canonical_json({"v": "y"}))
    with pytest.raises(ValueError, match="max_chars"):
        SignatureCache(max_chars=-1)


def test_size_zero_caches_nothing_and_negative_is_refused(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    cache = SignatureCache(maxsize=0)
    document = _vector(edtech, "ob_unsigned.json")
    cache.sign(document, vector_key, loader)
    cache.sign(document, vector_key, loader)
    assert cache.stats == CacheStats(hits=0, misses=2, size=0, maxsize=0)
    with pytest.raises(ValueError, match="cache size"):
        SignatureCache(maxsize=-1)


def test_errors_are_not_cached(edtech: Path, loader: ContextLoader, vector_key: SigningKey) -> None:
    cache = SignatureCache()
    document = {**_vector(edtech, "ob_unsigned.json"), "undefinedTerm": "x"}
    for _ in range(2):
        with pytest.raises(SigningError):
            cache.sign(document, vector_key, loader)
    assert cache.stats.size == 0


# ---------------------------------------------------------------- VerificationCache


def test_a_verified_credential_is_not_verified_again(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    proofs = VerificationCache(loader, trusted_keys=trusted, maxsize=4)
    signed = _vector(edtech, "clr_signed.json")
    proofs.verify(signed)
    proofs.verify(_reordered(signed))
    assert proofs.stats == CacheStats(hits=1, misses=1, size=1, maxsize=4)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: d.update(name="Edited after signing"), id="document"),
        pytest.param(
            lambda d: d["credentialSubject"]["verifiableCredential"][0].update(name="Forged"),
            id="embedded",
        ),
        pytest.param(
            lambda d: _proof_item(d).update(created="2011-01-01T00:00:00Z"), id="proof-options"
        ),
        pytest.param(
            lambda d: _proof_item(d).update(proofValue=_flip(_proof_item(d)["proofValue"])),
            id="proof-value",
        ),
    ],
)
def test_a_tampered_copy_of_a_verified_credential_is_rejected(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes], tamper: Any
) -> None:
    proofs = VerificationCache(loader, trusted_keys=trusted)
    signed = _vector(edtech, "clr_signed.json")
    proofs.verify(signed)
    tampered = copy.deepcopy(signed)
    tamper(tampered)
    for _ in range(2):  # a failure is not remembered either
        with pytest.raises(ProofError):
            proofs.verify(tampered)
    assert proofs.stats.size == 1
    proofs.verify(signed)
    assert proofs.stats.hits == 1


def _proof_item(document: Json) -> Json:
    proof = document["proof"]
    item = proof[0] if isinstance(proof, list) else proof
    assert isinstance(item, dict)
    return item


def _flip(proof_value: str) -> str:
    """The same proofValue with one base58 digit in the middle changed."""
    middle = len(proof_value) // 2
    digit = "3" if proof_value[middle] != "3" else "4"
    return proof_value[:middle] + digit + proof_value[middle + 1 :]


def test_verdicts_hold_for_one_trust_map_only(
    edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    signed = _vector(edtech, "clr_signed.json")
    VerificationCache(loader, trusted_keys=trusted).verify(signed)
    with pytest.raises(ProofError, match="not a trusted key"):
        VerificationCache(loader).verify(signed)


def test_verification_cache_is_bounded(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey, trusted: dict[str, bytes]
) -> None:
    proofs = VerificationCache(loader, trusted_keys=trusted, maxsize=2)
    unsigned = _vector(edtech, "ob_unsigned.json")
    documents = [
        sign_credential({**unsigned, "name": f"Badge {i}"}, vector_key, loader, created=CREATED)
        for i in range(3)
    ]
    for document in documents:
        proofs.verify(document)
    assert proofs.stats.size == 2
    proofs.verify(documents[0])  # dropped as the oldest: verified again
    assert proofs.stats.hits == 0
    assert proofs.stats.misses == 4
