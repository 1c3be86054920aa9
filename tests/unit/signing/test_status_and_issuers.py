"""Bitstring status lists, did:web / https issuer documents, and the verifier built on them."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cayg_signing import (
    MIN_STATUS_LIST_ENTRIES,
    ContextLoader,
    CredentialVerifier,
    KeyFormatError,
    ProofError,
    PublishedKey,
    SigningKey,
    StatusListError,
    bitstring,
    controller_document,
    decode_status_list,
    did_web_url,
    encode_status_list,
    key_in_document,
    sign_credential,
    status_bit,
    verify_credential,
)
from cayg_signing.did import resolve_key

pytestmark = pytest.mark.unit

Json = dict[str, Any]
DID = "did:web:northfield.example"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- the bitstring ---------------------------------------------------------------------


def test_encoded_list_is_u_base64url_of_gzip_with_index_zero_leftmost() -> None:
    encoded = encode_status_list(bitstring({0, 9, MIN_STATUS_LIST_ENTRIES - 1}))
    assert encoded.startswith("u")
    assert "=" not in encoded
    assert "+" not in encoded
    assert "/" not in encoded
    text = encoded[1:]
    raw = gzip.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    assert len(raw) == MIN_STATUS_LIST_ENTRIES // 8
    assert raw[0] == 0b1000_0000  # index 0: the left-most bit of the first byte
    assert raw[1] == 0b0100_0000  # index 9
    assert raw[-1] == 0b0000_0001
    assert sum(bin(b).count("1") for b in raw) == 3


def test_decoding_our_own_list_gives_the_bits_back_and_encoding_is_deterministic() -> None:
    chosen = {5, 77, 4_096, 131_000}
    encoded = encode_status_list(bitstring(chosen))
    assert encode_status_list(bitstring(chosen)) == encoded
    bits = decode_status_list(encoded)
    assert {i for i in range(len(bits) * 8) if status_bit(bits, i)} == chosen


def test_decoding_refuses_bad_input_and_bombs() -> None:
    with pytest.raises(StatusListError, match="'u' prefix"):
        decode_status_list("z123")
    with pytest.raises(StatusListError, match="GZIP"):
        decode_status_list("u" + base64.urlsafe_b64encode(b"not gzip").decode().rstrip("="))
    bomb = encode_status_list(bytes(4 * 2**20))
    with pytest.raises(StatusListError, match="expands beyond"):
        decode_status_list(bomb, max_bytes=2**20)
    with pytest.raises(StatusListError, match="outside"):
        status_bit(bitstring(()), MIN_STATUS_LIST_ENTRIES)
    with pytest.raises(StatusListError, match="outside"):
        bitstring({MIN_STATUS_LIST_ENTRIES})


# -- did:web and controller documents ---------------------------------------------------


@pytest.mark.parametrize(
    ("did", "url"),
    [
        ("did:web:northfield.example", "https://northfield.example/.well-known/did.json"),
        (
            "did:web:northfield.example:issuers:cayg",
            "https://northfield.example/issuers/cayg/did.json",
        ),
        ("did:web:localhost%3A8443", "https://localhost:8443/.well-known/did.json"),
    ],
)
def test_did_web_urls(did: str, url: str) -> None:
    assert did_web_url(did) == url


@pytest.mark.parametrize(
    "did", ["did:key:z6Mk", "did:web:", "did:web:a::b", "did:web:x.example#k", "did:web:h:.."]
)
def test_malformed_did_web_is_refused(did: str) -> None:
    with pytest.raises(KeyFormatError):
        did_web_url(did)


def _keys(*names: str) -> list[SigningKey]:
    return [SigningKey.generate(f"{DID}#{name}") for name in names]


def _published(keys: list[SigningKey]) -> list[PublishedKey]:
    return [PublishedKey(k.verification_method, k.public_key_multibase) for k in keys]


def test_a_document_with_two_keys_resolves_each_and_nothing_else() -> None:
    old, new = _keys("key-2025", "key-2026")
    document = controller_document(DID, _published([old, new]))
    assert document["assertionMethod"] == [old.verification_method, new.verification_method]
    for key in (old, new):
        assert key_in_document(document, key.verification_method).public_key == key.public_key
    with pytest.raises(ProofError, match="not a key listed"):
        key_in_document(document, f"{DID}#key-2024")
    # Listed, but not as an assertion method: it may not sign credentials.
    narrowed = {**document, "assertionMethod": [new.verification_method]}
    with pytest.raises(ProofError, match="not an assertion method"):
        key_in_document(narrowed, old.verification_method)
    # Served at the wrong place: another controller's document.
    with pytest.raises(ProofError, match="is the document of"):
        key_in_document({**document, "id": "did:web:other.example"}, new.verification_method)


def test_a_document_refuses_keys_of_another_controller() -> None:
    stranger = SigningKey.generate("did:web:other.example#key-1")
    with pytest.raises(KeyFormatError, match=r"is not <did:web:northfield\.example>"):
        controller_document(DID, _published([stranger]))
    with pytest.raises(KeyFormatError, match="neither"):
        controller_document("http://northfield.example/issuer", _published(_keys("k")))


def test_an_https_issuer_document_carries_its_profile() -> None:
    issuer = "https://northfield.example/issuers/cayg"
    key = SigningKey.generate(f"{issuer}#key-1")
    profile = {"id": issuer, "type": ["Profile"], "name": "Northfield Community College"}
    document = controller_document(
        issuer, [PublishedKey(key.verification_method, key.public_key_multibase)], profile=profile
    )
    assert document["id"] == issuer
    assert document["name"] == profile["name"]
    assert key_in_document(document, key.verification_method).controller == issuer


# -- verification through a resolved issuer ---------------------------------------------


@pytest.fixture(scope="module")
def loader(conformance_dir: Path) -> ContextLoader:
    return ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")


@pytest.fixture(scope="module")
def ob_unsigned(conformance_dir: Path) -> Json:
    data: Json = json.loads(
        (conformance_dir / "1edtech" / "vectors" / "ob_unsigned.json").read_text("utf-8")
    )
    return data


class _Web:
    """A pretend web: URL -> JSON, counting fetches."""

    def __init__(self) -> None:
        self.pages: dict[str, Any] = {}
        self.fetched: list[str] = []

    def __call__(self, url: str) -> Any:
        self.fetched.append(url)
        if url not in self.pages:
            raise OSError(f"404 {url}")
        return copy.deepcopy(self.pages[url])


def _credential(template: Json, key: SigningKey, loader: ContextLoader, **extra: Any) -> Json:
    body = copy.deepcopy(template)
    body.pop("proof", None)
    body["issuer"] = {"id": DID, "type": ["Profile"], "name": "Northfield Community College"}
    body.update(extra)
    return sign_credential(body, key, loader)


def _status_list(url: str, key: SigningKey, loader: ContextLoader, revoked: set[int]) -> Json:
    return sign_credential(
        {
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": DID,
            "validFrom": "2026-03-01T00:00:00Z",
            "validUntil": "2026-03-02T00:00:00Z",
            "credentialSubject": {
                "id": f"{url}#list",
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": encode_status_list(bitstring(revoked)),
            },
        },
        key,
        loader,
    )


def test_verifying_through_did_web_with_a_rotated_key(
    loader: ContextLoader, ob_unsigned: Json
) -> None:
    old, new = _keys("key-2025", "key-2026")
    web = _Web()
    web.pages[did_web_url(DID)] = controller_document(DID, _published([old, new]))
    signed_before = _credential(ob_unsigned, old, loader)
    signed_after = _credential(ob_unsigned, new, loader)

    def resolver(method: str) -> Any:
        return resolve_key(method, web)

    for signed in (signed_before, signed_after):
        verify_credential(signed, loader, resolver=resolver)
    # The old key taken out of the document (it leaked): what it signed fails.
    web.pages[did_web_url(DID)] = controller_document(DID, _published([new]))
    with pytest.raises(ProofError, match="not a key listed"):
        verify_credential(signed_before, loader, resolver=resolver)
    # A key of this DID cannot vouch for a credential that names another issuer.
    foreign = copy.deepcopy(signed_after)
    foreign.pop("proof")
    foreign["issuer"]["id"] = "did:web:other.example"
    with pytest.raises(ProofError, match="not by the issuer"):
        verify_credential(sign_credential(foreign, new, loader), loader, resolver=resolver)


def test_the_verifier_reads_the_status_bit_and_sees_a_revocation(
    loader: ContextLoader, ob_unsigned: Json
) -> None:
    (key,) = _keys("key-1")
    web = _Web()
    web.pages[did_web_url(DID)] = controller_document(DID, _published([key]))
    url = "https://northfield.example/status/revocation-0"
    entry = {
        "id": f"{url}#4242",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "4242",
        "statusListCredential": url,
    }
    signed = _credential(ob_unsigned, key, loader, credentialStatus=entry)
    verifier = CredentialVerifier(loader, web, clock=lambda: NOW)

    web.pages[url] = _status_list(url, key, loader, revoked={17})
    before = verifier.check(signed)
    assert before.valid, before.all_problems
    assert not before.revoked

    web.pages[url] = _status_list(url, key, loader, revoked={17, 4242})
    after = verifier.check(signed)
    assert after.verified
    assert after.revoked
    assert not after.valid

    # A status list that is not the issuer's own, or no longer valid, is a problem.
    web.pages[url] = _status_list(url, _keys("key-x")[0], loader, revoked=set())
    assert not verifier.check(signed).verified
    late = CredentialVerifier(loader, web, clock=lambda: NOW + timedelta(days=2))
    web.pages[url] = _status_list(url, key, loader, revoked=set())
    assert any("not valid now" in p for p in late.check(signed).problems)
